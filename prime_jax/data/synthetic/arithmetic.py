"""Arithmetic chains: `17+20*3-15=` evaluated LEFT TO RIGHT, one operation per line.

Text format (short on purpose: the tiny models read characters, context ~48):

    prompt    17+20*3-15=
    solution  17+20=37
              37*3=111
              111-15=96
              \\boxed{96}

Every solution line has an exact label. `step_labels[i]` is True iff lines 0..i are all right:
line i (i < num_ops) reads `a<op>b=c` with `a` the true value so far, `<op>b` the problem's i-th
operation and `c` its true result; the last line is right iff it boxes the true answer. This is
ProcessBench's "first error" convention: after a slip every later line is False, even when its
own arithmetic is right, because the slip propagates. `first_error` is the index of the first
False line (-1 if none).

SFT traces may carry one injected slip (probability `slip_fraction`): one operation line gets a
result off by a small non-zero amount and the chain continues correctly from the wrong value, so
the boxed answer is wrong. Ground truth for RL is the answer as a plain number string, checked by
`prime_jax.verifiers.math.verify(response, ground_truth)` (ability "math").
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from prime_jax.data.records import PromptRecord, SFTExample
from prime_jax.data.synthetic import splits

DATA_SOURCE = "synthetic/arithmetic"
ABILITY = "math"
_LINE = re.compile(r"^(-?\d+)([-+*/])(\d+)=(-?\d+)$")
_BOXED = re.compile(r"^\\boxed\{(-?\d+)\}$")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ArithmeticConfig:
    """Difficulty knobs. Defaults are SPEC section 6: operands <= 20, x <= 4, 3 operations."""

    num_ops: int = 3
    min_ops: int | None = None  # if set, the count is uniform in [min_ops, num_ops]
    operand_max: int = 20  # first operand and +/- operands in [1, operand_max] (first: [0, .])
    multiplier_max: int = 4  # * operands in [2, multiplier_max]; / divisors in [2, operand_max]
    ops: tuple[str, ...] = ("+", "-", "*")
    slip_fraction: float = 0.3  # SFT traces with one propagated slip
    slip_max_delta: int = 3  # a slip is off by a non-zero amount in [-delta, delta]
    eval_fraction: float = 0.1  # share of the problem space held out (by problem text)


@dataclasses.dataclass(frozen=True)
class ArithmeticProblem:
    first: int
    steps: tuple[tuple[str, int], ...]  # (op, operand) applied left to right

    @property
    def text(self) -> str:
        return str(self.first) + "".join(f"{op}{b}" for op, b in self.steps) + "="

    @property
    def prefix_values(self) -> tuple[int, ...]:
        """The true value after each operation; the last one is the answer."""
        values, v = [], self.first
        for op, b in self.steps:
            v = apply_op(v, op, b)
            values.append(v)
        return tuple(values)

    @property
    def answer(self) -> int:
        return self.prefix_values[-1]


@dataclasses.dataclass(frozen=True)
class ArithmeticSolution:
    lines: tuple[str, ...]
    step_labels: tuple[bool, ...]
    final_answer: int

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def first_error(self) -> int:
        return next((i for i, ok in enumerate(self.step_labels) if not ok), -1)


def apply_op(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0 or a % b:
            raise ValueError(f"{a}/{b} is not an exact integer division")
        return a // b
    raise ValueError(f"unknown operator {op!r}")


def _sample_step(rng: np.random.Generator, value: int, config: ArithmeticConfig) -> tuple[str, int]:
    ops = list(config.ops)
    while True:
        op = ops[int(rng.integers(len(ops)))]
        if op in "+-":
            return op, int(rng.integers(1, config.operand_max + 1))
        if op == "*":
            return op, int(rng.integers(2, max(config.multiplier_max, 2) + 1))
        divisors = [d for d in range(2, config.operand_max + 1) if value % d == 0]
        if divisors:
            return op, divisors[int(rng.integers(len(divisors)))]
        if ops == ["/"]:
            return op, 1
        ops.remove("/")


def sample_arithmetic_problem(rng: np.random.Generator,
                              config: ArithmeticConfig) -> ArithmeticProblem:
    """One random problem from the config's distribution."""
    num_ops = config.num_ops
    if config.min_ops is not None:
        num_ops = int(rng.integers(config.min_ops, config.num_ops + 1))
    value = int(rng.integers(0, config.operand_max + 1))
    first, steps = value, []
    for _ in range(num_ops):
        op, b = _sample_step(rng, value, config)
        steps.append((op, b))
        value = apply_op(value, op, b)
    return ArithmeticProblem(first, tuple(steps))


