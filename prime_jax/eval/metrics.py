"""Evaluation metrics over sampled solutions (pure numpy, no JAX).

Notation: P problems, n samples per problem (suffix ``_pn`` / ``_pk``), c correct samples.

* ``pass@k`` (Chen et al. 2021, unbiased):   ``1 - C(n-c, k) / C(n, k)``
  = ``1 - prod_{i=n-c+1}^{n} (1 - k / i)``   (the product form never builds big binomials).
* ``avg@k``:  mean correctness over all k samples of all problems.
* ``maj@k``:  correctness of the most frequent answer among the k samples (ties: first seen).
* weighted majority: the answer with the largest summed weight (e.g. PRM scores) wins.
* best-of-N (Let's Verify Step by Step, 2305.20050): draw N of the n samples, keep the one with
  the highest verifier score, report its correctness; averaged over many random subsets.
* selector diagnostics: the Pearson correlation of a selector's scores with correctness and with
  response length over all samples, ``r = cov(x, y) / (std(x) std(y))`` (nan if either is constant).
* step aggregations of a process reward model's step scores ``r_1..r_S`` of one solution:
  ``min = min_s r_s`` (Implicit PRM / Math-Shepherd), ``sum = sum_s r_s``, ``last = r_S``,
  ``prod_sigmoid = prod_s sigmoid(beta * r_s)`` (the product of step-correct probabilities).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

AGGREGATIONS = ("min", "sum", "last", "prod_sigmoid")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased ``pass@k = 1 - C(n-c, k) / C(n, k)`` from n samples with c correct (k <= n)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    i_ = np.arange(n - c + 1, n + 1, dtype=np.float64)
    return float(1.0 - np.prod(1.0 - k / i_))


def mean_pass_at_k(correct_pn: np.ndarray, k: int) -> float:
    """``mean_p pass@k(n, c_p, k)`` over problems, c_p = number of correct samples of problem p."""
    correct_pn = np.asarray(correct_pn, dtype=bool)
    n = correct_pn.shape[1]
    return float(np.mean([pass_at_k(n, int(c), k) for c in correct_pn.sum(axis=1)]))


def avg_at_k(scores_pk: np.ndarray) -> float:
    """``avg@k = mean_{p,j} score[p, j]``: the mean correctness of every sample."""
    return float(np.mean(np.asarray(scores_pk, dtype=np.float64)))


def weighted_majority(answers: Sequence[Any], weights: Sequence[float],
                      correct: Sequence[float]) -> float:
    """Correctness of ``argmax_a sum_{j: answers[j] = a} weights[j]`` for ONE problem.

    ``None`` answers (nothing extracted) never vote; if nobody votes the result is 0. Ties go to
    the answer seen first. The winner's correctness is that of its first sample.
    """
    totals: dict[Any, float] = {}
    first: dict[Any, int] = {}
    for j, (answer, weight) in enumerate(zip(answers, weights)):
        if answer is None:
            continue
        totals[answer] = totals.get(answer, 0.0) + float(weight)
        first.setdefault(answer, j)
    if not totals:
        return 0.0
    best = max(totals, key=lambda a: (totals[a], -first[a]))
    return float(correct[first[best]])


def majority_vote(answers: Sequence[Any], correct: Sequence[float]) -> float:
    """Correctness of the most frequent answer of ONE problem (ties: first seen)."""
    return weighted_majority(answers, [1.0] * len(answers), correct)


def maj_at_k(answers_pk: Sequence[Sequence[Any]], correct_pk: np.ndarray) -> float:
    """``maj@k``: mean over problems of the majority answer's correctness."""
    return float(np.mean([majority_vote(a, c) for a, c in zip(answers_pk, np.asarray(correct_pk))]))


def _sigmoid_log(x: np.ndarray) -> np.ndarray:
    """``log sigmoid(x)``, stable for large |x|."""
    return -np.logaddexp(0.0, -x)


