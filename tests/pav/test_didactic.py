"""The didactic planted sub-sequence task: reward edge cases, the KMP automaton, and the exact
prover values Q^{mu_gamma} against Monte-Carlo samples of mu_gamma."""

import numpy as np
import pytest

from prime_jax.pav import didactic
from prime_jax.pav.didactic import EOS, LENGTH

TARGET = (3, 1, 4, 1, 5)
OVERLAPPING = (1, 2, 1, 2, 3)  # "1 2 1 2 1 2 3" needs the KMP fall-back from 4 to 3 matched


def rewards(*rows, target=TARGET):
    return didactic.outcome_rewards(np.array(rows, np.int32), target).tolist()


def test_reward_edge_cases():
    other = [0] * LENGTH
    assert rewards([3, 1, 4, 1, 5, 0, 0, 0, 0, 0]) == [1.0]
    assert rewards([0, 0, 0, 0, 0, 3, 1, 4, 1, 5]) == [1.0]                     # ends at the last slot
    assert rewards([0, 0, 0, 0, 0, 0, 3, 1, 4, 1]) == [0.0]                     # straddles the end
    assert rewards([3, 1, 4, 1, 5, EOS, 0, 0, 0, 0]) == [1.0]                   # y* then EOS
    assert rewards([3, 1, 4, 1, EOS, 5, 0, 0, 0, 0]) == [0.0]                   # EOS inside y*
    assert rewards([EOS, 3, 1, 4, 1, 5, 0, 0, 0, 0]) == [0.0]                   # EOS first
    assert rewards([0, 0, EOS, EOS, 3, 1, 4, 1, 5, EOS]) == [0.0]               # masked tokens never count
    assert rewards(other) == [0.0]


def test_automaton_falls_back_on_self_overlap():
    assert rewards([1, 2, 1, 2, 1, 2, 3, 0, 0, 0], target=OVERLAPPING) == [1.0]
    assert rewards([1, 1, 2, 1, 2, 3, 0, 0, 0, 0], target=OVERLAPPING) == [1.0]
    assert rewards([7, 7, 7, 7, 7, 7], target=(7, 7, 7, 7, 7)) == [1.0]
    assert rewards([7, 7, 7, 7, 0, 7, 7, 7, 7, 0], target=(7, 7, 7, 7, 7)) == [0.0]


@pytest.mark.parametrize("target", [TARGET, OVERLAPPING, (2, 2, 2, 2, 2)])
def test_reward_matches_a_substring_search(target):
    rng = np.random.default_rng(1)
    tokens_bl = rng.choice(np.array([*target, EOS]), size=(2000, LENGTH))  # many near-misses
    for row, start in zip(tokens_bl[::2], rng.integers(0, LENGTH - 3, size=1000)):
        piece = list(target)[:LENGTH - start]  # planted y*, cut when it straddles the end
        row[start:start + len(piece)] = piece
        row[rng.integers(0, LENGTH)] = rng.choice([*target, EOS])  # and maybe broken again
    expected = []
    for row in tokens_bl.tolist():
        live = row[:row.index(EOS)] if EOS in row else row
        expected.append(float(any(tuple(live[i:i + 5]) == target for i in range(len(live) - 4))))
    assert didactic.outcome_rewards(tokens_bl, target).tolist() == expected
    assert 0.1 < np.mean(expected) < 0.9  # the check saw both outcomes


def test_response_mask_and_prover_samples():
    np.testing.assert_array_equal(didactic.response_mask(np.array([[0, EOS, 3, EOS], [1, 2, 3, 4]])),
                                  [[1, 1, 0, 0], [1, 1, 1, 1]])
    tokens_bl, mask_bl = didactic.sample_prover(TARGET, 5.0, 500, np.random.default_rng(0))
    assert tokens_bl.shape == (500, LENGTH) and tokens_bl.min() >= 0 and tokens_bl.max() <= EOS
    assert np.all(tokens_bl[mask_bl == 0] == EOS)
    np.testing.assert_array_equal(mask_bl, didactic.response_mask(tokens_bl))


def test_prover_probabilities():
    probs_ma = didactic.prover_probs(TARGET, 10.0)
    np.testing.assert_allclose(probs_ma.sum(axis=1), 1.0)
    assert probs_ma[2, 4] == pytest.approx(10 / 24) and probs_ma[2, 0] == pytest.approx(1 / 24)
    np.testing.assert_allclose(didactic.prover_probs(TARGET, 1.0), 1 / 15)


