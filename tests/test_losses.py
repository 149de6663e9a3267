"""PPO clip, entropy, KL and PRM losses (prime_jax/losses.py); golden parity is in
test_golden_prime.py."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prime_jax import losses


def batch(seed=0, b=4, l=7):
    rng = np.random.default_rng(seed)
    len_b = rng.integers(1, l + 1, size=b)
    mask = (np.arange(l)[None] < len_b[:, None]).astype(np.float32)
    logp = -rng.random((b, l)).astype(np.float32)
    old = logp + rng.normal(size=(b, l)).astype(np.float32) * 0.3
    adv = rng.normal(size=(b, l)).astype(np.float32)
    return logp, old, adv, mask


def test_ppo_aggregations_match_numpy():
    logp, old, adv, mask = batch()
    ratio = np.exp(logp - old)
    pg = np.maximum(-adv * ratio, -adv * np.clip(ratio, 0.8, 1.2))
    fn = jax.jit(losses.ppo_policy_loss, static_argnames=("clip_eps", "agg"))
    tok, met = fn(logp, old, adv, mask, clip_eps=0.2, agg="token-mean")
    seq, _ = fn(logp, old, adv, mask, clip_eps=0.2, agg="seq-mean-token-mean")
    np.testing.assert_allclose(tok, (pg * mask).sum() / mask.sum(), rtol=1e-6)
    np.testing.assert_allclose(seq, np.mean((pg * mask).sum(1) / mask.sum(1)), rtol=1e-6)
    clipped = -adv * np.clip(ratio, 0.8, 1.2) > -adv * ratio
    np.testing.assert_allclose(met["clip_frac"], (clipped * mask).sum() / mask.sum(), rtol=1e-6)
    np.testing.assert_allclose(met["approx_kl"], ((old - logp) * mask).sum() / mask.sum(),
                               rtol=1e-5)
    with pytest.raises(ValueError):
        losses.ppo_policy_loss(logp, old, adv, mask, agg="sum")


def test_ppo_on_policy_gradient_is_minus_advantage():
    logp, _, adv, mask = batch(1)
    grad = jax.grad(lambda lp: losses.ppo_policy_loss(lp, logp, adv, mask, agg="token-mean")[0])(
        jnp.asarray(logp))
    np.testing.assert_allclose(grad, -adv * mask / mask.sum(), rtol=1e-5, atol=1e-7)


def test_kl_penalties():
    logp, ref, _, _ = batch(2)
    d = logp - ref
    np.testing.assert_allclose(losses.kl_penalty(logp, ref, "k1"), d)
    k3 = np.asarray(losses.kl_penalty(logp, ref, "k3"))
    np.testing.assert_allclose(k3, np.exp(-d) + d - 1, rtol=1e-5, atol=1e-7)
    assert (k3 >= 0).all()
    np.testing.assert_allclose(losses.kl_penalty(logp, ref, "k2"), d * d / 2, rtol=1e-6)


def test_prm_ce_loss_soft_labels_and_clamp():
    mask = np.ones((3, 4), np.float32)
    lp = np.array([[0.5] * 4, [-0.5] * 4, [0.0] * 4], np.float32)
    ref = np.zeros_like(lp)
    labels = np.array([1.0, 0.0, 0.3], np.float32)
    loss, met = losses.prm_ce_loss(lp, ref, mask, labels, beta=0.5)
    s = 1 / (1 + np.exp(-0.5 * lp.sum(1)))
    want = -np.mean(labels * np.log(s) + (1 - labels) * np.log(1 - s))
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    assert float(met["prm_acc"]) == pytest.approx(1.0)  # z = 0 vs label 0.3: both "wrong"
    # saturated: log terms clamp at -100 and the gradient stays finite
    big = np.full((1, 4), 1e4, np.float32)
    loss, _ = losses.prm_ce_loss(big, np.zeros_like(big), np.ones_like(big), np.zeros(1), beta=1.0)
    assert float(loss) == pytest.approx(100.0)
    g = jax.grad(lambda x: losses.prm_ce_loss(x, jnp.zeros_like(x), jnp.ones_like(x),
                                              jnp.zeros(1), beta=1.0)[0])(jnp.asarray(big))
    assert np.isfinite(np.asarray(g)).all()


def test_pairwise_accuracy_semantics():
    # group 1: all equal -> 0.5; group 2: perfect ranking -> 1; group 3: reversed, weighted
    scores = np.array([1.0, 2.0, 3.0, 3.0, 2.0, 1.0, 1.0, 2.0, 0.0], np.float32)
    acc = np.array([1.0, 1.0, 1.0, 1.0, 0.5, 0.0, 1.0, 0.0, 0.0], np.float32)
    got = losses.pairwise_accuracy(scores, acc, num_samples=3)
    # group 3 pairs (i<j): (0,1) da=1, ds<0 wrong; (0,2) da=1, ds>0 right; (1,2) da=0 -> 1/2
    np.testing.assert_allclose(got, (0.5 + 1.0 + 0.5) / 3, rtol=1e-6)
    # a score tie counts as "j ranks higher" (the reference's strict >)
    np.testing.assert_allclose(losses.pairwise_accuracy(np.zeros(2), np.array([0.0, 1.0]),
                                                        num_samples=2), 1.0)


def test_prm_dpo_loss_matches_pairwise_numpy():
    rng = np.random.default_rng(4)
    lp = rng.normal(size=(8, 5)).astype(np.float32)
    ref = rng.normal(size=(8, 5)).astype(np.float32)
    mask = (np.arange(5)[None] < rng.integers(1, 6, size=8)[:, None]).astype(np.float32)
    acc = np.array([1, 0, 0, 1, 0.5, 0.5, 0.5, 0.5], np.float32)
    loss, met = jax.jit(losses.prm_dpo_loss, static_argnames=("num_samples", "beta"))(
        lp, ref, mask, acc, num_samples=4, beta=0.05)
    r = 0.05 * ((lp - ref) * mask).sum(1)
    num = den = 0.0
    for g in range(2):
        for i, j in itertools.permutations(range(g * 4, g * 4 + 4), 2):
            if acc[i] > acc[j]:
                w = acc[i] - acc[j]
                num += w * np.log1p(np.exp(-(r[i] - r[j])))
                den += w
    np.testing.assert_allclose(loss, num / den, rtol=1e-5)
    assert int(met["num_pairs"]) == 4
    loss, _ = losses.prm_dpo_loss(lp[4:], ref[4:], mask[4:], acc[4:], num_samples=4)
    assert float(loss) == 0.0


def test_empty_rows_count_in_no_loss_or_metric():
    """Placeholder rows (no valid token) of a short batch change neither the losses nor the metrics."""
    rng = np.random.default_rng(3)
    n, l = 2, 5
    logp = -rng.random((4, l)).astype(np.float32)
    ref = -rng.random((4, l)).astype(np.float32)
    mask = np.ones((4, l), np.float32)
    labels = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
    kept = (logp[:2], ref[:2], mask[:2], labels[:2])
    padded_mask = mask.copy()
    padded_mask[2:] = 0.0
    ce_kept, m_kept = losses.prm_ce_loss(*kept, beta=1.0, num_samples=n)
    ce_padded, m_padded = losses.prm_ce_loss(logp, ref, padded_mask, labels, beta=1.0, num_samples=n)
    np.testing.assert_allclose(ce_padded, ce_kept, rtol=1e-6)
    for key in m_kept:
        np.testing.assert_allclose(m_padded[key], m_kept[key], rtol=1e-6)
    adv = rng.normal(size=(4, l)).astype(np.float32)
    pg_kept, _ = losses.ppo_policy_loss(logp[:2], ref[:2], adv[:2], mask[:2])
    pg_padded, _ = losses.ppo_policy_loss(logp, ref, adv, padded_mask)
    np.testing.assert_allclose(pg_padded, pg_kept, rtol=1e-6)
