"""Error-kind generators for arithmetic chains: each kind is what it says, labelled exactly."""

import re

import numpy as np
import pytest

from prime_jax.data.synthetic.arithmetic import ArithmeticProblem, label_arithmetic_steps
from prime_jax.data.synthetic.arithmetic_errors import CORRECT, ERROR_KINDS, corrupt, error_rows, written_error

LINE = re.compile(r"^(-?\d+)([-+*/])(\d+)=(-?\d+)$")
PROBLEM = ArithmeticProblem(7, (("+", 5), ("*", 3), ("-", 4), ("+", 9)))  # values 12, 36, 32, 41


def parsed(lines):
    return [LINE.match(line).groups() for line in lines[:-1]]


def draws(kind, n=30, problem=PROBLEM):
    rng = np.random.default_rng(0)
    return [corrupt(rng, problem, kind) for _ in range(n)]


def test_correct_solution_has_no_error():
    (solution,) = draws(CORRECT, 1)
    assert solution.lines == ("7+5=12", "12*3=36", "36-4=32", "32+9=41", "\\boxed{41}")
    assert solution.first_error == -1 and solution.final_answer_correct


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_every_kind_is_labelled_exactly(kind):
    for solution in draws(kind):
        labels = label_arithmetic_steps("\n".join(solution.lines), PROBLEM)
        assert labels.index(False) == solution.first_error >= 0
        assert not any(labels[solution.first_error:])


def test_result_slip_keeps_operands_and_continues_from_the_written_value():
    for s in draws("result_slip"):
        rows, e = parsed(s.lines), s.first_error
        assert rows[e][1:3] == (PROBLEM.steps[e][0], str(PROBLEM.steps[e][1]))
        assert int(rows[e][3]) != PROBLEM.prefix_values[e]
        assert all(rows[i + 1][0] == rows[i][3] for i in range(len(rows) - 1))


def test_written_error_is_the_written_minus_the_true_result():
    assert written_error(PROBLEM, "12*3=36", 1) == 0
    assert written_error(PROBLEM, "12*3=38", 1) == 2 and written_error(PROBLEM, "36-4=-1", 2) == -33


def test_wrong_operand_uses_an_operand_not_the_problems():
    for s in draws("wrong_operand"):
        rows, e = parsed(s.lines), s.first_error
        assert rows[e][1] == PROBLEM.steps[e][0] and int(rows[e][2]) != PROBLEM.steps[e][1]
        a, op, b, c = rows[e]
        assert int(c) == {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]


def test_copy_error_starts_from_another_value_than_the_previous_result():
    for s in draws("copy_error"):
        rows, e = parsed(s.lines), s.first_error
        assert e >= 1 and rows[e][0] != rows[e - 1][3] and rows[e - 1][3] == str(PROBLEM.prefix_values[e - 1])


def test_wrong_box_keeps_every_line_right():
    for s in draws("wrong_box"):
        assert s.first_error == len(PROBLEM.steps) and not s.final_answer_correct
        assert s.lines[:-1] == draws(CORRECT, 1)[0].lines[:-1]


def test_skipped_step_leaves_one_operation_out():
    for s in draws("skipped_step"):
        assert len(s.lines) == len(PROBLEM.steps) and not s.final_answer_correct


def test_compensating_pair_has_two_wrong_lines_and_the_right_answer():
    for s in draws("compensating"):
        assert s.final_answer_correct and s.lines[-1] == "\\boxed{41}"
        rows = parsed(s.lines)
        own_wrong = [i for i, (a, op, b, c) in enumerate(rows)
                     if (int(a), op, int(b), int(c)) != ((PROBLEM.first, *PROBLEM.steps[0]) if i == 0 else
                                                          (PROBLEM.prefix_values[i - 1], *PROBLEM.steps[i]))
                     + (PROBLEM.prefix_values[i],)]
        assert own_wrong[0] == s.first_error and len(own_wrong) >= 2


def test_kinds_a_short_problem_cannot_carry_are_refused():
    short = ArithmeticProblem(3, (("+", 4),))
    with pytest.raises(ValueError, match="cannot carry"):
        corrupt(np.random.default_rng(0), short, "copy_error")
    with pytest.raises(ValueError, match="unknown error kind"):
        corrupt(np.random.default_rng(0), PROBLEM, "typo")


def test_error_rows_balanced_lengths_and_deterministic():
    rows = error_rows(3, split="eval", per_kind=6, num_correct=10)
    assert rows == error_rows(3, split="eval", per_kind=6, num_correct=10)
    kinds = [r["kind"] for r in rows]
    assert kinds.count(CORRECT) == 10 and all(kinds.count(k) == 6 for k in ERROR_KINDS)
    assert {r["num_ops"] for r in rows} >= {2, 3, 4, 5, 6}
    for r in rows:
        problem_ops = len(re.findall(r"[-+*/]\d+", r["problem"]))
        assert r["num_ops"] == problem_ops and (r["label"] == -1) == (r["kind"] == CORRECT)
    assert error_rows(4, split="eval", per_kind=6, num_correct=10) != rows


def test_error_rows_skip_excluded_problems():
    rows = error_rows(3, split="eval", per_kind=2, num_correct=4)
    taken = frozenset(r["problem"] for r in rows)
    again = error_rows(3, split="eval", per_kind=2, num_correct=4, exclude=taken)
    assert not taken & {r["problem"] for r in again}
