"""Rule-based math outcome verifier: reward 1.0 iff the final answer equals the ground truth.

Order of checks (SPEC section 3), each deciding when it applies:
1. extract the final answer (`answer.extract_answer`: last closed `\\boxed{}`, else an "answer
   is" sentence, else a bare expression, else the last math span or standalone number); a ground
   truth is its boxed content (boxes parted only by separators form a list), else itself.
2. `clean` both sides (presentation, `$`, degrees, `%`, `\\text{}`); both carry a unit and the
   units differ (`3 meters` vs `3 seconds`; `m` and `meters` agree) -> 0. A unit on one side
   only, or a generic one (`units`), is dropped, as the reference graders drop it.
3. structures (`answer.split_structure`): tuples, intervals, bare comma lists, sets and
   matrices compare element by element with these same rules, so `(0.6, 2.6667]` is judged
   exactly as `0.6` and `2.6667` are; different kinds or lengths -> 0. Tuples, intervals,
   matrices and lists of plain values are ordered; sets and lists of solutions (a bare list
   truth of tuples, `(0,0,0), (1,1,1)`, or of assignments, `a_3 = 2, a_{37} = 19`) are
   multisets: a one-to-one matching, so order is free but every element counts once (`1, 1, 1`
   is not `1, 2, 3`; `1, 2, 2` is not `1, 2`), and two assignments pair only under the same
   name. `;` separates tuple elements, and tuples, where there is no top-level `,`.
   A comma list never matches a single value (`32, 349` is not `32349`; `3, 4` is not `4`).
4. `x = 3` / `f(x) = 3` / `(p,q) = (3,2)` state their right side (a name on the left: no digit
   outside subscripts); any other equation never matches a plain value; a chain (`x = 1 = 2`) or
   an equation between numbers (`3 = 4`, `3 \\equiv 4`) never matches anything else
   (Math-Verify would take its last side). An assignment stays whole against an equation truth
   (`y = 2x + 1` vs `2x + 4y - 3 = 0` goes to math-verify).
5. equal normal forms -> 1 (string match; `NaN` never matches).
6. plain numbers on both sides: exact, except between a decimal and an exact value, either
   side: the decimal must be the value correctly rounded and within relative 1e-4 (`numbers`).
7. symbolic equivalence in the killable worker: math-verify with floats rounded to
   `symbolic.FLOAT_ROUNDING` (10) places instead of its 6, so `0.3333333` is not `\\frac13`
   there either; between a decimal and an exact expression (`1.4142` and `\\sqrt{2}`, either
   side), the expression's value with the rule of step 6.
   A match counts only if the parser read every part of the prediction
   (`symbolic.reads_every_part`): math-verify reads `3 \\lor 4`, `3 \\to 4`, `3 \\\\ 4` as 4.
Steps 1-6 run in-process in linear time on inputs capped at `answer.MAX_ANSWER_CHARS`; the
symbolic step runs in a `SymbolicWorker` child process that is killed at the deadline (one
deadline for all elements of a structure). Timeouts and crashes score 0, are counted in `STATS`
(ability "math") and logged; nothing here raises.

Deliberate differences from the reference graders (besides those of `answer`): no hedges (steps
2, 3, 4, 7), no 6-decimal rounding in the symbolic step, list truths as multisets (Math-Verify compares
them as sets, PRIME in order; here a bare list truth is a multiset), equation chains not
accepted, a single value never matches one element of a list truth (Math-Verify accepts it).
`tests/verifiers/data/math_agreement.jsonl` lists each remaining disagreement with its reason.
"""

from __future__ import annotations

import collections
import logging
import time

from prime_jax.verifiers import answer as answer_lib
from prime_jax.verifiers import numbers as numbers_lib
from prime_jax.verifiers.stats import FAILURE_STATUSES, Verdict, VerifierStats
from prime_jax.verifiers.symbolic import SymbolicWorker

DEFAULT_TIMEOUT = 5.0
_KIND_ALIAS = {"list": "()"}
_MAX_DEPTH = 8  # structure nesting compared element-wise; deeper goes to the symbolic worker
STATS = VerifierStats()
_LOG = logging.getLogger(__name__)
_worker: SymbolicWorker | None = None


def _symbolic_worker() -> SymbolicWorker:
    global _worker
    if _worker is None:
        _worker = SymbolicWorker()
    return _worker


def shutdown() -> None:
    """Stops this process's symbolic worker (a new one starts on the next symbolic check)."""
    global _worker
    if _worker is not None:
        _worker.close()
        _worker = None


