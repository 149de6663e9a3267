"""Static batching: sample responses from a policy, prefill + KV-cache decode under one ``jax.jit``.

``sample_static(policy, prompt_ids, prompt_mask, key=..., config=..., num_samples=n)`` takes
left-padded prompts (G, P) - every row's last column must be a real token - and returns
``Rollouts`` of shape (G * n, L), L = ``config.max_new_tokens``, row ``g * n + k`` = sample k of
prompt g:

1. prefill: one forward over the G distinct prompts (not the G * n repeated rows) with a static
   cache index (attention over the P prompt slots only), logits of the last column only; each
   cache row and its logits are then copied n times. For Monte-Carlo completions of step
   prefixes (N per prefix) this divides the prefill cost by N;
2. decode: ``lax.while_loop``s that feed the previous token, choose the next one with
   ``prime_jax.rollout.sampling.choose_tokens`` and stop early once every row has emitted an EOS. The
   steps are cut into ``config.decode_segments`` loops whose caches grow in between, so a step
   attends over the slots its segment can have filled rather than all of them (the model reads
   every cache slot when the cache index is traced).

Whole thing is one compiled function per (graphdef, n, config, shapes, mesh); ``jax.jit`` caches
it. Randomness: step i uses ``fold_in(key, i)``; rows draw independently from that step key over
the (G * n, V) logits, so a key reproduces the same rollouts (also on a different mesh layout:
threefry is partitionable), and ``num_samples=n`` draws what the same key draws for the prompts
repeated by ``repeat_prompts`` (up to an ulp of the prefill: a matmul over fewer rows).

Under ``jax.set_mesh`` the batch is laid out over the data axes (``("batch", ...)`` in
``sharding.ACTIVATION_RULES``); weights keep their own sharding.

Memory (S = P + L - 1 cache slots; the last sampled token is never fed back; B = G * n):

    KV cache  = 2 * num_layers * B * S * num_kv_heads * head_dim * bytes(cache_dtype) + B * S
                (= ``prime_jax.models.cache_bytes(..., max_len=S)``; ``cache_dtype`` defaults to
                the compute dtype, "bfloat16" halves a float32 cache)
    outputs   = B * L * (4 + 4) bytes (int32 tokens + float32 log-probs), + per step
                B * V * 4 bytes of float32 logits (twice that with top-p: the sorted copy).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from prime_jax import sharding
from prime_jax.models.cache import KVCache
from prime_jax.models.transformer import Transformer
from prime_jax.rollout.config import Rollouts, SamplingConfig, check_left_padded, is_eos
from prime_jax.rollout.sampling import choose_tokens


def _pick(logits_bv: jax.Array, key: jax.Array, config: SamplingConfig):
    """(token_b, logp_b): the chosen token and its unmodified float32 log-probability."""
    token_b = choose_tokens(logits_bv, key, temperature=config.temperature, top_k=config.top_k,
                            top_p=config.top_p)
    logp_bv = jax.nn.log_softmax(logits_bv.astype(jnp.float32), axis=-1)
    logp_b = jnp.take_along_axis(logp_bv, token_b[:, None], axis=-1)[:, 0]
    return token_b, logp_b


def decode_segments(max_new_tokens: int, num_segments: int) -> list[tuple[int, int]]:
    """Decode steps ``1 .. max_new_tokens - 1`` cut into at most ``num_segments`` [start, stop).

    Each segment is one ``while_loop`` over a cache of static length ``P + stop - 1``: attention
    reads (and XLA re-lays out) only the slots a segment can fill, not all ``P + L - 1``; the
    price is one cache copy and one more compiled loop body per segment.
    """
    steps = max_new_tokens - 1
    n = max(1, min(num_segments, steps))
    cuts = [1 + (steps * j) // n for j in range(n + 1)]
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def _grow(cache: KVCache, max_len: int) -> KVCache:
    """``cache`` with empty (masked-out) slots appended up to ``max_len``."""
    extra = max_len - cache.max_len
    if extra <= 0:
        return cache
    def pad(x, axis):
        return jnp.pad(x, [(0, extra if a == axis else 0) for a in range(x.ndim)])

    return cache.replace(keys=tuple(pad(k, 2) for k in cache.keys),
                         values=tuple(pad(v, 2) for v in cache.values),
                         mask_bs=pad(cache.mask_bs, 1))


class DecodeCarry(NamedTuple):
    """The while-loop state of decoding: next step ``i``, the cache, the last token of each row,
    the tokens and log-probs so far, which rows are done (EOS seen) and their lengths."""

    i: jax.Array
    cache: KVCache
    prev_b: jax.Array
    tokens_bl: jax.Array
    logp_bl: jax.Array
    done_b: jax.Array
    length_b: jax.Array


def _repeat_rows(cache: KVCache, n: int) -> KVCache:
    """Each cache row (keys, values, mask) repeated ``n`` times contiguously (row g * n + k)."""
    if n == 1:
        return cache
    return cache.replace(keys=tuple(jnp.repeat(k, n, axis=0) for k in cache.keys),
                         values=tuple(jnp.repeat(v, n, axis=0) for v in cache.values),
                         mask_bs=jnp.repeat(cache.mask_bs, n, axis=0))


def _sample_impl(graphdef, state, prompt_ids_gp, prompt_mask_gp, key, *, n: int, config: SamplingConfig):
    """Traced body of ``sample``: prefill the G prompts once, copy each cache row n times, decode."""
    policy: Transformer = nnx.merge(graphdef, state)
    g, p = prompt_ids_gp.shape
    segments = decode_segments(config.max_new_tokens, config.decode_segments)
    bl_axes = ("batch", "length")
    prompt_ids_gp = sharding.constrain(prompt_ids_gp.astype(jnp.int32), bl_axes)
    prompt_mask_gp = sharding.constrain(prompt_mask_gp.astype(jnp.int32), bl_axes)
    prompt_len_b = jnp.repeat(jnp.sum(prompt_mask_gp, axis=-1, dtype=jnp.int32), n)

    # Step i feeds token i-1 at slot p + i - 1: a segment ending at step `stop` needs p + stop - 1.
    first_len = p + (segments[0][1] - 1 if segments else 0)
    cache = policy.init_cache(g, first_len, dtype=config.cache_dtype)
    h_gpd, cache = policy.hidden_states(prompt_ids_gp, attention_mask_bt=prompt_mask_gp,
                                        cache=cache, cache_index=0)
    logits_bv = jnp.repeat(policy.logits(h_gpd[:, -1:])[:, 0], n, axis=0)
    return decode(policy, logits_bv, _repeat_rows(cache, n), prompt_len_b, p, key, config)


def decode(policy: Transformer, logits_bv, cache: KVCache, prompt_len_b, p: int, key: jax.Array,
           config: SamplingConfig) -> Rollouts:
    """The decode after a prefill of ``p`` prompt columns into ``cache``: token 0 from the
    prefill's last-position ``logits_bv``, then one while_loop per decode segment over the
    remaining positions (step i feeds token i-1 at slot p + i - 1; each segment first grows the
    cache to its own static length ``p + stop - 1``)."""
    b, steps = logits_bv.shape[0], config.max_new_tokens
    bl_axes = ("batch", "length")
    eos_ids = config.eos_ids
    token_b, logp_b = _pick(logits_bv, jax.random.fold_in(key, 0), config)
    done_b = is_eos(token_b, eos_ids)
    tokens_bl = jnp.full((b, steps), config.pad_id, jnp.int32).at[:, 0].set(token_b)
    logp_bl = jnp.zeros((b, steps), jnp.float32).at[:, 0].set(logp_b)
    tokens_bl = sharding.constrain(tokens_bl, bl_axes)
    logp_bl = sharding.constrain(logp_bl, bl_axes)

    def body(carry: DecodeCarry) -> DecodeCarry:
        positions_b1 = (prompt_len_b + carry.i - 1)[:, None]
        logits_b1v, cache = policy(carry.prev_b[:, None], positions_bt=positions_b1, cache=carry.cache)
        token_b, logp_b = _pick(logits_b1v[:, 0], jax.random.fold_in(key, carry.i), config)
        live_b = ~carry.done_b
        token_b = jnp.where(live_b, token_b, config.pad_id)
        logp_b = jnp.where(live_b, logp_b, 0.0)
        return DecodeCarry(
            i=carry.i + 1, cache=cache, prev_b=token_b,
            tokens_bl=jax.lax.dynamic_update_slice_in_dim(carry.tokens_bl, token_b[:, None], carry.i, axis=1),
            logp_bl=jax.lax.dynamic_update_slice_in_dim(carry.logp_bl, logp_b[:, None], carry.i, axis=1),
            done_b=carry.done_b | (live_b & is_eos(token_b, eos_ids)),
            length_b=carry.length_b + live_b.astype(jnp.int32))

    carry = DecodeCarry(i=jnp.int32(1), cache=cache, prev_b=token_b, tokens_bl=tokens_bl, logp_bl=logp_bl,
                        done_b=done_b, length_b=jnp.ones((b,), jnp.int32))
    for _, stop in decode_segments(steps, config.decode_segments):  # each loop attends over its own cache
        carry = carry._replace(cache=_grow(carry.cache, p + stop - 1))
        carry = jax.lax.while_loop(
            lambda c, stop=stop: (c.i < stop) & ~jnp.all(c.done_b), body, carry)
    mask_bl = (jnp.arange(steps)[None, :] < carry.length_b[:, None]).astype(jnp.int32)
    return Rollouts(tokens=carry.tokens_bl, logprobs=carry.logp_bl, mask=mask_bl, truncated=~carry.done_b,
                    lengths=carry.length_b)


_sample_jit = jax.jit(_sample_impl, static_argnames=("graphdef", "n", "config"))


def sample_static(policy: Transformer, prompt_ids: jax.Array, prompt_mask: jax.Array, *,
                  key: jax.Array, config: SamplingConfig, num_samples: int = 1) -> Rollouts:
    """``num_samples`` responses to each left-padded prompt (B, P) as one static batch of
    B * n rows (row ``prompt * n + k``), from one prefill per prompt; see the module docstring."""
    if num_samples < 1:
        raise ValueError(f"sample: num_samples must be >= 1, got {num_samples}")
    check_left_padded(prompt_mask, "sample")
    graphdef, state = nnx.split(policy)
    return _sample_jit(graphdef, state, prompt_ids, prompt_mask, key, n=num_samples, config=config)
