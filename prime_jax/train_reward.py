"""CLI: ``python -m prime_jax.train_reward --gin configs/reward_arithmetic.gin [--gin BINDING ...] [--workdir DIR]``.

Trains an offline reward model of ``reward_models.offline.train_reward.kind``: an implicit PRM or an
outcome reward model on outcome labels of the base policy's own samples, or an explicit PRM on step
labels (``reward_models.kinds``, ``reward_models.explicit_prm``); everything is configured through
gin bindings of ``prime_jax.reward_models.offline.train_reward`` and its kind; ``--workdir``
overrides the bound value.
"""

from __future__ import annotations

import argparse
import sys

import gin

from prime_jax import gin_cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m prime_jax.train_reward",
        description="Train an offline reward model (implicit PRM, ORM or explicit PRM). Example: "
                    "python -m prime_jax.train_reward --gin configs/reward_arithmetic.gin --workdir runs/orm")
    gin_cli.add_gin_arguments(parser)
    parser.add_argument("--workdir", help="output directory (overrides reward_models.offline.train_reward.workdir)")
    args = parser.parse_args(gin_cli.split_gin_args(sys.argv[1:] if argv is None else argv))
    from prime_jax.reward_models import offline  # gin files bind prime_jax.reward_models.offline.train_reward

    try:
        workdir = gin_cli.configure(args.gin, workdir=args.workdir,
                                    workdir_binding="prime_jax.reward_models.offline.train_reward.workdir",
                                    example="configs/reward_arithmetic.gin")
    except gin_cli.GinError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    gin_cli.write_config(workdir / "config.gin")
    try:
        gin.get_configurable(offline.train_reward)(workdir=str(workdir))
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