def aggregate_steps(step_scores: Sequence[float], how: str = "min", *, beta: float = 1.0) -> float:
    """One solution's score from its step scores ``r_s`` (see the module docstring).

    An empty solution (no steps) scores ``-inf`` for min/sum/last and 0 for prod_sigmoid, so it
    is never preferred over a solution with steps.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregate_steps: how={how!r}, expected one of {AGGREGATIONS}")
    r_s = np.asarray(step_scores, dtype=np.float64)
    if r_s.size == 0:
        return 0.0 if how == "prod_sigmoid" else float("-inf")
    if how == "min":
        return float(r_s.min())
    if how == "sum":
        return float(r_s.sum())
    if how == "last":
        return float(r_s[-1])
    return float(np.exp(_sigmoid_log(beta * r_s).sum()))


def aggregate_padded(steps_bk: np.ndarray, count_b: np.ndarray, how: str = "min", *,
                     beta: float = 1.0) -> np.ndarray:
    """``aggregate_steps`` of every row of a padded (B, K) array with ``count_b`` real steps."""
    return np.array([aggregate_steps(row[:int(c)], how, beta=beta)
                     for row, c in zip(np.asarray(steps_bk), np.asarray(count_b))])


def _subsets(rng: np.random.Generator, resamples: int, p: int, n: int, size: int) -> np.ndarray:
    """(R, P, size) indices: for each resample and problem, a random size-subset of range(n)."""
    return np.argsort(rng.random((resamples, p, n)), axis=-1)[..., :size]


def _subset_curve(name: str, ns: Sequence[int], p: int, n: int, resamples: int, seed: int,
                  accuracy_r: Callable[[np.ndarray], np.ndarray]) -> dict[str, list[float]]:
    """For each N in ``ns``: ``accuracy_r`` of ``resamples`` random N-subsets (R, P, N) per
    problem, as ``{"n": ns, "mean": [...], "std": [...]}`` over the resamples."""
    rng = np.random.default_rng(seed)
    means, stds = [], []
    for size in ns:
        if not 1 <= size <= n:
            raise ValueError(f"{name}: N={size} outside [1, {n}]")
        acc_r = accuracy_r(_subsets(rng, resamples, p, n, size))
        means.append(float(acc_r.mean()))
        stds.append(float(acc_r.std()))
    return {"n": [int(s) for s in ns], "mean": means, "std": stds}


def best_of_n_accuracy_curve(scores_pn: np.ndarray, correct_pn: np.ndarray, ns: Sequence[int], *,
                             resamples: int = 64, seed: int = 0) -> dict[str, list[float]]:
    """Best-of-N accuracy: ``E_subset mean_p correct[p, argmax_{j in subset_p} score[p, j]]``.

    For each N in ``ns`` (N <= n) draws ``resamples`` random N-subsets per problem, picks the
    highest-scoring sample of each (ties: the first drawn) and averages its correctness over
    problems. Returns ``{"n": ns, "mean": [...], "std": [...]}`` (mean/std over resamples).
    """
    scores_pn = np.asarray(scores_pn, dtype=np.float64)
    correct_pn = np.asarray(correct_pn, dtype=np.float64)
    p, n = scores_pn.shape

    def accuracy_r(idx_rpn):
        sub_scores_rpn = scores_pn[np.arange(p)[None, :, None], idx_rpn]
        pick_rp = np.take_along_axis(idx_rpn, sub_scores_rpn.argmax(-1)[..., None], -1)[..., 0]
        return correct_pn[np.arange(p)[None, :], pick_rp].mean(axis=1)

    return _subset_curve("best_of_n_accuracy_curve", ns, p, n, resamples, seed, accuracy_r)


def majority_accuracy_curve(answers_pn: Sequence[Sequence[Any]], correct_pn: np.ndarray,
                            ns: Sequence[int], *, weights_pn: np.ndarray | None = None,
                            resamples: int = 64, seed: int = 0) -> dict[str, list[float]]:
    """(Weighted) majority vote among N random samples, same subsets scheme as best-of-N."""
    correct_pn = np.asarray(correct_pn, dtype=np.float64)
    p, n = correct_pn.shape
    weights_pn = np.ones((p, n)) if weights_pn is None else np.asarray(weights_pn, np.float64)

    def accuracy_r(idx_rpn):
        return np.array([[weighted_majority([answers_pn[q][j] for j in idx_rpn[r, q]],
                                            weights_pn[q, idx_rpn[r, q]], correct_pn[q, idx_rpn[r, q]])
                          for q in range(p)] for r in range(idx_rpn.shape[0])]).mean(axis=1)

    return _subset_curve("majority_accuracy_curve", ns, p, n, resamples, seed, accuracy_r)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """``cov(x, y) / (std(x) std(y))`` over all pairs; nan when either is constant."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"pearson needs equal lengths, got {x.shape} and {y.shape}")
    dx, dy = x - x.mean(), y - y.mean()
    den = np.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
    return float(np.sum(dx * dy) / den) if den > 0 else float("nan")
