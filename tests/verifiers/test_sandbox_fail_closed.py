"""Fail closed: a missing sandbox layer stops code from running, with a message naming it and
the fix; only the explicitly named insecure mode runs code unisolated, and says so."""

import json
import subprocess

import pytest

from prime_jax.verifiers import VerifierPool, backends, cgroups, code, sandbox

TESTS = json.dumps({"inputs": ["3"], "outputs": ["6"]})
DOUBLE = "```python\nprint(2 * int(input()))\n```"


@pytest.fixture(autouse=True)
def fresh_probes():
    """Probes are cached per process; forget them around each test."""
    sandbox.resolve.cache_clear()
    cgroups.unavailable.cache_clear()
    yield
    sandbox.resolve.cache_clear()
    cgroups.unavailable.cache_clear()


@pytest.fixture
def no_bwrap(monkeypatch):
    monkeypatch.setattr(backends.shutil, "which", lambda name: None)


@pytest.fixture
def no_cgroups(monkeypatch):
    monkeypatch.setattr(cgroups, "unavailable", lambda: "cannot create a cgroup (simulated)")


@pytest.fixture
def no_caps(monkeypatch):
    monkeypatch.setattr(backends, "_effective_capabilities", lambda: 0)


def test_missing_bubblewrap_names_the_package(no_bwrap):
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install -y bubblewrap"):
        sandbox.probe("bwrap")


def test_missing_cgroups_refuses_every_backend(no_cgroups):
    for name in sandbox.BACKENDS:
        with pytest.raises(sandbox.SandboxUnavailable, match="per-answer cgroup"):
            sandbox.probe(name)


def test_builtin_without_cap_sys_admin_refuses(no_caps):
    with pytest.raises(sandbox.SandboxUnavailable, match="CAP_SYS_ADMIN"):
        sandbox.probe("builtin")


def test_auto_lists_every_backend_and_the_opt_out(no_bwrap, no_caps):
    with pytest.raises(sandbox.SandboxUnavailable) as error:
        sandbox.probe("auto")
    message = str(error.value)
    assert "bubblewrap" in message and "CAP_SYS_ADMIN" in message
    assert sandbox.INSECURE in message


def test_a_self_test_failure_refuses(monkeypatch):
    monkeypatch.setattr(sandbox.Bwrap, "missing", lambda self: [])
    monkeypatch.setattr(sandbox.Bwrap, "command", lambda self, limits: ["false"])
    with pytest.raises(sandbox.SandboxUnavailable, match="sandbox start: it failed"):
        sandbox.probe("bwrap")


def test_verify_without_a_sandbox_runs_nothing_and_says_why(no_bwrap, no_caps):
    verdict = code.verify_detailed(DOUBLE, TESTS)
    assert (verdict.score, verdict.status) == (0.0, "error")
    assert "bubblewrap" in verdict.reason


def test_pool_for_code_refuses_to_start(no_bwrap):
    with pytest.raises(sandbox.SandboxUnavailable, match="bubblewrap"):
        VerifierPool(num_workers=1, sandbox="bwrap", abilities=("math", "code"))


def test_general_pool_scores_math_and_refuses_code_rows(no_bwrap):
    with VerifierPool(num_workers=1, sandbox="bwrap") as pool:
        assert pool.score([("\\boxed{2}", "2", "math")]) == [1.0]
        with pytest.raises(sandbox.SandboxUnavailable, match="bubblewrap"):
            pool.submit([("\\boxed{2}", "2", "math"), (DOUBLE, TESTS, "code")])


def test_insecure_mode_runs_only_when_named_and_every_verdict_says_so():
    verdict = code.verify_detailed(DOUBLE, TESTS, backend=sandbox.INSECURE)
    assert verdict.score == 1.0 and verdict.reason.startswith("INSECURE")
    report = sandbox.run_tests("print(1)", [""], backend=sandbox.INSECURE)
    assert report.insecure


def test_unknown_backend_name_is_an_error():
    with pytest.raises(ValueError, match="unknown sandbox backend"):
        sandbox.probe("nsjail-maybe")


def test_insecure_clean_up_kills_only_the_codes_processes():
    """Without a PID namespace the harness must not kill(-1): that is every process of the
    caller's uid (all processes, as root)."""
    victim = subprocess.Popen(["sleep", "60"])
    try:
        code_with_child = "import os, time\nif os.fork() == 0:\n    time.sleep(60)\nprint(1)"
        report = sandbox.run_tests(code_with_child, [""], backend=sandbox.INSECURE)
        assert report.tests[0]["stdout"] == "1\n"
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()
