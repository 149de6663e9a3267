"""Rule-based code outcome verifier: run the response's last Python block on the tests.

Tests are a JSON string {"inputs": [...], "outputs": [...], optional "fn_name"}, graded like the
APPS / TACO / LiveCodeBench / PRIME harnesses:
- Without `fn_name` each input is stdin (a list joins by lines; null is empty stdin) and the
  output the expected stdout, compared line by line (trailing whitespace and blank edges
  ignored), else token by token: integers exactly, and only where the expected token is a
  non-integer decimal, decimals within a relative 1e-6 (nan and inf never match a number).
- With `fn_name` the solution's `fn_name` (a method of `class Solution`, else a function) is
  called; an input is the argument list (APPS/TACO) or one string of JSON lines, one value per
  argument, with a JSON output string (LiveCodeBench). Results compare JSON-normalised and
  structurally, a non-integral expected float within the same relative 1e-6 (`values_equal`).
- The solution runs with the references' prelude (`from typing import *`, collections, math,
  itertools, heapq, bisect, functools, string, re, ... and their names, then the builtins again,
  so `pow(a, b, m)` is the builtin; `exit()` / `quit()`; a raised recursion limit), so
  LeetCode-style answers need no imports; numpy and sortedcontainers import where installed.
A verdict's reason names the first failing test and why (its error type and message, bounded,
or "wrong answer"; never the expected output). Reward (`reward`): 1.0 iff every test passes; otherwise PRIME's partial credit, the passes among
the first k = min(n, 10) tests over k, capped at (k - 1) / k. Deliberate difference from PRIME:
there, an answer passing the first 10 tests and failing a later one scores 1.0; here (k-1)/k,
so a failing answer never scores 1.0.

Everything runs in `sandbox.run_tests` (see its guarantees). Without a working sandbox no code
runs: the verdict is "error" with the sandbox's message. Malformed tests, timeouts and crashes
score 0, are counted in `STATS` (ability "code") and logged; nothing here raises.
"""

from __future__ import annotations

import json
import logging
import math
import re

from prime_jax.verifiers import sandbox
from prime_jax.verifiers.stats import FAILURE_STATUSES, Verdict, VerifierStats

