"""Properties and unit tests of the fused advantage kernel (prime_jax/advantages.py).

Shapes come from a small fixed set so that hypothesis examples share jit compilations.
"""

import ast
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prime_jax import advantages as adv_lib
from prime_jax import scans
from prime_jax.advantages import AdvantageConfig
from prime_jax.rewards import ImplicitRewardConfig

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)
SHAPES = [(2, 3, 9), (4, 2, 16)]  # (n, groups, L)


def make_batch(seed, n, groups, l, *, binary=True):
    rng = np.random.default_rng(seed)
    b = n * groups
    len_b = rng.integers(1, l + 1, size=b)
    len_b[rng.random(b) < 0.2] = l  # some truncated rows
    mask = (np.arange(l)[None, :] < len_b[:, None]).astype(np.int32)
    acc = (rng.random(b) < 0.5).astype(np.float32) if binary else rng.random(b).astype(np.float32)
    garbage = rng.normal(size=(b, l)) * 100
    rm = np.where(mask, rng.normal(size=(b, l)), garbage).astype(np.float32)
    lp = np.where(mask, -rng.random((b, l)) * 3, garbage).astype(np.float32)
    lr = np.where(mask, -rng.random((b, l)) * 3, -garbage).astype(np.float32)
    return dict(mask=mask, acc=acc, rm=rm, lp=lp, lr=lr, len=len_b)


batches = st.tuples(st.integers(0, 2**31 - 1), st.sampled_from(SHAPES))


@functools.partial(jax.jit, static_argnames=("n", "gp", "go", "method", "baseline", "est"))
def returns_fn(rm, acc, mask, *, n, gp=1.0, go=1.0, method="chunked", baseline="reference",
               est="rloo"):
    return adv_lib.estimator_returns(rm, acc, mask, num_samples=n, process_gamma=gp,
                                     outcome_gamma=go, scan_method=method, estimator=est,
                                     process_baseline=baseline)


def centred_numpy(x, mask, n):
    """x'[i,t] = n/(n-1) (x - mean_group m) on the mask (the README's step 2)."""
    m_b = (x * mask).sum(1) / mask.sum(1)
    mean_b = m_b.reshape(-1, n).mean(1).repeat(n)
    return np.where(mask, n / (n - 1) * (x - mean_b[:, None]), 0.0)


@SETTINGS
@given(batches, st.sampled_from([0.0, 0.9, 1.0]))
def test_outcome_advantages_sum_to_zero_within_group(batch, gamma):
    seed, (n, g, l) = batch
    d = make_batch(seed, n, g, l, binary=False)
    ret = np.asarray(returns_fn(None, d["acc"], d["mask"], n=n, go=gamma))
    at_last_b = ret[np.arange(n * g), d["len"] - 1]  # = x'_i for any gamma
    np.testing.assert_allclose(at_last_b.reshape(g, n).sum(1), 0.0, atol=1e-5)
    if gamma == 1.0:
        np.testing.assert_allclose(ret[:, 0].reshape(g, n).sum(1), 0.0, atol=1e-5)


@SETTINGS
@given(batches)
def test_gamma_zero_returns_are_centred_rewards(batch):
    seed, (n, g, l) = batch
    d = make_batch(seed, n, g, l)
    mask = d["mask"].astype(bool)
    ret = np.asarray(returns_fn(d["rm"], d["acc"], d["mask"], n=n, gp=0.0, go=0.0))
    last = np.zeros_like(mask)
    last[np.arange(n * g), d["len"] - 1] = True
    want = centred_numpy(np.where(mask, d["rm"], 0), mask, n)
    want = want + centred_numpy(np.where(last, d["acc"][:, None], 0), last, n)
    np.testing.assert_allclose(np.where(mask, ret, 0), want, atol=1e-5)


@SETTINGS
@given(batches, st.sampled_from([0.95, 1.0]))
def test_scan_methods_agree(batch, gamma):
    seed, (n, g, l) = batch
    x = np.random.default_rng(seed).normal(size=(n * g, l)).astype(np.float32)
    outs = [np.asarray(jax.jit(scans.discounted_reverse_cumsum, static_argnames="method")(
        x, gamma, method=m)) for m in scans.SCAN_METHODS]
    for out in outs[1:]:
        np.testing.assert_allclose(out, outs[0], atol=1e-5, rtol=1e-5)


def test_chunked_scan_handles_ragged_lengths():
    x = np.random.default_rng(0).normal(size=(3, 150)).astype(np.float32)
    ref = scans.discounted_reverse_cumsum_scan(x, 0.97)
    got = scans.discounted_reverse_cumsum_chunked(x, 0.97, chunk=64)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)


