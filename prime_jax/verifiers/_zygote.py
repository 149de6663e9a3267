"""Sandbox zygote and test process: the only place where untrusted code runs.

The harness (`_harness.py`) forks the zygote before it has read any test input and executes this
source in it. The zygote imports the APPS/TACO/LiveCodeBench prelude once, marks itself
non-dumpable and then serves the harness over a SOCK_SEQPACKET socket: for each test it receives
four descriptors (stdin, stdout pipe, result pipe, argument list), forks the test process, sends
its pid, waits for it with wait4 and sends its wait status and CPU time. The zygote's memory
holds the code and the prelude, never a test input, so a test process (a fork of it) cannot reach
another test's input.

A test process: descriptors 0 stdin (a memfd), 1 stdout, 2 /dev/null, 3 result pipe, 4 the
argument list (call mode; read, then closed); rlimits (CPU, stack, address space, processes,
file size, open files, no core); the dedicated uid; PR_SET_NO_NEW_PRIVS; the seccomp filter
(`seccomp.py`; fails closed: exit 70 before any code runs); then the code in a fresh copy of the
prelude namespace. It exits 0 after normal completion or SystemExit (writing {"result": value} on
descriptor 3 in call mode), 1 after an exception (writing "Type: message" there). The harness
trusts none of it: it decides from the exit status, the signal, its own clocks and the pipes.
"""

import builtins
import ctypes
import fcntl
import json
import os
import resource
import signal
import socket
import struct
import sys

import _sitebuiltins

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS = 1, 4, 22, 38
SECCOMP_MODE_FILTER = 2
EXIT_OK, EXIT_ERROR, EXIT_SETUP = 0, 1, 70
PRELUDE_MODULES = ("array bisect collections copy datetime decimal fractions functools heapq io "
                   "itertools json math operator random re statistics string sys typing").split()
STAR_MODULES = ("string re datetime collections heapq bisect copy math random statistics "
                "itertools functools operator typing").split()  # typing last, as the references
RECURSION_LIMIT = 100_000
STACK_BYTES = 256 << 20
MAX_ERROR_CHARS = 300
LIBC = ctypes.CDLL(None, use_errno=True)


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def prelude_namespace(mode, packages_dir):
    """The namespace the reference harnesses give a solution: the prelude modules, their names,
    then every builtin again (so `pow` is the builtin, not math.pow) and `exit` / `quit`."""
    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
    if packages_dir and os.path.isdir(packages_dir):
        sys.path.append(packages_dir)
    namespace = {"__name__": "__main__" if mode == "stdio" else "solution",
                 "__builtins__": builtins}
    for module in PRELUDE_MODULES:
        namespace[module] = __import__(module)
    for module in STAR_MODULES:
        exec(f"from {module} import *", namespace)  # noqa: S102 - trusted prelude
    exec("from builtins import *", namespace)  # noqa: S102
    return namespace


def install_seccomp(program):
    """prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, program); raises OSError if refused."""
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.addressof(buffer))
    if LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp filter refused")


def become_untrusted(settings):
    """Drops to the dedicated uid, sets the rlimits, forbids new privileges, installs the
    syscall filter - in that order, so nothing after it can undo one."""
    uid = settings["uid"]
    if uid is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if 0 in (os.getuid(), os.geteuid(), os.getgid(), os.getegid()):
            raise RuntimeError("failed to drop root")
    limits = settings["limits"]
    cpu = settings["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    for name, value in (("RLIMIT_STACK", STACK_BYTES),
                        ("RLIMIT_AS", limits["memory_bytes"]),
                        ("RLIMIT_NPROC", limits["max_processes"]),
                        ("RLIMIT_FSIZE", limits["max_file_bytes"]),
                        ("RLIMIT_NOFILE", limits["max_open_files"]), ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value))
    if LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise RuntimeError("PR_SET_NO_NEW_PRIVS failed")
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    install_seccomp(bytes.fromhex(settings["seccomp_hex"]))


def take_descriptors(received):
    """Moves the received (stdin, stdout, result, arguments) to 0, 1, 3, 4; 2 is /dev/null."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in received]
    high.append(fcntl.fcntl(os.open(os.devnull, os.O_WRONLY), fcntl.F_DUPFD, 100))
    stdin, stdout, result, arguments, devnull = high
    for source, target in ((stdin, 0), (stdout, 1), (devnull, 2), (result, 3), (arguments, 4)):
        os.dup2(source, target)
    os.closerange(5, 1 << 16)


def read_all(fd):
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def call_solution(namespace, fn_name, args):
    """Calls `fn_name` as a method of `class Solution` if it has one, else as a function."""
    holder = namespace.get("Solution")
    if isinstance(holder, type) and hasattr(holder, fn_name):
        return getattr(holder(), fn_name)(*args)
    return namespace[fn_name](*args)


def test_process(settings, template, received):
    """Runs in the forked test process; never returns."""
    try:
        take_descriptors(received)
        args = json.loads(read_all(4)) if settings["mode"] == "call" else None
        os.close(4)
        become_untrusted(settings)
    except BaseException:  # noqa: BLE001 - fail closed: no code runs half-confined
        os._exit(EXIT_SETUP)
    payload = None
    try:
        sys.setrecursionlimit(RECURSION_LIMIT)
        sys.argv = ["solution.py"]
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        namespace = dict(template)
        try:
            exec(compile(settings["code"], "solution.py", "exec"), namespace)  # noqa: S102
            if settings["mode"] == "call":
                payload = call_solution(namespace, settings["fn_name"], args)
        except SystemExit:
            pass
        sys.stdout.flush()
    except BaseException as exc:  # noqa: BLE001 - report any failure of untrusted code
        os.write(3, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS].encode(errors="replace"))
        os._exit(EXIT_ERROR)
    if settings["mode"] == "call":
        record = json.dumps({"result": payload},
                            default=lambda o: sorted(o) if isinstance(o, (set, frozenset))
                            else repr(o))
        view = memoryview(record.encode())
        while view:
            view = view[os.write(3, view):]
    os._exit(EXIT_OK)


def zygote_main(settings, sock):
    """Serves the harness until it closes the socket; never returns."""
    template = prelude_namespace(settings["mode"], settings.get("packages_dir"))
    LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    while True:
        try:
            message, received, _, _ = socket.recv_fds(sock, 16, 4)
        except OSError:
            os._exit(0)
        if not message or len(received) != 4:
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            try:
                sock.close()
                test_process(settings, template, received)
            finally:
                os._exit(EXIT_ERROR)
        for fd in received:
            os.close(fd)
        sock.send(struct.pack("=i", pid))
        _, wait_status, usage = os.wait4(pid, 0)
        sock.send(struct.pack("=idd", wait_status, usage.ru_utime, usage.ru_stime))
