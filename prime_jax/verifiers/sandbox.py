"""Runs untrusted code on test inputs in an isolated, time- and resource-limited process.

`run_tests` launches `_harness.py` with `python -I` in a new session and a throw-away working
directory, gives it only the inputs (never the expected outputs), streams its per-test reports
over a pipe, enforces the overall wall-clock limit, and afterwards kills every process the code
left behind (process group, then every process of the sandbox uid) and removes the directory.

Guarantees when the caller is root (the harness reports which layers held, `isolation`):
a dedicated unprivileged uid per run (`uid=None`), so the code cannot signal the caller or other
sandboxes, nor write root-owned files; a private network namespace (no network at all); a private
mount namespace in which /tmp, /var/tmp, /dev/shm, ... are read-only; rlimits on CPU, address
space, processes (counted per uid, hence per run), file size and open files; no new privileges.
Without root: rlimits, session, wall limit, temp dir and subreaper clean-up always hold; the
network namespace holds where unprivileged user namespaces are allowed; the code then runs as the
caller's uid, so file and signal isolation from the caller do NOT hold.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import pathlib
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HARNESS = str(pathlib.Path(__file__).with_name("_harness.py"))
SANDBOX_UID_BASE = 1_000_000  # uid = base + pid * 64 + counter: unique among live runs
READONLY_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock", "/dev/mqueue")
_counter = itertools.count()
_counter_lock = threading.Lock()


@dataclasses.dataclass(frozen=True, kw_only=True)
class SandboxLimits:
    """Per-process resource limits inside the sandbox (the wall time is set per call)."""

    cpu_seconds: int = 10
    memory_bytes: int = 1 << 30
    max_processes: int = 32
    max_file_bytes: int = 16 << 20
    max_open_files: int = 64
    max_output_bytes: int = 1 << 20


@dataclasses.dataclass
class SandboxReport:
    """Per-test records from the harness (None where a test never reported) and run facts."""

    tests: list[dict | None]
    isolation: dict
    timed_out: bool = False
    error: str = ""
    leftover_processes: int = 0


def _world_accessible(path: str) -> bool:
    """True if every ancestor directory is world-searchable and the file world-readable."""
    path = os.path.realpath(path)
    if not os.stat(path).st_mode & 0o004:
        return False
    parent = os.path.dirname(path)
    while True:
        if not os.stat(parent).st_mode & 0o001:
            return False
        if parent == "/":
            return True
        parent = os.path.dirname(parent)


@functools.lru_cache(maxsize=None)
def sandbox_python() -> str:
    """An interpreter the unprivileged sandbox uid can read (the venv's may sit under /root)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}",
                  "/usr/bin/python3", "/usr/local/bin/python3"]
    if os.geteuid() != 0:
        return sys.executable
    for candidate in candidates:
        try:
            real = os.path.realpath(candidate)
            stdlib = os.path.dirname(os.__file__) if candidate == sys.executable else None
            if _world_accessible(real) and (stdlib is None or _world_accessible(stdlib)):
                return real
        except OSError:
            continue
    return sys.executable


def _allocate_uid() -> int:
    with _counter_lock:
        return SANDBOX_UID_BASE + os.getpid() * 64 + next(_counter) % 64


def _uid_processes(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                for line in status:
                    if line.startswith("State:") and line.split()[1] in ("Z", "X"):
                        break  # already dead, waiting to be reaped by its new parent
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry))
                        break
        except (OSError, ValueError):
            continue
    return pids


def kill_uid(uid: int, attempts: int = 200) -> int:
    """SIGKILLs every process whose real uid is `uid` until none is left; returns how many
    were found on the first sweep."""
    first = None
    for _ in range(attempts):
        pids = _uid_processes(uid)
        first = len(pids) if first is None else first
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.005)
    return first or 0