@SETTINGS
@given(batches)
def test_paper_and_reference_forms_agree_at_first_token(batch):
    seed, (n, g, l) = batch
    d = make_batch(seed, n, g, l)
    ref = returns_fn(d["rm"], d["acc"], d["mask"], n=n, baseline="reference")
    paper = returns_fn(d["rm"], d["acc"], d["mask"], n=n, baseline="paper")
    np.testing.assert_allclose(paper[:, 0], ref[:, 0], atol=1e-4)


REWARD_FIELDS = ("granularity", "norm", "num_chunks", "beta")


def fused(logp_prm, logp_ref, mask, acc, *, num_samples, step_ends=None, **settings):
    """The kernel with its two configs built from keyword settings (gammas 0.99 / 0.97 unless given)."""
    reward = ImplicitRewardConfig(**{k: v for k, v in settings.items() if k in REWARD_FIELDS})
    advantage = AdvantageConfig(**{"process_gamma": 0.99, "outcome_gamma": 0.97,
                                   **{k: v for k, v in settings.items() if k not in REWARD_FIELDS}})
    return adv_lib.prime_advantages(logp_prm, logp_ref, mask, acc, num_samples=num_samples, reward=reward,
                                    advantage=advantage, step_ends=step_ends)


@SETTINGS
@given(batches, st.sampled_from(["token", "whole"]))
def test_padding_values_change_nothing(batch, granularity):
    seed, (n, g, l) = batch
    d = make_batch(seed, n, g, l)
    mask = d["mask"].astype(bool)
    noise = np.random.default_rng(seed + 1).normal(size=mask.shape).astype(np.float32) * 1e3
    a = fused(d["lp"], d["lr"], d["mask"], d["acc"], num_samples=n, granularity=granularity)
    b = fused(np.where(mask, d["lp"], noise), np.where(mask, d["lr"], -noise), d["mask"],
              d["acc"], num_samples=n, granularity=granularity)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        assert not np.any(np.asarray(x)[~mask])  # zeros on padding


@SETTINGS
@given(batches, st.integers(0, 2**31 - 1))
def test_permuting_samples_within_group_permutes_outputs(batch, perm_seed):
    seed, (n, g, l) = batch
    d = make_batch(seed, n, g, l, binary=False)
    rng = np.random.default_rng(perm_seed)
    perm = np.concatenate([grp * n + rng.permutation(n) for grp in range(g)])
    a = fused(d["lp"], d["lr"], d["mask"], d["acc"], num_samples=n)
    b = fused(d["lp"][perm], d["lr"][perm], d["mask"][perm], d["acc"][perm], num_samples=n)
    for x, y in zip(a, b):
        np.testing.assert_allclose(np.asarray(x)[perm], np.asarray(y), atol=1e-5)


@settings(max_examples=16, deadline=None, derandomize=True)
@given(batches, st.sampled_from(["rloo", "rloo_paper", "grpo", "reinforce_mean"]),
       st.sampled_from([("token", "batch_norm"), ("whole", "none"), ("step", "batch_norm")]),
       st.sampled_from([(1.0, 1.0), (1.0, 0.9), (0.95, 0.95)]))
def test_fused_kernel_equals_generic_path(batch, est, gran_norm, gammas):
    """The linearity fast path (process gamma 1) and the folded scan agree with the generic
    estimator_returns applied to the kernel's own process rewards."""
    seed, (n, g, l) = batch
    d = make_batch(seed, n, g, l)
    est, baseline = ("rloo", "paper") if est == "rloo_paper" else (est, "reference")
    ends = np.random.default_rng(seed).random(d["mask"].shape) < 0.3
    out = fused(d["lp"], d["lr"], d["mask"], d["acc"], num_samples=n, estimator=est,
                process_baseline=baseline, granularity=gran_norm[0], norm=gran_norm[1],
                step_ends=ends, process_gamma=gammas[0], outcome_gamma=gammas[1],
                process_coef=0.7, outcome_coef=1.3)
    want = jax.jit(functools.partial(
        adv_lib.estimator_returns, num_samples=n, process_gamma=gammas[0],
        outcome_gamma=gammas[1], process_coef=0.7, outcome_coef=1.3, estimator=est,
        process_baseline=baseline, scan_method="scan"))(out.process_rewards, d["acc"], d["mask"])
    np.testing.assert_allclose(out.returns, want, atol=2e-5, rtol=1e-5)


def test_static_and_traced_gamma_agree():
    d = make_batch(3, 4, 2, 16)
    static = returns_fn(d["rm"], d["acc"], d["mask"], n=4, gp=0.9, go=0.9)
    traced = jax.jit(lambda gp, go: adv_lib.rloo_returns(
        d["rm"], d["acc"], d["mask"], num_samples=4, process_gamma=gp, outcome_gamma=go))
    np.testing.assert_allclose(traced(0.9, 0.9), static, atol=1e-5)


