"""How a training run is driven, whatever it trains: one home for the loop's settings."""

from __future__ import annotations

import dataclasses

from prime_jax.config_checks import check_fields_at_least
from prime_jax.sharding import MeshConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Settings of a run's loop, read by ``rl.trainer.train`` and ``reward_models.offline.train_reward``.

    ``seed`` seeds every random choice of the run (weights of a fresh model, prompt order,
    sampling, mini-batch order); ``mesh`` lays the devices out; ``verifier_workers`` is the size of
    the outcome-verifier process pool (0: one per CPU). ``train`` only: ``eval_every`` RL steps (0: never) a greedy
    evaluation on ``eval_batch_prompts`` prompts at a time, and a checkpoint every
    ``checkpoint_every`` steps (and at the last). ``train_reward`` validates once per epoch and
    writes the trained model at the end.
    """

    seed: int = 0
    mesh: MeshConfig = MeshConfig()
    verifier_workers: int = 2
    eval_every: int = 10
    eval_batch_prompts: int = 64
    checkpoint_every: int = 10

    def __post_init__(self):
        check_fields_at_least(self, {"verifier_workers": 0, "eval_every": 0, "eval_batch_prompts": 1,
                                     "checkpoint_every": 1})
