"""Provers and process advantages: the Best-of-K closed form against Monte-Carlo, and A^mu,
V^mu and the effective reward on a hand-built two-step tree."""

import numpy as np
import pytest

from prime_jax.pav import provers


def test_best_of_k_matches_monte_carlo_on_a_toy_policy():
    # Toy policy: after the first step, each of 2 remaining steps is right w.p. 0.7; success iff
    # both are. Q^pi(s, a) = 0.49; Best-of-K succeeds iff one of K completions does.
    rng = np.random.default_rng(0)
    q_pi, k, trials = 0.7 ** 2, 4, 20_000
    completions_ok = np.all(rng.random((trials, k, 2)) < 0.7, axis=-1)
    estimate = completions_ok.any(axis=-1).mean()
    exact = float(provers.best_of_k_q(q_pi, k))
    assert exact == pytest.approx(1 - 0.51 ** 4)
    std = np.sqrt(exact * (1 - exact) / trials)
    assert abs(estimate - exact) < 4 * std


def test_best_of_k_limits():
    q = np.array([0.0, 0.3, 1.0])
    np.testing.assert_allclose(provers.best_of_k_q(q, 1), q, atol=1e-7)
    np.testing.assert_allclose(provers.best_of_k_q(q, 200), [0.0, 1.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="k must be"):
        provers.best_of_k_q(q, 0)


# A two-step tree with actions {L, R}; mu(L | root) = 0.25, then mu = (0.5, 0.5) after L and
# (0.2, 0.8) after R. Leaves: LL = 1, LR = 0, RL = 0, RR = 1.
#   V(L) = 0.5, V(R) = 0.8, Q(root, L) = 0.5, Q(root, R) = 0.8, V(root) = 0.125 + 0.6 = 0.725.
PROBS_BHV = np.array([[[0.25, 0.75], [0.5, 0.5]],    # trajectory L, L
                      [[0.25, 0.75], [0.2, 0.8]]])   # trajectory R, L
Q_NEXT_BHV = np.array([[[0.5, 0.8], [1.0, 0.0]],
                       [[0.5, 0.8], [0.0, 1.0]]])
Q_TAKEN_BH = np.array([[0.5, 1.0], [0.8, 0.0]])
V_ROOT = 0.725


def test_state_values_on_the_tree():
    np.testing.assert_allclose(provers.expected_state_values(Q_NEXT_BHV, PROBS_BHV),
                               [[V_ROOT, 0.5], [V_ROOT, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(provers.trajectory_state_values(Q_TAKEN_BH, [V_ROOT, V_ROOT]),
                               [[V_ROOT, 0.5], [V_ROOT, 0.8]], rtol=1e-6)


def test_process_advantages_on_the_tree():
    adv_bh = provers.process_advantages(Q_TAKEN_BH, [V_ROOT, V_ROOT], np.ones((2, 2)))
    np.testing.assert_allclose(adv_bh, [[-0.225, 0.5], [0.075, -0.8]], rtol=1e-6)
    # Advantages telescope to the last Q minus the root value.
    np.testing.assert_allclose(np.sum(adv_bh, axis=1), Q_TAKEN_BH[:, -1] - V_ROOT, rtol=1e-6)


def test_process_advantages_respect_the_mask():
    adv_bh = provers.process_advantages(Q_TAKEN_BH, [V_ROOT, V_ROOT], np.array([[1, 0], [1, 1]]))
    np.testing.assert_allclose(adv_bh, [[-0.225, 0.0], [0.075, -0.8]], rtol=1e-6)


def test_effective_rewards():
    q_pi_bh = np.array([[0.4, 1.0], [0.6, 0.0]])
    adv_bh = np.array([[-0.225, 0.5], [0.075, -0.8]])
    r_bh = provers.effective_rewards(q_pi_bh, adv_bh, np.array([[1, 1], [1, 0]]), alpha=2.0)
    np.testing.assert_allclose(r_bh, [[0.4 - 0.45, 2.0], [0.75, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(provers.effective_rewards(q_pi_bh, adv_bh, np.ones((2, 2)), alpha=0.0), q_pi_bh)
