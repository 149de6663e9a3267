"""Sandbox harness: isolates itself, drops privileges, then runs untrusted code on each input.

Run by `sandbox.py` as `python -I _harness.py CONFIG_JSON REPORT_FD` in a fresh session. Standard
library only (it may run under a different interpreter than the trainer).

Isolation, in order, as far as the platform allows (what was achieved is the first report line):
new network namespace (no interfaces up: nothing, not even 127.0.0.1, is reachable); new mount
namespace in which world-writable directories are read-only except the working directory;
rlimits (CPU, address space, processes, file size, open files, no core files); setgid/setuid to
a dedicated unprivileged uid; PR_SET_NO_NEW_PRIVS; PR_SET_CHILD_SUBREAPER so orphaned
descendants come back to the harness, which kills them after every test.

Each test runs in a forked child (stdin from a file, stdout to a capped pipe, stderr discarded);
the harness reports {"index", "status", "stdout"|"result", "error"} lines. Expected outputs are
never given to the sandbox: the trusted parent compares.
"""

import ctypes
import json
import os
import resource
import select
import signal
import sys
import time

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT = 1, 2, 4, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38
PRELOAD = ("array bisect collections copy datetime decimal fractions functools heapq io itertools "
           "json math operator random re statistics string sys typing unicodedata").split()
LIBC = ctypes.CDLL(None, use_errno=True)


def _mount(source, target, flags):
    encode = lambda s: None if s is None else s.encode()  # noqa: E731
    if LIBC.mount(encode(source), encode(target), None, flags, None) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}")


def _isolate_mounts(workdir, readonly_dirs):
    _mount(None, "/", MS_REC | MS_PRIVATE)
    _mount(workdir, workdir, MS_BIND | MS_REC)
    for path in readonly_dirs:
        if os.path.isdir(path) and not os.path.islink(path):
            _mount(path, path, MS_BIND | MS_REC)
            _mount(None, path, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def isolate(config):
    """Applies every isolation layer it can; returns what holds."""
    status = {"netns": False, "mountns": False, "uid": os.getuid(), "dropped": False}
    privileged = os.geteuid() == 0
    flags = CLONE_NEWNET | CLONE_NEWNS if privileged else CLONE_NEWUSER | CLONE_NEWNET
    if LIBC.unshare(flags) == 0:
        status["netns"] = True
        if privileged:
            try:
                _isolate_mounts(config["workdir"], config["readonly_dirs"])
                status["mountns"] = True
            except OSError as error:
                status["mount_error"] = str(error)
    elif privileged and LIBC.unshare(CLONE_NEWNET) == 0:
        status["netns"] = True
    for module in PRELOAD:  # before dropping privileges: the stdlib may be unreadable later
        __import__(module)
    limits = config["limits"]
    for name, value in (("RLIMIT_CPU", limits["cpu_seconds"]),
                        ("RLIMIT_AS", limits["memory_bytes"]),
                        ("RLIMIT_NPROC", limits["max_processes"]),
                        ("RLIMIT_FSIZE", limits["max_file_bytes"]),
                        ("RLIMIT_NOFILE", limits["max_open_files"]), ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value))
    if privileged and config.get("uid") is not None:
        os.setgroups([])
        os.setgid(config["gid"])
        os.setuid(config["uid"])
        if os.getuid() == 0 or os.geteuid() == 0:
            raise RuntimeError("failed to drop root")
        status.update(uid=os.getuid(), dropped=True)
    status["no_new_privs"] = LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it
    status["subreaper"] = LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    return status


def _children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def kill_descendants(dedicated_uid):
    """Kills every process left by a test: kill(-1) as the dedicated uid, plus a subreaper
    sweep of our children (the only way when running without a dedicated uid)."""
    for _ in range(100):
        if dedicated_uid:
            try:
                os.kill(-1, signal.SIGKILL)  # every process of this uid except ourselves
            except ProcessLookupError:
                pass
        children = _children_of(os.getpid())
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not children:
            return


def _run_child(code, mode, fn_name, value, out_fd, result_fd):
    """Runs in the forked test process; never returns."""
    status, payload, error = "ok", None, ""
    try:
        sys.argv = ["solution.py"]
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(out_fd, "w", closefd=False)
        namespace = {"__name__": "__main__" if mode == "stdio" else "solution",
                     "__builtins__": __builtins__}
        try:
            exec(compile(code, "solution.py", "exec"), namespace)  # noqa: S102 - sandboxed
            if mode == "call":
                holder = namespace.get("Solution")
                function = getattr(holder(), fn_name) if holder and hasattr(holder, fn_name) \
                    else namespace[fn_name]
                args = value if isinstance(value, list) else [value]
                payload = function(*args)
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


def run_test(index, config, value):
    """Forks one test, enforces its wall time and output cap, returns its report record."""
    input_path = os.path.join(config["workdir"], f".input_{index}")
    with open(input_path, "w") as handle:
        handle.write(value if isinstance(value, str) else "")
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            os.dup2(os.open(input_path, os.O_RDONLY), 0)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            os.dup2(out_w, 1)
            os.dup2(res_w, 3)  # also closes the report pipe if it sat on fd 3
            os.closerange(4, 1 << 16)
        finally:
            _run_child(config["code"], config["mode"], config.get("fn_name"), value, 1, 3)
    os.close(out_w)
    os.close(res_w)
    cap = config["limits"]["max_output_bytes"]
    buffers, open_fds = {out_r: b"", res_r: b""}, {out_r, res_r}
    deadline = time.monotonic() + config["test_timeout"]
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
    os.close(out_r)
    os.close(res_r)
    kill_descendants(config["dedicated_uid"] and os.getuid() != 0)
    try:
        os.unlink(input_path)
    except OSError:
        pass
    record = {"index": index, "stdout": buffers[out_r].decode(errors="replace"),
              "truncated": truncated}
    if timed_out:
        return {**record, "status": "timeout", "result": None, "error": "wall time"}
    try:
        return {**record, **json.loads(buffers[res_r])}
    except ValueError:
        return {**record, "status": "crash", "result": None, "error": "no result (killed?)"}


def main():
    with open(sys.argv[1]) as handle:
        config = json.load(handle)
    os.unlink(sys.argv[1])
    report = os.fdopen(int(sys.argv[2]), "w")
    report.write(json.dumps({"isolation": isolate(config)}) + "\n")
    report.flush()
    for index, value in enumerate(config["inputs"]):
        report.write(json.dumps(run_test(index, config, value)) + "\n")
        report.flush()


if __name__ == "__main__":
    main()