def _symbolic(pred: str, truth: str, deadline: float, decimal: bool = False) -> Verdict:
    """The killable worker's verdict; `decimal` (the truth is a plain decimal) switches it to
    `numbers.close_to_decimal` on the value of `pred`. Past the deadline: "timeout"."""
    timeout = deadline - time.monotonic()
    if timeout <= 0:
        return Verdict(0.0, "timeout", "deadline passed before the symbolic check")
    equal, status = _symbolic_worker().equivalent(pred, truth, timeout, decimal)
    if status != "ok":
        return Verdict(0.0, status, f"symbolic check {status} after {timeout:.1f}s")
    return Verdict(float(equal), "match_symbolic" if equal else "mismatch")


def _compare_structures(pred: tuple, truth: tuple, deadline: float, depth: int) -> Verdict:
    """Element by element with the scalar rules. A set matches in any order; a bare list
    prediction stands for a parenthesised tuple (as PRIME's grader strips the parentheses); a
    bare list truth - all solutions of a problem - is a multiset (`_unordered`)."""
    (pred_kind, pred_items), (truth_kind, truth_items) = pred, truth
    unordered = truth_kind == "set" or (truth_kind == "list" and _unordered(pred_items,
                                                                            truth_items))
    pred_kind = _KIND_ALIAS.get(pred_kind, pred_kind)
    truth_kind = _KIND_ALIAS.get(truth_kind, truth_kind)
    if pred_kind != truth_kind or len(pred_items) != len(truth_items):
        return Verdict(0.0, "mismatch", f"{pred_kind} vs {truth_kind}")
    if unordered:
        return _compare_sets(pred_items, truth_items, deadline, depth)
    for pred_item, truth_item in zip(pred_items, truth_items):
        verdict = _compare_named(pred_item, truth_item, deadline, depth + 1)
        if verdict.score < 1.0:
            return verdict
    return Verdict(1.0, "match_structure")


def _unordered(pred_items: list, truth_items: list) -> bool:
    """Whether a bare list truth is a list of solutions, compared as a multiset: its elements
    are all tuples (`(0,0,0), (1,1,1)`) or all named assignments (`a_3 = 2, a_{37} = 19`, when
    the prediction's are named too: otherwise only the order ties a value to its name). A list
    of plain values keeps its order (hendrycks MATH: `10, 4, -2` is not `4, 10, -2`)."""
    if all(_is_tuple(item) for item in truth_items):
        return True
    return all(answer_lib.assignment_name(item) for item in [*truth_items, *pred_items])


def _is_tuple(item: str) -> bool:
    structure = answer_lib.split_structure(answer_lib.clean(item))
    return structure is not None and structure[0] in ("()", "[]")


def _compare_named(pred: str, truth: str, deadline: float, depth: int) -> Verdict:
    """`_compare`, after checking that two assignments name the same quantity."""
    pred_name, truth_name = answer_lib.assignment_name(pred), answer_lib.assignment_name(truth)
    if pred_name and truth_name and pred_name != truth_name:
        return Verdict(0.0, "mismatch", f"{pred_name} vs {truth_name}")
    return _compare(pred, truth, deadline, depth)


def _compare_sets(pred_items: list, truth_items: list, deadline: float, depth: int) -> Verdict:
    """A one-to-one (multiset) matching: identical normal forms pair first (linear), each remaining
    prediction element then takes the first equal remaining truth element; the quadratic part
    stops at the deadline."""
    unmatched = collections.Counter(map(answer_lib.normalize_answer, truth_items))
    rest = []
    for item in pred_items:
        normal = answer_lib.normalize_answer(item)
        if unmatched[normal] > 0 and not numbers_lib.is_nan(normal):
            unmatched[normal] -= 1
        else:
            rest.append(item)
    remaining = []
    for item in truth_items:
        normal = answer_lib.normalize_answer(item)
        if unmatched[normal] > 0:  # as many of this form as no prediction element took
            unmatched[normal] -= 1
            remaining.append(item)
    for pred_item in rest:
        if time.monotonic() > deadline:
            return Verdict(0.0, "timeout", "set comparison past the deadline")
        for truth_item in remaining:
            verdict = _compare_named(pred_item, truth_item, deadline, depth + 1)
            if verdict.status in FAILURE_STATUSES:
                return verdict
            if verdict.score == 1.0:
                remaining.remove(truth_item)
                break
        else:
            return Verdict(0.0, "mismatch", "set element not found")
    return Verdict(1.0, "match_structure")


