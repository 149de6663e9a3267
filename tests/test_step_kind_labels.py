"""experiments/make_step_kind_labels.py: the written rows per problem, and the extra result slips
(``--even-slips``: only slips a parity check of the line's result cannot see)."""

import argparse
import pathlib
import sys

import numpy as np

from prime_jax.data.synthetic import ArithmeticConfig, label_arithmetic_steps, make_arithmetic_problems

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))
import make_step_kind_labels as labels  # noqa: E402

PROBLEMS = make_arithmetic_problems(5, 40, "train", ArithmeticConfig(num_ops=7, min_ops=2))


def _slip_delta(row, problem) -> int:
    """Written minus true result of the row's first wrong line (a result slip's error)."""
    first = row["hard"].index(0)
    return int(row["steps"][first].strip().rsplit("=", 1)[1]) - problem.prefix_values[first]


def _rows(extra_slips: int, even: bool) -> dict[int, list[dict]]:
    args = argparse.Namespace(seed=3, corrupted=2, extra_slips=extra_slips, even_slips=even)
    return labels.written_rows(PROBLEMS, args)


def test_extra_slips_are_added_per_problem_with_exact_labels():
    plain, extra = _rows(0, False), _rows(2, False)
    for index, problem in enumerate(PROBLEMS):
        added = extra[index][len(plain[index]):]
        assert [r["kind"] for r in added] == ["result_slip", "result_slip"]
        for row in added:
            exact = label_arithmetic_steps(row["response"], problem)
            assert row["hard"] == [int(ok) for ok in exact] and 0 in row["hard"]
    deltas = [_slip_delta(r, p) for i, p in enumerate(PROBLEMS) for r in extra[i][len(plain[i]):]]
    assert {d % 2 for d in deltas} == {0, 1}  # the task's own slips: both parities


def test_even_slips_keep_the_true_results_parity():
    plain, even = _rows(0, False), _rows(3, True)
    deltas = [_slip_delta(r, p) for i, p in enumerate(PROBLEMS) for r in even[i][len(plain[i]):]]
    assert len(deltas) == 3 * len(PROBLEMS) and all(d != 0 and d % 2 == 0 for d in deltas)


def test_parity_blind_slip_is_a_result_slip():
    rng = np.random.default_rng(0)
    for problem in PROBLEMS[:10]:
        solution = labels.parity_blind_slip(rng, problem)
        assert solution.kind == "result_slip" and solution.first_error >= 0
        line = solution.lines[solution.first_error]
        assert (int(line.rsplit("=", 1)[1]) - problem.prefix_values[solution.first_error]) % 2 == 0
