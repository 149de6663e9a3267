"""PURE's credit (``AdvantageConfig.credit = "pure"``) against values transcribed from PURE's code.

Source: github.com/CJReinforce/PURE (main branch, OpenRLHF-based):
- ``openrlhf/utils/utils.py: turn_process_reward_logits_to_reward``: per response,
  ``weight = softmax(-r.masked_fill(~mask, inf) / temperature)`` over its step-end positions,
  process reward ``weight * r`` (temperature 0.1 at the call site in experience_maker.py);
- ``openrlhf/trainer/ppo_utils/experience_maker.py: generate_samples`` (each separator and the EOS
  token end a step; ``num_tokens_per_step`` counts a step's tokens before its end token) and
  ``process_experiences`` (``--reward_baseline token``: subtract, at each step end,
  ``sum_{j!=i} R_j / sum_{j!=i} len_j * num_tokens_per_step``; ``step``: subtract
  ``mean_{j!=i} R_j / num_steps_j``; R = the weighted rewards' sum; the verifiable reward
  ``solved - 1`` minus its leave-one-out mean added at EOS);
- ``RemoteExperienceMaker.make_experience``: ``returns = reward.fliplr().cumsum(1).fliplr()``.

The expected arrays below were computed by hand-written loops following those lines (no torch),
before PURE zeroes the advantage of its separator tokens and whitens the advantages.
"""

import numpy as np
import pytest

from prime_jax import advantages as adv_lib
from prime_jax import credit as credit_lib
from prime_jax.advantages import AdvantageConfig

L = 6
ROWS = [  # (valid length, step-end positions, step rewards): two groups of 2, unequal step counts
    (6, [1, 3, 5], [0.5, -0.2, 0.8]),
    (4, [1, 3], [0.3, 0.6]),
    (5, [4], [-0.4]),
    (6, [2, 5], [0.9, -0.7]),
]
ACC = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
PURE_TOKEN_BASELINE = np.array([
    [0.565012, 0.565012, 0.643114, 0.643114, 0.921479, 0.921479],
    [-0.619333, -0.619333, -0.938325, -0.938325, 0.0, 0.0],
    [-0.933333, -0.933333, -0.933333, -0.933333, -0.933333, 0.0],
    [0.62, 0.62, 0.62, 0.46, 0.46, 0.46]])
PURE_STEP_BASELINE = np.array([
    [0.329341, 0.329341, 0.486, 0.486, 0.842922, 0.842922],
    [-0.552894, -0.552894, -0.905105, -0.905105, 0.0, 0.0],
    [-1.05, -1.05, -1.05, -1.05, -1.05, 0.0],
    [1.1, 1.1, 1.1, 0.7, 0.7, 0.7]])


def batch(rows=ROWS):
    mask = np.zeros((len(rows), max(length for length, _, _ in rows)), bool)
    ends = np.zeros_like(mask)
    r = np.zeros(mask.shape, np.float32)
    for i, (length, positions, rewards) in enumerate(rows):
        mask[i, :length] = True
        ends[i, positions] = True
        r[i, positions] = rewards
    return r, mask, ends


def returns(config, rows=ROWS, acc=ACC):
    r, mask, ends = batch(rows)
    out = adv_lib.advantages_from_rewards(r, mask, acc, num_samples=2, advantage=config, positions=ends)
    return np.asarray(out.returns)


@pytest.mark.parametrize("baseline, expected", [("token", PURE_TOKEN_BASELINE), ("step", PURE_STEP_BASELINE)])
def test_pure_credit_matches_the_values_of_pures_code(baseline, expected):
    config = AdvantageConfig(credit="pure", pure_baseline=baseline, whiten=False)
    np.testing.assert_allclose(returns(config), expected, atol=2e-6)


def test_the_future_min_form_is_not_pures_transform():
    """The token-level form the logged ``prime_min`` rows used gives other values on the same batch."""
    got = returns(AdvantageConfig(credit="future_min", whiten=False))
    assert np.max(np.abs(got - PURE_TOKEN_BASELINE)) > 0.1


def test_pure_at_low_temperature_gives_the_worst_step_before_it_and_zero_after():
    """T -> 0: tokens up to the worst step get min_k r_k, tokens after it 0 (the other row of each
    group has R = 0, so rows 0 and 2 have baseline 0; outcome off)."""
    rows = [(8, [1, 4, 7], [0.6, -0.3, 0.5]), (8, [7], [0.0]),
            (8, [2, 5, 7], [-0.8, 0.2, 0.4]), (8, [7], [0.0])]
    config = AdvantageConfig(credit="pure", pure_temperature=1e-3, whiten=False, outcome_coef=0.0)
    got = returns(config, rows, acc=np.zeros(4, np.float32))
    np.testing.assert_allclose(got[0], [-0.3] * 5 + [0.0] * 3, atol=1e-6)
    np.testing.assert_allclose(got[2], [-0.8] * 3 + [0.0] * 5, atol=1e-6)
    # the partners' one step (7 tokens before its end) minus R_partner / 8 per token
    np.testing.assert_allclose(got[[1, 3]], [[0.3 / 8 * 7] * 8, [0.8 / 8 * 7] * 8], atol=1e-6)


def test_pure_weights_sum_to_one_over_the_steps_and_vanish_on_rows_without_steps():
    r, mask, ends = batch()
    ends[1] = False
    w = np.asarray(credit_lib.pure_weights(r, ends, 0.1))
    np.testing.assert_allclose(w.sum(-1), [1.0, 0.0, 1.0, 1.0], atol=1e-6)
    assert np.all(w[~ends] == 0)


def test_pure_kernel_puts_the_weights_on_the_step_granularity_positions():
    """prime_advantages with step granularity equals advantages_from_rewards on its own rewards."""
    from prime_jax.rewards import ImplicitRewardConfig

    rng = np.random.default_rng(3)
    mask = np.arange(9)[None, :] < np.array([9, 7, 9, 5])[:, None]
    lp, lr = rng.normal(size=(2, 4, 9)).astype(np.float32)
    acc = np.array([1, 0, 1, 1], np.float32)
    step_ends = np.zeros_like(mask)
    step_ends[:, [2, 5]] = True
    config = AdvantageConfig(credit="pure", whiten=False)
    out = adv_lib.prime_advantages(lp, lr, mask, acc, num_samples=2, reward=ImplicitRewardConfig(granularity="step"),
                                   advantage=config, step_ends=step_ends)
    positions = np.asarray(adv_lib.reward_positions(mask, "step", step_ends))
    again = adv_lib.advantages_from_rewards(out.process_rewards, mask, acc, num_samples=2, advantage=config,
                                            positions=positions)
    np.testing.assert_allclose(out.returns, again.returns, atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"credit": "pure", "pure_temperature": 0.0}, r"AdvantageConfig.pure_temperature=0.0"),
    ({"credit": "pure", "pure_baseline": "tokens"}, r"AdvantageConfig.pure_baseline='tokens'"),
    ({"credit": "pure", "estimator": "grpo"}, r"credit='pure' takes PURE's leave-one-out"),
])
def test_pure_config_is_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdvantageConfig(**kwargs)
