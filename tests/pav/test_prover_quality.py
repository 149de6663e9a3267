"""Prover distinguishability / alignment (prime_jax.pav.prover_quality) on hand-built cases with
known answers, and the Monte-Carlo noise correction against simulated Bernoulli labels."""

import numpy as np
import pytest

from prime_jax.pav import prover_quality as pq

PI_SV = np.array([[0.5, 0.5, 0.0],
                  [0.25, 0.25, 0.5]])
Q_PI_SV = np.array([[1.0, 0.0, 0.3],
                    [0.2, 0.6, 0.4]])


def test_hand_computed_moments():
    # state 0: Var_pi = 0.25 (0 and 1, half each); state 1: mean 0.4, Var = 0.25*0.04*2 + 0 = 0.02
    np.testing.assert_allclose(pq.policy_mean(PI_SV, Q_PI_SV), [0.5, 0.4])
    np.testing.assert_allclose(pq.policy_covariance(PI_SV, Q_PI_SV, Q_PI_SV), [0.25, 0.02])
    assert pq.distinguishability(PI_SV, Q_PI_SV) == pytest.approx(0.135)
    assert pq.distinguishability(PI_SV, Q_PI_SV, mask_s=[0, 1]) == pytest.approx(0.02)
    np.testing.assert_allclose(np.sum(PI_SV * pq.policy_advantages(PI_SV, Q_PI_SV), axis=1), 0, atol=1e-12)
    # Q^mu = (a == 0): state 0 Cov = 0.5*(0.5)(0.5) + 0.5*(-0.5)(-0.5) = 0.25; state 1:
    # E[x] = 0.25, Cov = 0.25*0.75*(-0.2) + 0.25*(-0.25)*0.2 + 0.5*(-0.25)*0 = -0.05
    q_mu_sv = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert pq.alignment(PI_SV, q_mu_sv, Q_PI_SV) == pytest.approx((0.25 - 0.05) / 2)


def test_constant_prover_is_indistinguishable():
    q_mu_sv = np.array([[0.7, 0.7, 0.7], [0.1, 0.1, 0.1]])  # differs across states, not actions
    out = pq.quality(PI_SV, q_mu_sv, Q_PI_SV)
    assert out["distinguishability"] == pytest.approx(0.0, abs=1e-15)
    assert out["alignment"] == pytest.approx(0.0, abs=1e-15)
    assert np.isnan(out["correlation"])                     # nothing to correlate with
    assert np.isnan(pq.quality(PI_SV, Q_PI_SV, np.zeros_like(Q_PI_SV))["correlation"])  # nor A^pi = 0
    # a prover that only varies on actions pi never takes is also indistinguishable to pi
    q_mu_sv = np.array([[0.2, 0.2, 0.9], [0.3, 0.3, 0.3]])
    assert pq.distinguishability(PI_SV, q_mu_sv) == pytest.approx(0.0, abs=1e-15)


def test_prover_equal_to_policy_is_aligned():
    out = pq.quality(PI_SV, Q_PI_SV, Q_PI_SV)
    assert out["alignment"] == pytest.approx(out["distinguishability"])
    assert out["pi_spread"] == pytest.approx(out["distinguishability"])
    assert out["correlation"] == pytest.approx(1.0)
    out = pq.quality(PI_SV, 0.5 * Q_PI_SV + 0.3, Q_PI_SV)  # an affine map with c > 0 too
    assert out["correlation"] == pytest.approx(1.0)


def test_complementary_prover_is_anti_aligned():
    out = pq.quality(PI_SV, 1.0 - Q_PI_SV, Q_PI_SV)
    assert out["alignment"] == pytest.approx(-out["pi_spread"])
    assert out["correlation"] == pytest.approx(-1.0)


def test_random_cases_stay_in_range():
    rng = np.random.default_rng(0)
    for _ in range(20):
        pi_sv = rng.dirichlet(np.ones(15), size=8)
        q_mu_sv, q_pi_sv = rng.random((8, 15)), rng.random((8, 15))
        out = pq.quality(pi_sv, q_mu_sv, q_pi_sv)
        assert -1.0 - 1e-9 <= out["correlation"] <= 1.0 + 1e-9
        assert out["distinguishability"] >= 0 and out["pi_spread"] > 0


def test_noise_correction_recovers_the_true_spread():
    rng = np.random.default_rng(1)
    pi_sv = rng.dirichlet(np.ones(15), size=400)
    q_pi_sv = rng.random((400, 15))
    n = 4
    q_hat_sv = rng.binomial(n, q_pi_sv) / n
    true = pq.quality(pi_sv, q_pi_sv, q_pi_sv)
    raw = pq.quality(pi_sv, q_pi_sv, q_hat_sv)
    fixed = pq.quality(pi_sv, q_pi_sv, q_hat_sv, q_pi_noise_sv=pq.mc_noise_variance(q_hat_sv, n))
    assert raw["correlation"] < 0.85                      # label noise shrinks the raw correlation
    assert fixed["correlation"] == pytest.approx(1.0, abs=0.05)
    assert fixed["pi_spread"] == pytest.approx(true["pi_spread"], rel=0.05)
    assert fixed["alignment"] == pytest.approx(true["alignment"], rel=0.05)  # unbiased as it is


def test_rejects_bad_inputs():
    with pytest.raises(ValueError):
        pq.distinguishability(np.array([[0.5, 0.4]]), np.zeros((1, 2)))
    with pytest.raises(ValueError):
        pq.distinguishability(PI_SV, Q_PI_SV, mask_s=[0, 0])
    with pytest.raises(ValueError):
        pq.mc_noise_variance(Q_PI_SV, 1)


def test_conditioning_on_actions():
    keep_sv = np.array([[0, 0, 1], [1, 1, 0]])
    cond_sv, valid_s = pq.condition_on_actions(PI_SV, keep_sv)
    np.testing.assert_array_equal(valid_s, [0, 1])           # state 0 puts no mass on action 2
    np.testing.assert_allclose(cond_sv[1], [0.5, 0.5, 0.0])
    # within the kept actions of state 1, Q^pi = (0.2, 0.6): Var = 0.04; the mask drops state 0
    assert pq.distinguishability(cond_sv, Q_PI_SV, mask_s=valid_s) == pytest.approx(0.04)
    # law of total variance: Var_pi = E[Var | K] + Var(E[Q | K]) on state 1 (K = {0, 1} vs {2})
    total = pq.policy_covariance(PI_SV, Q_PI_SV, Q_PI_SV)[1]
    within = 0.5 * 0.04 + 0.5 * 0.0
    between = 0.5 * 0.5 * (0.4 - 0.4) ** 2
    assert total == pytest.approx(within + between)
