"""prime_jax.models imports no training-side dependency (gin, optax, orbax, seqio); importing prime_jax
prints nothing meant for another platform."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

import prime_jax.models

FORBIDDEN = {"gin", "optax", "orbax", "seqio", "tensorflow", "torch"}


def test_models_import_graph():
    root = pathlib.Path(prime_jax.models.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
                if name.startswith("prime_jax."):
                    assert name.split(".")[1] in ("config_checks", "sharding", "models"), f"{path.name}: {name}"


def test_public_api():
    for name in ["ModelConfig", "PRESETS", "Transformer", "from_pretrained", "save_pretrained",
                 "token_logprobs", "token_logprobs_and_entropy", "KVCache"]:
        assert hasattr(prime_jax.models, name), name


def _probe_lines(code: str) -> list[str]:
    """Lines of stderr from a fresh interpreter running ``code`` that come from a TPU or CUDA probe;
    the environment drops what the test set-up or a user may have set to quiet them."""
    quieting = ("TPU_", "JAX_PLATFORMS", "JAX_SKIP_CUDA_CONSTRAINTS_CHECK")
    env = {k: v for k, v in os.environ.items() if not k.startswith(quieting)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    marks = ("TPU", "libtpu", "InitGoogle", "CUDA", "cuInit", "cuda", "plugin configuration error")
    return [line for line in result.stderr.splitlines() if any(mark in line for mark in marks)]


@pytest.mark.parametrize("before", ["", "import jax; ", "import jax.numpy; from flax import nnx; "])
def test_importing_prime_jax_prints_no_probe_errors(before):
    """On this CPU machine (libtpu and the CUDA plugin installed by the test extra) importing
    prime_jax, before or after jax / flax, leaves no libtpu host-discovery line and no CUDA check
    traceback on stderr once JAX starts its backends."""
    code = f"{before}import prime_jax, jax, jax.numpy as jnp; print(jax.devices()); print(float(jnp.ones(3).sum()))"
    noisy = _probe_lines(code)
    assert not noisy, "\n".join(noisy)


def test_without_prime_jax_the_cuda_plugin_complains():
    """The control: the same start without prime_jax prints the CUDA plugin's failed check (so the
    test above can fail)."""
    pytest.importorskip("jax_cuda12_plugin", reason="the CUDA plugin (test extra) is what complains")
    assert _probe_lines("import jax; print(jax.devices())")
