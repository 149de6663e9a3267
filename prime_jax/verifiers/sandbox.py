"""Runs untrusted code on test inputs in a sandbox that fails closed.

`run_tests` starts `_harness.py` inside a sandbox, gives it only the inputs (never the expected
outputs), reads its per-test reports, enforces the overall wall-clock limit and afterwards kills
whatever is left. Two backends give the same guarantees; "auto" takes the first that works:

- "bwrap": bubblewrap (`apt-get install bubblewrap`), run as `bwrap --unshare-{pid,net,ipc,uts,
  cgroup} --die-with-parent --new-session --clearenv ...`.
- "builtin": `_minroot.py`, the same layers made with unshare(2), mount(2) and pivot_root(2);
  needs root with CAP_SYS_ADMIN, CAP_SETUID and CAP_SETGID.

Guarantees of both, per answer (one `run_tests` call):
- a private minimal root filesystem: the base interpreter, its standard library (site-packages
  hidden under an empty read-only tmpfs) and the shared libraries it links, all read-only; a
  size-capped tmpfs at /tmp (the work directory, `disk_bytes`) and /dev/shm; a /dev with null,
  zero, full, random, urandom; a /proc of its own PID namespace (/proc/sys read-only). Training
  data, the virtual environment, host sockets and world-writable directories do not exist there,
  and nothing it writes outlives the run.
- a PID namespace: the code sees only its own processes (so it cannot signal the trainer, root or
  not), and ending the sandbox's first process ends every process in it.
- a network namespace with no interface up: nothing, not even 127.0.0.1 or abstract unix
  sockets of the host, is reachable.
- per-answer caps in a fresh cgroup (`cgroups.py`): memory (all processes together, tmpfs, memfd
  and shared memory included, no swap) and processes; plus per-process rlimits, a per-test CPU
  and wall limit and an output cap. oom_score_adj 1000 makes the sandbox the OOM killer's first
  choice.
- a dedicated unprivileged uid per run when the caller is root (no capabilities,
  PR_SET_NO_NEW_PRIVS), never one of a host account or a /etc/subuid range. A non-root caller
  can use bwrap only (the code then keeps the caller's uid inside a user namespace) and needs a
  cgroup it may write.
- a seccomp filter (`seccomp.py`) in every test process: keyrings, ptrace, bpf, userfaultfd,
  perf_event_open, mount and namespace calls, modules, reboot, io_uring and IPC objects that
  would outlive a test are refused; a process that cannot install it runs no code.
- independent tests (`_harness.py`, `_zygote.py`): each test process is forked from a zygote
  that never held a test input, starts with empty /tmp and /dev/shm and no process of an earlier
  test, and its record is decided by the harness from what it observed (exit status, signal,
  clocks, stdout), never from anything the code wrote about itself.
- the caller's work is linear in the output, which is capped per test and per answer.

Not covered: CPU time is limited per test, not shared fairly between answers; an empty cgroup
directory can stay behind if the verifying process itself is killed mid-run; the kernel's
remaining system calls (the filter is a deny list) and kernel bugs behind them.

Fail closed: `resolve(name)` checks every layer (tool present, privileges, cgroups) and then runs
a self-test in the sandbox (uid, PID namespace, network, root filesystem) before any answer runs.
If a layer is missing it raises `SandboxUnavailable` naming the capability and the fix; nothing
is run with less isolation. The only way to run code without these guarantees is to name
`INSECURE` ("insecure-no-isolation") as the backend (argument or the PRIME_JAX_SANDBOX
environment variable); its reports carry `insecure=True` and the code verifier says so in every
verdict.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import platform
import select
import signal
import socket
import subprocess
import tempfile
import time

from prime_jax.verifiers import cgroups, seccomp
from prime_jax.verifiers.backends import (  # noqa: F401 - re-exported: the sandbox's public names
    BACKENDS_BY_NAME, INSECURE, PACKAGES, PACKAGES_DIR, SANDBOX_UID_BASE, WORKDIR, ZYGOTE_SOURCE,
    Backend, Builtin, Bwrap, Insecure, Layout, SandboxLimits, SandboxUnavailable, _environment,
    _filter, layout)

ENV_VAR = "PRIME_JAX_SANDBOX"
BACKENDS = ("bwrap", "builtin")
_LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class SandboxReport:
    """Per-test records from the harness (None where a test never reported) and run facts."""

    tests: list[dict | None]
    isolation: dict
    timed_out: bool = False
    error: str = ""
    leftover_processes: int = 0
    insecure: bool = False


# ---------------------------------------------------------------------------- fail closed
SELF_TEST = """
import ctypes, socket
port, add_key = map(int, input().split())
sock = socket.socket()
sock.settimeout(2)
try:
    sock.connect(("127.0.0.1", port))
    print("connected")
except OSError as error:
    print("refused", error.errno)
