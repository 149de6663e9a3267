"""Statistics over paired seeds for the experiment tables: sample spread, steps-to-target with the
misses kept, and per-seed differences against a baseline method with a sign test and a bootstrap
interval. No survivor means: a seed that never reached a target counts (as the cap, or as never).
"""

from __future__ import annotations

import math

import numpy as np


def sample_std(xs) -> float:
    """Sample standard deviation (ddof 1) of the finite values; nan for fewer than two."""
    finite = np.asarray(xs, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(finite.std(ddof=1)) if finite.size > 1 else float("nan")


def mean_std(xs) -> str:
    """``mean ± sample std`` of the finite values (``nan ± nan`` when none)."""
    finite = np.asarray(xs, dtype=float)
    finite = finite[np.isfinite(finite)]
    mean = float(finite.mean()) if finite.size else float("nan")
    return f"{mean:.3f} ± {sample_std(finite):.3f}"


def capped_steps(steps, cap: float) -> np.ndarray:
    """Steps-to-target per seed with a miss (nan or inf) counted as ``cap`` (a lower bound on it)."""
    steps = np.asarray(steps, dtype=float)
    return np.where(np.isfinite(steps), steps, float(cap))


def median_steps(steps) -> float:
    """The median over all seeds with a miss counted as never (inf): inf when half or more missed."""
    steps = np.asarray(steps, dtype=float)
    return float(np.median(np.where(np.isfinite(steps), steps, np.inf)))


def format_steps(steps, cap: float) -> str:
    """``mean ± std (miss = cap) / median (miss = never) (k/n)`` over every seed."""
    steps = np.asarray(steps, dtype=float)
    reached = int(np.isfinite(steps).sum())
    median = median_steps(steps)
    median_text = "never" if math.isinf(median) else f"{median:g}"
    return f"{mean_std(capped_steps(steps, cap))} / median {median_text} ({reached}/{steps.size})"


def sign_test_p(diffs) -> float:
    """Two-sided exact sign test: ``P(|wins - n/2| >= observed)`` under Binomial(n, 1/2), ties dropped;
    1.0 with no non-zero difference."""
    diffs = np.asarray(diffs, dtype=float)
    wins, losses = int((diffs > 0).sum()), int((diffs < 0).sum())
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(0, min(wins, losses) + 1)) / 2.0 ** n
    return float(min(1.0, 2.0 * tail))


def bootstrap_interval(diffs, *, level: float = 0.95, draws: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean difference (seeds resampled with replacement)."""
    diffs = np.asarray(diffs, dtype=float)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, diffs.size, size=(draws, diffs.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


def paired_difference(values, baseline) -> dict:
    """Per-seed ``values - baseline`` (same seeds in the same order; pairs with a nan dropped): mean,
    sample std, wins / losses / ties, sign-test p and 95% bootstrap interval of the mean."""
    values, baseline = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if values.shape != baseline.shape:
        raise ValueError(f"paired_difference needs one value per seed on both sides, got {values.shape} "
                         f"and {baseline.shape}")
    diffs = (values - baseline)[np.isfinite(values) & np.isfinite(baseline)]
    if diffs.size == 0:
        return {"n": 0}
    return {"n": int(diffs.size), "mean": float(diffs.mean()), "std": sample_std(diffs),
            "wins": int((diffs > 0).sum()), "losses": int((diffs < 0).sum()), "ties": int((diffs == 0).sum()),
            "p_sign": sign_test_p(diffs), "interval": bootstrap_interval(diffs)}


def format_paired(values, baseline) -> str:
    """``+mean ± std [lo, hi] (wins+/losses-, sign p)`` of :func:`paired_difference`."""
    d = paired_difference(values, baseline)
    if d["n"] == 0:
        return "n/a"
    lo, hi = d["interval"]
    return (f"{d['mean']:+.3f} ± {d['std']:.3f} [{lo:+.3f}, {hi:+.3f}] "
            f"({d['wins']}+/{d['losses']}-, p={d['p_sign']:.2f})")
