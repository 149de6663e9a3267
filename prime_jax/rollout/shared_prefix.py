"""Shared-prefix sampling: prefill each distinct prompt once, decode its n samples from copies.

``sample_shared(policy, prompt_ids_gp, prompt_mask_gp, *, n, key, config)`` is
``sample(policy, *repeat_prompts(prompt_ids_gp, prompt_mask_gp, n), key=key, config=config)``
with the prefill done on the G distinct prompts (or step prefixes, for Monte-Carlo completions)
instead of the G * n repeated rows:

1. prefill: one forward over the (G, P) prompts into a (G, P)-slot cache, logits of the last
   column ``logits_gv``;
2. copy: cache rows and logits repeated n times along the batch, row ``g * n + k`` = prompt g
   (the layout of ``repeat_prompts``);
3. decode: ``engine.decode``, the loop ``sample`` runs, on the (G * n) rows (same step keys
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
from prime_jax.rollout.engine import Rollouts, SamplingConfig, check_left_padded, decode


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
    bl_axes = ("batch", "length")
    prompt_ids_gp = sharding.constrain(prompt_ids_gp.astype(jnp.int32), bl_axes)
    prompt_mask_gp = sharding.constrain(prompt_mask_gp.astype(jnp.int32), bl_axes)
    prompt_len_b = jnp.repeat(jnp.sum(prompt_mask_gp, axis=-1, dtype=jnp.int32), n)

    cache = policy.init_cache(g, p, dtype=config.cache_dtype)
    h_gpd, cache = policy.hidden_states(prompt_ids_gp, attention_mask_bt=prompt_mask_gp,
                                        cache=cache, cache_index=0)
    logits_bv = jnp.repeat(policy.logits(h_gpd[:, -1:])[:, 0], n, axis=0)
    return decode(policy, logits_bv, _repeat_rows(cache, n), prompt_len_b, p, key, config)


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
