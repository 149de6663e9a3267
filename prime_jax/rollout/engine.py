"""Rollout engine: sample responses from a policy, prefill + KV-cache decode under one ``jax.jit``.

``sample(policy, prompt_ids, prompt_mask, key=..., config=...)`` takes left-padded prompts
(B, P) - every row's last column must be a real token - and returns ``Rollouts`` of shape
(B, L), L = ``config.max_new_tokens``:

1. prefill: one forward over the prompts with a static cache index (attention over the P
   prompt slots only), logits of the last column only;
2. decode: ``lax.while_loop``s that feed the previous token, choose the next one with
   ``prime_jax.rollout.sampling.choose_tokens`` and stop early once every row has emitted an EOS. The
   steps are cut into ``config.decode_segments`` loops whose caches grow in between, so a step
   attends over the slots its segment can have filled rather than all of them (the model reads
   every cache slot when the cache index is traced).

Whole thing is one compiled function per (graphdef, config, shapes, mesh); ``jax.jit`` caches it.
Randomness: step i uses ``fold_in(key, i)``; rows draw independently from that step key, so a key
reproduces the same rollouts (also on a different mesh layout: threefry is partitionable).

n samples per prompt sit in contiguous rows (row = prompt * n + k): ``repeat_prompts`` or the
``num_samples`` argument. Under ``jax.set_mesh`` the batch is laid out over the data axes
(``("batch", ...)`` in ``sharding.ACTIVATION_RULES``); weights keep their own sharding.

Memory (S = P + L - 1 cache slots; the last sampled token is never fed back):

    KV cache  = 2 * num_layers * B * S * num_kv_heads * head_dim * bytes(cache_dtype) + B * S
                (= ``prime_jax.models.cache_bytes(..., max_len=S)``; ``cache_dtype`` defaults to
                the compute dtype, "bfloat16" halves a float32 cache)
    outputs   = B * L * (4 + 4) bytes (int32 tokens + float32 log-probs), + per step
                B * V * 4 bytes of float32 logits (twice that with top-p: the sorted copy).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from prime_jax import sharding
from prime_jax.models.cache import KVCache
from prime_jax.models.transformer import Transformer
from prime_jax.rollout.sampling import choose_tokens


@dataclasses.dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    """How to sample (hashable: it is a static argument of the compiled sampler).

    ``temperature`` 0 means greedy; ``top_k`` 0 and ``top_p`` 1 disable those filters.
    ``eos_id``: an id, a list/tuple of ids (stored as a tuple), or None (never stop early).
    ``pad_id`` fills tokens after EOS. ``cache_dtype``: KV-cache dtype name (None = compute dtype).
    ``decode_segments``: the decode loop runs as this many while_loops over caches that grow
    between them (see ``decode_segments``); 1 = one loop over the full cache.
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    eos_id: int | tuple[int, ...] | None = None
    pad_id: int = 0
    cache_dtype: str | None = None
    decode_segments: int = 4

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(
                f"SamplingConfig: max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"SamplingConfig: temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"SamplingConfig: top_p must be in (0, 1], got {self.top_p}")
        if self.decode_segments < 1:
            raise ValueError(
                f"SamplingConfig: decode_segments must be >= 1, got {self.decode_segments}")
        if self.top_k < 0:
            raise ValueError(f"SamplingConfig: top_k must be >= 0, got {self.top_k}")
        eos = self.eos_id
        if eos is not None and not isinstance(eos, (int, np.integer)):
            eos = tuple(int(e) for e in eos)
        elif eos is not None:
            eos = int(eos)
        object.__setattr__(self, "eos_id", eos)
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_p", float(self.top_p))
        if self.cache_dtype is not None:
            object.__setattr__(self, "cache_dtype", jnp.dtype(self.cache_dtype).name)

    @property
    def eos_ids(self) -> tuple[int, ...]:
        """EOS ids as a tuple (empty: no early stop)."""
        if self.eos_id is None:
            return ()
        return self.eos_id if isinstance(self.eos_id, tuple) else (self.eos_id,)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Rollouts:
    """Sampled responses, (B, L) with L = max_new_tokens.

    * ``tokens``: int32, ``pad_id`` after EOS;
    * ``logprobs``: float32, ``log softmax(logits)[token]`` of the unmodified model (no
      temperature or filter), 0 where ``mask`` is 0;
    * ``mask``: int32, 1 on every generated token up to and including EOS (all ones if truncated);
    * ``truncated``: bool (B,), no EOS within L tokens;
    * ``lengths``: int32 (B,), ``sum(mask, -1)``.
    """

    tokens: jax.Array
    logprobs: jax.Array
    mask: jax.Array
    truncated: jax.Array
    lengths: jax.Array


