"""Issue 28's attacks on the harness itself, each written as the attacker would write it:
forging the result channel, reading other tests' inputs, carrying state between tests, kernel
keyrings and the rest of the seccomp deny list, host uid collisions and quadratic report reading.

Every sandboxed test runs on each backend that works here (bwrap, builtin).
"""

import errno
import json
import os
import platform
import pwd
import struct
import textwrap
import time

import pytest

from prime_jax.verifiers import code, sandbox

FAST = dict(test_timeout=2.0)
X86_64 = platform.machine() == "x86_64"


def run(backend, source, inputs=("",), **kwargs):
    return sandbox.run_tests(textwrap.dedent(source), list(inputs),
                             **{**FAST, "backend": backend, **kwargs})


def program(source):
    return f"```python\n{textwrap.dedent(source)}\n```"


def make_tests(inputs, outputs, fn_name=None):
    extra = {"fn_name": fn_name} if fn_name else {}
    return json.dumps({"inputs": inputs, "outputs": outputs, **extra})


def test_forged_record_for_another_test_gives_no_credit(backend):
    """Test 0 (input 3) prints nothing; while running test 1 the code writes "test 0 passed,
    stdout 6" on every descriptor it has, as the per-test result record, and exits."""
    cheat = program("""
    import json, os
    if int(input()) == 4:
        forged = json.dumps({"index": 0, "status": "ok", "stdout": "6\\n", "result": None,
                             "error": "", "truncated": False}).encode()
        for fd in range(3, 20):
            try:
                os.write(fd, forged)
            except OSError:
                pass
        os._exit(0)
    """)
    verdict = code.verify_detailed(cheat, make_tests(["3", "4"], ["6", "8"]), backend=backend)
    assert verdict.score == 0.0, verdict


