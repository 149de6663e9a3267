"""Arithmetic solutions with one known kind of error, for step-verifier training and evaluation.

A correct solution of ``a0 op1 b1 op2 b2 ... =`` writes line i as ``v_{i-1} op_i b_i = v_i`` (``v`` the
true values left to right) and boxes the answer. Each error kind changes it so that the earliest
wrong step ``e`` is known exactly (``first_error``); every later line is then written as a careful
solver would continue from what is on the page:

- ``result_slip``: line e writes ``v_{e-1} op_e b_e = v_e + d`` (d != 0); later lines start from it.
- ``wrong_operand``: line e uses an operand ``b' != b_e`` (not the problem's) and computes right with it.
- ``wrong_operator``: line e applies another operator to the right operand, computes right with it.
- ``copy_error``: line e (e >= 1) starts from ``a' != v_{e-1}``, the previous line's result copied
  wrong, and computes right from ``a'``.
- ``skipped_step``: the problem's operation e is left out (line e applies operation e+1).
- ``wrong_box``: every line right, the box holds another number than the last line's result.
- ``compensating``: a first error (slip, operand or copy) at line e and a second line j > e whose
  written result is the true ``v_j`` again, so the final answer is right with two wrong steps.

Labels are the task's exact ones (``label_arithmetic_steps``: line i is right iff it is the right
next step given the correct prefix; after the first error every line is wrong), and every
generated solution is checked against its intended ``first_error``. ``ERROR_KINDS`` lists the
kinds; ``corrupt(rng, problem, kind)`` makes one solution, ``error_rows`` a labelled set of many.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from prime_jax.data.synthetic.arithmetic import (
    ArithmeticConfig,
    ArithmeticProblem,
    apply_op,
    label_arithmetic_steps,
    make_arithmetic_problems,
)

ERROR_KINDS = ("result_slip", "wrong_operand", "wrong_operator", "copy_error", "skipped_step", "wrong_box",
               "compensating")
CORRECT = "correct"
_LINE_KINDS = ("result_slip", "wrong_operand", "wrong_operator", "copy_error")
_FIRST_OF_COMPENSATING = ("result_slip", "wrong_operand", "copy_error")


@dataclasses.dataclass(frozen=True)
class KindedSolution:
    """A solution's lines, its exact first wrong step (-1: none), its error kind and final answer."""

    lines: tuple[str, ...]
    first_error: int
    kind: str
    final_answer_correct: bool


def _nonzero_delta(rng: np.random.Generator, magnitude: int) -> int:
    """A non-zero integer in [-magnitude, magnitude], mostly small (|d| <= 3 half the time)."""
    size = int(rng.integers(1, 4)) if rng.random() < 0.5 else int(rng.integers(1, magnitude + 1))
    return size if rng.random() < 0.5 else -size


def _exact(value: int, op: str, b: int) -> bool:
    return op != "/" or (b != 0 and value % b == 0)


def _render(problem: ArithmeticProblem, overrides: dict[int, tuple[int | None, str, int, int | None]],
            skip: int | None = None, box: int | None = None) -> list[str]:
    """Lines of ``problem`` solved left to right from what is written; ``overrides[i] = (start,
    op, b, result)`` replaces line i's start (None: the previous written result), operation and
    written result (None: computed). ``skip`` leaves operation ``skip`` out; ``box`` overrides the box."""
    lines, value = [], problem.first
    steps = [s for i, s in enumerate(problem.steps) if i != skip]
    for i, (op, b) in enumerate(steps):
        start, op, b, result = overrides.get(i, (None, op, b, None))
        start = value if start is None else start
        if not _exact(start, op, b):
            raise ValueError("inexact division")
        value = apply_op(start, op, b) if result is None else result
        lines.append(f"{start}{op}{b}={value}")
    lines.append(f"\\boxed{{{value if box is None else box}}}")
    return lines


def _first_error_override(rng, problem: ArithmeticProblem, kind: str, step: int, values: Sequence[int],
                          config: ArithmeticConfig):
    """Line ``step``'s override ``(start, op, b, result)`` for a first error of ``kind``."""
    op, b = problem.steps[step]
    previous = problem.first if step == 0 else values[step - 1]
    if kind == "result_slip":
        return None, op, b, values[step] + _nonzero_delta(rng, 10)
    if kind == "wrong_operand":
        low = 2 if op in "*/" else 1
        high = config.multiplier_max if op == "*" else config.operand_max
        choices = [c for c in range(low, max(high, low + 1) + 1) if c != b and _exact(previous, op, c)]
        return None, op, choices[int(rng.integers(len(choices)))], None
    if kind == "wrong_operator":
        choices = [o for o in "+-*" if o != op and apply_op(previous, o, b) != values[step]]
        return None, choices[int(rng.integers(len(choices)))], b, None
    if kind == "copy_error":
        return previous + _nonzero_delta(rng, 10), op, b, None
    raise ValueError(f"not a first-line error kind: {kind!r}")


def written_error(problem: ArithmeticProblem, line: str, step: int) -> int:
    """``d`` of line ``step`` written ``a op b = v_step + d``: its written result minus the true
    prefix value ``v_step`` (a result slip's error; 0 on a right line)."""
    return int(line.rsplit("=", 1)[1]) - problem.prefix_values[step]