def check_left_padded(prompt_mask, caller: str) -> None:
    """Raise unless every prompt ends in its last column (``prompt_mask[:, -1] == 1``), when the
    mask can be read on this host (not a tracer, fully addressable)."""
    readable = not isinstance(prompt_mask, jax.core.Tracer) and getattr(prompt_mask, "is_fully_addressable", True)
    if readable and not np.all(np.asarray(prompt_mask)[:, -1]):
        raise ValueError(f"{caller}: prompts must be left-padded (prompt_mask[:, -1] == 1)")


def repeat_prompts(prompt_ids: jax.Array, prompt_mask: jax.Array, n: int):
    """Each prompt row repeated ``n`` times contiguously: out row ``p * n + k`` = prompt ``p``."""
    return jnp.repeat(prompt_ids, n, axis=0), jnp.repeat(prompt_mask, n, axis=0)


def join_prompt_and_response(prompt_ids: jax.Array, prompt_mask: jax.Array,
                             rollouts: Rollouts) -> tuple[jax.Array, jax.Array]:
    """(tokens, mask) of shape (B, P + L): prompt then response, for a teacher-forced pass."""
    tokens_bt = jnp.concatenate([prompt_ids.astype(jnp.int32), rollouts.tokens], axis=1)
    mask_bt = jnp.concatenate([prompt_mask.astype(jnp.int32), rollouts.mask], axis=1)
    return tokens_bt, mask_bt


def _is_eos(tokens_b: jax.Array, eos_ids: tuple[int, ...]) -> jax.Array:
    if not eos_ids:
        return jnp.zeros(tokens_b.shape, bool)
    return jnp.isin(tokens_b, jnp.asarray(eos_ids, jnp.int32))


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


def _sample_impl(graphdef, state, prompt_ids_bp, prompt_mask_bp, key, *, config: SamplingConfig):
    """Traced body of ``sample``: prefill, then ``decode``."""
    policy: Transformer = nnx.merge(graphdef, state)
    b, p = prompt_ids_bp.shape
    segments = decode_segments(config.max_new_tokens, config.decode_segments)
    bl_axes = ("batch", "length")
    prompt_ids_bp = sharding.constrain(prompt_ids_bp.astype(jnp.int32), bl_axes)
    prompt_mask_bp = sharding.constrain(prompt_mask_bp.astype(jnp.int32), bl_axes)
    prompt_len_b = jnp.sum(prompt_mask_bp, axis=-1, dtype=jnp.int32)

    # Step i feeds token i-1 at slot p + i - 1: a segment ending at step `stop` needs p + stop - 1.
    first_len = p + (segments[0][1] - 1 if segments else 0)
    cache = policy.init_cache(b, first_len, dtype=config.cache_dtype)
    h_bpd, cache = policy.hidden_states(prompt_ids_bp, attention_mask_bt=prompt_mask_bp,
                                        cache=cache, cache_index=0)
    return decode(policy, policy.logits(h_bpd[:, -1:])[:, 0], cache, prompt_len_b, p, key, config)


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
    done_b = _is_eos(token_b, eos_ids)
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
            done_b=carry.done_b | (live_b & _is_eos(token_b, eos_ids)),
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


_sample_jit = jax.jit(_sample_impl, static_argnames=("graphdef", "config"))


def sample(policy: Transformer, prompt_ids: jax.Array, prompt_mask: jax.Array, *,
           key: jax.Array, config: SamplingConfig, num_samples: int = 1) -> Rollouts:
    """Sample ``config.max_new_tokens`` tokens after each left-padded prompt.

    ``prompt_ids``, ``prompt_mask``: (B, P) ints, mask 1 on real tokens, each row's last column
    real. With ``num_samples = n`` every prompt is repeated n times first (rows
    ``prompt * n + k``), so the result has B * n rows. Returns ``Rollouts`` (B * n, L); see the
    module docstring for the algorithm, randomness and memory.
    """
    if num_samples > 1:
        prompt_ids, prompt_mask = repeat_prompts(prompt_ids, prompt_mask, num_samples)
    check_left_padded(prompt_mask, "sample")
    graphdef, state = nnx.split(policy)
    return _sample_jit(graphdef, state, prompt_ids, prompt_mask, key, config=config)
