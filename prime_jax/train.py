"""CLI: ``python -m prime_jax.train --gin configs/quickstart.gin [--gin BINDING ...] [--workdir DIR] [--steps N]``.

Everything is configured through gin bindings of ``prime_jax.rl.trainer.train``
and the ``*Config`` dataclasses it takes; ``--workdir`` and ``--steps``
override the bound values. Re-running with a larger ``--steps`` continues
the run from its latest checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys

import gin

from prime_jax import gin_cli


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m prime_jax.train",
        description="Train a policy with PRIME (online RL with an implicit process reward model). "
                    "Example: python -m prime_jax.train --gin configs/quickstart.gin --workdir runs/qs")
    gin_cli.add_gin_arguments(parser)
    parser.add_argument("--workdir", help="run directory: config, checkpoints, metrics.jsonl, "
                                          "TensorBoard events, curves.png (overrides rl.trainer.train.workdir)")
    parser.add_argument("--steps", type=int, help="total RL steps (overrides rl.trainer.train.steps); "
                                                  "a larger value continues a finished run")
    return parser.parse_args(gin_cli.split_gin_args(argv))


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from prime_jax.rl import trainer  # gin files bind prime_jax.rl.trainer.train

    try:
        workdir = gin_cli.configure(args.gin, workdir=args.workdir, workdir_binding="prime_jax.rl.trainer.train.workdir",
                                    example="configs/quickstart.gin")
    except gin_cli.GinError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    train = gin.get_configurable(trainer.train)
    overrides = {k: v for k, v in (("workdir", str(workdir)), ("steps", args.steps)) if v is not None}
    lead = os.environ.get("JAX_PROCESS_ID", "0") == "0"  # several processes: the first writes
    if lead:
        gin_cli.write_config(workdir / "config.gin")
    train(**overrides, after_first_step=lambda: lead and gin_cli.write_config(
        workdir / "operative_config.gin", operative=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