def _stated_values(pred: str, truth: str) -> tuple[str, str, bool, bool]:
    """Both sides through `answer.equation_side`; an assignment (`y = 2x + 1`) stays whole
    when the other side is an equation, so math-verify compares the two equations."""
    pred_value, pred_is_equation = answer_lib.equation_side(pred)
    truth_value, truth_is_equation = answer_lib.equation_side(truth)
    if truth_is_equation and not pred_is_equation and pred_value != pred:
        pred_value, pred_is_equation = pred, True
    if pred_is_equation and not truth_is_equation and truth_value != truth:
        truth_value, truth_is_equation = truth, True
    return pred_value, truth_value, pred_is_equation, truth_is_equation


def _compare(pred: str, truth: str, deadline: float, depth: int = 0) -> Verdict:
    """The rules of the module docstring, in order; structures recurse into their elements."""
    if len(pred) > answer_lib.MAX_ANSWER_CHARS or len(truth) > answer_lib.MAX_ANSWER_CHARS:
        return Verdict(0.0, "too_long", f"answer of {len(pred)} chars")
    pred, pred_unit = answer_lib.clean_with_unit(pred)
    truth, truth_unit = answer_lib.clean_with_unit(truth)
    if pred_unit and truth_unit and pred_unit != truth_unit:
        return Verdict(0.0, "mismatch", f"unit {pred_unit} vs {truth_unit}")
    if depth < _MAX_DEPTH:
        pred_structure = answer_lib.split_structure(pred)
        truth_structure = answer_lib.split_structure(truth)
        if pred_structure and truth_structure:
            return _compare_structures(pred_structure, truth_structure, deadline, depth)
        single = pred_structure or truth_structure
        if single and single[0] == "list":
            return Verdict(0.0, "mismatch", "a list against a single value")
    pred, truth, pred_is_equation, truth_is_equation = _stated_values(pred, truth)
    pred_normal = answer_lib.normalize_answer(pred)
    truth_normal = answer_lib.normalize_answer(truth)
    if numbers_lib.is_nan(pred_normal) or numbers_lib.is_nan(truth_normal):
        return Verdict(0.0, "mismatch", "NaN")
    if pred_normal == truth_normal:
        return Verdict(1.0, "match_string")
    if answer_lib.is_hedged_equation(pred):
        return Verdict(0.0, "mismatch", "an equation stating several values")
    if pred_is_equation != truth_is_equation:
        return Verdict(0.0, "mismatch", "an equation against a value")
    pred_number = numbers_lib.parse_number(pred_normal)
    truth_number = numbers_lib.parse_number(truth_normal)
    if pred_number is not None and truth_number is not None:
        equal = numbers_lib.numbers_equal(pred_number, truth_number)
        return Verdict(float(equal), "match_numeric" if equal else "mismatch")
    if truth_number is not None and truth_number.decimals is not None and pred_number is None:
        return _symbolic(pred, truth_normal, deadline, decimal=True)
    if pred_number is not None and pred_number.decimals is not None and truth_number is None:
        return _symbolic(truth, pred_normal, deadline, decimal=True)  # the same rule, mirrored
    return _symbolic(pred, truth, deadline)


def verify_detailed(response: str, ground_truth: str, *,
                    timeout: float = DEFAULT_TIMEOUT) -> Verdict:
    """Like `verify`, returning the `Verdict` (score, status, reason); also counts it in STATS."""
    try:
        pred = answer_lib.extract_answer(response)
        if pred is None:
            verdict = Verdict(0.0, "no_answer")
        else:
            truth = answer_lib.ground_truth_answer(ground_truth)
            verdict = _compare(pred, truth, time.monotonic() + timeout)
    except Exception as error:  # noqa: BLE001 - a verifier bug must not crash training
        verdict = Verdict(0.0, "error", repr(error)[:200])
    STATS.record("math", verdict.status)
    if verdict.status in FAILURE_STATUSES:
        _LOG.warning("math verification %s: %s", verdict.status, verdict.reason)
    return verdict


def verify(response: str, ground_truth: str, *, timeout: float = DEFAULT_TIMEOUT) -> float:
    """1.0 if the final answer of `response` is equivalent to `ground_truth`, else 0.0.

    `timeout` bounds the symbolic check (seconds of wall time in a killable worker)."""
    return verify_detailed(response, ground_truth, timeout=timeout).score
