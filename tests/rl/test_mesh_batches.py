"""The trainer names the batches its mesh cannot split before any training runs."""

import jax

from prime_jax import sharding
from prime_jax.advantages import AdvantageConfig
from prime_jax.experience.collect import CollectConfig
from prime_jax.rl.config import PrimeConfig
from prime_jax.rl.sft import SFTConfig
from prime_jax.rl.trainer import batch_rows, warn_undivided
from prime_jax.training.run_config import RunConfig


def _logged(mesh, prime, sft, run) -> list[str]:
    lines = []
    warn_undivided(mesh, batch_rows(prime, sft, run), lines.append)
    return lines


def test_a_mesh_that_splits_every_batch_logs_nothing_and_one_that_does_not_names_them():
    prime = PrimeConfig(collect=CollectConfig(batch_prompts=8, num_samples=4), prm_mini_batch=16,
                        policy_mini_batch=32, policy_micro_batches=2)
    four = sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=2, tensor=2))
    assert _logged(four, prime, SFTConfig(batch_size=64), RunConfig(eval_batch_prompts=128)) == []

    three = sharding.make_mesh(sharding.MeshConfig(data=3, fsdp=1, tensor=1),
                               devices=jax.devices()[:3])
    (line,) = _logged(three, prime, SFTConfig(batch_size=64), RunConfig(eval_batch_prompts=66))
    assert "3 batch shards" in line
    assert "SFTConfig.batch_size / micro_batches=64" in line
    assert "PrimeConfig.policy_mini_batch / policy_micro_batches=16" in line
    assert "RunConfig.eval_batch_prompts=66" not in line  # 3 divides 66
    assert "rollout round (CollectConfig prompts per round x num_samples)=32" in line


def test_no_sft_no_prm_and_no_evaluation_leave_their_batches_out():
    collect = CollectConfig(batch_prompts=8, num_samples=4)
    with_prm = batch_rows(PrimeConfig(collect=collect, prm_mini_batch=16, policy_mini_batch=32),
                          SFTConfig(), RunConfig())
    assert {"SFTConfig.batch_size / micro_batches", "PrimeConfig.prm_mini_batch / prm_micro_batches",
            "RunConfig.eval_batch_prompts"} <= set(with_prm)
    rloo = PrimeConfig(collect=collect, prm_mini_batch=16, policy_mini_batch=32,
                       advantage=AdvantageConfig(process_coef=0.0))
    names = set(batch_rows(rloo, None, RunConfig(eval_every=0)))
    assert not any(name.startswith(("SFTConfig", "PrimeConfig.prm", "RunConfig")) for name in names)
    assert "PrimeConfig.policy_mini_batch / policy_micro_batches" in names
