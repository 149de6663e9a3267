"""CLI: ``python -m prime_jax.export --workdir W [--step N] [--role policy|prm] --out DIR``.

Writes the chosen role of a checkpoint as a Hugging Face directory
(safetensors + config.json + tokenizer) that
``transformers.AutoModelForCausalLM.from_pretrained`` loads. The model
structure comes from the run's base model (``run.json``), the weights from
the verified checkpoint.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from flax import nnx

from prime_jax.checkpoint import Checkpointer
from prime_jax.data import load_tokenizer
from prime_jax.models import from_pretrained, save_pretrained


def load_role(workdir: str | pathlib.Path, role: str = "policy", *, step: int | None = None):
    """The ``role`` ("policy" or "prm") of a run at ``step`` (default: latest) as a ``Transformer``,
    plus the run's tokenizer: structure from the run's base model, weights from the verified
    checkpoint."""
    workdir = pathlib.Path(workdir)
    run_file = workdir / "run.json"
    if not run_file.exists():
        raise FileNotFoundError(f"{run_file} not found: is {workdir} a prime_jax run directory?")
    run = json.loads(run_file.read_text())
    if role not in ("policy", "prm"):
        raise ValueError(f"role {role!r}: expected 'policy' or 'prm'")
    if role == "prm" and not run["uses_prm"]:
        raise ValueError(f"run {workdir} has no PRM (process_coef = 0); use role='policy'")
    checkpointer = Checkpointer(workdir / "checkpoints")
    state, _ = checkpointer.restore_raw(step)
    checkpointer.close()
    model = from_pretrained(run["base_model"])
    params = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(params, _unwrap_values(state[f"{role}_params"]))
    nnx.update(model, params)
    return model, load_tokenizer(run["tokenizer"])


def export(workdir: str | pathlib.Path, out: str | pathlib.Path, *, step: int | None = None,
           role: str = "policy") -> pathlib.Path:
    """Export ``role`` ("policy" or "prm") at ``step`` (default: latest) to ``out``."""
    model, tokenizer = load_role(workdir, role, step=step)
    save_pretrained(model, out, tokenizer=tokenizer)
    return pathlib.Path(out)


def _unwrap_values(tree):
    """A raw restore keeps each variable as ``{"value": array}``; NNX's pure dicts hold the array."""
    if isinstance(tree, dict):
        if set(tree) == {"value"}:
            return tree["value"]
        return {key: _unwrap_values(value) for key, value in tree.items()}
    return tree


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prime_jax.export",
                                     description="Export a trained role of a prime_jax run to Hugging Face format.")
    parser.add_argument("--workdir", required=True, help="the run directory (holds run.json and checkpoints/)")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    parser.add_argument("--role", default="policy", choices=("policy", "prm"), help="which model to export")
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args(argv)
    try:
        path = export(args.workdir, args.out, step=args.step, role=args.role)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
