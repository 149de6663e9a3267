"""The accuracy-band prompt filter (PRIME SPEC 1.3): keep a prompt's group of n samples iff its
mean outcome accuracy lies in ``[low, high]``.

Layout: ``B`` rows = prompts x n with the n samples of a prompt in contiguous rows (G = B / n
groups). :func:`accuracy_filter` is jit-safe with static shapes (masks and counts); only the
NumPy-side :func:`kept_group_indices` returns a data-dependent shape.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FilterResult:
    """Outcome of :func:`accuracy_filter` (a pytree: usable as a jit output).

    keep_g: bool (G,) kept groups; keep_b: bool (B,) the same per row; mean_acc_g: (G,) group
    mean accuracy; num_kept / num_dropped_band / num_dropped_truncated: int32 scalars (a group
    dropped for both reasons counts as truncated).
    """

    keep_g: jax.Array
    keep_b: jax.Array
    mean_acc_g: jax.Array
    num_kept: jax.Array
    num_dropped_band: jax.Array
    num_dropped_truncated: jax.Array


def accuracy_filter(acc, *, num_samples: int, low: float = 0.2, high: float = 0.8,
                    truncated=None, drop_truncated: bool = False) -> FilterResult:
    """Keep a prompt iff ``low <= mean_k acc[g*n + k] <= high`` (both inclusive), whole groups.

    The group mean is ``sum / n`` in float32 and compared with a 1e-6 slack, so that e.g. 1/5 and
    4/5 sit inside [0.2, 0.8] whatever the rounding. With ``drop_truncated`` a group with any
    truncated row (``truncated`` (B,), e.g. ``mask.all(-1)``) is dropped too. Static shapes: the
    result holds masks and counts; gather indices outside jit with :func:`kept_group_indices`.
    """
    acc_gn = jnp.asarray(acc, jnp.float32).reshape(-1, num_samples)
    mean_g = jnp.sum(acc_gn, axis=-1) / num_samples
    slack = 1e-6
    in_band_g = (mean_g >= low - slack) & (mean_g <= high + slack)
    trunc_g = jnp.zeros_like(in_band_g)
    if drop_truncated:
        if truncated is None:
            raise ValueError("drop_truncated=True needs truncated")
        trunc_g = jnp.any(jnp.asarray(truncated, bool).reshape(-1, num_samples), axis=-1)
    keep_g = in_band_g & ~trunc_g
    return FilterResult(
        keep_g=keep_g,
        keep_b=jnp.repeat(keep_g, num_samples),
        mean_acc_g=mean_g,
        num_kept=jnp.sum(keep_g, dtype=jnp.int32),
        num_dropped_band=jnp.sum(~in_band_g & ~trunc_g, dtype=jnp.int32),
        num_dropped_truncated=jnp.sum(trunc_g, dtype=jnp.int32),
    )


def kept_group_indices(result: FilterResult) -> np.ndarray:
    """NumPy (host) side: indices of the kept groups, in order (a variable-length int array)."""
    return np.flatnonzero(np.asarray(result.keep_g))