def test_outcome_only_skips_process_path():
    d = make_batch(5, 2, 3, 9)
    out = fused(None, None, d["mask"], d["acc"], num_samples=2, process_coef=0.0)
    ret = returns_fn(None, d["acc"], d["mask"], n=2, go=0.97)
    np.testing.assert_allclose(out.returns, ret, atol=1e-6)
    assert not np.any(np.asarray(out.process_rewards))
    jaxpr = str(jax.make_jaxpr(lambda m, a: fused(None, None, m, a, num_samples=2,
                                                  process_coef=0.0))(d["mask"], d["acc"]))
    assert "cumsum" not in jaxpr and "scan" not in jaxpr


def test_estimators_baselines():
    m_b = jnp.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    sb = functools.partial(adv_lib.source_baseline, m_b, num_samples=4)
    scale, base = sb(estimator="rloo")
    np.testing.assert_allclose(scale * (m_b - base), [2 / 3, -2 / 3, -2 / 3, 2 / 3, 0, 0, 0, 0])
    scale, base = sb(estimator="rloo", process_baseline="paper")
    np.testing.assert_allclose(scale * (m_b - base), [2 / 3, -2 / 3, -2 / 3, 2 / 3, 0, 0, 0, 0])
    scale, base = sb(estimator="grpo")
    std = np.std([1, 0, 0, 1], ddof=1)
    want = 0.5 / (std + 1e-6) * np.array([1, -1, -1, 1, 0, 0, 0, 0])
    np.testing.assert_allclose(scale * (m_b - base), want, rtol=1e-5)
    scale, base = sb(estimator="reinforce")
    np.testing.assert_allclose(scale * (m_b - base), m_b)
    scale, base = sb(estimator="reinforce_mean")
    np.testing.assert_allclose(scale * (m_b - base), m_b - 0.5)
    with pytest.raises(ValueError):
        sb(estimator="ppo")


def test_fused_estimators_run_under_jit():
    d = make_batch(7, 4, 2, 16)
    for est in ("grpo", "reinforce", "reinforce_mean"):
        out = fused(d["lp"], d["lr"], d["mask"], d["acc"], num_samples=4, estimator=est)
        assert np.isfinite(np.asarray(out.advantages)).all()
    out = fused(d["lp"], d["lr"], d["mask"], d["acc"], num_samples=4, estimator="reinforce", whiten=False)
    want = returns_fn(out.process_rewards, d["acc"], d["mask"], n=4, gp=0.99, go=0.97, est="reinforce")
    np.testing.assert_allclose(out.returns, want, atol=1e-5)


@pytest.mark.parametrize("config, settings, message", [
    (AdvantageConfig, {"estimator": "remax"}, r"AdvantageConfig.estimator='remax': expected one of"),
    (AdvantageConfig, {"process_baseline": "mean"}, r"AdvantageConfig.process_baseline='mean'"),
    (AdvantageConfig, {"outcome_gamma": 1.5}, r"AdvantageConfig.outcome_gamma=1.5: must be in \[0, 1\]"),
    (AdvantageConfig, {"credit": "max"}, r"AdvantageConfig.credit='max': expected one of"),
    (AdvantageConfig, {"credit": "future_min", "estimator": "grpo"}, r"credit='future_min' takes PURE's leave-one-out"),
    (AdvantageConfig, {"credit": "future_min", "process_gamma": 0.9}, r"credit='future_min' sums undiscounted .* needs process_gamma=1"),
    (AdvantageConfig, {"credit": "msa", "process_gamma": 0.9}, r"credit='msa' sums undiscounted .* needs process_gamma=1"),
    (ImplicitRewardConfig, {"granularity": "Token"}, r"ImplicitRewardConfig.granularity='Token'"),
    (ImplicitRewardConfig, {"norm": "layer_norm"}, r"ImplicitRewardConfig.norm='layer_norm'"),
    (ImplicitRewardConfig, {"beta": 0.0}, r"ImplicitRewardConfig.beta=0.0: must be > 0"),
])
def test_configs_name_the_bad_field_and_value(config, settings, message):
    with pytest.raises(ValueError, match=message):
        config(**settings)


def test_masked_whiten_bessel_in_float32():
    x = np.random.default_rng(0).normal(size=(4, 5))
    mask = np.ones((4, 5), np.int32)
    mask[1, 3:] = 0
    with jax.enable_x64(True):
        got = np.asarray(adv_lib.masked_whiten(x, mask))
    v = x[mask.astype(bool)]
    bessel = np.float64(np.float32(v.size) / np.float32(v.size - 1))
    want = (x - v.mean()) / np.sqrt(v.var() * bessel + 1e-8)
    np.testing.assert_allclose(got[mask.astype(bool)], want[mask.astype(bool)], atol=1e-14)
    assert not got[~mask.astype(bool)].any()