@pytest.mark.parametrize("target, gamma", [(TARGET, 10.0), (OVERLAPPING, 30.0)])
def test_exact_prover_values_match_monte_carlo(target, gamma):
    values_hm = didactic.prover_values(target, gamma)
    tokens_bl, _ = didactic.sample_prover(target, gamma, 40_000, np.random.default_rng(2))
    success_b = didactic.outcome_rewards(tokens_bl, target)

    def close(exact, hits):
        std = np.sqrt(max(exact * (1 - exact), 1e-4) / hits.size)
        assert abs(hits.mean() - exact) < 4 * std, (hits.mean(), exact)

    close(values_hm[0, 0], success_b)
    # Q(s_0, y*[0]) = V(1, 1) and Q(s_1, a_1) after (y*[0], y*[1]) = V(2, 2), from the rows that
    # took those steps; the exact per-row Q agrees with the table.
    first = tokens_bl[:, 0] == target[0]
    close(values_hm[1, 1], success_b[first])
    both = first & (tokens_bl[:, 1] == target[1])
    close(values_hm[2, 2], success_b[both])
    q_bl, v0_b = didactic.prover_step_q(tokens_bl[both], target, gamma)
    np.testing.assert_allclose(q_bl[:, :2], [[values_hm[1, 1], values_hm[2, 2]]] * both.sum(), rtol=1e-6)
    np.testing.assert_allclose(v0_b, values_hm[0, 0], rtol=1e-6)
    # The last step's Q is the outcome itself.
    q_all_bl, _ = didactic.prover_step_q(tokens_bl, target, gamma)
    np.testing.assert_array_equal(q_all_bl[:, -1], success_b)


def test_a_near_perfect_prover_is_sure_on_the_right_path():
    gamma = 1e9
    tokens_bl = np.array([[*TARGET, 0, 0, 0, 0, 0],
                          [0, 0, 0, 0, 0, *TARGET],
                          [0, 0, 0, 0, 0, 0, 3, 1, 4, 1],
                          [3, 1, EOS, EOS, EOS, EOS, EOS, EOS, EOS, EOS]])
    q_bl, v0_b = didactic.prover_step_q(tokens_bl, TARGET, gamma)
    np.testing.assert_allclose(v0_b, 1.0, atol=1e-6)
    np.testing.assert_allclose(q_bl[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(q_bl[1], 1.0, atol=1e-6)  # a wrong token with room left costs nothing
    # Once fewer than 5 - matched slots are left, only the right path can still succeed.
    np.testing.assert_allclose(q_bl[2, :5], 1.0, atol=1e-6)
    np.testing.assert_allclose(q_bl[2, 5:], 0.0, atol=1e-6)
    np.testing.assert_allclose(q_bl[3], [1.0, 1.0] + [0.0] * 8, atol=1e-6)


def test_bad_targets_are_rejected():
    with pytest.raises(ValueError, match="target"):
        didactic.transitions((1, 2, 3, 4))
    with pytest.raises(ValueError, match="target"):
        didactic.transitions((1, 2, 3, 4, EOS))
    with pytest.raises(ValueError, match="gamma"):
        didactic.prover_probs(TARGET, 0.0)


def test_summary_takes_per_seed_ratios_over_seeds_where_both_arms_reached():
    """Issue 26's two seeds: 1,125 / 85 and 221 / 79 are 13.2x and 2.8x; their mean is 8.02x, not
    the 8.2x of the means (the old summary); a third seed whose outcome run was cut adds no ratio."""
    from prime_jax.pav import didactic_rl

    summary = didactic_rl.summarise_runs([1125, 221, None], [85, 79, 90])
    assert summary.both == (0, 1)
    assert summary.ratio == pytest.approx((1125 / 85 + 221 / 79) / 2)
    assert summary.ratio != pytest.approx((1125 + 221) / (85 + 79))
    assert (summary.effective, summary.outcome) == (82.0, 673.0)
    assert summary.line(0.9) == "pav_didactic: target=0.9 effective=82.0 outcome=673.0 ratio=8.02 outcome_reached=2/3"


def test_summary_never_prints_inf_and_refuses_the_ratio_of_a_cut_effective_run():
    from prime_jax.pav import didactic_rl

    never = didactic_rl.summarise_runs([None, None], [85, 79])  # the old summary printed ratio=inf
    assert never.ratio is None and "inf" not in never.line(0.9)
    assert never.line(0.9).endswith("ratio=refused(no seed where both arms reached the target) outcome_reached=0/2")
    cut = didactic_rl.summarise_runs([300, 200], [None, 50])  # the old summary counted the cut run as the cap
    assert cut.ratio is None and cut.refusal == "an effective run was cut at the cap"
    assert cut.ratios == (None, 4.0)
    with pytest.raises(ValueError, match="one count per seed"):
        didactic_rl.summarise_runs([1], [1, 2])


def test_outcome_arm_uses_the_monte_carlo_q_pi_when_given():
    """The near-oracle outcome arm weighs each token by Qhat^pi - b, not the row's outcome - b."""
    from prime_jax.pav import didactic_rl

    config = didactic_rl.DidacticConfig()
    tokens = np.array([[3, 1, 4, 1, 5, EOS, EOS, EOS, EOS, EOS], [0] * LENGTH], np.int32)
    mask = didactic.response_mask(tokens).astype(np.float32)
    rewards_b = didactic.outcome_rewards(tokens, TARGET)
    q_pi = np.full(tokens.shape, 0.25, np.float32)
    w = didactic_rl.token_weights("outcome", config, TARGET, tokens, mask, rewards_b, q_pi)
    baseline = np.array([0.0, 1.0])  # the other row's outcome
    np.testing.assert_allclose(w, mask * (0.25 - baseline[:, None]))