def test_result_record_then_sigkill_is_a_crash(backend):
    """Call mode: the code writes its own "ok" record on the result descriptor, then dies."""
    cheat = program("""
    import json, os, signal
    def double(x):
        for fd in range(3, 10):
            try:
                os.write(fd, json.dumps({"status": "ok", "result": 2 * x, "error": ""}).encode())
            except OSError:
                pass
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    verdict = code.verify_detailed(cheat, make_tests([[3]], [6], "double"), backend=backend)
    assert verdict.score == 0.0 and verdict.status == "fail", verdict


def test_printed_answer_then_sigsegv_is_a_crash(backend):
    cheat = program("""
    import json, os, signal, sys
    print(2 * int(input()))
    sys.stdout.flush()
    for fd in range(3, 10):
        try:
            os.write(fd, json.dumps({"status": "ok", "result": None, "error": ""}).encode())
        except OSError:
            pass
    os.kill(os.getpid(), signal.SIGSEGV)
    """)
    verdict = code.verify_detailed(cheat, make_tests(["3"], ["6"]), backend=backend)
    assert verdict.score == 0.0, verdict
    assert "SIGSEGV" in verdict.reason, verdict


def test_harness_memory_and_descriptors_are_out_of_reach(backend):
    source = """
    import os
    parent = os.getppid()
    for path in (f'/proc/{parent}/mem', f'/proc/{parent}/environ', f'/proc/{parent}/fd/0'):
        try:
            open(path, 'rb').close(); print('open')
        except OSError:
            print('denied')
    try:
        os.listdir(f'/proc/{parent}/fd'); print('open')
    except OSError:
        print('denied')
    """
    assert run(backend, source).tests[0]["stdout"].split() == ["denied"] * 4


def test_a_test_cannot_read_another_tests_input(backend):
    """The inputs carry unique markers; every test searches everything it can reach in its own
    memory (objects, frames) for the other test's marker."""
    source = """
    import gc, sys
    def search(mine):  # the code holds only the markers reversed
        other = [m[::-1] for m in ('1-ahpla-REKRAM', '2-ovarb-REKRAM') if m[::-1] != mine][0]
        for obj in gc.get_objects():
            try:
                if isinstance(obj, (dict, list, tuple)) and other in repr(obj)[:1_000_000]:
                    return 'found'
            except Exception:
                pass
        frame = sys._getframe().f_back
        while frame is not None:
            if other in repr(frame.f_locals)[:1_000_000]:
                return 'found'
            frame = frame.f_back
        return 'not found'
    print(search(input()))
    """
    report = run(backend, source, ["MARKER-alpha-1", "MARKER-bravo-2"], test_timeout=10.0)
    assert [t["stdout"].strip() for t in report.tests] == ["not found", "not found"]


def test_tmp_and_shm_start_empty_for_every_test(backend):
    source = """
    import os
    name = input()
    print(sorted(os.listdir('/tmp')), sorted(os.listdir('/dev/shm')), sorted(os.listdir('.')))
    for directory in ('/tmp', '/dev/shm'):
        os.makedirs(f'{directory}/left_by_{name}/sub', exist_ok=True)
        with open(f'{directory}/left_by_{name}/sub/state', 'w') as handle:
            handle.write('precomputed')
        os.chmod(f'{directory}/left_by_{name}/sub', 0)
    """
    report = run(backend, source, ["a", "b", "c"])
    assert [t["stdout"].strip() for t in report.tests] == ["[] [] []"] * 3, report.tests


def test_posix_message_queues_do_not_carry_over(backend):
    if not X86_64:
        pytest.skip("syscall numbers below are x86_64's")
    source = """
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    name = input()
    fd = libc.syscall(240, b'state', os.O_RDWR | os.O_CREAT, 0o666, None)  # mq_open
    print('opened' if fd >= 0 else f'refused {ctypes.get_errno()}')
    """
    report = run(backend, source, ["a", "b"])
    assert all(t["stdout"].startswith("refused") for t in report.tests), report.tests


@pytest.mark.skipif(not X86_64, reason="syscall numbers below are x86_64's")
def test_keyrings_are_unreachable(backend):
    """add_key into the user keyring, then read it back from the next test with keyctl."""
    source = """
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    KEY_SPEC_USER_KEYRING = -4
    if input() == 'write':
        serial = libc.syscall(248, b'user', b'precomputed', b'42', 2, KEY_SPEC_USER_KEYRING)
    else:  # keyctl(KEYCTL_SEARCH, keyring, type, description, 0)
        serial = libc.syscall(250, 10, KEY_SPEC_USER_KEYRING, b'user', b'precomputed', 0)
    print(serial if serial >= 0 else ctypes.get_errno())
    """
    report = run(backend, source, ["write", "read"])
    codes = [int(t["stdout"]) for t in report.tests]
    assert all(c in (errno.EPERM, errno.ENOSYS) for c in codes), codes


SYSCALL_PROBES = {  # name: (x86_64 number, arguments), each harmless if it is refused
    "ptrace": (101, "0, 0, None, None"),                       # PTRACE_TRACEME
    "userfaultfd": (323, "1"),                                 # UFFD_USER_MODE_ONLY
    "io_uring_setup": (425, "1, ctypes.create_string_buffer(120)"),
    "perf_event_open": (298, "attr, 0, -1, -1, 0"),
    "unshare": (272, "0x10000000"),                            # CLONE_NEWUSER
    "clone3": (435, "None, 0"),
    "mount": (165, "b'none', b'/tmp', b'tmpfs', 0, None"),
    "bpf": (321, "0, None, 0"),
    "shmget": (29, "0, 4096, 0o1600"),                         # IPC_PRIVATE, IPC_CREAT
    "keyctl": (250, "0, -4, 0"),                               # KEYCTL_GET_KEYRING_ID
    "x32_getpid": (0x40000000 + 39, ""),
}


@pytest.mark.skipif(not X86_64, reason="syscall numbers are x86_64's")
def test_seccomp_refuses_the_deny_list(backend):
    lines = [f"print({name!r}, libc.syscall({nr}, {args}), ctypes.get_errno())"
             for name, (nr, args) in SYSCALL_PROBES.items()]
    source = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n" \
             "attr = ctypes.create_string_buffer(128)\n" \
             "attr[4:8] = (128).to_bytes(4, 'little')\n" \
             "attr[40:48] = (0b1100000).to_bytes(8, 'little')\n" + "\n".join(lines)
    results = {name: (int(ret), int(err)) for name, ret, err in
               (line.split() for line in run(backend, source).tests[0]["stdout"].splitlines())}
    allowed = {name: result for name, result in results.items()
               if result[0] >= 0 or result[1] not in (errno.EPERM, errno.ENOSYS)}
    assert allowed == {}, allowed


def test_ordinary_programs_still_work_under_the_filter(backend):
    source = """
    import os, subprocess, sys, threading
    from concurrent.futures import ThreadPoolExecutor
    out = []
    t = threading.Thread(target=lambda: out.append(sum(range(10))))
    t.start(); t.join()
    with ThreadPoolExecutor(2) as pool:
        out.append(sum(pool.map(abs, [-1, -2])))
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    out.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    out.append(subprocess.run([sys.executable, '-c', 'print(5)'], capture_output=True,
                              text=True).stdout.strip())
    print(*out)
    """
    report = run(backend, source, test_timeout=10.0)
    assert report.tests[0]["stdout"].split() == ["45", "3", "7", "5"], report.tests[0]


def test_sandbox_uids_are_never_host_accounts(monkeypatch):
    """Every uid in the sandbox range is taken by a host account except one: that one is used."""
    free = sandbox.SANDBOX_UID_BASE + (os.getpid() * 64 + 37) % (1 << 30)

    def getpwuid(uid):
        if uid == free:
            raise KeyError(uid)
        return pwd.struct_passwd(("host", "x", uid, uid, "", "/", "/bin/sh"))

    monkeypatch.setattr(pwd, "getpwuid", getpwuid)
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 0)
    picked = {sandbox.Bwrap().sandbox_uid() for _ in range(3)}
    assert picked == {free}


