"""prime_jax.models imports no training-side dependency (gin, optax, orbax, seqio)."""

import ast
import pathlib

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
                    assert name.split(".")[1] in ("sharding", "models"), f"{path.name}: {name}"


def test_public_api():
    for name in ["ModelConfig", "PRESETS", "Transformer", "from_pretrained", "save_pretrained",
                 "token_logprobs", "token_logprobs_and_entropy", "KVCache"]:
        assert hasattr(prime_jax.models, name), name
