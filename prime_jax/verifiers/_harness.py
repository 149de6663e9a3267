"""Sandbox harness: the trusted side inside the sandbox; it runs each test and observes it.

`sandbox.py` starts it as `python -I -S -c <this source>` as the sandbox's first process (or the
first after bubblewrap's init) in a private root filesystem. Standard library only. It reads two
length-prefixed JSON messages on stdin: the settings (code, mode, limits, uid, seccomp filter,
the zygote's source), then the tests; it writes one JSON line of isolation facts and then exactly
one record per test, in order, on stdout.

Before it reads any test it forks the zygote (`_zygote.py`), which forks every test process, so
no test process holds another test's input. The harness itself keeps its uid 0 in the sandbox
(only CAP_SETUID, CAP_SETGID and CAP_KILL under bubblewrap) and is non-dumpable: the code, under
the dedicated uid, can neither signal, trace nor open it (/proc/<pid>/fd, mem). Per test it
1. puts the input in a memfd (there is no file to find) and the arguments in another;
2. hands them and two fresh pipes (stdout, result) to the zygote and learns the test's pid;
3. reads stdout and the result pipe (bounded, linear) until the zygote reports the exit, or the
   wall limit passes (then it kills the process);
4. decides the record from what it observed: exit status or signal, its own clock, the CPU time
   from wait4, the captured stdout, and - only after a clean exit in call mode - the result,
   parsed and checked here ({"result": value}; nothing else of it is used);
5. kills every process the code left (a sweeper under the code's uid sends kill(-1) until none is
   left while the harness reaps) and empties /tmp and /dev/shm, so the next test starts from the
   same state as the first. If that fails, the remaining tests are reported as errors.
"""

import ctypes
import json
import os
import select
import signal
import socket
import stat
import struct
import time

PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 4, 36
EXIT_OK, EXIT_ERROR, EXIT_SETUP = 0, 1, 70
LIBC = ctypes.CDLL(None, use_errno=True)


def read_message(fd):
    """One message: 12 ASCII digits giving the size, then that many bytes of JSON. Reads
    exactly that much (no read-ahead of the next message)."""
    def exactly(size):
        data = bytearray()
        while len(data) < size:
            chunk = os.read(fd, size - len(data))
            if not chunk:
                raise EOFError("truncated message")
            data += chunk
        return bytes(data)
    return json.loads(exactly(int(exactly(12))))


