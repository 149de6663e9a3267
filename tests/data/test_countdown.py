"""Countdown: generated problems are solvable, the oracle is exact, the checker is strict."""

import itertools
import re

import numpy as np
import pytest

from prime_jax.data.synthetic import countdown as cd


def brute_force(numbers, target, use_all=True):
    """Independent exhaustive search over ordered pairs (no memo, no canonical order)."""
    if not use_all and target in numbers:
        return True
    if len(numbers) == 1:
        return numbers[0] == target
    for i, j in itertools.permutations(range(len(numbers)), 2):
        a, b = numbers[i], numbers[j]
        rest = [x for k, x in enumerate(numbers) if k not in (i, j)]
        results = [a + b, a * b] + ([a - b] if a >= b else []) + \
            ([a // b] if b and a % b == 0 else [])
        if any(brute_force(rest + [c], target, use_all) for c in results):
            return True
    return False


@pytest.mark.parametrize("use_all", [True, False])
def test_oracle_matches_brute_force_on_small_pools(use_all):
    for size in (1, 2, 3):
        for pool in itertools.combinations_with_replacement(range(0, 6), size):
            for target in range(0, 31):
                assert cd.reachable(pool, target, use_all) == brute_force(list(pool), target,
                                                                          use_all), (pool, target)


def test_oracle_hand_cases():
    assert cd.reachable((2, 3), 6) and cd.reachable((2, 3), 1) and cd.reachable((2, 3), 5)
    assert not cd.reachable((2, 3), 7)
    assert cd.reachable((1, 1, 1), 3) and not cd.reachable((1, 1, 1), 4)
    assert cd.reachable((2, 3, 5), 2, use_all=False) and not cd.reachable((2, 3, 5), 31)
    assert cd.reachable((4, 6, 8, 9), 24)  # e.g. (9-8)*4*6


def test_generated_problems_are_solvable():
    config = cd.CountdownConfig(min_numbers=3, num_numbers=4)
    rng = np.random.default_rng(0)
    for problem in cd.make_countdown_problems(seed=0, num=300, config=config):
        assert 3 <= len(problem.numbers) <= 4
        assert config.target_min <= problem.target <= config.target_max
        path = cd.solve_countdown(problem, rng)
        text = cd.render_solution(path)
        assert cd.is_correct_countdown(text, problem)
        assert cd.is_correct_countdown(text, problem.ground_truth)
        assert cd.countdown_reward(text, problem.ground_truth) == 1.0
        assert cd.label_countdown_steps(text, problem) == [True] * len(text.split("\n"))
        assert brute_force(list(problem.numbers), problem.target)


def test_subset_mode_problems():
    config = cd.CountdownConfig(num_numbers=3, use_all=False)
    for problem in cd.make_countdown_problems(seed=1, num=100, config=config):
        text = cd.render_solution(cd.solve_countdown(problem))
        assert cd.is_correct_countdown(text, problem)


P = cd.CountdownProblem((2, 3, 5), 25)


@pytest.mark.parametrize("text,correct", [
    ("3+2=5\n5*5=25\n\\boxed{25}", True),
    ("2+3=5\n5*5=25\n\\boxed{25}", True),  # operand order is free
    ("5*5=25\n\\boxed{25}", False),  # uses 5 twice, leaves 2 and 3 unused
    ("3+2=5\n5*5=25\n\\boxed{24}", False),  # wrong box
    ("3+2=5\n5*5=25", False),  # no box
    ("3+2=6\n6*5=30\n\\boxed{25}", False),  # wrong arithmetic
    ("3+2=5\n5*5=25\n\\boxed{25}\n1+1=2", False),  # text after the box
    ("7+2=9\n9*5=45\n\\boxed{25}", False),  # number not given
    ("2-3=1\n5*5=25\n\\boxed{25}", False),  # negative / misordered subtraction
    ("5/2=2\n3*2=6\n\\boxed{25}", False),  # inexact division
    ("", False),
])
def test_checker_cases(text, correct):
    assert cd.is_correct_countdown(text, P) == correct
    assert cd.countdown_reward(text, P.ground_truth) == float(correct)


def test_checker_needs_all_numbers_only_in_use_all_mode():
    loose = cd.CountdownProblem((2, 3, 5), 15, use_all=False)
    assert cd.is_correct_countdown("5*3=15\n\\boxed{15}", loose)
    assert not cd.is_correct_countdown("5*3=15\n\\boxed{15}", cd.CountdownProblem((2, 3, 5), 15))


def test_reward_never_raises_on_bad_ground_truth():
    assert cd.countdown_reward("1+1=2\n\\boxed{2}", "not a problem") == 0.0
    assert cd.countdown_reward("1+1=2\n\\boxed{2}", "{bad json") == 0.0


def test_prompt_text_and_ground_truth_parse_back():
    problem = cd.make_countdown_problems(seed=0, num=1)[0]
    assert cd.parse_countdown_problem(problem.text) == problem
    assert cd.parse_countdown_problem(problem.ground_truth) == problem


def test_dead_end_traces_have_exact_labels():
    config = cd.CountdownConfig(dead_end_fraction=1.0)
    examples = cd.countdown_sft_examples(seed=0, num=200, config=config)
    failures = 0
    for e in examples:
        problem = cd.parse_countdown_problem(e.ground_truth)
        labels = list(e.step_labels)
        assert labels == cd.label_countdown_steps(e.response, problem)
        # independent labels: replay valid lines and ask the brute force
        pool = list(problem.numbers)
        for line, label in zip(e.response.split("\n")[:-1], labels):
            x, op, y, c = re.fullmatch(r"(\d+)([-+*/])(\d+)=(\d+)", line).groups()
            pool.remove(int(x))
            pool.remove(int(y))
            pool.append(int(c))
            assert label == brute_force(list(pool), problem.target)
        if not labels[-1]:
            failures += 1
            assert labels == sorted(labels, reverse=True)  # True... then False...
            assert not cd.is_correct_countdown(e.response, problem)
    assert failures > 150  # a few problems may have no dead-end move
