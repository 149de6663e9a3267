"""experiments/seed_stats.py: sample std, steps-to-target with misses kept, paired differences."""

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))
import seed_stats  # noqa: E402


def test_sample_std_uses_ddof_1():
    assert seed_stats.sample_std([1.0, 2.0, 3.0]) == pytest.approx(1.0)  # population std would be 0.816
    assert seed_stats.mean_std([1.0, 2.0, 3.0, np.nan]) == "2.000 ± 1.000"
    assert np.isnan(seed_stats.sample_std([4.0]))


def test_steps_to_target_counts_a_miss_instead_of_averaging_the_survivors():
    """Issue 26's case: 2 of 5 seeds at 70.5 read as faster than RLOO's 4 of 5 at 73 as a survivor
    mean; with a miss counted as the cap (100) or as never in the median the order flips."""
    prime = [61.0, 80.0, np.nan, np.nan, np.nan]
    rloo = [70.0, 72.0, 75.0, 75.0, np.nan]
    assert np.nanmean(prime) < np.nanmean(rloo)  # the old summary
    assert seed_stats.capped_steps(prime, 100).mean() == pytest.approx(88.2)
    assert seed_stats.capped_steps(rloo, 100).mean() == pytest.approx(78.4)
    assert seed_stats.median_steps(prime) == np.inf
    assert seed_stats.median_steps(rloo) == 75.0
    assert seed_stats.format_steps(prime, 100) == "88.200 ± 17.499 / median never (2/5)"


def test_sign_test_p_values():
    assert seed_stats.sign_test_p([0.1] * 5) == pytest.approx(2 / 32)
    assert seed_stats.sign_test_p([1.0, 1.0, 1.0, -1.0, 0.0]) == pytest.approx(10 / 16)  # tie dropped, n = 4
    assert seed_stats.sign_test_p([0.0, 0.0]) == 1.0


def test_paired_difference_pairs_seeds_and_drops_pairs_with_a_nan():
    d = seed_stats.paired_difference([0.5, 0.6, 0.7, np.nan], [0.4, 0.6, 0.5, 0.1])
    assert d["n"] == 3 and (d["wins"], d["losses"], d["ties"]) == (1 + 1, 0, 1)
    assert d["mean"] == pytest.approx(0.1)
    lo, hi = d["interval"]
    assert 0.0 <= lo <= 0.1 <= hi <= 0.2
    assert seed_stats.bootstrap_interval([0.3, 0.3, 0.3]) == pytest.approx((0.3, 0.3))
    with pytest.raises(ValueError, match="one value per seed"):
        seed_stats.paired_difference([1.0, 2.0], [1.0])


def test_format_paired():
    text = seed_stats.format_paired([0.6, 0.7, 0.8, 0.9, 1.0], [0.5, 0.5, 0.5, 0.5, 0.5])
    assert text.startswith("+0.300 ± 0.158 [") and text.endswith("(5+/0-, p=0.06)")
