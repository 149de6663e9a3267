"""CLI: ``python -m prime_jax.train_reward --gin configs/reward_arithmetic.gin [--gin BINDING ...] [--workdir DIR]``.

Trains an offline implicit PRM or outcome reward model (``reward_trainer.train_reward.kind``)
on outcome labels of the base policy's own samples; everything is configured through gin
bindings of ``prime_jax.reward_trainer.train_reward``; ``--workdir`` overrides the bound value.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import gin

from prime_jax import gin_cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m prime_jax.train_reward",
        description="Train an offline reward model (implicit PRM or ORM) from outcome labels. Example: "
                    "python -m prime_jax.train_reward --gin configs/reward_arithmetic.gin --workdir runs/orm")
    gin_cli.add_gin_arguments(parser)
    parser.add_argument("--workdir", help="output directory (overrides reward_trainer.train_reward.workdir)")
    args = parser.parse_args(gin_cli.split_gin_args(sys.argv[1:] if argv is None else argv))
    if not args.gin:
        print("error: give at least one --gin config file (e.g. configs/reward_arithmetic.gin)", file=sys.stderr)
        return 2
    from prime_jax import reward_trainer

    try:
        gin_cli.parse(args.gin)
    except gin_cli.GinError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        workdir = pathlib.Path(args.workdir or gin.query_parameter("prime_jax.reward_trainer.train_reward.workdir"))
    except ValueError:
        print("error: give --workdir DIR or bind reward_trainer.train_reward.workdir in a gin file", file=sys.stderr)
        return 2
    gin_cli.write_config(workdir / "config.gin")
    try:
        gin.get_configurable(reward_trainer.train_reward)(workdir=str(workdir))
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
