"""Countdown: reach a target from 3-4 numbers with + - * / (integer results), one op per line.

Text format (ability "countdown"):

    prompt    2,3,5,7:41        numbers (sorted ascending), then the target
    solution  7*5=35
              35+3=38
              38+... (one `a<op>b=c` line per operation, every result a non-negative integer)
              \\boxed{41}

Rules (also enforced by `is_correct_countdown`): each line combines two numbers currently in the
pool (the given numbers plus earlier results; each used at most once) into its result; `-` must
not go negative and `/` must be exact. With `use_all=True` (default) every number is used and the
last result equals the target; otherwise the last result equals the target. The final line boxes
the target.

`reachable(pool, target)` is an exact brute-force oracle (memoised over sorted pools): whether
the target can still be reached from a pool. Step labels are "prefix still solvable": line i is
True iff lines 0..i are all valid and the pool after line i can still reach the target; the boxed
line is True iff the whole solution is correct. This is an exact prover for PAV-style work.

RL ground truth is the prompt text (`2,3,5,7:41`; `;subset` appended when use_all=False), which
the char tokenizer can also encode; the trainer scores a response with
`countdown_reward(response, ground_truth)` (1.0 or 0.0, never raises).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re

import numpy as np

from prime_jax.data.records import PromptRecord, SFTExample
from prime_jax.data.synthetic import splits

DATA_SOURCE = "synthetic/countdown"
ABILITY = "countdown"
_LINE = re.compile(r"^(\d+)([-+*/])(\d+)=(\d+)$")
_BOXED = re.compile(r"^\\boxed\{(-?\d+)\}$")
Pool = tuple[int, ...]
Move = tuple[int, str, int, int]  # a, op, b, result


@dataclasses.dataclass(frozen=True, kw_only=True)
class CountdownConfig:
    num_numbers: int = 4
    min_numbers: int | None = 3  # count uniform in [min_numbers, num_numbers]; None = fixed
    number_max: int = 10  # numbers drawn from [1, number_max]
    target_min: int = 10
    target_max: int = 100
    use_all: bool = True
    dead_end_fraction: float = 0.0  # SFT traces that take one unsolvable turn (wrong answer)
    eval_fraction: float = 0.1


@dataclasses.dataclass(frozen=True)
class CountdownProblem:
    numbers: Pool  # sorted ascending
    target: int
    use_all: bool = True

    @property
    def text(self) -> str:
        return ",".join(map(str, self.numbers)) + f":{self.target}"

    @property
    def ground_truth(self) -> str:
        """The prompt text, plus `;subset` when not every number must be used."""
        return self.text + ("" if self.use_all else ";subset")


def moves(pool: Pool) -> list[tuple[Move, Pool]]:
    """Every legal single operation on a pool, with the pool it leaves (sorted)."""
    out = []
    for i in range(len(pool)):
        for j in range(i + 1, len(pool)):
            a, b = max(pool[i], pool[j]), min(pool[i], pool[j])
            rest = pool[:i] + pool[i + 1:j] + pool[j + 1:]
            results = [("+", a + b), ("-", a - b), ("*", a * b)]
            if b != 0 and a % b == 0:
                results.append(("/", a // b))
            for op, c in results:
                out.append(((a, op, b, c), tuple(sorted(rest + (c,)))))
    return out


@functools.lru_cache(maxsize=200_000)
def final_values(pool: Pool) -> frozenset[int]:
    """Values reachable using every number of the pool exactly once."""
    if len(pool) == 1:
        return frozenset(pool)
    return frozenset().union(*(final_values(nxt) for _, nxt in moves(pool)))


@functools.lru_cache(maxsize=200_000)
def any_values(pool: Pool) -> frozenset[int]:
    """Values present in the pool or reachable from any sub-multiset of it."""
    return frozenset(pool).union(*(any_values(nxt) for _, nxt in moves(pool)))


def reachable(pool: Pool, target: int, use_all: bool = True) -> bool:
    """Exact oracle: can the target still be reached from this pool?"""
    pool = tuple(sorted(pool))
    return target in (final_values(pool) if use_all else any_values(pool))


def _done(pool: Pool, target: int, last: int | None, use_all: bool) -> bool:
    return len(pool) == 1 if use_all else last == target


def solve_countdown(problem: CountdownProblem, rng: np.random.Generator | None = None
                    ) -> list[Move] | None:
    """One solution (random among solving moves if `rng` is given, else the first); None if none."""
    pool, last, path = problem.numbers, None, []
    if not reachable(pool, problem.target, problem.use_all):
        return None
    while not _done(pool, problem.target, last, problem.use_all):
        good = [(m, nxt) for m, nxt in moves(pool)
                if reachable(nxt, problem.target, problem.use_all)]
        if not problem.use_all:  # prefer finishing as soon as the target is made
            good = [g for g in good if g[0][3] == problem.target] or good
        if not good:  # only when use_all=False and the target is a given number
            return None
        move, pool = good[int(rng.integers(len(good)))] if rng is not None else good[0]
        path.append(move)
        last = move[3]
    return path


def render_solution(path: list[Move]) -> str:
    lines = [f"{a}{op}{b}={c}" for a, op, b, c in path]
    return "\n".join(lines + [f"\\boxed{{{path[-1][3]}}}"])


def parse_countdown_problem(problem: CountdownProblem | str) -> CountdownProblem:
    """Accepts a problem, its ground truth / prompt text (`2,3,5,7:41`, `2,3,5:7;subset`) or
    JSON {"numbers": [...], "target": N, "use_all": bool}."""
    if isinstance(problem, CountdownProblem):
        return problem
    text = problem.strip()
    if text.startswith("{"):
        d = json.loads(text)
        return CountdownProblem(tuple(sorted(int(x) for x in d["numbers"])), int(d["target"]),
                                bool(d.get("use_all", True)))
    m = re.fullmatch(r"(\d+(?:,\d+)*):(\d+)(;subset)?", text)
    if not m:
        raise ValueError(f"not a countdown problem: {problem!r}")
    return CountdownProblem(tuple(sorted(int(x) for x in m.group(1).split(","))), int(m.group(2)),
                            use_all=m.group(3) is None)


def label_countdown_steps(solution: str, problem: CountdownProblem | str) -> list[bool]:
    """Exact "prefix still solvable" labels, one per non-empty line (see module docstring)."""
    problem = parse_countdown_problem(problem)
    pool, last, ok, labels = list(problem.numbers), None, True, []
    lines = [line.strip() for line in solution.strip().split("\n") if line.strip()]
    for line in lines:
        boxed = _BOXED.match(line)
        if boxed:
            ok = ok and int(boxed.group(1)) == problem.target and last is not None \
                and _done(tuple(pool), problem.target, last, problem.use_all) \
                and last == problem.target
            labels.append(ok)
            ok = False  # nothing may follow the boxed answer
            continue
        m = _LINE.match(line)
        if ok and m:
            a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
            ok = _valid_move(pool, a, op, b, c)
            if ok:
                pool.remove(a)
                pool.remove(b)
                pool.append(c)
                last = c
                ok = reachable(tuple(pool), problem.target, problem.use_all) or (
                    not problem.use_all and c == problem.target)
        else:
            ok = False
        labels.append(ok)
    return labels


def _valid_move(pool: list[int], a: int, op: str, b: int, c: int) -> bool:
    """Both operands available (two copies if equal) and the arithmetic exact and >= 0."""
    needed = 2 if a == b else 1
    if pool.count(a) < needed or b not in pool:
        return False
    if op == "+":
        return a + b == c
    if op == "*":
        return a * b == c
    if op == "-":
        return a - b == c and c >= 0
    return b != 0 and a % b == 0 and a // b == c


def is_correct_countdown(solution: str, problem: CountdownProblem | str) -> bool:
    """True iff every line is a legal step and the solution boxes the target correctly."""
    labels = label_countdown_steps(solution, problem)
    return bool(labels) and labels[-1] and _BOXED.match(
        solution.strip().split("\n")[-1].strip()) is not None


def countdown_reward(response: str, ground_truth: str) -> float:
    """Verifier for ability "countdown": 1.0 if correct, else 0.0 (never raises)."""
    try:
        return 1.0 if is_correct_countdown(response, ground_truth) else 0.0
    except (ValueError, KeyError, TypeError):
        return 0.0


def sample_countdown_problem(rng: np.random.Generator, config: CountdownConfig) -> CountdownProblem:
    """A random solvable problem: numbers first, then a target among the reachable ones."""
    while True:
        count = config.num_numbers
        if config.min_numbers is not None:
            count = int(rng.integers(config.min_numbers, config.num_numbers + 1))
        numbers = tuple(sorted(int(x) for x in rng.integers(1, config.number_max + 1, count)))
        values = final_values(numbers) if config.use_all else any_values(numbers)
        targets = sorted(v for v in values if config.target_min <= v <= config.target_max
                         and (config.use_all or v not in numbers))  # no zero-step problems
        if targets:
            target = targets[int(rng.integers(len(targets)))]
            return CountdownProblem(numbers, target, config.use_all)


def _dead_end_path(problem: CountdownProblem, rng: np.random.Generator) -> list[Move] | None:
    """Solving moves, then one move into an unsolvable pool, then random moves to the end."""
    solution = solve_countdown(problem, rng)
    turn = int(rng.integers(len(solution)))
    pool = problem.numbers
    for move in solution[:turn]:
        pool = _apply(pool, move)
    bad = [(m, nxt) for m, nxt in moves(pool)
           if not reachable(nxt, problem.target, problem.use_all)]
    if not bad:
        return None
    move, pool = bad[int(rng.integers(len(bad)))]
    path = solution[:turn] + [move]
    while len(pool) > 1:
        options = moves(pool)
        move, pool = options[int(rng.integers(len(options)))]
        path.append(move)
    return path


def _apply(pool: Pool, move: Move) -> Pool:
    rest = list(pool)
    rest.remove(move[0])
    rest.remove(move[2])
    return tuple(sorted(rest + [move[3]]))


def make_countdown_problems(seed: int, num: int, split: str = "train",
                            config: CountdownConfig = CountdownConfig(),
                            unique: bool = True) -> list[CountdownProblem]:
    return splits.draw_split(lambda rng: sample_countdown_problem(rng, config),
                             lambda p: p.text, num=num, seed=seed, split=split,
                             eval_fraction=config.eval_fraction, unique=unique)


def countdown_rl_prompts(seed: int, num: int, split: str = "train",
                         config: CountdownConfig = CountdownConfig()) -> list[PromptRecord]:
    return [PromptRecord(messages=(("user", p.text),), ground_truth=p.ground_truth,
                         ability=ABILITY, data_source=DATA_SOURCE)
            for p in make_countdown_problems(seed, num, split, config)]


def countdown_sft_examples(seed: int, num: int, split: str = "train",
                           config: CountdownConfig = CountdownConfig(),
                           dead_end_fraction: float | None = None) -> list[SFTExample]:
    """Solved traces; a `dead_end_fraction` share takes one unsolvable turn and fails."""
    fraction = config.dead_end_fraction if dead_end_fraction is None else dead_end_fraction
    rng = splits.split_rng(seed, split, stream=1)
    out = []
    for problem in make_countdown_problems(seed, num, split, config):
        path = solve_countdown(problem, rng)
        if rng.random() < fraction:
            path = _dead_end_path(problem, rng) or path
        text = render_solution(path)
        out.append(SFTExample(messages=(("user", problem.text),), response=text,
                              ground_truth=problem.ground_truth, ability=ABILITY,
                              data_source=DATA_SOURCE,
                              step_labels=tuple(label_countdown_steps(text, problem))))
    return out
