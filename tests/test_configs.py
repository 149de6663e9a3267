"""Every shipped gin config parses and its settings build (paths are not opened)."""

import pathlib

import gin
import pytest

from prime_jax import gin_cli
from prime_jax.reward_models import offline as reward_trainer
from prime_jax.rl import trainer  # noqa: F401  (registers the names the configs bind)
from prime_jax.rl.config import PrimeConfig
from prime_jax.rollout import SamplingConfig

ALL_CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[1] / "configs").glob("*.gin"))
REWARD_CONFIGS = [p for p in ALL_CONFIGS if p.name.startswith("reward_")]
CONFIGS = [p for p in ALL_CONFIGS if p not in REWARD_CONFIGS]
ADD_ONS = {"pav_rl.gin", "spro.gin"}  # bindings added on top of a task config: parsed after quickstart.gin


@pytest.mark.parametrize("path", REWARD_CONFIGS, ids=[p.name for p in REWARD_CONFIGS])
def test_reward_config_parses_and_builds(path):
    gin.clear_config()
    try:
        gin_cli.parse([str(path)])
        data = gin.get_configurable(reward_trainer.RewardDataConfig)()
        assert data.num_prompts > 0 and 0 < data.val_fraction < 1
        kind = gin.query_parameter("prime_jax.reward_models.offline.train_reward.kind")  # @Kind(): build it
        kind = reward_trainer.kind_of(kind.scoped_configurable_fn() if hasattr(kind, "scoped_configurable_fn") else kind)
        mini_batch = gin.query_parameter("prime_jax.reward_models.offline.train_reward.mini_batch")
        assert mini_batch % kind.rows_per_group(data) == 0
        assert gin.get_configurable(SamplingConfig)().max_new_tokens > 0
    finally:
        gin.clear_config()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_parses_and_builds(path):
    gin.clear_config()
    try:
        gin_cli.parse(["quickstart.gin", str(path)] if path.name in ADD_ONS else [str(path)])
        prime = gin.get_configurable(PrimeConfig)()
        sampling = gin.get_configurable(SamplingConfig)()
        assert prime.collect.batch_prompts * prime.num_samples % prime.policy_mini_batch == 0
        assert sampling.max_new_tokens > 0
        assert gin.query_parameter("prime_jax.rl.trainer.train.steps") > 0
        if path.name == "pav_rl.gin":
            assert prime.step_reward.form == "effective" and prime.explicit_prm
        if path.name == "spro.gin":
            assert prime.self_prm and not prime.uses_prm and prime.advantage.credit == "msa"
    finally:
        gin.clear_config()


def test_rloo_baseline_differs_only_in_the_process_reward():
    gin.clear_config()
    try:
        gin_cli.parse(["quickstart_rloo.gin"])
        assert not gin.get_configurable(PrimeConfig)().uses_prm
    finally:
        gin.clear_config()