libc = ctypes.CDLL(None, use_errno=True)
print(libc.syscall(add_key, b"user", b"probe", b"x", 1, -4), ctypes.get_errno())
"""


def self_test(backend: Backend) -> list[str]:
    """Runs a probe in `backend`'s sandbox; the layers it shows missing (empty if none).
    The probe tries to reach a TCP listener opened here on 127.0.0.1."""
    try:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]
            add_key = seccomp.SYSCALLS["add_key"][("x86_64", "aarch64").index(
                platform.machine())]
            report = run_tests(SELF_TEST, [f"{port} {add_key}"], test_timeout=10.0,
                               backend=backend)
        facts, record, error = report.isolation, report.tests[0], report.error
    except SandboxUnavailable as failure:
        facts, record, error = {}, None, str(failure)
    if not facts or record is None:
        return [f"{backend.name} sandbox start: it failed ({error.strip()[-500:]}); "
                "fix: the message above names the refused operation (usually CAP_SYS_ADMIN "
                "or user namespaces are not allowed in this container)"]
    problems = []
    if os.geteuid() == 0 and facts["uid"] == 0:
        problems.append("dedicated uid: the code still runs as root")
    if facts["visible_processes"] > 3 or facts["pid"] > 3:
        problems.append(f"PID namespace: the code sees {facts['visible_processes']} processes")
    lines = record["stdout"].splitlines() + ["", ""]
    if not lines[0].startswith("refused"):
        problems.append("network namespace: the code reached a listener on 127.0.0.1")
    if lines[1].split()[:1] != ["-1"]:
        problems.append(f"seccomp filter: add_key was not refused ({record['status']}: "
                        f"{lines[1] or record['error']})")
    expected_roots = {"dev", "proc", WORKDIR.strip("/")} | {
        path.split("/")[1] for path in layout().readonly} | {
        target.split("/")[1] for _, target in layout().packages}
    if extra := set(facts["root_entries"]) - expected_roots:
        problems.append(f"private root filesystem: the code sees /{', /'.join(sorted(extra))}")
    return [f"{problem}; fix: use another backend or report this machine" for problem in problems]


def probe(name: str) -> Backend:
    """The backend called `name` (or the first working one for "auto"), checked now; raises
    SandboxUnavailable listing every missing layer with its fix."""
    if name == "auto":
        reasons = []
        for candidate in BACKENDS:
            try:
                return probe(candidate)
            except SandboxUnavailable as error:
                reasons.append(str(error))
        raise SandboxUnavailable("no code sandbox can run here; the verifier refuses to run "
                                 "untrusted code without one.\n" + "\n".join(reasons) +
                                 f"\n(Only to run code with NO isolation, set {ENV_VAR}="
                                 f"{INSECURE}.)")
    if name not in BACKENDS_BY_NAME:
        raise ValueError(f"unknown sandbox backend {name!r}; one of auto, "
                         f"{', '.join(BACKENDS_BY_NAME)}")
    backend = BACKENDS_BY_NAME[name]()
    missing = backend.missing() or (self_test(backend) if backend.isolated else [])
    if missing:
        raise SandboxUnavailable(f"sandbox backend {name!r} unavailable:\n  - " +
                                 "\n  - ".join(missing))
    if not backend.isolated:
        _LOG.warning("code sandbox %r: untrusted code runs WITHOUT isolation", name)
    return backend


@functools.lru_cache(maxsize=None)
def resolve(name: str | None = None) -> Backend:
    """`probe(name)` once per process; None means $PRIME_JAX_SANDBOX, else "auto"."""
    return probe(name or os.environ.get(ENV_VAR) or "auto")


# ---------------------------------------------------------------------------- one run
def _exchange(proc: subprocess.Popen, messages: bytes, deadline: float,
              cap_bytes: int) -> tuple[bytes, bytes, bool]:
    """Feeds `messages` to stdin and collects stdout and stderr until exit or the deadline.
    Each stream keeps at most `cap_bytes` (the rest is read and dropped), in linear time."""
    out, err = proc.stdout.fileno(), proc.stderr.fileno()
    data, readers = {out: bytearray(), err: bytearray()}, {out, err}
    writer, pending = proc.stdin, memoryview(messages)
    timed_out = False
    while readers:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        writable = [writer] if writer is not None else []
        ready_r, ready_w, _ = select.select(list(readers), writable, [], min(remaining, 0.1))
        if ready_w:
            try:
                pending = pending[os.write(writer.fileno(), pending[:1 << 16]):]
            except BrokenPipeError:
                pending = pending[:0]
            if not pending:
                writer.close()
                writer = None
        for fd in ready_r:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                readers.discard(fd)
            elif len(data[fd]) < cap_bytes:
                data[fd] += chunk[:cap_bytes - len(data[fd])]
    return bytes(data[out]), bytes(data[err]), timed_out


def _message(payload: dict) -> bytes:
    """One harness message: its JSON size in 12 ASCII digits, then the JSON."""
    body = json.dumps(payload).encode()
    return b"%012d" % len(body) + body


def _spawn(backend: Backend, limits: SandboxLimits, cgroup: cgroups.AnswerCgroup | None,
           cwd: str) -> subprocess.Popen:
    """Starts the sandbox; a shell joins the cgroup and raises oom_score_adj, then execs it."""
    join = cgroup.procs_files if cgroup else []
    script = ('n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 71; shift; '
              'n=$((n-1)); done; echo 1000 > /proc/self/oom_score_adj; exec "$@"')
    argv = ["/bin/sh", "-c", script, "sh", str(len(join)), *join, *backend.command(limits)]
    return subprocess.Popen(argv, cwd=cwd, env=_environment(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def _as_test(value, mode: str) -> dict:
    if mode == "call":
        return {"args": value if isinstance(value, list) else [value]}
    return {"stdin": value if isinstance(value, str) else ""}


def run_tests(code: str, inputs: list, *, mode: str = "stdio", fn_name: str | None = None,
              test_timeout: float = 4.0, total_timeout: float | None = None,
              limits: SandboxLimits = SandboxLimits(),
              backend: Backend | str | None = None) -> SandboxReport:
    """Runs `code` once per input in the sandbox; never raises for anything the code does.

    mode "stdio": each input (a string) is the program's stdin; records carry "stdout".
    mode "call": each input is the argument list of `fn_name` (a function, or a method of
    `class Solution`); records carry "result" (JSON-normalised). `backend`: a Backend, a name, or
    None for `resolve()`; raises SandboxUnavailable when no sandbox can be set up."""
    if not isinstance(backend, Backend):
        backend = resolve(backend)
    if total_timeout is None:
        total_timeout = test_timeout * max(1, len(inputs)) + 5.0
    cwd = tempfile.mkdtemp(prefix="prime_sandbox_") if not backend.isolated else "/"
    settings = {"code": code, "mode": mode, "fn_name": fn_name,
                "workdir": WORKDIR if backend.isolated else cwd,
                "wipe_dirs": [WORKDIR, "/dev/shm"] if backend.isolated else [cwd],
                "test_timeout": test_timeout, "uid": backend.sandbox_uid(),
                "cpu_seconds": max(1, int(min(limits.cpu_seconds, test_timeout + 1))),
                "limits": dataclasses.asdict(limits), "seccomp_hex": _filter().hex(),
                "packages_dir": PACKAGES_DIR if backend.isolated else None,
                "zygote_source": ZYGOTE_SOURCE}
    messages = _message(settings) + _message(
        {"tests": [_as_test(value, mode) for value in inputs]})
    cgroup = proc = None
    raw = stderr = b""
    timed_out = False
    try:
        if backend.isolated:
            cgroup = cgroups.AnswerCgroup(limits.memory_bytes, limits.max_processes)
        proc = _spawn(backend, limits, cgroup, cwd)
        # JSON escapes at most 6 bytes per output byte; records and facts add a little each.
        cap = 6 * limits.max_total_output_bytes + 8192 * (len(inputs) + 8)
        raw, stderr, timed_out = _exchange(proc, messages, time.monotonic() + total_timeout,
                                           cap)
    except OSError as error:
        raise SandboxUnavailable(f"sandbox {backend.name!r} could not start: {error}") from error
    finally:
        leftovers = _cleanup(proc, cgroup)
        if not backend.isolated:
            subprocess.run(["rm", "-rf", "--", cwd], check=False)
    report = _parse_report(raw, stderr, len(inputs), timed_out, leftovers)
    report.isolation["backend"] = backend.name
    report.insecure = not backend.isolated
    return report


def _cleanup(proc: subprocess.Popen | None, cgroup: cgroups.AnswerCgroup | None) -> int:
    """Kills the sandbox's first process (its namespace goes with it), then every member of
    its cgroup, and removes the cgroup; returns how many processes the cgroup still held."""
    if proc is not None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    return cgroup.destroy() if cgroup is not None else 0


_RECORD_TYPES = {"index": int, "status": str, "stdout": str, "error": str, "truncated": bool}


def _parse_report(raw: bytes, stderr: bytes, n_tests: int, timed_out: bool,
                  leftovers: int) -> SandboxReport:
    """The isolation line, then record i on line i + 1 (a record out of place, of the wrong
    shape, or after a line that was not one ends the report: later tests count as missing)."""
    tests: list[dict | None] = [None] * n_tests
    lines = raw.decode(errors="replace").split("\n")
    try:
        isolation = json.loads(lines[0])["isolation"]
    except (ValueError, KeyError, TypeError):
        isolation = {}
    for index, line in enumerate(lines[1:n_tests + 1] if isolation else []):
        try:
            record = json.loads(line)
        except ValueError:
            break
        if not isinstance(record, dict) or record.get("index") != index or not all(
                isinstance(record.get(key), kind) for key, kind in _RECORD_TYPES.items()):
            break
        tests[index] = record
    error = stderr.decode(errors="replace")[-2000:] if not isolation else ""
    return SandboxReport(tests=tests, isolation=isolation, timed_out=timed_out, error=error,
                         leftover_processes=leftovers)
