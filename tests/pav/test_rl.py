"""The didactic policy-gradient pieces: Monte-Carlo Q^pi from prefixes, the per-token weights
of outcome-only and effective-reward REINFORCE, and the iterations-to-target count."""

import jax
import numpy as np
import pytest
from flax import nnx

from prime_jax.pav import didactic, didactic_rl, mc_q
from prime_jax.pav.didactic import EOS

TARGET = (3, 1, 4, 1, 5)


def test_prefix_prompts_are_left_padded_prefixes():
    prompts, masks = mc_q.prefix_prompts(9, np.array([[1, 2, 3]]), pad_id=0)
    np.testing.assert_array_equal(prompts, [[0, 0, 9, 1], [0, 9, 1, 2], [9, 1, 2, 3]])
    np.testing.assert_array_equal(masks, [[0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]])


def test_completed_responses_join_prefix_and_continuation():
    tokens_bl = np.array([[1, 2, 3]])
    continuations = np.array([[7, 8], [5, 6],     # prefix [1]: two rollouts
                              [7, 8], [5, 6],     # prefix [1, 2]
                              [7, 8], [5, 6]])    # prefix [1, 2, 3]: nothing left to add
    np.testing.assert_array_equal(mc_q.completed_responses(tokens_bl, continuations, 2),
                                  [[1, 7, 8], [1, 5, 6], [1, 2, 7], [1, 2, 5], [1, 2, 3], [1, 2, 3]])


def tiny_config(**overrides):
    return didactic_rl.DidacticConfig(sft_samples=64, sft_iterations=2, batch_size=8, hidden_size=16,
                                      num_layers=1, **overrides)


@pytest.fixture(scope="module")
def tiny_policy():
    """(graphdef, params) of a tiny SFT policy; shapes below match the effective-mode run so the
    samplers compile once (8 rows after BOS; 8 * 10 prefixes with 1 rollout each)."""
    return didactic_rl.sft_policy(tiny_config(q_rollouts=1), TARGET, seed=0)


def test_mc_q_is_exact_where_the_outcome_is_already_decided(tiny_policy):
    tokens_bl = np.array([[*TARGET, 0, 0, 0, 0, 0], [0, 3, 1, 4, 1, 5, 2, 2, 2, 2], [0] * 10,
                          [3, EOS, EOS, EOS, EOS, EOS, EOS, EOS, EOS, EOS]] * 2)
    q_bl = mc_q.mc_step_q(nnx.merge(*tiny_policy), tokens_bl, prompt_id=didactic_rl.BOS, num_rollouts=1,
                          key=jax.random.key(0), reward_fn=lambda r: didactic.outcome_rewards(r, TARGET),
                          eos_id=EOS)
    assert q_bl.shape == (8, 10) and np.all((q_bl >= 0) & (q_bl <= 1))
    np.testing.assert_array_equal(q_bl[0, 4:], 1.0)   # y* complete: every later Q is 1
    np.testing.assert_array_equal(q_bl[1, 5:], 1.0)
    np.testing.assert_array_equal(q_bl[:, -1], didactic.outcome_rewards(tokens_bl, TARGET))
    np.testing.assert_array_equal(q_bl[2, 6:], 0.0)   # too few slots left to fit y*
    np.testing.assert_array_equal(q_bl[3, 1:], 0.0)   # after EOS nothing can succeed


def test_own_continuations_rebuild_the_row():
    tokens_bl = np.array([[1, 2, 3]])
    conts = mc_q.own_continuations(tokens_bl, pad_id=0)
    np.testing.assert_array_equal(conts, [[2, 3], [3, 0], [0, 0]])
    np.testing.assert_array_equal(mc_q.completed_responses(tokens_bl, conts, 1), [[1, 2, 3]] * 3)