def test_reading_reports_is_linear_in_output(backend):
    """40 tests printing 1 MiB each: the trainer's own CPU time stays small."""
    source = "import sys\nsys.stdout.write('x' * (1 << 20))"
    start = time.process_time()
    report = run(backend, source, [""] * 40, test_timeout=5.0, total_timeout=120.0)
    spent = time.process_time() - start
    assert all(t is not None and t["status"] == "ok" for t in report.tests)
    assert spent < 2.5, f"{spent:.1f} s of CPU in the caller"


def test_total_output_per_answer_is_bounded(backend):
    limits = sandbox.SandboxLimits(max_output_bytes=1 << 20, max_total_output_bytes=4 << 20)
    report = run(backend, "import sys\nsys.stdout.write('x' * (1 << 20))", [""] * 8,
                 limits=limits, test_timeout=5.0)
    assert sum(len(t["stdout"]) for t in report.tests if t) <= 4 << 20
    assert report.tests[-1]["truncated"]


def test_cpu_time_is_observed_by_the_trusted_side(backend):
    record = run(backend, "while True: pass", test_timeout=5.0,
                 limits=sandbox.SandboxLimits(cpu_seconds=1)).tests[0]
    assert record["status"] == "timeout" and record["cpu_seconds"] >= 0.8, record


@pytest.mark.parametrize("field", ["max_total_output_bytes", "cpu_seconds", "memory_bytes"])
def test_limits_name_a_bad_field(field):
    with pytest.raises(ValueError, match=f"SandboxLimits.{field}"):
        sandbox.SandboxLimits(**{field: 0})


def test_no_process_of_an_earlier_test_survives(backend):
    """Test 0 leaves a daemon that keeps rewriting a file; test 1 looks for any other process
    of its uid and for the file."""
    source = """
    import os, time
    if input() == 'first':
        if os.fork() == 0:
            os.setsid()
            while True:
                open('/tmp/daemon', 'w').write(str(time.time()))
                time.sleep(0.01)
        print('left a daemon')
    else:
        time.sleep(0.1)
        mine = os.getuid()
        others = [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()
                  and os.stat(f'/proc/{p}').st_uid == mine]
        print(len(others), os.path.exists('/tmp/daemon'))
    """
    report = run(backend, source, ["first", "second"])
    assert report.tests[1]["stdout"].split() == ["0", "False"], report.tests


def test_a_lingering_writer_cannot_stall_the_harness(backend):
    """The code leaves a child holding its stdout and result pipes open and exits with much
    output still unread: the harness must take what is there and move on."""
    source = """
    import fcntl, os, sys, time
    fcntl.fcntl(1, 1031, 1 << 20)  # F_SETPIPE_SZ: the whole output fits in the pipe
    if os.fork() == 0:
        time.sleep(30)
        os._exit(0)
    sys.stdout.write('y' * 300_000 + '\\n')
    """
    start = time.monotonic()
    report = run(backend, source, ["", ""], test_timeout=3.0, total_timeout=20.0)
    assert [t and t["status"] for t in report.tests] == ["ok", "ok"], report.tests
    assert all(len(t["stdout"]) == 300_001 for t in report.tests)
    assert time.monotonic() - start < 10


def test_a_filter_that_cannot_be_installed_runs_no_code(backend, monkeypatch):
    invalid = struct.pack("=HBBI", 0xFFFF, 0, 0, 0)  # no such BPF instruction
    monkeypatch.setattr(sandbox, "_filter", lambda: invalid)
    record = run(backend, "print('the code ran')").tests[0]
    assert record["status"] == "error" and record["stdout"] == "", record
    assert "setup failed" in record["error"]
