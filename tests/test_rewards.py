"""Implicit process rewards and step splitting (prime_jax/rewards.py)."""

import jax
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from prime_jax import rewards

SETTINGS = settings(max_examples=10, deadline=None, derandomize=True)
B, L = 6, 20


def make(seed):
    rng = np.random.default_rng(seed)
    len_b = rng.integers(1, L + 1, size=B)
    mask = (np.arange(L)[None] < len_b[:, None]).astype(np.int32)
    lp = -rng.random((B, L)).astype(np.float32) * 2
    lr = -rng.random((B, L)).astype(np.float32) * 2
    tokens = rng.integers(0, 4, size=(B, L))  # 0 plays the delimiter's role
    return mask, lp, lr, tokens, len_b


ipr = jax.jit(rewards.implicit_process_rewards,
              static_argnames=("granularity", "norm", "num_chunks", "beta"))


def test_log_ratio_is_zero_on_padding():
    mask, lp, lr, _, _ = make(0)
    q = np.asarray(rewards.log_ratio(lp, lr, mask))
    np.testing.assert_allclose(q, np.where(mask, lp - lr, 0))


@SETTINGS
@given(st.integers(0, 2**31 - 1))
def test_step_granularity_sums_each_step_on_its_last_token(seed):
    mask, lp, lr, tokens, len_b = make(seed)
    ends = jax.jit(rewards.step_ends_from_tokens, static_argnames="delimiter")(
        tokens, mask, delimiter=(0,))
    r = np.asarray(ipr(lp, lr, mask, granularity="step", norm="none", beta=1.0, step_ends=ends))
    q = np.where(mask, lp - lr, 0)
    for i in range(B):
        acc = 0.0
        for t in range(L):
            acc += q[i, t]
            is_end = t < len_b[i] and (tokens[i, t] == 0 or t == len_b[i] - 1)
            np.testing.assert_allclose(r[i, t], acc if is_end else 0.0, atol=1e-5)
            acc = 0.0 if is_end else acc
    np.testing.assert_allclose(r.sum(1), q.sum(1), atol=1e-5)
    whole = np.asarray(ipr(lp, lr, mask, granularity="whole", norm="none", beta=1.0))
    np.testing.assert_allclose(whole[np.arange(B), len_b - 1], q.sum(1), atol=1e-5)


def test_step_ends_with_multi_token_delimiter():
    tokens = np.array([[5, 7, 7, 3, 7, 7, 7, 2, 9, 9]])
    mask = np.array([[1] * 8 + [0, 0]])
    ends = np.asarray(rewards.step_ends_from_tokens(tokens, mask, (7, 7)))
    # "7 7" ends at t=2, t=5 and t=6 (overlapping), the last valid token t=7 ends a step too
    np.testing.assert_array_equal(np.flatnonzero(ends[0]), [2, 5, 6, 7])


def test_batch_norm_per_chunk_and_none():
    mask, lp, lr, _, _ = make(3)
    q = np.where(mask, lp - lr, 0).astype(np.float32)

    def norm(x):
        rev = np.cumsum(x[:, ::-1], 1)[:, ::-1]
        return x / (np.abs(rev).max() + 1e-6)

    got = np.asarray(ipr(lp, lr, mask, num_chunks=2))
    np.testing.assert_allclose(got, np.concatenate([norm(q[:3]), norm(q[3:])]), atol=1e-6)
    got = np.asarray(ipr(lp, lr, mask, norm="none", beta=0.05))
    np.testing.assert_allclose(got, 0.05 * q, atol=1e-7)
    assert got.dtype == np.float32
