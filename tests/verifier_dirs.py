"""Tiny random verifier directories, written the way the commands that make them write them
(shared by the ProcessBench, evaluate and step-verifier tests)."""

import jax
from flax import nnx

from prime_jax.checkpoint import Checkpointer
from prime_jax.models import (Transformer, explicit_prm_from_backbone, orm_from_backbone, save_explicit_prm, save_orm,
                              save_pretrained)
from prime_jax.rewards import ImplicitRewardConfig
from prime_jax.run_dir import RunInfo, write_reward_model_info
from tiny_run import tiny_config


def save_base(path, tokenizer) -> Transformer:
    """A random 1-layer model over ``tokenizer``, saved as a Hugging Face directory at ``path``."""
    model = Transformer(tiny_config(tokenizer), rngs=nnx.Rngs(0))
    save_pretrained(model, path, tokenizer=tokenizer)
    return model


def noisy_params(model, scale: float = 0.05):
    """``model``'s weights plus Gaussian noise (so an implicit PRM's log-ratios are not zero)."""
    params = nnx.state(model, nnx.Param).to_pure_dict()
    return jax.tree.map(lambda x: x + scale * jax.random.normal(jax.random.key(1), x.shape), params)


def write_prime_run(path, base_dir, base, *, beta: float):
    """A PRIME run directory (run.json + checkpoint 1) whose PRM is ``base`` plus noise."""
    path.mkdir(parents=True, exist_ok=True)
    RunInfo(base_model=str(base_dir), tokenizer="char", uses_prm=True, prm_init=None,
            reward=ImplicitRewardConfig(beta=beta)).write(path)
    with Checkpointer(path / "checkpoints") as checkpointer:
        checkpointer.save(1, {"policy_params": nnx.state(base, nnx.Param).to_pure_dict(),
                              "prm_params": noisy_params(base)}, {})
    return path


def write_explicit_prm(path, base, tokenizer, *, seed: int = 3):
    """A train_reward-style explicit-PRM directory (reward.json + model/) with a random head."""
    explicit = explicit_prm_from_backbone(base)
    explicit.score[...] = jax.random.normal(jax.random.key(seed), explicit.score.shape)
    save_explicit_prm(explicit, path / "model", tokenizer=tokenizer)
    write_reward_model_info(path, {"kind": "explicit_prm", "step_delimiter": "\n"}, None)
    return explicit


def write_orm(path, base, tokenizer, *, seed: int = 2, record: bool = True):
    """An ORM with a random head: a train_reward-style directory, or (``record=False``) the bare
    Hugging Face directory."""
    orm = orm_from_backbone(base)
    orm.score[...] = jax.random.normal(jax.random.key(seed), orm.score.shape)
    save_orm(orm, path / "model" if record else path, tokenizer=tokenizer)
    if record:
        write_reward_model_info(path, {"kind": "orm"}, None)
    return orm
