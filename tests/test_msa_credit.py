"""SPRO's masked step advantage (``AdvantageConfig.credit = "msa"``, ``configs/spro.gin``) by hand.

SPRO (arXiv 2507.01551) Eqs. 11-13 as ``prime_jax.credit`` states them: the cumulative process
reward ``CPR[i,t] = sum_{s<=t} r[i,s]`` centred over the responses of the prompt that reach
position t (the row itself included), plus the GRPO-normalised outcome on every token; no whitening.
"""

import dataclasses

import numpy as np
import pytest

from prime_jax import advantages as adv_lib
from prime_jax.advantages import AdvantageConfig
from prime_jax.rewards import ImplicitRewardConfig

MASK = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0]], bool)  # two groups of 2
R = np.array([[0.1, -0.2, 0.3, 0.0],   # CPR  0.1 -0.1  0.2  0.2
              [0.4, 0.1, 9.0, 9.0],    # CPR  0.4  0.5  (padding holds garbage)
              [-0.5, 0.2, 0.1, 9.0],   # CPR -0.5 -0.3 -0.2
              [0.5, 0.0, -0.1, 9.0]],  # CPR  0.5  0.5  0.4
             np.float32)
ACC = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
SPRO = AdvantageConfig(credit="msa", estimator="grpo", whiten=False)
# Group 1: means over the rows alive at t: (0.1+0.4)/2, (-0.1+0.5)/2, then row 0 alone (MSA 0).
# Group 2: 0, 0.1, 0.1.
MSA = np.array([[-0.15, -0.3, 0.0, 0.0],
                [0.15, 0.3, 0.0, 0.0],
                [-0.5, -0.4, -0.3, 0.0],
                [0.5, 0.4, 0.3, 0.0]])
GRPO = 0.5 / (np.sqrt(0.5) + 1e-6)  # (acc - 0.5) / (sample std of {0, 1} + 1e-6)


def _returns(config, r=R, acc=ACC):
    out = adv_lib.advantages_from_rewards(r, MASK, acc, num_samples=2, advantage=config)
    return np.asarray(out.returns), np.asarray(out.advantages)


def test_masked_step_advantage_by_hand():
    returns, advantages = _returns(SPRO)
    want = MSA + np.array([GRPO, -GRPO, -GRPO, GRPO])[:, None] * MASK
    np.testing.assert_allclose(returns, want, atol=1e-6)
    np.testing.assert_array_equal(advantages, returns)  # SPRO does not whiten


def test_prime_summed_returns_are_not_the_masked_step_advantage():
    """The summed (PRIME) path on the same rewards fails the hand-computed values."""
    returns, _ = _returns(AdvantageConfig(estimator="grpo", whiten=False))
    want = MSA + np.array([GRPO, -GRPO, -GRPO, GRPO])[:, None] * MASK
    assert np.abs(returns - want).max() > 0.1


def test_a_position_only_one_response_reaches_gets_no_process_advantage():
    returns, _ = _returns(dataclasses.replace(SPRO, outcome_coef=0.0))
    np.testing.assert_allclose(returns[0, 2:], 0.0, atol=1e-7)
    np.testing.assert_allclose(returns[1, 2:], 0.0)  # padding


def test_equal_process_rewards_in_a_group_leave_the_grpo_outcome_alone():
    r = np.tile(np.array([[0.2, -0.1, 0.3, 0.4]], np.float32), (4, 1))
    mask = np.ones((4, 4), bool)
    out = adv_lib.advantages_from_rewards(r, mask, ACC, num_samples=2, advantage=SPRO)
    np.testing.assert_allclose(np.asarray(out.returns), np.array([GRPO, -GRPO, -GRPO, GRPO])[:, None] * mask,
                               atol=1e-6)


@pytest.mark.parametrize("beta", [0.05, 0.5])
def test_fused_kernel_reads_beta_log_ratios_token_by_token(beta):
    """Through ``prime_advantages`` (the self-PRM source's path): r = beta (log pi - log pi_ref), no norm."""
    logp_ref = np.full(R.shape, -1.0, np.float32)
    logp = logp_ref + R / beta
    out = adv_lib.prime_advantages(logp, logp_ref, MASK, ACC, num_samples=2, advantage=SPRO,
                                   reward=ImplicitRewardConfig(beta=beta, norm="none"))
    want = MSA + np.array([GRPO, -GRPO, -GRPO, GRPO])[:, None] * MASK
    np.testing.assert_allclose(np.asarray(out.returns), want, atol=1e-5)



def test_non_finite_values_stay_where_they_are():
    """Padding may hold NaN / inf (never read); a non-finite reward of one response reaches only
    its own group's positions, never another prompt's advantages."""
    r = R.copy()
    r[1, 2:] = np.nan  # padding
    r[2, 3] = np.inf   # padding
    returns, _ = _returns(SPRO, r=r)
    want = MSA + np.array([GRPO, -GRPO, -GRPO, GRPO])[:, None] * MASK
    np.testing.assert_allclose(returns, want, atol=1e-6)
    r[0, 1] = np.inf  # a real token of group 1
    returns, _ = _returns(SPRO, r=r)
    assert not np.isfinite(returns[0, 1:]).all()
    np.testing.assert_allclose(returns[2:], want[2:], atol=1e-6)  # group 2 untouched
