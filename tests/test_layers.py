"""The import graph follows the data flow: a module imports only from its own layer or the layers
before it, the CLIs never import each other, and the models, the PRIME math and the verifiers
stay free of the orchestration libraries (gin, optax, orbax, seqio / TensorFlow)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "prime_jax"
LAYERS = [  # in data-flow order; a module may import from its own layer and every earlier one
    ["config_checks"],
    ["sharding", "topologies"],
    ["models"],
    ["data"],
    ["rollout"],
    ["verifiers"],
    ["scans"], ["rewards"], ["credit"], ["advantages"], ["losses"],
    ["checkpoint", "metrics"], ["run_dir"],
    ["training"],
    ["experience"],
    ["reward_models"],
    ["pav"],
    ["step_verifiers"],
    ["rl"],
    ["search"],
    ["eval"],
    ["gin_cli"],
    ["train", "train_reward", "evaluate", "export", "processbench", "mc_label", "memory_plan"],
]
CLIS = set(LAYERS[-1])
PURE = {"config_checks", "models", "scans", "rewards", "credit", "advantages", "losses", "verifiers", "rollout"}
FORBIDDEN_IN_PURE = {"gin", "optax", "orbax", "seqio", "tensorflow"}
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield path, parts


def _imports(path: pathlib.Path) -> list[str]:
    """Dotted names of everything ``path`` imports (``from a import b`` gives ``a.b``)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def _top(dotted: str) -> str | None:
    """The first-level part of prime_jax a dotted import name points into (None if outside)."""
    parts = dotted.split(".")
    return parts[1] if parts[0] == "prime_jax" and len(parts) > 1 else None


def test_every_module_has_a_layer():
    unplaced = {parts[0] for _, parts in _modules() if parts[0] not in RANK and parts != ("__init__",)}
    assert not unplaced, f"add these to LAYERS in tests/test_layers.py: {sorted(unplaced)}"


@pytest.mark.parametrize("path, parts", list(_modules()), ids=lambda x: "/".join(x) if isinstance(x, tuple) else "")
def test_imports_follow_the_data_flow(path, parts):
    own = parts[0]
    if own == "__init__":
        return
    for name in _imports(path):
        if own in PURE:
            assert name.split(".")[0] not in FORBIDDEN_IN_PURE, f"prime_jax/{'/'.join(parts)}.py imports {name}"
        target = _top(name)
        if target is None or target == "__version__":
            continue
        assert RANK[target] <= RANK[own], (
            f"prime_jax/{'/'.join(parts)}.py imports {name}: layer '{target}' comes after '{own}'")
        if own in CLIS and target in CLIS:
            assert target == own, f"CLI prime_jax/{own}.py imports another CLI ({name})"
