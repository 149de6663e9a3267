"""The policy as its own implicit PRM (SPRO, ``PrimeConfig.self_prm``, ``configs/spro.gin``)."""

import types

import gin
import numpy as np
import pytest

from prime_jax import advantages as adv_lib
from prime_jax import train
from prime_jax.advantages import AdvantageConfig
from prime_jax.experience.collect import CollectConfig
from prime_jax.metrics import read_metrics
from prime_jax.rewards import ImplicitRewardConfig
from prime_jax.rl import step as rl_step
from prime_jax.rl.config import PrimeConfig
from prime_jax.rl.self_prm import SelfImplicitPrm

from tiny_run import TINY

SPRO = dict(advantage=AdvantageConfig(credit="msa", estimator="grpo", whiten=False),
            reward=ImplicitRewardConfig(norm="none"))


def _config(**changes) -> PrimeConfig:
    return PrimeConfig(collect=CollectConfig(num_samples=2, batch_prompts=2), prm_mini_batch=4, policy_mini_batch=4,
                       self_prm=True, **{**SPRO, **changes})


def test_the_rewards_are_the_rollout_policy_log_ratios_and_nothing_is_trained():
    rng = np.random.default_rng(0)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]], bool)
    old, ref = rng.normal(size=(2, 4, 4)).astype(np.float32)
    batch = types.SimpleNamespace(old_logp_bl=old, ref_logp_bl=ref, response_mask_bl=mask,
                                  acc_b=np.array([1, 0, 0, 1], np.float32))
    config = _config()
    state = object()
    new_state, out = SelfImplicitPrm(config, (), None).advantages(state, batch)
    want = adv_lib.prime_advantages(old, ref, mask, batch.acc_b, num_samples=2, reward=config.reward,
                                    advantage=config.advantage)
    assert new_state is state and out.metric_parts == ()
    np.testing.assert_array_equal(np.asarray(out.advantages.advantages), np.asarray(want.advantages))
    np.testing.assert_allclose(np.asarray(out.advantages.process_rewards), 0.05 * (old - ref) * mask, atol=1e-7)
    assert not SelfImplicitPrm.trains_weights and SelfImplicitPrm.reads_reference


def test_the_config_selects_the_self_prm_row():
    config = _config()
    assert rl_step.source_class(config) is SelfImplicitPrm and not config.uses_prm


@pytest.mark.parametrize("changes, message", [
    ({"explicit_prm": "runs/q_pi"}, r"self_prm=True with explicit_prm='runs/q_pi': a run has one process-reward"),
    ({"advantage": AdvantageConfig(process_coef=0.0)}, r"self_prm=True with AdvantageConfig.process_coef=0"),
    ({"prm_init": "runs/prm/model"}, r"prm_init='runs/prm/model': this run has no online implicit PRM"),
])
def test_conflicting_settings_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        _config(**changes)


def test_a_spro_run_has_no_prm_and_zero_process_reward_while_the_policy_is_the_reference(tmp_path):
    gin.clear_config()
    bindings = [*TINY, "configs/spro.gin"]
    assert train.main([a for b in bindings for a in ("--gin", b)] + ["--workdir", str(tmp_path), "--steps", "2"]) == 0
    gin.clear_config()
    rows = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "process_reward_mean" in r]
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["process_reward_mean"] == 0.0  # step 1: pi_theta_old = pi_ref, bit for bit
    assert rows[1]["process_reward_mean"] != 0.0  # the policy has moved off the reference
    assert not any(k.startswith("prm_") and k != "prm_q_length_corr" for k in rows[1])  # no PRM update
