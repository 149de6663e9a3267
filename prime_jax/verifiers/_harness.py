"""Sandbox harness: runs untrusted code on each test input, inside the sandbox.

`sandbox.py` starts it as `python -I -S -c <this source>` as the sandbox's first process (or the
first after bubblewrap's init) in a private root filesystem, with the JSON config on stdin and the
report read from stdout. Standard library only: the sandbox holds the interpreter and its stdlib,
nothing else. Before any untrusted code runs it drops to the dedicated uid it is given (when it
starts as root; every capability goes with the uid change), sets PR_SET_NO_NEW_PRIVS, the per
process rlimits (address space, processes, file size, open files, no core files) and
oom_score_adj 1000 (the kernel's OOM killer picks sandboxed code before anything else).

Each test runs in a forked child (stdin from a file, stdout to a capped pipe, stderr discarded,
CPU limit) with the APPS/TACO/LiveCodeBench prelude in its namespace (`from typing import *`, the
usual competitive-programming modules, a raised recursion limit). After each test every other
process the code left is killed (`kill(-1)`: in a PID namespace that is exactly the code's
processes). Report lines: {"isolation": facts} first, then {"index", "status", "stdout",
"result", "error", "truncated"} per test. Expected outputs never enter the sandbox.
"""

import ctypes
import json
import os
import resource
import select
import signal
import sys
import time

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38
PRELUDE_MODULES = ("array bisect collections copy datetime decimal fractions functools heapq io "
                   "itertools json math operator random re statistics string sys typing").split()
STAR_MODULES = ("string re datetime collections heapq bisect copy math random statistics "
                "itertools functools operator typing").split()  # typing last, as the references
RECURSION_LIMIT = 100_000
STACK_BYTES = 256 << 20
LIBC = ctypes.CDLL(None, use_errno=True)


def drop_privileges(config):
    """Becomes the dedicated uid (if started as root) and forbids regaining privileges."""
    if os.geteuid() == 0 and config.get("uid") is not None:
        os.setgroups([])
        os.setgid(config["uid"])
        os.setuid(config["uid"])
        if 0 in (os.getuid(), os.geteuid(), os.getgid(), os.getegid()):
            raise RuntimeError("failed to drop root")
    if LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise RuntimeError("PR_SET_NO_NEW_PRIVS failed")
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # setuid clears it: set it again
    LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def set_limits(limits):
    """Per-process rlimits; the per-answer caps are the sandbox's cgroup and tmpfs sizes."""
    for name, value in (("RLIMIT_AS", limits["memory_bytes"]),
                        ("RLIMIT_NPROC", limits["max_processes"]),
                        ("RLIMIT_FSIZE", limits["max_file_bytes"]),
                        ("RLIMIT_NOFILE", limits["max_open_files"]), ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value))
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass


def isolation_facts():
    """What the code will see: its uid, its pid and how many processes are visible."""
    visible = [entry for entry in os.listdir("/proc") if entry.isdigit()] \
        if os.path.isdir("/proc") else []
    return {"uid": os.getuid(), "pid": os.getpid(), "visible_processes": len(visible),
            "root_entries": sorted(os.listdir("/"))}


def prelude_namespace(mode):
    """The namespace the reference harnesses give a solution: modules and their names."""
    namespace = {"__name__": "__main__" if mode == "stdio" else "solution",
                 "__builtins__": __builtins__}
    for module in PRELUDE_MODULES:
        namespace[module] = __import__(module)
    for module in STAR_MODULES:
        exec(f"from {module} import *", namespace)  # noqa: S102 - trusted prelude
    return namespace


def call_solution(namespace, fn_name, args):
    """Calls `fn_name` as a method of `class Solution` if it has one, else as a function."""
    holder = namespace.get("Solution")
    if isinstance(holder, type) and hasattr(holder, fn_name):
        return getattr(holder(), fn_name)(*args)
    return namespace[fn_name](*args)


