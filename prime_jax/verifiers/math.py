"""Rule-based math outcome verifier: reward 1.0 iff the final answer equals the ground truth.

Order of checks (SPEC section 3): extract the final answer (last `\\boxed{}`/`\\fbox{}`, else an
"answer is" marker, else the last number); normalised string equality; numeric equality
(relative 1e-4, thousands separators, percentages); symbolic equivalence with math-verify/sympy.
The first two run in-process in linear time; the symbolic step runs in a `SymbolicWorker` child
process that is killed at the deadline. Timeouts and crashes score 0, are counted in `STATS`
(ability "math") and logged; nothing here raises.
"""

from __future__ import annotations

import logging

from prime_jax.verifiers import answer as answer_lib
from prime_jax.verifiers.stats import FAILURE_STATUSES, Verdict, VerifierStats
from prime_jax.verifiers.symbolic import SymbolicWorker

DEFAULT_TIMEOUT = 5.0
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


def _compare(pred: str, truth: str, timeout: float) -> Verdict:
    if len(pred) > answer_lib.MAX_ANSWER_CHARS or len(truth) > answer_lib.MAX_ANSWER_CHARS:
        return Verdict(0.0, "too_long", f"answer of {len(pred)} chars")
    pred_norm = answer_lib.normalize_answer(pred)
    truth_norm = answer_lib.normalize_answer(truth)
    if pred_norm == truth_norm:
        return Verdict(1.0, "match_string")
    pred_num = answer_lib.parse_number(pred_norm)
    truth_num = answer_lib.parse_number(truth_norm)
    if pred_num is not None and truth_num is not None:
        equal = answer_lib.numbers_equal(pred_num, truth_num)
        return Verdict(float(equal), "match_numeric" if equal else "mismatch")
    equal, status = _symbolic_worker().equivalent(pred, truth, timeout)
    if status != "ok":
        return Verdict(0.0, status, f"symbolic check {status} after {timeout}s")
    return Verdict(float(equal), "match_symbolic" if equal else "mismatch")


def verify_detailed(response: str, ground_truth: str, *,
                    timeout: float = DEFAULT_TIMEOUT) -> Verdict:
    """Like `verify`, returning the `Verdict` (score, status, reason); also counts it in STATS."""
    try:
        pred = answer_lib.extract_answer(response)
        if pred is None:
            verdict = Verdict(0.0, "no_answer")
        else:
            truth = answer_lib.extract_boxed(ground_truth) or ground_truth
            verdict = _compare(pred, truth.strip(), timeout)
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