def test_kernel_modules_import_only_jax_numpy():
    root = pathlib.Path(adv_lib.__file__).parent
    allowed = {"jax", "numpy", "prime_jax", "__future__", "dataclasses", "functools", "typing"}
    for name in ("scans.py", "rewards.py", "advantages.py", "losses.py"):
        for node in ast.walk(ast.parse((root / name).read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            assert all(m.split(".")[0] in allowed for m in mods), (name, mods)


def future_min_returns_numpy(r, positions, mask, acc, n):
    """The min form written as loops: for each valid token t of row i, the minimum of the rewards at
    positions s >= t, minus the other samples' per-token mean of their minima times the length
    from the start of t's step; plus the leave-one-out outcome on every valid token (gammas 1)."""
    b, l = r.shape
    out = np.zeros((b, l))
    lengths = mask.sum(1)
    minima = np.array([r[i][positions[i]].min() for i in range(b)])
    for i in range(b):
        others = [j for j in range(i // n * n, i // n * n + n) if j != i]
        base = minima[others].sum() / lengths[others].sum()
        outcome = acc[i] - acc[others].mean()
        for t in range(lengths[i]):
            start = max([s + 1 for s in np.flatnonzero(positions[i]) if s < t], default=0)
            future = [r[i, s] for s in np.flatnonzero(positions[i]) if s >= t]
            out[i, t] = min(future) - base * (lengths[i] - start) + outcome
    return out


def test_future_min_returns_match_the_loops_on_step_rewards():
    rng = np.random.default_rng(0)
    n, groups, l = 4, 2, 12
    len_b = rng.integers(6, l + 1, size=n * groups)
    mask = np.arange(l)[None, :] < len_b[:, None]
    ends = np.zeros_like(mask)
    ends[:, [1, 4]] = True
    ends[np.arange(n * groups), len_b - 1] = True  # the last token ends the last step
    r = np.where(ends, rng.normal(size=mask.shape), 0.0).astype(np.float32)
    acc = (rng.random(n * groups) < 0.5).astype(np.float32)
    config = AdvantageConfig(credit="future_min", whiten=False)
    out = adv_lib.advantages_from_rewards(r, mask, acc, num_samples=n, advantage=config, positions=ends)
    np.testing.assert_allclose(out.returns, future_min_returns_numpy(r, ends, mask, acc, n), atol=1e-5)


def test_one_bad_step_sets_the_credit_of_everything_before_it():
    """Sum form: a good later step outweighs a bad one; min form: the bad step caps the prefix."""
    r = np.array([[0.0, 0.9, 0.0, -0.5, 0.0, 0.8], [0.0, 0.1, 0.0, 0.1, 0.0, 0.1]], np.float32)
    mask = np.ones_like(r, bool)
    ends = r != 0
    config = AdvantageConfig(credit="future_min", whiten=False, outcome_coef=0.0)
    g_min = np.asarray(adv_lib.advantages_from_rewards(r, mask, None, num_samples=2, advantage=config,
                                                       positions=ends).returns)
    base = np.array([0.1 / 6, -0.5 / 6])  # the other row's minimum per token
    np.testing.assert_allclose(g_min[0, :4], -0.5 - base[0] * np.array([6, 6, 4, 4]), atol=1e-6)
    np.testing.assert_allclose(g_min[0, 4:], 0.8 - base[0] * 2, atol=1e-6)
    np.testing.assert_allclose(g_min[1, 0], 0.1 - base[1] * 6, atol=1e-6)
    assert g_min[0, 0] < g_min[1, 0]  # the row with a bad step gets less credit, though its sum is larger


@pytest.mark.parametrize("granularity", ["token", "step", "whole"])
def test_future_min_kernel_uses_the_granularity_positions(granularity):
    d = make_batch(3, 2, 3, 9)
    step_ends = np.zeros_like(d["mask"], bool)
    step_ends[:, ::3] = True
    reward = ImplicitRewardConfig(granularity=granularity)
    config = AdvantageConfig(credit="future_min", whiten=False)
    out = adv_lib.prime_advantages(d["lp"], d["lr"], d["mask"], d["acc"], num_samples=2, reward=reward,
                                   advantage=config, step_ends=step_ends)
    positions = np.asarray(adv_lib.reward_positions(jnp.asarray(d["mask"], bool), granularity, step_ends))
    assert np.all(np.asarray(out.process_rewards)[~positions] == 0)
    expected = future_min_returns_numpy(np.asarray(out.process_rewards, np.float64), positions, d["mask"], d["acc"], 2)
    np.testing.assert_allclose(np.where(d["mask"], out.returns, 0), expected, atol=1e-5)
