"""Sandbox guarantees, each against the attack that broke the old sandbox (issue 13's red team).

Every test runs on each backend that works here (bwrap, builtin); a backend that cannot start is
skipped with the sandbox's own message (CI runs as root with bubblewrap installed).
"""

import glob
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from prime_jax.verifiers import cgroups, sandbox

FAST = dict(test_timeout=2.0)
SMALL = sandbox.SandboxLimits(memory_bytes=256 << 20, disk_bytes=32 << 20)


def run(backend, code, inputs=("",), **kwargs):
    return sandbox.run_tests(textwrap.dedent(code), list(inputs),
                             **{**FAST, "backend": backend, **kwargs})


def out(report, index=0):
    return report.tests[index]["stdout"].strip()


def sandbox_processes():
    """Live host processes running as a sandbox uid of this process (other test workers run
    their own sandboxes at the same time)."""
    first = sandbox.SANDBOX_UID_BASE + (os.getpid() * 64) % (1 << 30)
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:
            continue
        if fields["State"].split()[0] not in "ZX" and \
                first <= int(fields["Uid"].split()[0]) < first + 64:
            found.append(int(pid))
    return found


def in_tmp(name):
    return pathlib.Path(tempfile.gettempdir()) / name


def test_runs_stdio_and_reports_isolation(backend):
    report = run(backend, "print(input()[::-1])", ["abc", "xy"])
    assert [t["stdout"] for t in report.tests] == ["cba\n", "yx\n"]
    assert report.isolation["backend"] == backend and not report.insecure
    # bubblewrap's init, the harness and its zygote at most
    assert report.isolation["pid"] <= 2 and report.isolation["visible_processes"] <= 3
    if os.geteuid() == 0:
        assert report.isolation["uid"] >= sandbox.SANDBOX_UID_BASE


def test_private_root_hides_training_data_venv_and_site_packages(backend, tmp_path):
    planted = [tmp_path / "train.jsonl", in_tmp("prime_planted_train.jsonl")]
    for path in planted:
        path.write_text('{"inputs": ["3"], "outputs": ["9"]}\n')
    code = f"""
    import os, sys
    for path in {[str(p) for p in planted]!r} + [{sys.prefix!r}, '/etc/passwd', '/data']:
        print(os.path.exists(path))
    found = [os.path.join(d, f) for root in ('/tmp', '/data', '/') for d, _, fs in os.walk(root)
             for f in fs if f.endswith(('.jsonl', '.parquet'))]
    print(found)
    try:
        import pytest
        print('imported')
    except ImportError:
        print('no site-packages')
    """
    try:
        lines = out(run(backend, code)).splitlines()
    finally:
        for path in planted:
            path.unlink()
    assert lines == ["False"] * 5 + ["[]", "no site-packages"]


def test_the_oom_killer_picks_the_sandbox_first(backend):
    assert out(run(backend, "print(open('/proc/self/oom_score_adj').read())")) == "1000"


def test_cannot_kill_the_caller_or_see_its_processes(backend):
    victim = subprocess.Popen(["sleep", "60"])
    code = f"""
    import os, signal
    for target in ({victim.pid}, {os.getpid()}, {os.getppid()}):
        try:
            os.kill(target, signal.SIGKILL); print('killed')
        except OSError as e:
            print('denied')
    """
    try:
        assert out(run(backend, code)).split() == ["denied"] * 3
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_killing_the_harness_then_forking_in_a_loop_leaves_nothing(backend):
    code = """
    import os, signal
    os.kill(os.getppid() if os.getppid() > 1 else 1, signal.SIGKILL)
    while True:
        try:
            if os.fork():
                os._exit(0)
        except OSError:
            pass
    """
    start = time.monotonic()
    for _ in range(3):
        report = run(backend, code, ["", ""], test_timeout=1.0)
        assert report.tests[1] is None or report.tests[1]["status"] != "ok"
    assert time.monotonic() - start < 20
    time.sleep(0.2)
    assert not sandbox_processes()


def test_fork_bomb_is_capped_per_answer_and_cleaned_up(backend):
    code = """
    import os, time
    n = 0
    for _ in range(10_000):
        try:
            if os.fork() == 0:
                time.sleep(60); os._exit(0)
            n += 1
        except OSError:
            break
    print(n)
    """
    report = run(backend, code, limits=sandbox.SandboxLimits(max_processes=16))
    assert int(out(report)) < 16
    assert not sandbox_processes()


def test_no_network_not_even_a_local_listener(backend):
    with socket.create_server(("127.0.0.1", 0)) as server:
        code = f"""
        import socket
        try:
            socket.create_connection(('127.0.0.1', {server.getsockname()[1]}), timeout=1)
            print('connected')
        except OSError as e:
            print('blocked')
        """
        assert out(run(backend, code)) == "blocked"
        server.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing completed a handshake
            server.accept()


def test_host_unix_sockets_are_unreachable(backend, tmp_path):
    paths = [str(tmp_path / "host.sock"), str(in_tmp(f"prime_host_{os.getpid()}.sock"))]
    servers = []
    for path in paths:
        server = socket.socket(socket.AF_UNIX)
        server.bind(path)
        server.listen(1)
        servers.append(server)
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(f"\0prime_host_{os.getpid()}")
    abstract.listen(1)
    code = f"""
    import socket
    for path in {paths!r} + ['\\0prime_host_{os.getpid()}']:
        try:
            socket.socket(socket.AF_UNIX).connect(path); print('connected')
        except OSError:
            print('blocked')
    """
    try:
        assert out(run(backend, code)).split() == ["blocked"] * 3
    finally:
        for server in [*servers, abstract]:
            server.close()
        os.unlink(paths[1])


