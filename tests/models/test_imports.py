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


@pytest.mark.parametrize("before", ["", "import jax; ", "import jax.numpy; from flax import nnx; "])
def test_importing_prime_jax_prints_no_tpu_discovery_errors(before):
    """On this CPU machine (libtpu installed by the test extra) importing prime_jax, before or after
    jax / flax, leaves no libtpu host-discovery lines on stderr once JAX starts its backends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TPU_", "JAX_PLATFORMS"))}
    code = f"{before}import prime_jax, jax, jax.numpy as jnp; print(jax.devices()); print(float(jnp.ones(3).sum()))"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    noisy = [line for line in result.stderr.splitlines() if "TPU" in line or "libtpu" in line or "InitGoogle" in line]
    assert not noisy, "\n".join(noisy)
