"""Arithmetic chains: solutions are right, slips propagate, labels are exact."""

import operator
import re

import numpy as np
from hypothesis import given, settings, strategies as st

from prime_jax.data.synthetic import arithmetic as ar

_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}


def left_to_right(text: str) -> int:
    """Independent evaluation of a problem text, strictly left to right."""
    tokens = re.findall(r"\d+|[-+*/]", text.rstrip("="))
    value = int(tokens[0])
    for op, b in zip(tokens[1::2], tokens[2::2]):
        value = _OPS[op](value, int(b))
    return value


def check_line(line: str) -> bool:
    a, op, b, c = re.fullmatch(r"(-?\d+)([-+*/])(\d+)=(-?\d+)", line).groups()
    return _OPS[op](int(a), int(b)) == int(c)


def test_format_matches_spec_example():
    problem = ar.parse_arithmetic_problem("23+45*3-17=")
    solution = ar.solve_arithmetic(problem)
    assert solution.text == "23+45=68\n68*3=204\n204-17=187\n\\boxed{187}"
    assert solution.step_labels == (True, True, True, True)
    assert solution.first_error == -1
    assert problem.text == "23+45*3-17="


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), num_ops=st.integers(1, 5),
       ops=st.sampled_from([("+", "-", "*"), ("+", "-", "*", "/"), ("/",), ("*",)]))
def test_clean_solutions_are_correct(seed, num_ops, ops):
    config = ar.ArithmeticConfig(num_ops=num_ops, ops=ops)
    problem = ar.sample_arithmetic_problem(np.random.default_rng(seed), config)
    solution = ar.solve_arithmetic(problem)
    assert len(problem.steps) == num_ops
    assert solution.final_answer == problem.answer == left_to_right(problem.text)
    assert all(check_line(line) for line in solution.lines[:-1])
    assert solution.lines[0].startswith(str(problem.first))
    assert solution.lines[-1] == f"\\boxed{{{problem.answer}}}"
    assert all(solution.step_labels)
    assert ar.label_arithmetic_steps(solution.text, problem) == list(solution.step_labels)
    assert ar.parse_arithmetic_problem(problem.text) == problem


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1),
       ops=st.sampled_from([("+", "-", "*"), ("+", "-", "*", "/")]))
def test_slip_propagates_with_exact_labels(seed, ops):
    config = ar.ArithmeticConfig(ops=ops)
    rng = np.random.default_rng(seed)
    problem = ar.sample_arithmetic_problem(rng, config)
    step, delta = ar.sample_slip(rng, problem, config)
    solution = ar.solve_arithmetic(problem, slip_step=step, slip_delta=delta)
    local_ok = [check_line(line) for line in solution.lines[:-1]]
    assert local_ok == [i != step for i in range(len(problem.steps))]  # one wrong line only
    expected = [i < step for i in range(len(solution.lines))]
    assert list(solution.step_labels) == expected
    assert solution.first_error == step
    assert solution.final_answer != problem.answer
    assert ar.label_arithmetic_steps(solution.text, problem) == expected


def test_sft_examples_slip_fraction_and_labels():
    examples = ar.arithmetic_sft_examples(seed=3, num=2000)
    slipped = [e for e in examples if not e.step_labels[-1]]
    assert 0.25 < len(slipped) / len(examples) < 0.35
    for e in examples[:300]:
        problem = ar.parse_arithmetic_problem(e.messages[-1][1])
        assert ar.label_arithmetic_steps(e.response, problem) == list(e.step_labels)
        assert e.ground_truth == str(problem.answer)
        assert len(e.step_labels) == len(e.response.split("\n"))
    clean = ar.arithmetic_sft_examples(seed=3, num=200, slip_fraction=0.0)
    assert all(all(e.step_labels) for e in clean)


def test_labels_of_arbitrary_text():
    problem = ar.parse_arithmetic_problem("5+3*2=")
    assert ar.label_arithmetic_steps("5+3=8\n8*2=16\n\\boxed{16}", problem) == [True] * 3
    assert ar.label_arithmetic_steps("5+3=9\n9*2=18\n\\boxed{18}", problem) == [False] * 3
    assert ar.label_arithmetic_steps("5+3=8\n8*2=16\n\\boxed{17}", problem) == [True, True, False]
    assert ar.label_arithmetic_steps("5+3=8\ngarbage\n\\boxed{16}", problem) == [True, False, False]
    extra = "5+3=8\n8*2=16\n\\boxed{16}\n1"
    assert ar.label_arithmetic_steps(extra, problem) == [True] * 3 + [False]
    assert ar.label_arithmetic_steps("", problem) == []


def test_rl_prompts_deterministic_with_number_ground_truth():
    a = ar.arithmetic_rl_prompts(seed=1, num=50)
    assert a == ar.arithmetic_rl_prompts(seed=1, num=50)
    assert a != ar.arithmetic_rl_prompts(seed=2, num=50)
    for record in a:
        assert record.ability == "math"
        assert int(record.ground_truth) == left_to_right(record.messages[0][1])
        assert record.messages[0][0] == "user"


def test_min_ops_range():
    config = ar.ArithmeticConfig(num_ops=4, min_ops=2)
    counts = {len(p.steps) for p in ar.make_arithmetic_problems(0, 300, "train", config)}
    assert counts == {2, 3, 4}
