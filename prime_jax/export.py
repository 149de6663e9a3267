"""CLI: ``python -m prime_jax.export --workdir W [--step N] [--role policy|prm] --out DIR``.

Writes the chosen role of a checkpoint as a Hugging Face directory
(safetensors + config.json + tokenizer) that
``transformers.AutoModelForCausalLM.from_pretrained`` loads. The model
structure comes from the run's base model (``run.json``), the weights from
the verified checkpoint.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from prime_jax.models import save_pretrained
from prime_jax.run_dir import ROLES, load_role


def export(workdir: str | pathlib.Path, out: str | pathlib.Path, *, step: int | None = None,
           role: str = "policy") -> pathlib.Path:
    """Export ``role`` ("policy" or "prm") at ``step`` (default: latest) to ``out``."""
    model, tokenizer = load_role(workdir, role, step=step)
    save_pretrained(model, out, tokenizer=tokenizer)
    return pathlib.Path(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prime_jax.export",
                                     description="Export a trained role of a prime_jax run to Hugging Face format.")
    parser.add_argument("--workdir", required=True, help="the run directory (holds run.json and checkpoints/)")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    parser.add_argument("--role", default="policy", choices=ROLES, help="which model to export")
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