def _run_child(config, args, result_fd):
    """Runs in the forked test process; never returns."""
    status, payload, error = "ok", None, ""
    try:
        sys.setrecursionlimit(RECURSION_LIMIT)
        sys.argv = ["solution.py"]
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        namespace = prelude_namespace(config["mode"])
        try:
            exec(compile(config["code"], "solution.py", "exec"), namespace)  # noqa: S102
            if config["mode"] == "call":
                payload = call_solution(namespace, config["fn_name"], args)
        except SystemExit:
            pass
        sys.stdout.flush()
    except BaseException as exc:  # noqa: BLE001 - report any failure of untrusted code
        status, error = "error", f"{type(exc).__name__}: {exc}"[:500]
    try:
        record = json.dumps({"status": status, "result": payload, "error": error},
                            default=lambda o: sorted(o) if isinstance(o, (set, frozenset))
                            else repr(o))
        os.write(result_fd, record.encode()[:1 << 22])
    finally:
        os._exit(0)


def _children():
    """Our direct children (as subreaper, the code's orphans come back to us)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                if int(stat.read().rsplit(b")", 1)[1].split()[1]) == os.getpid():
                    found.append(int(entry))
        except (OSError, IndexError, ValueError):
            pass
    return found


def kill_leftovers(own_pid_namespace):
    """Kills every process the code left, then reaps. In the sandbox's own PID namespace that
    is kill(-1) (everything we may signal but ourselves); outside one (the insecure mode)
    only our descendants, found as children of this subreaper - never kill(-1) there."""
    for _ in range(200):
        targets = [-1] if own_pid_namespace else _children()
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return
        if not targets:
            return
        time.sleep(0.001)


def _start_test(config, stdin_path, args):
    """Forks the test process; returns (pid, stdout read end, result read end)."""
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            cpu = config["cpu_seconds"]
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
            resource.setrlimit(resource.RLIMIT_STACK, (STACK_BYTES, STACK_BYTES))
            os.dup2(os.open(stdin_path, os.O_RDONLY), 0)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            os.dup2(out_w, 1)
            os.dup2(res_w, 3)
            os.closerange(4, 1 << 16)
        finally:
            _run_child(config, args, 3)
    os.close(out_w)
    os.close(res_w)
    return pid, out_r, res_r


def _collect(pid, out_r, res_r, cap, timeout):
    """Reads the test's stdout (capped) and result until it exits or its wall time ends."""
    buffers, open_fds = {out_r: b"", res_r: b""}, {out_r, res_r}
    deadline = time.monotonic() + timeout
    timed_out = truncated = False
    while open_fds:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for fd in select.select(list(open_fds), [], [], min(remaining, 0.05))[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                open_fds.discard(fd)
            elif len(buffers[fd]) < cap:
                buffers[fd] += chunk[:cap - len(buffers[fd])]
            else:
                truncated = True
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            pid = 0
            for fd in select.select(list(open_fds), [], [], 0)[0]:
                buffers[fd] += os.read(fd, cap)[:max(0, cap - len(buffers[fd]))]
            break
    if pid:
        os.kill(pid, signal.SIGKILL)
    return buffers[out_r], buffers[res_r], timed_out, truncated


def run_test(index, config, test):
    """Runs one test ({"stdin": str} or {"args": list}); returns its report record."""
    stdin_path = os.path.join(config["workdir"], ".stdin")
    with open(stdin_path, "w") as handle:
        handle.write(test.get("stdin") or "")
    pid, out_r, res_r = _start_test(config, stdin_path, test.get("args"))
    stdout, result, timed_out, truncated = _collect(
        pid, out_r, res_r, config["limits"]["max_output_bytes"], config["test_timeout"])
    os.close(out_r)
    os.close(res_r)
    kill_leftovers(config["own_pid_namespace"] and os.getpid() <= 2)
    record = {"index": index, "stdout": stdout.decode(errors="replace"), "truncated": truncated}
    if timed_out:
        return {**record, "status": "timeout", "result": None, "error": "wall time"}
    try:
        return {**record, **json.loads(result)}
    except ValueError:
        return {**record, "status": "crash", "result": None, "error": "no result (killed?)"}


def main():
    config = json.loads(sys.stdin.buffer.read())
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    report = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.chdir(config["workdir"])
    drop_privileges(config)
    set_limits(config["limits"])
    for module in PRELUDE_MODULES:  # import once here; each forked test inherits them
        __import__(module)
    report.write(json.dumps({"isolation": isolation_facts()}) + "\n")
    report.flush()
    for index, test in enumerate(config["tests"]):
        report.write(json.dumps(run_test(index, config, test)) + "\n")
        report.flush()


if __name__ == "__main__":
    main()