def solve_arithmetic(problem: ArithmeticProblem, *, slip_step: int | None = None,
                     slip_delta: int = 0) -> ArithmeticSolution:
    """The step-by-step solution; with `slip_step`, that line's result is off by `slip_delta`.

    The error propagates: later lines compute correctly from the wrong value. With division in a
    later step, pick `slip_delta` as a multiple of the later divisors (see `sample_slip`).
    """
    lines, labels, value, on_track = [], [], problem.first, True
    for i, ((op, b), true_value) in enumerate(zip(problem.steps, problem.prefix_values)):
        result = apply_op(value, op, b)
        if i == slip_step:
            if slip_delta == 0:
                raise ValueError("a slip needs a non-zero delta")
            result += slip_delta
        lines.append(f"{value}{op}{b}={result}")
        on_track = on_track and result == true_value
        labels.append(on_track)
        value = result
    lines.append(f"\\boxed{{{value}}}")
    labels.append(on_track and value == problem.answer)
    return ArithmeticSolution(tuple(lines), tuple(labels), value)


def sample_slip(rng: np.random.Generator, problem: ArithmeticProblem,
                config: ArithmeticConfig) -> tuple[int, int]:
    """A random (slip_step, slip_delta) that keeps every later division exact."""
    step = int(rng.integers(len(problem.steps)))
    magnitude = int(rng.integers(1, max(config.slip_max_delta, 1) + 1))
    sign = 1 if rng.integers(2) else -1
    scale = 1
    for op, b in problem.steps[step + 1:]:
        if op == "/":
            scale *= b
    return step, sign * magnitude * scale


def label_arithmetic_steps(solution: str, problem: ArithmeticProblem) -> list[bool]:
    """Exact "prefix still correct" labels for any solution text, one per non-empty line."""
    lines = [line.strip() for line in solution.strip().split("\n") if line.strip()]
    labels, ok = [], True
    values = problem.prefix_values
    value = problem.first
    for i, line in enumerate(lines):
        if i < len(problem.steps):
            m = _LINE.match(line)
            op, b = problem.steps[i]
            ok = ok and bool(m) and int(m.group(1)) == value and m.group(2) == op \
                and int(m.group(3)) == b and int(m.group(4)) == values[i]
            value = values[i]
        elif i == len(problem.steps):
            m = _BOXED.match(line)
            ok = ok and bool(m) and int(m.group(1)) == problem.answer
        else:
            ok = False
        labels.append(ok)
    return labels


def make_arithmetic_problems(seed: int, num: int, split: str = "train",
                             config: ArithmeticConfig = ArithmeticConfig(),
                             unique: bool = True) -> list[ArithmeticProblem]:
    """`num` problems of one split, deterministic in (seed, split, config)."""
    return splits.draw_split(lambda rng: sample_arithmetic_problem(rng, config),
                             lambda p: p.text, num=num, seed=seed, split=split,
                             eval_fraction=config.eval_fraction, unique=unique)


def arithmetic_rl_prompts(seed: int, num: int, split: str = "train",
                          config: ArithmeticConfig = ArithmeticConfig()) -> list[PromptRecord]:
    """RL prompts: the user message is the problem text, the ground truth its answer string."""
    return [PromptRecord(messages=(("user", p.text),), ground_truth=str(p.answer),
                         ability=ABILITY, data_source=DATA_SOURCE)
            for p in make_arithmetic_problems(seed, num, split, config)]


def arithmetic_sft_examples(seed: int, num: int, split: str = "train",
                            config: ArithmeticConfig = ArithmeticConfig(),
                            slip_fraction: float | None = None) -> list[SFTExample]:
    """SFT traces; a `slip_fraction` share (default: the config's) carries one propagated slip."""
    fraction = config.slip_fraction if slip_fraction is None else slip_fraction
    rng = splits.split_rng(seed, split, stream=1)
    out = []
    for problem in make_arithmetic_problems(seed, num, split, config):
        slip_step, slip_delta = None, 0
        if rng.random() < fraction:
            slip_step, slip_delta = sample_slip(rng, problem, config)
        solution = solve_arithmetic(problem, slip_step=slip_step, slip_delta=slip_delta)
        out.append(SFTExample(messages=(("user", problem.text),), response=solution.text,
                              ground_truth=str(problem.answer), ability=ABILITY,
                              data_source=DATA_SOURCE, step_labels=solution.step_labels))
    return out


def parse_arithmetic_problem(text: str) -> ArithmeticProblem:
    """Inverse of `ArithmeticProblem.text` (e.g. to label model outputs from a prompt)."""
    m = re.fullmatch(r"(\d+)((?:[-+*/]\d+)+)=", text.strip())
    if not m:
        raise ValueError(f"not an arithmetic problem: {text!r}")
    steps = tuple((op, int(b)) for op, b in re.findall(r"([-+*/])(\d+)", m.group(2)))
    return ArithmeticProblem(int(m.group(1)), steps)