def test_mc_q_rolls_out_each_distinct_undecided_prefix_once(tiny_policy, monkeypatch):
    """Repeated rows share one set of rollouts (identical estimates); a prefix marked determined
    is scored on the row itself and never sampled; the sampler sees a power-of-two row count."""
    calls = []
    real_sample = mc_q.sample

    def counting_sample(policy, prompts, masks, **kwargs):
        calls.append(np.asarray(prompts))
        return real_sample(policy, prompts, masks, **kwargs)

    monkeypatch.setattr(mc_q, "sample", counting_sample)
    row = np.array([0, 2, 7, 9, 3, 1, 4, 1, 5, 6])
    tokens_bl = np.stack([row, row, row, np.r_[row[:3], [EOS] * 7]])
    decided_bl = didactic.matched_states(tokens_bl, TARGET)[:, 1:] >= didactic.FOUND
    q_bl = mc_q.mc_step_q(nnx.merge(*tiny_policy), tokens_bl, prompt_id=didactic_rl.BOS, num_rollouts=3,
                          key=jax.random.key(1), reward_fn=lambda r: didactic.outcome_rewards(r, TARGET),
                          eos_id=EOS, determined_bl=decided_bl)
    (prompts,) = calls
    # distinct undecided prefixes: row's first 8 (found at position 8; the last is the row) - the
    # EOS row shares its first 3 and ends after the 4th: 8 distinct, padded to 8.
    assert len(prompts) == 8
    np.testing.assert_array_equal(q_bl[0], q_bl[1])
    np.testing.assert_array_equal(q_bl[0], q_bl[2])
    np.testing.assert_array_equal(q_bl[3, :3], q_bl[0, :3])
    np.testing.assert_array_equal(q_bl[0, 8:], 1.0)
    np.testing.assert_array_equal(q_bl[3, 3:], 0.0)


def test_leave_one_out_baseline():
    np.testing.assert_allclose(didactic_rl.leave_one_out_baseline(np.array([1.0, 0.0, 0.0, 1.0])),
                               [1 / 3, 2 / 3, 2 / 3, 1 / 3])


def test_token_weights():
    config = didactic_rl.DidacticConfig(prover_gamma=10.0, alpha=2.0)
    tokens_bl = np.array([[*TARGET, EOS, EOS, EOS, EOS, EOS], [0] * 10])
    mask_bl = didactic.response_mask(tokens_bl)
    rewards_b = didactic.outcome_rewards(tokens_bl, TARGET)
    outcome_bl = didactic_rl.token_weights("outcome", config, TARGET, tokens_bl, mask_bl, rewards_b)
    np.testing.assert_allclose(outcome_bl, mask_bl * np.array([[1.0], [-1.0]]))
    effective_bl = didactic_rl.token_weights("effective", config, TARGET, tokens_bl, mask_bl, rewards_b)
    q_bl, v0_b = didactic.prover_step_q(tokens_bl, TARGET, 10.0)
    v_bl = np.concatenate([v0_b[:, None], q_bl[:, :-1]], axis=1)
    np.testing.assert_allclose(effective_bl, outcome_bl + 2.0 * mask_bl * (q_bl - v_bl), rtol=1e-5, atol=1e-6)
    assert np.all(effective_bl[0, :5] > 1.0)  # every step along y* is progress under mu_10
    q_pi_bl = np.full(tokens_bl.shape, 0.5, np.float32)
    with_q_bl = didactic_rl.token_weights("effective", config, TARGET, tokens_bl, mask_bl, rewards_b, q_pi_bl)
    np.testing.assert_allclose(with_q_bl - effective_bl, mask_bl * (0.5 - rewards_b[:, None]), atol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        didactic_rl.token_weights("process", config, TARGET, tokens_bl, mask_bl, rewards_b)


def test_iterations_to_target():
    rewards = [0.0] * 10 + [1.0] * 10
    assert didactic_rl.iterations_to_target(rewards, 0.9, window=4, cap=100) == 14
    assert didactic_rl.iterations_to_target(rewards, 0.9, window=4, cap=13) is None
    assert didactic_rl.iterations_to_target([1.0] * 3, 0.9, window=4, cap=100) is None


def test_effective_policy_gradient_runs_and_stops(tiny_policy):
    seen = []
    history = didactic_rl.train_policy_gradient("effective", tiny_config(q_rollouts=1), TARGET, *tiny_policy,
                                                iterations=5, seed=0, stop=lambda rewards: len(rewards) == 3,
                                                on_iteration=seen.append)
    assert len(history) == 3 and history == seen and all(0.0 <= r <= 1.0 for r in history)
