"""Sandbox guarantees: each test would fail if the corresponding isolation layer were missing."""

import os
import socket
import subprocess
import tempfile
import textwrap
import time

import pytest

from prime_jax.verifiers import sandbox

FAST = dict(test_timeout=1.0)
IS_ROOT = os.geteuid() == 0


def run(code, inputs=("",), **kwargs):
    return sandbox.run_tests(textwrap.dedent(code), list(inputs), **{**FAST, **kwargs})


def sandbox_uid_processes():
    """Live (non-zombie) processes of any dedicated sandbox uid."""
    return [pid for pid in os.listdir("/proc") if pid.isdigit() and _uid(pid) is not None
            and _uid(pid) >= sandbox.SANDBOX_UID_BASE]


def _uid(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        if fields["State"].split()[0] in ("Z", "X"):
            return None
        return int(fields["Uid"].split()[0])
    except (OSError, KeyError, ValueError):
        return None


def test_runs_stdio_and_reports_isolation():
    report = run("print(input()[::-1])", ["abc", "xy"])
    assert [t["stdout"] for t in report.tests] == ["cba\n", "yx\n"]
    if IS_ROOT:
        assert report.isolation["dropped"] and report.isolation["uid"] != 0
        assert report.isolation["no_new_privs"]


def test_infinite_loop_times_out_and_later_tests_still_run():
    start = time.monotonic()
    report = run("n = int(input())\nwhile n == 1: pass\nprint(n)", ["1", "2"])
    assert report.tests[0]["status"] == "timeout"
    assert report.tests[1]["stdout"] == "2\n"
    assert time.monotonic() - start < 5


def test_sleeping_code_hits_the_parent_wall_limit():
    start = time.monotonic()
    report = run("import time\ntime.sleep(100)", ["", ""], total_timeout=1.5)
    assert time.monotonic() - start < 4
    assert all(t is None or t["status"] == "timeout" for t in report.tests)


@pytest.mark.parametrize("code", [
    "x = bytearray(8 * 1024 ** 3)\nprint('allocated')",
    "chunks = []\nwhile True: chunks.append(bytearray(64 * 1024 ** 2))",
])
def test_memory_bomb_is_stopped(code):
    report = run(code, limits=sandbox.SandboxLimits(memory_bytes=256 << 20), test_timeout=5.0)
    assert report.tests[0]["status"] == "error"
    assert "MemoryError" in report.tests[0]["error"]


def test_fork_bomb_is_contained_and_cleaned_up():
    code = """
    import os
    n = 0
    for _ in range(10_000):
        try:
            if os.fork() == 0:
                import time; time.sleep(60); os._exit(0)
            n += 1
        except OSError:
            break
    print(n)
    """
    report = run(code, limits=sandbox.SandboxLimits(max_processes=16))
    forked = int(report.tests[0]["stdout"])
    if IS_ROOT:  # RLIMIT_NPROC is not enforced for root
        assert forked < 16
    assert not sandbox_uid_processes()


@pytest.mark.skipif(not IS_ROOT, reason="file isolation needs root (privilege drop)")
def test_cannot_modify_delete_or_create_files_outside_its_dir():
    handle, victim = tempfile.mkstemp(prefix="prime_victim_", dir="/tmp")
    os.write(handle, b"precious")
    os.close(handle)
    os.chmod(victim, 0o666 & ~0o022)  # world-readable, root-owned
    created = victim + "_created"
    code = f"""
    import os
    for action in (lambda: open({victim!r}, 'w').write('pwned'),
                   lambda: os.remove({victim!r}),
                   lambda: open({created!r}, 'w').write('x'),
                   lambda: open('/dev/shm/prime_x', 'w').write('x'),
                   lambda: open(os.path.expanduser('~') + '/inside', 'w').write('ok')):
        try:
            action(); print('ok')
        except OSError as e:
            print('denied', e.errno)
    """
    try:
        report = run(code)
        lines = report.tests[0]["stdout"].split()
        assert open(victim).read() == "precious"
        assert lines[-1] == "ok"  # its own directory is writable
        if report.isolation["mountns"]:
            assert not os.path.exists(created)
            assert not os.path.exists("/dev/shm/prime_x")
    finally:
        for path in (victim, created, "/dev/shm/prime_x"):
            if os.path.exists(path):
                os.remove(path)


@pytest.mark.skipif(not IS_ROOT, reason="signal isolation needs root (privilege drop)")
def test_cannot_kill_the_caller_or_its_processes():
    victim = subprocess.Popen(["sleep", "60"])
    try:
        code = f"""
        import os, signal
        for target in ({victim.pid}, {os.getpid()}):
            try:
                os.kill(target, signal.SIGKILL); print('killed')
            except OSError:
                print('denied')
        """
        report = run(code)
        assert report.tests[0]["stdout"].split() == ["denied", "denied"]
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_cannot_reach_a_local_tcp_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    code = f"""
    import socket
    try:
        socket.create_connection(('127.0.0.1', {server.getsockname()[1]}), timeout=0.5)
        print('connected')
    except OSError as e:
        print('blocked', e)
    """
    try:
        report = run(code)
        if not report.isolation.get("netns"):
            pytest.skip(f"no network namespace on this platform: {report.isolation}")
        assert report.tests[0]["stdout"].startswith("blocked")
        server.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing completed a handshake in the backlog
            server.accept()
    finally:
        server.close()


def _alive(pid):
    return os.path.exists(f"/proc/{pid}") and _uid(pid) != 0


@pytest.mark.parametrize("kill_harness", [False, True])
def test_background_processes_are_gone_afterwards(kill_harness):
    code = f"""
    import os, signal, subprocess, time
    daemon = subprocess.Popen(['sleep', '100'], start_new_session=True)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(100)
        os._exit(0)
    print(daemon.pid, flush=True)
    if {kill_harness}:
        os.kill(os.getppid(), signal.SIGKILL)  # the harness: same uid, allowed
    """
    report = run(code)
    if kill_harness:
        assert report.tests[0] is None
        assert not sandbox_uid_processes()
    else:
        pid = int(report.tests[0]["stdout"])
        assert not _alive(pid)
        assert not sandbox_uid_processes()


def test_huge_output_is_capped():
    limits = sandbox.SandboxLimits(max_output_bytes=100_000)
    start = time.monotonic()
    report = run("import sys\nwhile True: sys.stdout.write('x' * 10000)", limits=limits)
    record = report.tests[0]
    assert len(record["stdout"]) <= 100_000
    assert record["truncated"]
    assert time.monotonic() - start < 5


def test_file_size_limit():
    code = "open('big', 'wb').write(b'x' * (64 << 20)); print('wrote')"
    report = run(code, limits=sandbox.SandboxLimits(max_file_bytes=1 << 20))
    assert "wrote" not in report.tests[0]["stdout"]


def test_working_directory_is_removed():
    report = run("import os; print(os.getcwd())")
    assert not os.path.exists(report.tests[0]["stdout"].strip())