DEFAULT_TIMEOUT = 4.0  # seconds of wall time per test
MAX_TESTS_FOR_FULL_CREDIT = 10
MAX_TOTAL_SECONDS = 90.0  # wall limit for all tests of one response
FLOAT_TOLERANCE = 1e-6
MAX_REASON_ERROR_CHARS = 200  # of the first failing test's error in a verdict's reason
STATS = VerifierStats()
_LOG = logging.getLogger(__name__)
_FENCE_RE = re.compile(r"```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)
_INT_RE = re.compile(r"[+-]?\d+")
_DECIMAL_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


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
    """A stdin/stdout value as text: lists join by lines; null (None) is empty."""
    if value is None:
        return ""
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def _is_integer(token: str) -> bool:
    return _INT_RE.fullmatch(token) is not None


def _canonical_integer(token: str) -> str:
    """An integer token without "+" and leading zeros (no int(): tokens may be huge)."""
    digits = token.lstrip("+-").lstrip("0") or "0"
    return "-" + digits if token.startswith("-") and digits != "0" else digits


def tokens_equal(got: str, want: str) -> bool:
    """One output token against the expected one: identical text; equal integers (exactly);
    or, when the expected token is a finite non-integer decimal, a finite decimal within
    FLOAT_TOLERANCE (relative, absolute below 1). nan / inf never match another spelling."""
    if got == want:
        return True
    if _is_integer(want):
        return _is_integer(got) and _canonical_integer(got) == _canonical_integer(want)
    if not (_DECIMAL_RE.fullmatch(want) and _DECIMAL_RE.fullmatch(got)):
        return False
    x, y = float(got), float(want)
    return math.isfinite(x) and math.isfinite(y) and \
        abs(x - y) <= FLOAT_TOLERANCE * max(1.0, abs(y))


def stdout_matches(got: str, expected) -> bool:
    """Line-wise equality ignoring trailing whitespace and blank edges, else token-wise
    (`tokens_equal`) over all whitespace-separated tokens."""
    got_lines = [line.rstrip() for line in got.strip().splitlines()]
    want_lines = [line.rstrip() for line in _as_text(expected).strip().splitlines()]
    if got_lines == want_lines:
        return True
    got_tokens, want_tokens = " ".join(got_lines).split(), " ".join(want_lines).split()
    return len(got_tokens) == len(want_tokens) and all(map(tokens_equal, got_tokens,
                                                           want_tokens))


def _normalise(value):
    return json.loads(json.dumps(value, default=repr))


def values_equal(got, expected) -> bool:
    """Structural equality of JSON values: same shape and dict keys; other values with Python's
    ``==`` (as the reference graders compare), except that a float ``expected`` that is not
    integral accepts a finite number within FLOAT_TOLERANCE (relative, absolute below 1) - the
    stdout rule applied to returned values - and a nan or inf ``expected`` matches nothing."""
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and \
            all(values_equal(g, e) for g, e in zip(got, expected))
    if isinstance(expected, dict):
        return isinstance(got, dict) and got.keys() == expected.keys() and \
            all(values_equal(got[k], expected[k]) for k in expected)
    if isinstance(expected, float) and not isinstance(got, bool) and isinstance(got, (int, float)):
        if not (math.isfinite(expected) and math.isfinite(got)):
            return False
        if expected.is_integer():
            return got == expected
        return abs(got - expected) <= FLOAT_TOLERANCE * max(1.0, abs(expected))
    return got == expected


def result_matches(got, expected) -> bool:
    """JSON-normalised equality (tuples == lists) under ``values_equal``; a one-element list
    wrapping the expected value (the APPS/TACO convention) also matches."""
    got, expected = _normalise(got), _normalise(expected)
    if values_equal(got, expected):
        return True
    return isinstance(expected, list) and len(expected) == 1 and values_equal(got, expected[0])


def call_case(value, expected) -> tuple[list, object]:
    """(argument list, expected result) of one call-based test. APPS/TACO: the input is the
    argument list and the output the value. LiveCodeBench: the input is one string of JSON
    lines (one value per argument) and the output a JSON string."""
    if not isinstance(value, str):
        return (value if isinstance(value, list) else [value]), expected
    try:
        args = [json.loads(line) for line in value.split("\n") if line.strip()]
    except ValueError:
        return [value], expected
    if isinstance(expected, str):
        try:
            expected = json.loads(expected)
        except ValueError:
            pass
    return args, expected


def reward(passed: list[bool]) -> float:
    """1.0 iff every test passed. Otherwise PRIME's partial credit - passes among the first
    k = min(n, 10) tests over k - capped at (k - 1) / k, so a failing answer never gets 1.0."""
    if all(passed):
        return 1.0
    k = min(len(passed), MAX_TESTS_FOR_FULL_CREDIT)
    return min(sum(passed[:k]), k - 1) / k


def _failure(index: int, record: dict | None) -> str:
    """Why test `index` failed, from the harness's record: its status and the error type and
    message (bounded), or "wrong answer"; never the expected output."""
    if record is None:
        return f"test {index}: no report (the sandbox ended before it)"
    if record["status"] == "ok":
        return f"test {index}: wrong answer" + (" (output truncated)" if record["truncated"]
                                                else "")
    return f"test {index}: {record['status']}: {record['error'][:MAX_REASON_ERROR_CHARS]}"


def _score(report: sandbox.SandboxReport, outputs: list, fn_name: str | None) -> Verdict:
    passed, statuses = [], set()
    for record, expected in zip(report.tests, outputs):
        statuses.add("missing" if record is None else record["status"])
        ok = record is not None and record["status"] == "ok" and (
            result_matches(record["result"], expected) if fn_name
            else stdout_matches(record["stdout"], expected))
        passed.append(ok)
    if not report.isolation:
        return Verdict(0.0, "crash", f"sandbox failed to start: {report.error[-300:]}")
    if all(passed):
        status = "pass"
    elif report.timed_out or "timeout" in statuses:
        status = "timeout"
    else:
        status = "fail"
    reason = f"{sum(passed)}/{len(passed)} passed"
    if not all(passed):
        first = passed.index(False)
        reason += f"; first failure {_failure(first, report.tests[first])}"
    if report.insecure:
        reason = f"INSECURE: code ran without a sandbox ({sandbox.INSECURE}); {reason}"
    return Verdict(reward(passed), status, reason)


def _run(code: str, inputs: list, outputs: list, fn_name: str | None, timeout: float,
         limits: sandbox.SandboxLimits, backend: str | None) -> Verdict:
    """Runs the tests in the sandbox and scores them."""
    if fn_name is None:
        inputs = [_as_text(value) for value in inputs]
    else:
        inputs, outputs = map(list, zip(*map(call_case, inputs, outputs)))
    report = sandbox.run_tests(code, inputs, mode="call" if fn_name else "stdio",
                               fn_name=fn_name, test_timeout=timeout, limits=limits,
                               total_timeout=min(timeout * len(inputs) + 5.0, MAX_TOTAL_SECONDS),
                               backend=backend)
    return _score(report, outputs, fn_name)


def verify_detailed(response: str, tests_json: str, *, timeout: float = DEFAULT_TIMEOUT,
                    limits: sandbox.SandboxLimits = sandbox.SandboxLimits(),
                    backend: str | None = None) -> Verdict:
    """Like `verify`, returning the `Verdict`; also counts it in STATS. `backend` names the
    sandbox (None: `sandbox.resolve()`); without a working one the verdict is "error" / 0."""
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
                verdict = _run(code, inputs, outputs, fn_name, timeout, limits, backend)
            except sandbox.SandboxUnavailable as error:
                verdict = Verdict(0.0, "error", f"code not run: {error}"[:2000])
            except Exception as error:  # noqa: BLE001 - a verifier bug must not crash training
                verdict = Verdict(0.0, "error", repr(error)[:300])
    STATS.record("code", verdict.status)
    if verdict.status in FAILURE_STATUSES:
        _LOG.warning("code verification %s: %s", verdict.status, verdict.reason)
    return verdict


def verify(response: str, tests_json: str, *, timeout: float = DEFAULT_TIMEOUT,
           backend: str | None = None) -> float:
    """Reward in [0, 1] for the last Python block of `response` on `tests_json` (see module doc).

    `timeout` is the wall-clock limit per test; the whole run is bounded by
    min(n * timeout + 5, MAX_TOTAL_SECONDS) seconds."""
    return verify_detailed(response, tests_json, timeout=timeout, backend=backend).score
