"""The verifiers are pure Python: no JAX (they run in worker processes beside the trainer)."""

import ast
import pathlib

import prime_jax.verifiers

PACKAGE_DIR = pathlib.Path(prime_jax.verifiers.__file__).parent
FORBIDDEN = ("jax", "flax", "optax", "orbax", "seqio", "tensorflow")


def test_verifiers_never_import_jax():
    for path in PACKAGE_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_public_api():
    from prime_jax.verifiers import VerifierPool, code, math

    assert callable(math.verify) and callable(code.verify)
    assert callable(VerifierPool.submit) and callable(VerifierPool.score)
