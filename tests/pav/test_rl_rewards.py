"""PAV-RL step rewards from a Q^pi model, checked against a loop over hand-built steps."""

import numpy as np
import pytest

from prime_jax.advantages import AdvantageConfig
from prime_jax.experience.collect import CollectConfig
from prime_jax.pav.rl_rewards import PavRewardConfig, pav_step_rewards, previous_step_values
from prime_jax.rl.config import PrimeConfig

# One prompt, n = 2 responses of width 6: row 0 has steps ending at 1, 3, 5; row 1 at 2, 4.
ENDS = np.array([[0, 1, 0, 1, 0, 1], [0, 0, 1, 0, 1, 0]], bool)
Q_PI = np.array([[0.9, 0.5, 0.9, 0.2, 0.9, 0.8], [0.9, 0.9, 0.3, 0.9, 0.6, 0.9]], np.float32)


def _by_hand(form: str, alpha: float, k: int, q_base=Q_PI) -> np.ndarray:
    bok = lambda q: 1 - (1 - q) ** k  # noqa: E731
    v0_mu = bok(np.mean([q_base[0, 1], q_base[1, 2]]))  # the mean first-step Q of the group
    out = np.zeros_like(Q_PI)
    for i in range(2):
        prev_mu = v0_mu
        for t in np.flatnonzero(ENDS[i]):
            q, q_mu = Q_PI[i, t], bok(q_base[i, t])
            out[i, t] = {"q": q, "effective": q + alpha * (q_mu - prev_mu), "advantage": alpha * (q_mu - prev_mu),
                         "q_plus_q": q + alpha * q_mu}[form]
            prev_mu = q_mu
    return out


@pytest.mark.parametrize("form", ["q", "effective", "advantage", "q_plus_q"])
def test_step_rewards_match_the_definition(form):
    config = PavRewardConfig(form=form, alpha=3.0, best_of_k=4)
    got = np.asarray(pav_step_rewards(Q_PI, ENDS, num_samples=2, config=config))
    np.testing.assert_allclose(got, _by_hand(form, 3.0, 4), rtol=1e-5, atol=1e-6)
    assert not got[~ENDS].any()


@pytest.mark.parametrize("form", ["effective", "advantage", "q_plus_q"])
def test_a_separate_prover_supplies_the_prover_q(form):
    q_nu = np.clip(1.0 - Q_PI + 0.1, 0.0, 1.0)  # another policy's values of the same steps
    config = PavRewardConfig(form=form, alpha=2.0, best_of_k=2, prover_prm="runs/q_nu")
    got = np.asarray(pav_step_rewards(Q_PI, ENDS, num_samples=2, config=config, q_prover_bl=q_nu))
    np.testing.assert_allclose(got, _by_hand(form, 2.0, 2, q_base=q_nu), rtol=1e-5, atol=1e-6)
    same = np.asarray(pav_step_rewards(Q_PI, ENDS, num_samples=2, config=config, q_prover_bl=Q_PI))
    np.testing.assert_array_equal(same, np.asarray(pav_step_rewards(Q_PI, ENDS, num_samples=2, config=config)))


def test_progress_telescopes_to_the_last_step_minus_the_start_value():
    """sum_h A^mu(s_h, a_h) = Q^mu(last step) - V^mu(s_0) on every row; with K = 1 the prover is pi."""
    adv = np.asarray(pav_step_rewards(Q_PI, ENDS, num_samples=2, config=PavRewardConfig(form="advantage", alpha=1.0,
                                                                                    best_of_k=1)))
    v0 = np.mean([Q_PI[0, 1], Q_PI[1, 2]])
    np.testing.assert_allclose(adv.sum(1), [Q_PI[0, 5] - v0, Q_PI[1, 4] - v0], rtol=1e-6)


def test_previous_step_values_carry_the_last_end_forward():
    prev = np.asarray(previous_step_values(Q_PI, ENDS, np.array([7.0, 8.0], np.float32)))
    np.testing.assert_allclose(prev[0, [1, 3, 5]], [7.0, Q_PI[0, 1], Q_PI[0, 3]])
    np.testing.assert_allclose(prev[1, [2, 4]], [8.0, Q_PI[1, 2]])
    assert not prev[~ENDS].any()


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="PavRewardConfig.form"):
        PavRewardConfig(form="progress")
    with pytest.raises(ValueError, match="PavRewardConfig.best_of_k"):
        PavRewardConfig(best_of_k=0)
    with pytest.raises(ValueError, match="PavRewardConfig.prover_prm='runs/q_nu' with form='q'"):
        PavRewardConfig(form="q", prover_prm="runs/q_nu")
    with pytest.raises(ValueError, match="needs a Q\\^pi model"):
        PrimeConfig(collect=CollectConfig(batch_prompts=4), prm_mini_batch=16, policy_mini_batch=16,
                    advantage=AdvantageConfig(), step_reward=PavRewardConfig(form="effective"))
