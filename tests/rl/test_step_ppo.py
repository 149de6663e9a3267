"""Step-by-step PPO (Math-Shepherd): a frozen explicit PRM's step scores as the process reward."""

import json

import gin
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from prime_jax import train
from prime_jax.data import load_tokenizer
from prime_jax.metrics import read_metrics
from prime_jax.models import ModelConfig, Transformer, explicit_prm_from_backbone, save_explicit_prm
from prime_jax.rl.frozen_verifier import _q_at_step_ends, load_q_model
from prime_jax.run_dir import RunInfo, write_reward_model_info

from tiny_run import TINY


@pytest.fixture(scope="module")
def explicit_prm_dir(tmp_path_factory):
    """A random explicit PRM over the quickstart model's 64 ids, saved as train_reward writes one."""
    tokenizer = load_tokenizer("char")
    config = ModelConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_layers=1,
                         num_heads=2, num_kv_heads=1, head_dim=8, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    prm = explicit_prm_from_backbone(Transformer(config, rngs=nnx.Rngs(0)), seed=1)
    path = tmp_path_factory.mktemp("explicit_prm")
    save_explicit_prm(prm, path / "model", tokenizer=tokenizer)
    write_reward_model_info(path, {"kind": "explicit_prm", "step_delimiter": "\n"}, None)
    return path, prm


def test_rewards_sit_at_step_ends_only(explicit_prm_dir):
    path, prm = explicit_prm_dir
    q_model = load_q_model(str(path), 64, None, "PrimeConfig.explicit_prm")
    tokens = jnp.asarray(np.random.default_rng(0).integers(8, 50, size=(2, 9)), jnp.int32)
    mask = jnp.ones((2, 9), jnp.int32)
    ends = jnp.zeros((2, 6), bool).at[:, 2].set(True).at[:, 5].set(True)
    scores = q_model.score_steps(tokens, mask, mask[:, 3:], ends)
    r_bl = np.asarray(_q_at_step_ends(scores.scores_bl, scores.step_end_bl))
    z_bl = np.asarray(prm(tokens, mask))[:, 3:]
    np.testing.assert_allclose(r_bl[:, [2, 5]], 1 / (1 + np.exp(-z_bl[:, [2, 5]])), rtol=1e-6)
    assert not r_bl[:, [0, 1, 3, 4]].any()


@pytest.mark.parametrize("form", ["q", "effective", "effective_separate_prover"])
def test_a_run_takes_its_process_rewards_from_the_explicit_prm(explicit_prm_dir, tmp_path, form):
    """Step-by-step PPO ("q") and PAV-RL ("effective": the explicit PRM read as Q^pi, a BoK prover
    of pi, or of a separate prover policy whose Q model is given by ``prover_prm``)."""
    path, _ = explicit_prm_dir
    bindings = [*TINY, "configs/pav_rl.gin", f"prime_jax.rl.config.PrimeConfig.explicit_prm = '{path}'",
                f"prime_jax.pav.rl_rewards.PavRewardConfig.form = '{form.split('_')[0]}'"]
    if form == "effective_separate_prover":
        bindings.append(f"prime_jax.pav.rl_rewards.PavRewardConfig.prover_prm = '{path}'")
    gin.clear_config()
    assert train.main([a for b in bindings for a in ("--gin", b)] + ["--workdir", str(tmp_path), "--steps", "2"]) == 0
    gin.clear_config()
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2]
    if form == "q":
        assert all(r["process_reward_mean"] > 0 for r in rows[1:])  # sigmoid scores at step ends
    else:  # Q^pi + alpha * A^mu with alpha 3: progress terms of either sign
        assert all(np.isfinite(r["process_reward_mean"]) for r in rows[1:])
    assert not any("prm_loss" in r for r in rows)  # no online implicit PRM
    assert RunInfo.read(tmp_path).uses_prm is False
    assert json.loads((tmp_path / "run.json").read_text())["prm_init"] is None


def test_an_explicit_prm_needs_a_process_coefficient(explicit_prm_dir):
    from prime_jax.advantages import AdvantageConfig
    from prime_jax.experience.collect import CollectConfig
    from prime_jax.rl.config import PrimeConfig

    with pytest.raises(ValueError, match="process_coef=0"):
        PrimeConfig(collect=CollectConfig(batch_prompts=4), prm_mini_batch=16, policy_mini_batch=16,
                    advantage=AdvantageConfig(process_coef=0.0), explicit_prm=str(explicit_prm_dir[0]))


def test_an_explicit_prm_must_cover_the_policy_vocabulary(explicit_prm_dir):
    with pytest.raises(ValueError, match="PrimeConfig.explicit_prm=.*64 ids, fewer than the policy's 65"):
        load_q_model(str(explicit_prm_dir[0]), 65, None, "PrimeConfig.explicit_prm")
