"""PAV-RL from a Q^pi model: step rewards against a loop over hand-built steps, and the per-token
estimator against advantages computed by hand (the summed-returns path fails them)."""

import numpy as np
import pytest

from prime_jax import advantages as adv_lib
from prime_jax.advantages import AdvantageConfig
from prime_jax.experience.collect import CollectConfig
from prime_jax.pav.rl_rewards import (PavRewardConfig, pav_step_rewards, pav_token_advantages, previous_step_values,
                                      prover_terms)
from prime_jax.rl.config import PrimeConfig

# One prompt, n = 2 responses of width 6: row 0 has steps ending at 1, 3, 5; row 1 at 2, 4.
ENDS = np.array([[0, 1, 0, 1, 0, 1], [0, 0, 1, 0, 1, 0]], bool)
Q_PI = np.array([[0.9, 0.5, 0.9, 0.2, 0.9, 0.8], [0.9, 0.9, 0.3, 0.9, 0.6, 0.9]], np.float32)


def _by_hand(form: str, alpha: float, k: int, q_base=Q_PI) -> np.ndarray:
    bok = lambda q: 1 - (1 - q) ** k  # noqa: E731
    v0_mu = [bok(q_base[1, 2]), bok(q_base[0, 1])]  # the other row's first-step Q (leave-one-out)
    out = np.zeros_like(Q_PI)
    for i in range(2):
        prev_mu = v0_mu[i]
        for t in np.flatnonzero(ENDS[i]):
            q, q_mu = Q_PI[i, t], bok(q_base[i, t])
            out[i, t] = {"q": q, "effective": q + alpha * (q_mu - prev_mu), "q_plus_q": q + alpha * q_mu}[form]
            prev_mu = q_mu
    return out


@pytest.mark.parametrize("form", ["q", "effective", "q_plus_q"])
def test_step_rewards_match_the_definition(form):
    config = PavRewardConfig(form=form, alpha=3.0, best_of_k=4)
    got = np.asarray(pav_step_rewards(Q_PI, ENDS, num_samples=2, config=config))
    np.testing.assert_allclose(got, _by_hand(form, 3.0, 4), rtol=1e-5, atol=1e-6)
    assert not got[~ENDS].any()


@pytest.mark.parametrize("form", ["effective", "q_plus_q"])
def test_a_separate_prover_supplies_the_prover_q(form):
    q_nu = np.clip(1.0 - Q_PI + 0.1, 0.0, 1.0)  # another policy's values of the same steps
    config = PavRewardConfig(form=form, alpha=2.0, best_of_k=2, prover_prm="runs/q_nu")
    got = np.asarray(pav_step_rewards(Q_PI, ENDS, num_samples=2, config=config, q_prover_bl=q_nu))
    np.testing.assert_allclose(got, _by_hand(form, 2.0, 2, q_base=q_nu), rtol=1e-5, atol=1e-6)
    same = np.asarray(pav_step_rewards(Q_PI, ENDS, num_samples=2, config=config, q_prover_bl=Q_PI))
    np.testing.assert_array_equal(same, np.asarray(pav_step_rewards(Q_PI, ENDS, num_samples=2, config=config)))


def test_progress_telescopes_to_the_last_step_minus_the_start_value():
    """sum_h A^mu(s_h, a_h) = Q^mu(last step) - V^mu(s_0) on every row; with K = 1 the prover is pi
    and V^mu(s_0) is the other row's first-step Q."""
    config = PavRewardConfig(form="effective", alpha=1.0, best_of_k=1)
    _, adv = prover_terms(Q_PI, ENDS, num_samples=2, config=config)
    np.testing.assert_allclose(np.asarray(adv).sum(1), [Q_PI[0, 5] - Q_PI[1, 2], Q_PI[1, 4] - Q_PI[0, 1]], rtol=1e-6)


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


# Two groups of 2, unequal step counts: (valid length, step ends, Q^pi at them, outcome).
PAV_ROWS = [(6, [1, 3, 5], [0.5, 0.2, 0.8], 1.0), (5, [2, 4], [0.4, 0.6], 0.0),
            (4, [3], [0.3], 0.0), (6, [1, 5], [0.9, 0.7], 1.0)]
