"""Token choice from next-token logits: temperature, top-k, top-p, greedy.

Pure functions on ``logits_bv``; the decode loop in ``rollout.py`` calls them
once per generated position.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NEG_INF = -1e30


def top_k_filter(logits_bv: jax.Array, k: int) -> jax.Array:
    """Keep the ``k`` largest logits of each row: ``l_v if l_v >= l_(k) else -inf``."""
    if k <= 0 or k >= logits_bv.shape[-1]:
        return logits_bv
    kth_b1 = jax.lax.top_k(logits_bv, k)[0][:, -1:]
    return jnp.where(logits_bv >= kth_b1, logits_bv, NEG_INF)


def top_p_filter(logits_bv: jax.Array, p: float) -> jax.Array:
    """Nucleus filter: keep the smallest set of most likely tokens whose mass reaches ``p``.

    With tokens sorted by probability ``pi_(1) >= pi_(2) >= ...``, token ``(j)`` is
    kept iff ``sum_{i<j} pi_(i) < p`` (so the most likely token always stays).
    """
    if p >= 1.0:
        return logits_bv
    sorted_bv = jnp.sort(logits_bv, axis=-1)[:, ::-1]
    probs_bv = jax.nn.softmax(sorted_bv.astype(jnp.float32), axis=-1)
    mass_before_bv = jnp.cumsum(probs_bv, axis=-1) - probs_bv
    # The top token is kept even if p <= its probability mass before it (0); guards p ~ 0.
    kept_bv = (mass_before_bv < p).at[:, 0].set(True)
    # The smallest kept logit is the threshold; ties with it are kept too.
    threshold_b1 = jnp.min(jnp.where(kept_bv, sorted_bv, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(logits_bv >= threshold_b1, logits_bv, NEG_INF)


def argmax_last(x_bv: jax.Array) -> jax.Array:
    """``argmax(x, -1)`` (first index of the maximum) as int32, via two plain reductions.

    Same result as ``jnp.argmax`` on non-NaN rows; XLA:CPU runs its variadic argmax reduce
    ~8x slower than a max followed by a min over ``where(x == max, index, V)``. A row with a
    NaN yields ``V - 1``.
    """
    v = x_bv.shape[-1]
    max_b1 = jnp.max(x_bv, axis=-1, keepdims=True)
    index_bv = jnp.arange(v, dtype=jnp.int32)
    first_b = jnp.min(jnp.where(x_bv == max_b1, index_bv, v), axis=-1)
    return jnp.minimum(first_b, v - 1)


def choose_tokens(logits_bv: jax.Array, key: jax.Array, *, temperature: float, top_k: int,
                  top_p: float) -> jax.Array:
    """Sample ``y ~ softmax(filter(l / T))`` per row; ``temperature == 0`` is argmax.

    Gumbel-max: ``argmax(filter(l / T) + g)``, ``g ~ Gumbel(0, 1)`` i.i.d. per row and token
    (what ``jax.random.categorical`` computes, with the faster ``argmax_last``).
    """
    logits_bv = logits_bv.astype(jnp.float32)
    if temperature == 0.0:
        return argmax_last(logits_bv)
    logits_bv = top_p_filter(top_k_filter(logits_bv / temperature, top_k), top_p)
    return argmax_last(logits_bv + jax.random.gumbel(key, logits_bv.shape, jnp.float32))
