"""The accuracy-band prompt filter (prime_jax/experience/accuracy_filter.py)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from prime_jax.experience.accuracy_filter import accuracy_filter, kept_group_indices


def test_accuracy_filter_inclusive_band_whole_groups():
    acc = jnp.array([0, 0, 0, 0, 1,  1, 0, 0, 0, 0,  1, 1, 1, 1, 0,  1, 1, 1, 1, 1,
                     1, 1, 0, 0, 0], jnp.float32)
    res = jax.jit(functools.partial(accuracy_filter, num_samples=5))(acc)
    np.testing.assert_array_equal(res.keep_g, [True, True, True, False, True])
    np.testing.assert_array_equal(res.keep_b, np.repeat(res.keep_g, 5))
    assert int(res.num_kept) == 4 and int(res.num_dropped_band) == 1
    np.testing.assert_array_equal(kept_group_indices(res), [0, 1, 2, 4])
    acc4 = jnp.array([0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1], jnp.float32)
    res = accuracy_filter(acc4, num_samples=4)
    np.testing.assert_array_equal(res.keep_g, [False, True, True, False])
    soft = jnp.array([0.1, 0.3, 0.85, 0.75], jnp.float32)  # soft code-test scores
    np.testing.assert_array_equal(accuracy_filter(soft, num_samples=2).keep_g,
                                  [True, True])


def test_accuracy_filter_drops_truncated_groups():
    acc = jnp.array([1, 0, 1, 0, 0, 1], jnp.float32)
    trunc = jnp.array([False, False, True, False, False, False])
    res = accuracy_filter(acc, num_samples=2, truncated=trunc, drop_truncated=True)
    np.testing.assert_array_equal(res.keep_g, [True, False, True])
    assert int(res.num_dropped_truncated) == 1 and int(res.num_dropped_band) == 0
    res = accuracy_filter(acc, num_samples=2, truncated=trunc)
    np.testing.assert_array_equal(res.keep_g, [True, True, True])