# By hand, K = 2 (BoK(q) = 1 - (1 - q)^2), alpha = 2. Q^mu: row 0 .75 .36 .96, row 1 .64 .84, row 2 .51,
# row 3 .99 .91. V^mu(s_0) = BoK(the other row's first Q): .64, .75, .99, .51. A^mu: row 0 .11 -.39 .60,
# row 1 -.11 .20, row 2 -.48, row 3 .48 -.08. R - b (leave-one-out outcome): 1, -1, -1, 1.
PAV_EFFECTIVE = np.array([[1.22, 1.22, 0.22, 0.22, 2.2, 2.2],           # 1 + 2 A^mu of the token's step
                          [-1.22, -1.22, -1.22, -0.6, -0.6, 0.0],
                          [-1.96, -1.96, -1.96, -1.96, 0.0, 0.0],
                          [1.96, 1.96, 0.84, 0.84, 0.84, 0.84]])
PAV_MODEL_Q = np.array([[0.72, 0.72, -0.58, -0.58, 2.0, 2.0],          # Q^pi_h - b + 2 A^mu
                        [-0.82, -0.82, -0.82, 0.0, 0.0, 0.0],
                        [-1.66, -1.66, -1.66, -1.66, 0.0, 0.0],
                        [1.86, 1.86, 0.54, 0.54, 0.54, 0.54]])


def pav_batch():
    mask = np.zeros((4, 6), bool)
    ends = np.zeros_like(mask)
    q = np.zeros(mask.shape, np.float32)
    for i, (length, positions, values, _) in enumerate(PAV_ROWS):
        mask[i, :length] = True
        ends[i, positions] = True
        q[i, positions] = values
    return q, ends, mask, np.array([row[3] for row in PAV_ROWS], np.float32)


@pytest.mark.parametrize("q_pi, expected", [("outcome", PAV_EFFECTIVE), ("model", PAV_MODEL_Q)])
def test_pav_rl_advantages_match_the_hand_computed_values(q_pi, expected):
    q, ends, mask, acc = pav_batch()
    config = PavRewardConfig(form="effective", alpha=2.0, best_of_k=2, q_pi=q_pi)
    got = np.asarray(pav_token_advantages(q, ends, mask, acc, num_samples=2, config=config))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_summed_path_fails_the_pav_rl_values():
    """The old estimator: Q^pi + alpha A^mu at the step ends, summed into returns with the outcome."""
    q, ends, mask, acc = pav_batch()
    config = PavRewardConfig(form="effective", alpha=2.0, best_of_k=2)
    rewards = pav_step_rewards(q, ends, num_samples=2, config=config)
    summed = adv_lib.advantages_from_rewards(rewards, mask, acc, num_samples=2,
                                             advantage=AdvantageConfig(whiten=False), positions=ends)
    assert np.max(np.abs(np.asarray(summed.returns) - PAV_EFFECTIVE)) > 0.5


def test_q_plus_q_ablation_puts_q_mu_on_its_step():
    q, ends, mask, acc = pav_batch()
    config = PavRewardConfig(form="q_plus_q", alpha=2.0, best_of_k=2)
    got = np.asarray(pav_token_advantages(q, ends, mask, acc, num_samples=2, config=config))
    np.testing.assert_allclose(got[0], [2.5, 2.5, 1.72, 1.72, 2.92, 2.92], atol=1e-5)  # 1 + 2 Q^mu
    np.testing.assert_allclose(got[2, :4], -1 + 2 * 0.51, atol=1e-5)


def test_start_value_skips_rows_without_steps():
    """V^mu(s_0) of row 0 averages the first-step Q of the other rows with steps (row 2 only)."""
    ends = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 1]], bool)
    q = np.array([[0.2, 0, 0], [0, 0, 0], [0, 0.6, 0], [0, 0, 0.4]], np.float32)
    config = PavRewardConfig(form="effective", alpha=1.0, best_of_k=1)
    _, adv = prover_terms(q, ends, num_samples=4, config=config)
    np.testing.assert_allclose(np.asarray(adv)[0, 0], 0.2 - (0.6 + 0.4) / 2, atol=1e-6)
    np.testing.assert_allclose(np.asarray(adv)[2, 1], 0.6 - (0.2 + 0.4) / 2, atol=1e-6)