def _read_report(proc: subprocess.Popen, report_fd: int, deadline: float,
                 cap_bytes: int) -> tuple[bytes, bytes, bool]:
    """Collects the report and stderr until the harness exits or the deadline passes."""
    data = {report_fd: b"", proc.stderr.fileno(): b""}
    open_fds = set(data)
    while open_fds:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return data[report_fd], data[proc.stderr.fileno()], True
        for fd in select.select(list(open_fds), [], [], min(remaining, 0.1))[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                open_fds.discard(fd)
            elif len(data[fd]) < cap_bytes:
                data[fd] += chunk
        if proc.poll() is not None and not select.select(list(open_fds), [], [], 0)[0]:
            break
    return data[report_fd], data[proc.stderr.fileno()], False


def run_tests(code: str, inputs: list, *, mode: str = "stdio", fn_name: str | None = None,
              test_timeout: float = 4.0, total_timeout: float | None = None,
              limits: SandboxLimits = SandboxLimits(), uid: int | None = None) -> SandboxReport:
    """Runs `code` once per input in the sandbox; never raises for anything the code does.

    mode "stdio": each input (a string) is the program's stdin; records carry "stdout".
    mode "call": each input is the argument list of `fn_name` (a function, or a method of
    `class Solution`); records carry "result" (JSON-normalised). `uid` None = a fresh dedicated
    uid (when root); pass 65534 to run as `nobody` instead."""
    if total_timeout is None:
        total_timeout = test_timeout * max(1, len(inputs)) + 5.0
    root = os.geteuid() == 0
    run_uid = (uid if uid is not None else _allocate_uid()) if root else None
    workdir = tempfile.mkdtemp(prefix="prime_sandbox_")
    config = {"code": code, "inputs": inputs, "mode": mode, "fn_name": fn_name,
              "workdir": workdir, "test_timeout": test_timeout,
              "limits": {**dataclasses.asdict(limits),
                         "cpu_seconds": max(1, int(min(limits.cpu_seconds, test_timeout + 1)))},
              "uid": run_uid, "gid": run_uid, "dedicated_uid": root and uid is None,
              "readonly_dirs": [d for d in READONLY_DIRS if os.path.isdir(d)]}
    config_path = os.path.join(workdir, ".config.json")
    with open(config_path, "w") as handle:
        json.dump(config, handle)
    if run_uid is not None:
        os.chown(workdir, run_uid, run_uid)
    os.chmod(workdir, 0o700)
    report_r, report_w = os.pipe()
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
           "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    proc = None
    try:
        proc = subprocess.Popen(
            [sandbox_python(), "-I", HARNESS, config_path, str(report_w)], cwd=workdir,
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, pass_fds=(report_w,), start_new_session=True)
        os.close(report_w)
        report_w = -1
        cap = (limits.max_output_bytes + 4096) * max(1, len(inputs)) + 65536
        raw, stderr, timed_out = _read_report(proc, report_r, time.monotonic() + total_timeout,
                                              cap)
    finally:
        if report_w >= 0:
            os.close(report_w)
        os.close(report_r)
        leftovers = _cleanup(proc, run_uid if config["dedicated_uid"] else None)
        shutil.rmtree(workdir, ignore_errors=True)
    return _parse_report(raw, stderr, len(inputs), timed_out, leftovers)


def _cleanup(proc: subprocess.Popen | None, dedicated_uid: int | None) -> int:
    leftovers = 0
    if proc is not None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        proc.stderr.close()
    if dedicated_uid is not None:
        leftovers = kill_uid(dedicated_uid)
    return leftovers


def _parse_report(raw: bytes, stderr: bytes, n_tests: int, timed_out: bool,
                  leftovers: int) -> SandboxReport:
    tests: list[dict | None] = [None] * n_tests
    isolation: dict = {}
    for line in raw.decode(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a partial last line after a kill
        if "isolation" in record:
            isolation = record["isolation"]
        elif isinstance(record.get("index"), int) and 0 <= record["index"] < n_tests:
            tests[record["index"]] = record
    error = stderr.decode(errors="replace")[-2000:] if not isolation else ""
    return SandboxReport(tests=tests, isolation=isolation, timed_out=timed_out, error=error,
                         leftover_processes=leftovers)
