"""Rule-based code outcome verifier: run the response's last Python block on the tests.

Tests are a JSON string {"inputs": [...], "outputs": [...], optional "fn_name"}. Without
`fn_name` each input is stdin and the output the expected stdout (compared line by line, trailing
whitespace ignored, floats to 1e-6 as a fallback); with it each input is the argument list of
`fn_name` (a function or a method of `class Solution`) and results compare JSON-normalised.
Reward: 1.0 if every test passes, else passed / min(#tests, 10), capped at 1.0. Everything runs in
`sandbox.run_tests`; malformed tests, timeouts and crashes score 0, are counted in `STATS`
(ability "code") and logged; nothing here raises.
"""

from __future__ import annotations

import json
import logging
import re

from prime_jax.verifiers import sandbox
from prime_jax.verifiers.stats import FAILURE_STATUSES, Verdict, VerifierStats

DEFAULT_TIMEOUT = 4.0  # seconds of wall time per test
MAX_TESTS_FOR_FULL_CREDIT = 10
MAX_TOTAL_SECONDS = 90.0  # wall limit for all tests of one response
STATS = VerifierStats()
_LOG = logging.getLogger(__name__)
_FENCE_RE = re.compile(r"```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(response: str) -> str | None:
    """The last ```python (or ```py / ```python3) block, else the last bare ``` block."""
    blocks = _FENCE_RE.findall(response)
    python_blocks = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3")]
    if python_blocks:
        return python_blocks[-1]
    bare = [body for lang, body in blocks if not lang]
    return bare[-1] if bare else None


def parse_tests(tests_json: str) -> tuple[list, list, str | None]:
    """(inputs, outputs, fn_name); raises ValueError with a reason if malformed."""
    tests = json.loads(tests_json) if isinstance(tests_json, str) else tests_json
    if not isinstance(tests, dict):
        raise ValueError("tests must be a JSON object")
    inputs, outputs = tests.get("inputs"), tests.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise ValueError("tests need list fields 'inputs' and 'outputs'")
    if len(inputs) != len(outputs) or not inputs:
        raise ValueError(f"{len(inputs)} inputs vs {len(outputs)} outputs")
    fn_name = tests.get("fn_name") or None
    if fn_name is not None and not isinstance(fn_name, str):
        raise ValueError("fn_name must be a string")
    return inputs, outputs, fn_name


def _as_text(value) -> str:
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def _float_tokens_equal(got: list[str], want: list[str]) -> bool:
    if len(got) != len(want):
        return False
    for a, b in zip(got, want):
        if a == b:
            continue
        try:
            x, y = float(a), float(b)
        except ValueError:
            return False
        if abs(x - y) > 1e-6 * max(1.0, abs(y)):
            return False
    return True


def stdout_matches(got: str, expected) -> bool:
    """Line-wise equality ignoring trailing whitespace and blank edges; float-tolerant tokens."""
    got_lines = [line.rstrip() for line in got.strip().splitlines()]
    want_lines = [line.rstrip() for line in _as_text(expected).strip().splitlines()]
    return got_lines == want_lines or _float_tokens_equal(" ".join(got_lines).split(),
                                                          " ".join(want_lines).split())


def _normalise(value):
    return json.loads(json.dumps(value, default=repr))


def result_matches(got, expected) -> bool:
    """JSON-normalised equality (tuples == lists); a one-element list wrapping the expected
    value (the APPS/TACO convention) also matches."""
    got, expected = _normalise(got), _normalise(expected)
    if got == expected:
        return True
    return isinstance(expected, list) and len(expected) == 1 and got == expected[0]


def _score(report: sandbox.SandboxReport, outputs: list, fn_name: str | None) -> Verdict:
    passed = 0
    statuses = set()
    for record, expected in zip(report.tests, outputs):
        if record is None:
            statuses.add("missing")
            continue
        statuses.add(record["status"])
        if record["status"] != "ok":
            continue
        ok = (result_matches(record["result"], expected) if fn_name
              else stdout_matches(record["stdout"], expected))
        passed += ok
    total = len(outputs)
    score = 1.0 if passed == total else min(1.0, passed / min(total, MAX_TESTS_FOR_FULL_CREDIT))
    if not report.isolation:
        return Verdict(0.0, "crash", f"sandbox failed to start: {report.error[-300:]}")
    if passed == total:
        status = "pass"
    elif report.timed_out or "timeout" in statuses:
        status = "timeout"
    else:
        status = "fail"
    return Verdict(score, status, f"{passed}/{total} passed; statuses {sorted(statuses)}")


def verify_detailed(response: str, tests_json: str, *, timeout: float = DEFAULT_TIMEOUT,
                    limits: sandbox.SandboxLimits = sandbox.SandboxLimits()) -> Verdict:
    """Like `verify`, returning the `Verdict`; also counts it in STATS."""
    try:
        inputs, outputs, fn_name = parse_tests(tests_json)
    except (ValueError, TypeError) as error:
        verdict = Verdict(0.0, "malformed", f"bad tests JSON: {error}"[:300])
    else:
        code = extract_code(response)
        if code is None or not code.strip():
            verdict = Verdict(0.0, "no_answer", "no code block")
        else:
            try:
                if fn_name is None:
                    inputs = [_as_text(value) for value in inputs]
                report = sandbox.run_tests(code, inputs, mode="call" if fn_name else "stdio",
                                           fn_name=fn_name, test_timeout=timeout, limits=limits,
                                           total_timeout=min(timeout * len(inputs) + 5.0,
                                                             MAX_TOTAL_SECONDS))
                verdict = _score(report, outputs, fn_name)
            except Exception as error:  # noqa: BLE001 - a verifier bug must not crash training
                verdict = Verdict(0.0, "error", repr(error)[:300])
    STATS.record("code", verdict.status)
    if verdict.status in FAILURE_STATUSES:
        _LOG.warning("code verification %s: %s", verdict.status, verdict.reason)
    return verdict


def verify(response: str, tests_json: str, *, timeout: float = DEFAULT_TIMEOUT) -> float:
    """Reward in [0, 1] for the last Python block of `response` on `tests_json` (see module doc).

    `timeout` is the wall-clock limit per test; the whole run is bounded by
    min(n * timeout + 5, MAX_TOTAL_SECONDS) seconds."""
    return verify_detailed(response, tests_json, timeout=timeout).score
