"""Evaluation metrics: pass@k against brute force, majority votes, step aggregations, best-of-N."""

import itertools
import math

import numpy as np
import pytest

from prime_jax.eval import metrics as eval_metrics


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
def test_pass_at_k_matches_enumeration_over_subsets(n):
    for c in range(n + 1):
        correct = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))
            brute = sum(any(correct[i] for i in s) for s in subsets) / len(subsets)
            assert eval_metrics.pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


def test_pass_at_k_is_stable_for_large_n_and_rejects_bad_input():
    value = eval_metrics.pass_at_k(2000, 3, 100)
    assert value == pytest.approx(1 - math.comb(1997, 100) / math.comb(2000, 100), rel=1e-9)
    with pytest.raises(ValueError):
        eval_metrics.pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        eval_metrics.pass_at_k(4, 1, 5)


def test_avg_and_maj_at_k():
    correct_pk = np.array([[1, 0, 0, 1], [0, 0, 1, 0]], float)
    assert eval_metrics.avg_at_k(correct_pk) == pytest.approx(3 / 8)
    answers = [["4", "5", "5", "4"], ["7", "7", "8", None]]  # problem 0: tie -> first seen ("4")
    assert eval_metrics.maj_at_k(answers, correct_pk) == pytest.approx(0.5)
    assert eval_metrics.majority_vote([None, None], [1, 1]) == 0.0
    # weights overturn the count: "5" has two votes but "4" carries more weight
    assert eval_metrics.weighted_majority(["4", "5", "5"], [3.0, 1.0, 1.0], [1, 0, 0]) == 1.0
    assert eval_metrics.mean_pass_at_k(correct_pk > 0, 4) == 1.0


def test_step_aggregations():
    r = [0.5, -1.0, 2.0]
    assert eval_metrics.aggregate_steps(r, "min") == -1.0
    assert eval_metrics.aggregate_steps(r, "sum") == pytest.approx(1.5)
    assert eval_metrics.aggregate_steps(r, "last") == 2.0
    expected = np.prod(1 / (1 + np.exp(-0.5 * np.array(r))))
    assert eval_metrics.aggregate_steps(r, "prod_sigmoid", beta=0.5) == pytest.approx(expected)
    assert eval_metrics.aggregate_steps([], "min") == -np.inf
    with pytest.raises(ValueError):
        eval_metrics.aggregate_steps(r, "max")
    padded = eval_metrics.aggregate_padded(np.array([[1.0, 3.0], [2.0, 9.0]]), np.array([2, 1]), "sum")
    np.testing.assert_allclose(padded, [4.0, 2.0])


def test_best_of_n_curve_perfect_and_random_verifiers():
    rng = np.random.default_rng(0)
    correct_pn = rng.random((40, 16)) < 0.3
    correct_pn[:, :2] = True  # every problem has two correct samples
    perfect = eval_metrics.best_of_n_accuracy_curve(correct_pn.astype(float), correct_pn, [1, 4, 16],
                                                    resamples=16, seed=1)
    assert perfect["mean"][-1] == 1.0 and perfect["std"][-1] == 0.0
    assert perfect["mean"][0] < perfect["mean"][1] < perfect["mean"][2]
    flat = eval_metrics.best_of_n_accuracy_curve(np.zeros((40, 16)), correct_pn, [1, 16], resamples=64)
    assert abs(flat["mean"][1] - correct_pn.mean()) < 0.05  # ties: the first drawn = a random pick
    answers = [["a" if c else f"w{j}" for j, c in enumerate(row)] for row in correct_pn]
    majority = eval_metrics.majority_accuracy_curve(answers, correct_pn, [16], resamples=2)
    assert majority["mean"] == [1.0]  # correct answers agree, wrong ones are all different


def test_pearson_against_numpy_and_constant_input():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    np.testing.assert_allclose(eval_metrics.pearson(x, 2 * x + y), np.corrcoef(x, 2 * x + y)[0, 1], rtol=1e-12)
    assert eval_metrics.pearson(x, -3 * x) == pytest.approx(-1.0)
    assert np.isnan(eval_metrics.pearson(x, np.ones(50)))
    with pytest.raises(ValueError, match="equal lengths"):
        eval_metrics.pearson(x, y[:10])


def test_explicit_prm_selectors_pick_by_step_probabilities():
    """Two samples: a correct one with step logits (3, 3) and a wrong one with (5, -5). The
    product of sigmoids (0.91 vs 0.007), the min and the last step all prefer the correct one."""
    from prime_jax.eval.best_of_n import best_of_n_curves

    out = {"correct": [[1.0, 0.0]], "answers": [["4", "5"]], "lengths": [10, 10],
           "step_scores": {"explicit_prm": [[3.0, 3.0], [5.0, -5.0]]}}
    curves = best_of_n_curves(out, 2, beta=None, resamples=4, seed=0)["curves"]
    for name in ("explicit_prod", "explicit_min", "explicit_last", "explicit_weighted_majority"):
        assert curves[name]["mean"][-1] == 1.0, name
