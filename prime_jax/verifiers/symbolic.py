"""Symbolic answer equivalence (math-verify + sympy) in a killable worker process.

`SymbolicWorker` keeps one long-lived child process (`python -m prime_jax.verifiers.symbolic`)
that imports sympy once and answers one JSON request per line. The parent waits for each answer
with a wall-clock deadline; on a timeout it kills the child's whole process group (a runaway
sympy call cannot be interrupted any other way) and starts a fresh child on the next request.
The child caps its own address space and dies with its parent (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import atexit
import json
import os
import pathlib
import re
import select
import signal
import subprocess
import sys
import threading
import time

_PACKAGE_PARENT = str(pathlib.Path(__file__).resolve().parents[2])
_WORKER_CODE = (
    "import sys; sys.path.insert(0, {path!r}); "
    "from prime_jax.verifiers.symbolic import worker_main; worker_main({memory})"
)


class SymbolicWorker:
    """Client for one symbolic-equivalence child process; thread-safe (one request at a time)."""

    def __init__(self, *, memory_bytes: int = 4 << 30, startup_timeout: float = 120.0) -> None:
        self.memory_bytes = memory_bytes
        self.startup_timeout = startup_timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._buffer = b""
        atexit.register(self.close)

    def _start(self) -> None:
        code = _WORKER_CODE.format(path=_PACKAGE_PARENT, memory=self.memory_bytes)
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        self._buffer = b""
        try:
            ready = self._read_line(self.startup_timeout) == b"ready"
        except EOFError:
            ready = False
        if not ready:
            self.close()
            raise RuntimeError("symbolic worker failed to start")

    def _read_line(self, timeout: float) -> bytes | None:
        """Reads one line from the child; None on timeout; raises EOFError if the child died."""
        deadline = time.monotonic() + timeout
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError("symbolic worker exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def equivalent(self, pred: str, truth: str, timeout: float,
                   decimal: bool = False) -> tuple[bool, str]:
        """(equal?, status) with status "ok", "timeout" or "crash"; never raises.

        With `decimal`, `truth` is a plain decimal and the answer is whether the value of `pred`
        is close to it (`numerically_close`)."""
        with self._lock:
            try:
                if self._proc is None or self._proc.poll() is not None:
                    self._start()
                request = json.dumps(
                    {"pred": pred, "truth": truth, "decimal": decimal}).encode() + b"\n"
                self._proc.stdin.write(request)
                self._proc.stdin.flush()
                line = self._read_line(timeout)
            except (OSError, RuntimeError, ValueError, EOFError):
                self.close()
                return False, "crash"
            if line is None:
                self.close()
                return False, "timeout"
            try:
                return bool(json.loads(line)["equal"]), "ok"
            except (ValueError, KeyError):
                self.close()
                return False, "crash"

    def close(self) -> None:
        """Kills the child and its process group (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        proc.wait()


# ----------------------------------------------------------------------------- child side


def _limit_self(memory_bytes: int) -> None:
    import ctypes
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:  # PR_SET_PDEATHSIG = 1: die with the parent.
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


# Decimal places math-verify rounds floats to; 10 makes a decimal equal only to (virtually) its
# own value, as the in-process number rules do (math-verify's default is 6).
FLOAT_ROUNDING = 10
# Numbers and one-letter names of an answer, each varied once by `reads_every_part`.
_PART_RE = re.compile(r"\d+|(?<![\\a-zA-Z])[a-zA-Z](?![a-zA-Z])")
MAX_PARTS = 24


def _parse(answer: str) -> list:
    import math_verify

    return math_verify.parse("\\boxed{" + answer + "}", parsing_timeout=None)


def _first(parsed: list):
    return parsed[0] if parsed else None


def reads_every_part(answer: str, parse=None) -> bool:
    """Whether changing any one number (its last digit) or one-letter name of `answer` changes
    what `parse` (math-verify's by default) reads. A parser that keeps only a fragment reads
    `3 \\lor 4`, `3 \\to 4` or `3 \\\\ 4` as 4, so the 3 could be any hedge; such a partial
    read is refused, as is an answer with more than `MAX_PARTS` parts to try."""
    parse = parse or (lambda text: _first(_parse(text)))
    parts = list(_PART_RE.finditer(answer))
    unused = next((c for c in "qzQZwW" if c not in answer), None)
    if len(parts) > MAX_PARTS or unused is None:
        return False
    original = parse(answer)
    for part in parts:
        token = part.group()
        changed = token[:-1] + str((int(token[-1]) + 1) % 10) if token.isdigit() else unused
        try:
            if parse(answer[:part.start()] + changed + answer[part.end():]) == original:
                return False
        except Exception:  # noqa: BLE001 - a variant that does not parse is a changed read
            continue
    return True


def numerically_close(pred: str, truth: str) -> bool:
    """Whether the value of `pred` (LaTeX, no free symbols) is `numbers.close_to_decimal` the
    decimal `truth`, reading every part of `pred`. Unbounded: call only inside the worker."""
    from fractions import Fraction

    import sympy

    from prime_jax.verifiers import numbers

    parsed = _parse(pred)
    if not parsed or not isinstance(parsed[0], sympy.Expr) or parsed[0].free_symbols:
        return False
    value = sympy.N(parsed[0], 30)
    if not value.is_real:
        return False
    close = numbers.close_to_decimal(Fraction(str(value)), numbers.parse_number(truth))
    return close and reads_every_part(pred)


def sympy_equivalent(pred: str, truth: str) -> bool:
    """math-verify first (intervals, sets, matrices, equations, units); plain latex2sympy +
    `simplify(a - b) == 0` when math-verify could not parse one side; either way only when the
    parser read every part of `pred` (`reads_every_part`). Unbounded: call only inside the
    worker."""
    import math_verify

    gold, target = _parse(truth), _parse(pred)
    if gold and target:
        equal = math_verify.verify(gold, target, float_rounding=FLOAT_ROUNDING,
                                   timeout_seconds=None)
        return bool(equal) and reads_every_part(pred)
    import sympy
    from latex2sympy2_extended import latex2sympy

    difference = sympy.simplify(latex2sympy(pred) - latex2sympy(truth))
    return bool(difference == 0) and reads_every_part(pred, latex2sympy)


def worker_main(memory_bytes: int) -> None:
    """Serves JSON-line requests {"pred", "truth", "decimal"} -> {"equal"} until stdin
    closes."""
    _limit_self(memory_bytes)
    import math_verify  # noqa: F401  (import once, before saying ready)

    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request.get("decimal"):
                equal = numerically_close(request["pred"], request["truth"])
            else:
                equal = sympy_equivalent(request["pred"], request["truth"])
        except Exception:  # noqa: BLE001 - any parser/sympy failure means "not shown equal"
            equal = False
        out.write(json.dumps({"equal": equal}) + "\n")
        out.flush()
