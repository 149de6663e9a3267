"""The training CLI as 2 processes on one machine (jax.distributed, CPU collectives over gloo).

Both processes feed their share of every batch; the first step's rollouts and PRM loss must be
those of one process driving the same number of devices.
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from prime_jax.metrics import read_metrics

from tiny_run import TINY

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(workdir) -> list[str]:
    args = [a for g in TINY for a in ("--gin", g)]
    return [sys.executable, "-m", "prime_jax.train", *args, "--workdir", str(workdir), "--steps", "2"]


def _env(devices: int, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_") and k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


def test_two_processes_match_one(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    port = _free_port()
    procs = [subprocess.Popen(_command(tmp_path / "two"), cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=_env(2, JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i),
                                       JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}"))
             for i in range(2)]
    single = subprocess.run(_command(tmp_path / "one"), cwd=root, capture_output=True, text=True, env=_env(4),
                            timeout=600)
    outputs = [p.communicate(timeout=600)[0].decode(errors="replace") for p in procs]
    for i, (proc, out) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, f"process {i} failed:\n{out[-3000:]}"
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]

    two = read_metrics(tmp_path / "two" / "metrics.jsonl")
    one = read_metrics(tmp_path / "one" / "metrics.jsonl")
    assert [r["step"] for r in two] == [r["step"] for r in one] == [0, 1, 2]
    assert two[0] == one[0]  # greedy evaluation of the same SFT model
    for key in ("accuracy", "response_length", "truncated_fraction", "kept_fraction"):
        assert two[1][key] == one[1][key], key  # the same rollouts, sampled across 2 processes
    np.testing.assert_allclose(two[1]["prm_loss"], one[1]["prm_loss"], rtol=1e-4)
    # PPO mini-batches are shuffled within each process's rows, so updates differ from then on.
    assert all(np.isfinite(r[k]) for r in two[1:] for k in ("policy_loss", "approx_kl", "entropy"))
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]
