"""Shared-prefix sampling: prefill each distinct prompt once, decode its n samples from copies.

``sample_shared(policy, prompt_ids_gp, prompt_mask_gp, *, n, key, config)`` is
``sample(policy, *repeat_prompts(prompt_ids_gp, prompt_mask_gp, n), key=key, config=config)``
with the prefill done on the G distinct prompts (or step prefixes, for Monte-Carlo completions)
instead of the G * n repeated rows:

1. prefill: one forward over the (G, P) prompts into a (G, P)-slot cache, logits of the last
   column ``logits_gv``;
2. copy: cache rows and logits repeated n times along the batch, row ``g * n + k`` = prompt g
   (the layout of ``repeat_prompts``);
3. decode: the loop of ``engine.sample`` on the (G * n) rows, unchanged (same step keys
   ``fold_in(key, i)``, same per-step draws over the (G * n, V) logits, same cache segments).

So the result equals ``sample`` on the repeated prompts token for token - greedy and
temperature / top-k / top-p sampling with the same ``key`` - as long as the prefill of G rows
gives the same per-row numbers as that of G * n rows up to rounding: on XLA:CPU the prompt's
keys / values can move by an ulp (a matmul over fewer rows), so log-probs agree to ~1e-6 and
tokens exactly unless two candidates tie within that (the tests check tokens). Prefill cost
drops from ``G * n * P`` to ``G * P`` token positions; the decode cost and the KV cache
(``G * n * (P + L - 1)`` slots) are those of ``sample``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from prime_jax import sharding
from prime_jax.models.cache import KVCache
from prime_jax.models.transformer import Transformer
from prime_jax.rollout.engine import (DecodeCarry, Rollouts, SamplingConfig, _grow, _is_eos, _pick,
                                      check_left_padded, decode_segments)


def _repeat_rows(cache: KVCache, n: int) -> KVCache:
    """Each cache row (keys, values, mask) repeated ``n`` times contiguously (row g * n + k)."""
    return cache.replace(keys=tuple(jnp.repeat(k, n, axis=0) for k in cache.keys),
                         values=tuple(jnp.repeat(v, n, axis=0) for v in cache.values),
                         mask_bs=jnp.repeat(cache.mask_bs, n, axis=0))


def _sample_shared_impl(graphdef, state, prompt_ids_gp, prompt_mask_gp, key, *, n: int,
                        config: SamplingConfig):
    """Traced body of ``sample_shared``: G-row prefill, n-fold copy, then ``sample``'s decode."""
    policy: Transformer = nnx.merge(graphdef, state)
    g, p = prompt_ids_gp.shape
    b, steps = g * n, config.max_new_tokens
    segments = decode_segments(steps, config.decode_segments)
    bl_axes = ("batch", "length")
    prompt_ids_gp = sharding.constrain(prompt_ids_gp.astype(jnp.int32), bl_axes)
    prompt_mask_gp = sharding.constrain(prompt_mask_gp.astype(jnp.int32), bl_axes)
    prompt_len_b = jnp.repeat(jnp.sum(prompt_mask_gp, axis=-1, dtype=jnp.int32), n)
    eos_ids = config.eos_ids

    cache = policy.init_cache(g, p, dtype=config.cache_dtype)
    h_gpd, cache = policy.hidden_states(prompt_ids_gp, attention_mask_bt=prompt_mask_gp,
                                        cache=cache, cache_index=0)
    logits_bv = jnp.repeat(policy.logits(h_gpd[:, -1:])[:, 0], n, axis=0)
    cache = _repeat_rows(cache, n)

    # From here on: engine._sample_impl's decode, on the copied cache and logits.
    token_b, logp_b = _pick(logits_bv, jax.random.fold_in(key, 0), config)
    done_b = _is_eos(token_b, eos_ids)
    tokens_bl = jnp.full((b, steps), config.pad_id, jnp.int32).at[:, 0].set(token_b)
    logp_bl = jnp.zeros((b, steps), jnp.float32).at[:, 0].set(logp_b)
    tokens_bl = sharding.constrain(tokens_bl, bl_axes)
    logp_bl = sharding.constrain(logp_bl, bl_axes)

    def body(carry: DecodeCarry) -> DecodeCarry:
        positions_b1 = (prompt_len_b + carry.i - 1)[:, None]
        logits_b1v, cache = policy(carry.prev_b[:, None], positions_bt=positions_b1,
                                   cache=carry.cache)
        token_b, logp_b = _pick(logits_b1v[:, 0], jax.random.fold_in(key, carry.i), config)
        live_b = ~carry.done_b
        token_b = jnp.where(live_b, token_b, config.pad_id)
        logp_b = jnp.where(live_b, logp_b, 0.0)
        return DecodeCarry(
            i=carry.i + 1, cache=cache, prev_b=token_b,
            tokens_bl=jax.lax.dynamic_update_slice_in_dim(carry.tokens_bl, token_b[:, None],
                                                          carry.i, axis=1),
            logp_bl=jax.lax.dynamic_update_slice_in_dim(carry.logp_bl, logp_b[:, None],
                                                        carry.i, axis=1),
            done_b=carry.done_b | (live_b & _is_eos(token_b, eos_ids)),
            length_b=carry.length_b + live_b.astype(jnp.int32))

    carry = DecodeCarry(i=jnp.int32(1), cache=cache, prev_b=token_b, tokens_bl=tokens_bl,
                        logp_bl=logp_bl, done_b=done_b, length_b=jnp.ones((b,), jnp.int32))
    for _, stop in segments:
        carry = carry._replace(cache=_grow(carry.cache, p + stop - 1))
        carry = jax.lax.while_loop(
            lambda c, stop=stop: (c.i < stop) & ~jnp.all(c.done_b), body, carry)
    mask_bl = (jnp.arange(steps)[None, :] < carry.length_b[:, None]).astype(jnp.int32)
    return Rollouts(tokens=carry.tokens_bl, logprobs=carry.logp_bl, mask=mask_bl,
                    truncated=~carry.done_b, lengths=carry.length_b)


_sample_shared_jit = jax.jit(_sample_shared_impl, static_argnames=("graphdef", "n", "config"))


def sample_shared(policy: Transformer, prompt_ids_gp: jax.Array, prompt_mask_gp: jax.Array, *,
                  n: int, key: jax.Array, config: SamplingConfig) -> Rollouts:
    """``n`` samples of each of the G left-padded prompts from one prefill per prompt.

    Returns ``Rollouts`` (G * n, L), row ``g * n + k`` = sample k of prompt g: the same arrays
    as ``sample(policy, *repeat_prompts(prompt_ids_gp, prompt_mask_gp, n), key=key,
    config=config)`` (see the module docstring for what is shared and what equality holds).
    """
    if n < 1:
        raise ValueError(f"sample_shared: n must be >= 1, got {n}")
    check_left_padded(prompt_mask_gp, "sample_shared")
    graphdef, state = nnx.split(policy)
    return _sample_shared_jit(graphdef, state, prompt_ids_gp, prompt_mask_gp, key, n=n,
                              config=config)