def memfd_with(name, data):
    fd = os.memfd_create(name, 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class Capture:
    """Bytes read from a pipe, kept up to `cap` (the rest is read and dropped), linear time."""

    def __init__(self, fd, cap):
        self.fd, self.cap, self.data, self.truncated, self.open = fd, cap, bytearray(), False, True

    def read(self):
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            self.open = False
        elif len(self.data) + len(chunk) > self.cap:
            self.data += chunk[:max(0, self.cap - len(self.data))]
            self.truncated = True
        else:
            self.data += chunk


def _collect(sock, captures, deadline):
    """Reads the pipes until the zygote reports the exit (returns its message) or the deadline
    passes (returns None). After the exit, what is already in the pipes is drained."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        fds = [c.fd for c in captures if c.open] + [sock.fileno()]
        ready = select.select(fds, [], [], min(remaining, 0.1))[0]
        for capture in captures:
            if capture.fd in ready:
                capture.read()
        if sock.fileno() in ready:
            message = sock.recv(64)
            for _ in range(1 << 12):  # what is already in the pipes, never waiting for more:
                live = [c for c in captures if c.open]  # a process the code left may hold
                ready = select.select([c.fd for c in live], [], [], 0)[0] if live else []
                if not ready:  # them open
                    break
                for capture in live:
                    if capture.fd in ready:
                        capture.read()
            return message


def _decide(wait_status, cpu, timed_out, result, settings):
    """(status, result, error) from what the harness observed."""
    if timed_out:
        return "timeout", None, "wall time limit"
    if os.WIFSIGNALED(wait_status):
        number = os.WTERMSIG(wait_status)
        if number == signal.SIGXCPU or (number == signal.SIGKILL
                                        and cpu >= settings["cpu_seconds"] - 0.2):
            return "timeout", None, "CPU time limit"
        return "crash", None, f"killed by {signal.Signals(number).name}"
    code = os.waitstatus_to_exitcode(wait_status)
    text = result.decode(errors="replace")[:300]
    if code == EXIT_ERROR:
        return "error", None, text
    if code == EXIT_SETUP:
        return "error", None, "sandbox refused to start the test (setup failed)"
    if code != EXIT_OK:
        return "error", None, f"exit status {code}"
    if settings["mode"] != "call":
        return "ok", None, ""
    try:
        value = json.loads(result)
    except ValueError:
        return "crash", None, "no result (malformed or missing)"
    if not isinstance(value, dict) or set(value) != {"result"}:
        return "crash", None, "no result (malformed or missing)"
    return "ok", value["result"], ""


def run_test(index, test, settings, sock, budget):
    """Runs one test through the zygote; returns its record. `budget` is the stdout bytes
    this answer may still keep."""
    stdin = memfd_with("stdin", (test.get("stdin") or "").encode())
    arguments = memfd_with("args", json.dumps(test.get("args")).encode())
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    socket.send_fds(sock, [b"run"], [stdin, out_w, res_w, arguments])
    for fd in (stdin, out_w, res_w, arguments):
        os.close(fd)
    start = time.monotonic()
    pid = struct.unpack("=i", sock.recv(64))[0]
    limits = settings["limits"]
    stdout = Capture(out_r, min(limits["max_output_bytes"], budget))
    result = Capture(res_r, limits["max_output_bytes"])
    message = _collect(sock, [stdout, result], start + settings["test_timeout"])
    timed_out = message is None
    if timed_out:
        os.kill(pid, signal.SIGKILL)
        message = sock.recv(64)
    wait_status, user, system = struct.unpack("=idd", message)
    os.close(out_r)
    os.close(res_r)
    status, value, error = _decide(wait_status, user + system, timed_out, bytes(result.data),
                                   settings)
    return {"index": index, "status": status, "stdout": stdout.data.decode(errors="replace"),
            "result": value, "error": error, "truncated": stdout.truncated,
            "cpu_seconds": round(user + system, 3),
            "wall_seconds": round(time.monotonic() - start, 3)}


def empty_directory(top):
    """Removes everything under `top` (never following a link), using relative paths only, so
    deep trees and directories made unreadable (mode 0) are no obstacle to their owner."""
    os.chdir(top)
    depth = 0
    while True:
        for name in os.listdir("."):
            if stat.S_ISDIR(os.lstat(name).st_mode):
                os.chmod(name, 0o700)
                try:
                    os.rmdir(name)
                except OSError:
                    os.chdir(name)
                    depth += 1
                    break
            else:
                os.unlink(name)
        else:
            if depth == 0:
                return
            os.chdir("..")
            depth -= 1


def _wipe(settings):
    """Empties the writable directories; True if they are empty afterwards."""
    try:
        for top in settings["wipe_dirs"]:
            empty_directory(top)
        return not any(os.listdir(top) for top in settings["wipe_dirs"])
    except OSError:
        return False


def _children(exclude):
    """Our direct children other than `exclude` (as subreaper, orphans come back to us)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                parent = int(handle.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == os.getpid() and int(entry) != exclude:
            found.append(int(entry))
    return found


def _processes_of(uid):
    """Processes (zombies included) whose real uid is `uid`, other than this one."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/status", "rb") as handle:
                fields = dict(line.split(b":", 1) for line in handle if b":" in line)
            if int(fields[b"Uid"].split()[0]) == uid and int(entry) != os.getpid():
                found.append(int(entry))
        except (OSError, KeyError, ValueError, IndexError):
            continue
    return found


def sweep(settings, zygote):
    """Kills every process the code left and empties its directories; True when clean.
    With a dedicated uid a sweeper under that uid sends kill(-1) - every process of the code,
    never the harness or the zygote - until /proc lists none of that uid, then wipes; we reap
    meanwhile.
    Without one (a user namespace, or the insecure mode) our other children are killed."""
    uid = settings["uid"]
    if uid is None or os.geteuid() != 0:
        for _ in range(2000):
            leftovers = _children(zygote)
            for pid in leftovers:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            if not leftovers:
                return _wipe(settings)
        return False
    if not _processes_of(uid) and not any(map(os.listdir, settings["wipe_dirs"])):
        return True  # nothing left: only the zygote makes processes of that uid
    sweeper = os.fork()
    if sweeper == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            for _ in range(5000):
                os.kill(-1, signal.SIGKILL)
                if not _processes_of(uid):
                    os._exit(0 if _wipe(settings) else 1)
                time.sleep(0.0002)
        finally:
            os._exit(1)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == zygote:
            return False
        if pid == sweeper:
            return os.waitstatus_to_exitcode(status) == 0


def isolation_facts(settings):
    """What the code will see: its uid, the harness's pid and the processes and root entries."""
    visible = [entry for entry in os.listdir("/proc") if entry.isdigit()] \
        if os.path.isdir("/proc") else []
    uid = settings["uid"] if settings["uid"] is not None else os.getuid()
    return {"uid": uid, "pid": os.getpid(), "visible_processes": len(visible),
            "root_entries": sorted(os.listdir("/"))}


def start_zygote(settings):
    """Forks the zygote (before any test input is read); returns (its pid, our socket end)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            keep = theirs.fileno()
            os.closerange(3, keep)
            os.closerange(keep + 1, 1 << 16)
            namespace = {"__name__": "zygote"}
            exec(settings["zygote_source"], namespace)  # noqa: S102 - trusted source
            namespace["zygote_main"](settings, theirs)
        finally:
            os._exit(EXIT_SETUP)
    theirs.close()
    return pid, ours


def main():
    settings = read_message(0)
    os.chdir(settings["workdir"])
    LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    report = os.fdopen(os.dup(1), "w", encoding="utf-8", errors="replace")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    zygote, sock = start_zygote(settings)
    tests = read_message(0)["tests"]
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    report.write(json.dumps({"isolation": isolation_facts(settings)}) + "\n")
    report.flush()
    budget = settings["limits"]["max_total_output_bytes"]
    clean = True
    for index, test in enumerate(tests):
        if clean:
            record = run_test(index, test, settings, sock, budget)
            budget -= len(record["stdout"].encode(errors="replace"))
        else:
            record = {"index": index, "status": "error", "stdout": "", "result": None,
                      "error": "sandbox could not be reset after the previous test",
                      "truncated": False, "cpu_seconds": 0.0, "wall_seconds": 0.0}
        report.write(json.dumps(record, ensure_ascii=False) + "\n")
        report.flush()
        if clean and index + 1 < len(tests):
            try:
                clean = sweep(settings, zygote)
            except OSError:  # e.g. no process left to fork the sweeper: fail the rest
                clean = False
            os.chdir(settings["workdir"])


if __name__ == "__main__":
    main()