def corrupt(rng: np.random.Generator, problem: ArithmeticProblem, kind: str,
            config: ArithmeticConfig = ArithmeticConfig()) -> KindedSolution:
    """One solution of ``problem`` with an error of ``kind`` (or ``"correct"``), labelled exactly.

    Raises ValueError when the problem cannot carry that kind (e.g. a copy error needs 2 lines);
    a random draw that happens to leave the line right (say ``0*b'`` = ``0*b``) is redrawn.
    """
    if kind != CORRECT and kind not in ERROR_KINDS:
        raise ValueError(f"unknown error kind {kind!r}; known: {(CORRECT, *ERROR_KINDS)}")
    values = problem.prefix_values
    num_ops = len(problem.steps)
    for _ in range(64):
        try:
            lines, intended = _draw_lines(rng, problem, kind, values, num_ops, config)
        except ValueError as error:
            if "cannot carry" in str(error):
                raise
            continue
        labels = label_arithmetic_steps("\n".join(lines), problem)
        first = next((i for i, ok in enumerate(labels) if not ok), -1)
        if first == intended:
            return KindedSolution(tuple(lines), first, kind, lines[-1] == f"\\boxed{{{problem.answer}}}")
    raise ValueError(f"could not draw a {kind!r} error for {problem.text!r}")


def _draw_lines(rng, problem, kind, values, num_ops, config) -> tuple[list[str], int]:
    """(lines, intended first error) of one random draw of ``kind``."""
    if kind == CORRECT:
        return _render(problem, {}), -1
    if kind == "wrong_box":
        candidates = [v for v in values[:-1] if v != values[-1]]
        box = candidates[int(rng.integers(len(candidates)))] if candidates and rng.random() < 0.3 \
            else values[-1] + _nonzero_delta(rng, 10)
        return _render(problem, {}, box=box), num_ops
    if kind == "skipped_step":
        if num_ops < 2:
            raise ValueError(f"{problem.text!r} cannot carry a skipped step (one operation)")
        step = int(rng.integers(num_ops))
        return _render(problem, {}, skip=step), step
    lowest = 1 if kind == "copy_error" else 0
    if kind in _LINE_KINDS:
        if num_ops <= lowest:
            raise ValueError(f"{problem.text!r} cannot carry a {kind} (too few operations)")
        step = int(rng.integers(lowest, num_ops))
        return _render(problem, {step: _first_error_override(rng, problem, kind, step, values, config)}), step
    if kind == "compensating":
        if num_ops < 3:
            raise ValueError(f"{problem.text!r} cannot carry a compensating pair (needs 3 operations)")
        first_kind = _FIRST_OF_COMPENSATING[int(rng.integers(len(_FIRST_OF_COMPENSATING)))]
        step = int(rng.integers(1 if first_kind == "copy_error" else 0, num_ops - 1))
        back = int(rng.integers(step + 1, num_ops))
        overrides = {step: _first_error_override(rng, problem, first_kind, step, values, config),
                     back: (None, *problem.steps[back], values[back])}
        return _render(problem, overrides), step
    raise AssertionError(f"unhandled error kind {kind!r}")


def error_rows(seed: int, *, split: str, per_kind: int, num_correct: int, kinds: Sequence[str] = ERROR_KINDS,
               min_ops: int = 2, max_ops: int = 7, max_chars: int = 96,
               exclude: frozenset[str] = frozenset()) -> list[dict]:
    """A ProcessBench-format set: ``per_kind`` solutions of every kind and ``num_correct`` correct ones.

    Problems of ``split`` ("train" / "eval", disjoint by problem text) with 2-7 operations (uniform);
    one solution per problem; problems whose prompt plus solution exceed ``max_chars`` characters
    (the tiny models' context) and problems whose text is in ``exclude`` (another set's) are skipped.
    Rows: ``{"id", "problem", "steps", "label", "final_answer_correct", "kind", "num_ops"}``,
    deterministic in the arguments.
    """
    unknown = [k for k in kinds if k not in ERROR_KINDS]
    if unknown:
        raise ValueError(f"error_rows kinds={unknown}: unknown; known: {ERROR_KINDS}")
    config = ArithmeticConfig(num_ops=max_ops, min_ops=min_ops)
    wanted = [CORRECT] * num_correct + [k for k in kinds for _ in range(per_kind)]
    problems = make_arithmetic_problems(seed, 4 * len(wanted) + 64, split, config)
    rng = np.random.default_rng([seed, 27])
    rows, index = [], 0
    for kind in wanted:
        while True:
            if index >= len(problems):
                raise ValueError(f"error_rows: ran out of problems (seed {seed}, {len(wanted)} rows)")
            problem = problems[index]
            index += 1
            if problem.text in exclude:
                continue
            try:
                solution = corrupt(rng, problem, kind, config)
            except ValueError:
                continue
            if len(problem.text) + len("\n".join(solution.lines)) <= max_chars:
                break
        rows.append({"id": f"arithmetic-{split}-{seed}-{len(rows)}", "problem": problem.text,
                     "steps": list(solution.lines), "label": solution.first_error,
                     "final_answer_correct": solution.final_answer_correct, "kind": kind,
                     "num_ops": len(problem.steps)})
    return rows
