"""prime_jax.rollout.sampling: the token chooser's filters, greedy and argmax, on hand-made logits."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import chisquare

from prime_jax.rollout.sampling import NEG_INF, argmax_last, choose_tokens, top_k_filter, top_p_filter


def test_argmax_last_matches_argmax_and_picks_first_tie():
    x = jax.random.normal(jax.random.key(0), (16, 257))
    np.testing.assert_array_equal(np.asarray(argmax_last(x)), np.asarray(jnp.argmax(x, -1)))
    tied = jnp.asarray([[0.0, 3.0, 1.0, 3.0], [-jnp.inf, -jnp.inf, 2.0, -jnp.inf]])
    np.testing.assert_array_equal(np.asarray(argmax_last(tied)), [1, 2])
    assert argmax_last(x).dtype == jnp.int32


def test_top_k_keeps_k_largest_and_ties():
    logits = jnp.asarray([[1.0, 4.0, 3.0, 2.0, 0.0], [1.0, 2.0, 2.0, 0.0, -1.0]])
    out = np.asarray(top_k_filter(logits, 2))
    np.testing.assert_array_equal(out[0] > NEG_INF / 2, [False, True, True, False, False])
    np.testing.assert_array_equal(out[1] > NEG_INF / 2, [False, True, True, False, False])
    np.testing.assert_array_equal(np.asarray(top_k_filter(logits, 0)), np.asarray(logits))


def test_top_p_keeps_smallest_prefix_reaching_p():
    probs = np.asarray([0.5, 0.05, 0.3, 0.15])
    logits = jnp.log(jnp.asarray([probs]))
    kept = lambda p: np.asarray(top_p_filter(logits, p))[0] > NEG_INF / 2  # noqa: E731
    np.testing.assert_array_equal(kept(0.5), [True, False, False, False])  # 0.5 alone reaches 0.5
    np.testing.assert_array_equal(kept(0.6), [True, False, True, False])
    np.testing.assert_array_equal(kept(0.81), [True, False, True, True])
    np.testing.assert_array_equal(kept(1e-9), [True, False, False, False])  # top token always
    np.testing.assert_array_equal(kept(1.0), [True] * 4)


def test_choose_tokens_greedy_and_gumbel_frequencies():
    logits = jnp.log(jnp.asarray([0.4, 0.3, 0.2, 0.1]))
    batch = jnp.broadcast_to(logits, (4000, 4))
    greedy = choose_tokens(batch, jax.random.key(0), temperature=0.0, top_k=0, top_p=1.0)
    assert (np.asarray(greedy) == 0).all()
    draws = np.asarray(choose_tokens(batch, jax.random.key(1), temperature=1.0, top_k=3,
                                     top_p=1.0))
    counts = np.bincount(draws, minlength=4)
    assert counts[3] == 0
    assert chisquare(counts[:3], np.asarray([4, 3, 2]) / 9 * 4000).pvalue > 1e-3
    # temperature 0.5 squares the probabilities (then renormalises)
    draws = np.asarray(choose_tokens(batch, jax.random.key(2), temperature=0.5, top_k=0,
                                     top_p=1.0))
    expected = np.asarray([16, 9, 4, 1]) / 30 * 4000
    assert chisquare(np.bincount(draws, minlength=4), expected).pvalue > 1e-3