def test_writes_do_not_persist_and_host_dirs_are_unwritable(backend):
    marker = f"prime_persist_{os.getpid()}"
    code = f"""
    import os
    print(os.path.exists('/tmp/{marker}'))
    open('/tmp/{marker}', 'w').write('x')
    for path in ('/dev/shm/{marker}', '/{marker}', '/root/{marker}', '/proc/sys/kernel/{marker}'):
        try:
            open(path, 'w').write('x'); print('wrote')
        except OSError:
            print('denied')
    """
    first, second = run(backend, code), run(backend, code)
    assert out(first).split() == ["False", "wrote", "denied", "denied", "denied"]
    assert out(second).split()[0] == "False"
    assert not os.path.exists(f"/tmp/{marker}") and not os.path.exists(f"/dev/shm/{marker}")


def test_memory_is_capped_across_children(backend):
    """Six children try to hold 100 MiB each at once under a 256 MiB per-answer cap; counts
    the children that finished allocating and are still alive (the OOM killer ends others)."""
    code = """
    import os, time
    r, w = os.pipe()
    children = []
    for _ in range(6):
        pid = os.fork()
        if pid == 0:
            block = bytearray(100 << 20)
            for i in range(0, len(block), 4096):
                block[i] = 1
            os.write(w, b'%8d' % os.getpid())
            time.sleep(30)
            os._exit(0)
        children.append(pid)
    time.sleep(2)
    os.set_blocking(r, False)
    try:
        ready = {int(chunk) for chunk in os.read(r, 1000).split()}
    except BlockingIOError:
        ready = set()
    print(sum(os.waitpid(pid, os.WNOHANG)[0] == 0 for pid in ready))
    """
    report = run(backend, code, limits=SMALL, test_timeout=5.0)
    record = report.tests[0]
    assert record is None or record["status"] != "ok" or int(record["stdout"]) <= 2


def test_memfd_and_shm_count_against_the_memory_cap(backend):
    code = """
    import mmap, os
    held, fds = 0, []
    try:
        for _ in range(60):
            fd = os.memfd_create('x')
            os.write(fd, b'x' * (8 << 20))
            fds.append(fd)
            held += 8
    except OSError:
        pass
    print(held)
    """
    report = run(backend, code, limits=SMALL, test_timeout=6.0)
    record = report.tests[0]
    assert record is None or record["status"] != "ok" or int(record["stdout"]) < 256


def test_disk_writes_are_capped(backend):
    code = """
    written = 0
    try:
        for i in range(64):
            with open(f'/tmp/f{i}', 'wb') as handle:
                handle.write(b'x' * (4 << 20))
            written += 4
    except OSError:
        pass
    print(written)
    """
    report = run(backend, code, limits=sandbox.SandboxLimits(disk_bytes=32 << 20))
    assert int(out(report)) <= 32


def test_deep_directory_tree_is_no_problem(backend):
    code = """
    import os
    for _ in range(3000):
        os.mkdir('d')
        os.chdir('d')
    print('deep')
    """
    report = run(backend, code, test_timeout=10.0)
    assert out(report) == "deep" and report.tests[0]["status"] == "ok"


def test_infinite_loop_times_out_and_later_tests_still_run(backend):
    report = run(backend, "n = int(input())\nwhile n == 1: pass\nprint(n)", ["1", "2"],
                 test_timeout=0.5)
    assert report.tests[0]["status"] == "timeout"
    assert report.tests[1]["stdout"] == "2\n"


def test_sleeping_code_hits_the_total_wall_limit(backend):
    start = time.monotonic()
    report = run(backend, "import time\ntime.sleep(100)", ["", ""], total_timeout=1.5)
    assert time.monotonic() - start < 5
    assert all(t is None or t["status"] == "timeout" for t in report.tests)
    assert not sandbox_processes()


def test_memory_bomb_is_a_memory_error(backend):
    report = run(backend, "x = bytearray(8 * 1024 ** 3)\nprint('allocated')", limits=SMALL)
    assert "MemoryError" in report.tests[0]["error"]


def test_huge_output_is_capped(backend):
    limits = sandbox.SandboxLimits(max_output_bytes=100_000)
    report = run(backend, "import sys\nwhile True: sys.stdout.write('x' * 10000)", limits=limits)
    assert len(report.tests[0]["stdout"]) <= 100_000 and report.tests[0]["truncated"]


def test_cgroups_are_removed_after_each_run(backend):
    run(backend, "print(1)")
    parents = [os.path.join(cgroups.ROOT, cgroups.V2_PARENT),
               *(cgroups._v1_dirs() or {}).values()]
    pattern = f"answer_{os.getpid()}_*"
    assert not [path for parent in parents for path in glob.glob(os.path.join(parent, pattern))]


def test_the_private_root_is_never_mounted_over_a_bound_source():
    """A tmpfs over /tmp would hide a virtual environment under /tmp (its numpy is bound into the
    sandbox): the builtin backend then failed to start. The mount point skips any source's ancestor."""
    from prime_jax.verifiers._minroot import new_root_mount_point

    every_dir = lambda path: True  # noqa: E731
    assert new_root_mount_point(["/usr", "/lib"], exists=every_dir) == "/tmp"
    assert new_root_mount_point(["/usr", "/tmp/ci/.venv/lib/numpy"], exists=every_dir) == "/mnt"
    assert new_root_mount_point(["/tmp/x", "/mnt/y"], candidates=("/tmp", "/mnt", "/srv"), exists=every_dir) == "/srv"
    with pytest.raises(OSError, match="no mount point"):
        new_root_mount_point(["/tmp"], candidates=("/tmp",), exists=every_dir)
