"""Losses (SPEC 1.5, 1.7): PPO clip for the policy, CE / DPO for the implicit PRM, KL.

All functions are pure, jit-safe and shape-static; masks are (B, L) with 1 on valid response
tokens (EOS included). Metrics are masked token means over the whole given batch (as the
reference logs them) whatever the loss aggregation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from prime_jax import rewards as rewards_lib

AGGREGATIONS = ("seq-mean-token-mean", "token-mean")


def masked_mean(x, mask, axis=None):
    """``sum(x * mask) / sum(mask)`` over ``axis`` (all axes if None); 0 where the mask is empty."""
    w = jnp.asarray(mask).astype(x.dtype)
    den = jnp.sum(w, axis=axis)
    return jnp.sum(x * w, axis=axis) / jnp.maximum(den, jnp.asarray(1, x.dtype))


def row_valid(mask_bt):
    """Bool (B,): rows with at least one valid token. A response always has one (its EOS or its
    last sampled token); an empty row is a placeholder that no loss or statistic may count."""
    return jnp.any(jnp.asarray(mask_bt).astype(bool), axis=-1)


def aggregate(x_bt, mask_bt, agg: str = "seq-mean-token-mean"):
    """``token-mean``: masked mean over all valid tokens; ``seq-mean-token-mean``: mean over the
    non-empty rows (:func:`row_valid`) of each row's masked token mean (0 if every row is empty)."""
    if agg == "token-mean":
        return masked_mean(x_bt, mask_bt)
    if agg == "seq-mean-token-mean":
        return masked_mean(masked_mean(x_bt, mask_bt, axis=-1), row_valid(mask_bt))
    raise ValueError(f"agg must be one of {AGGREGATIONS}, got {agg!r}")


def ppo_policy_loss(logp, old_logp, advantages, mask, *, clip_eps: float = 0.2,
                    agg: str = "seq-mean-token-mean"):
    """PPO clipped surrogate.

        ratio = exp(logp - old_logp)
        pg    = max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps))
        loss  = aggregate(pg, mask, agg)

    Metrics (token means): ``pg_loss_token_mean``; ``clip_frac`` = share of tokens where the
    clipped branch is strictly larger; ``approx_kl`` = mean(old_logp - logp); ``ratio_mean``.
    """
    logp_bt = jnp.asarray(logp)
    dtype = jnp.result_type(jnp.float32, logp_bt, old_logp, advantages)
    logp_bt = logp_bt.astype(dtype)
    old_bt = jnp.asarray(old_logp, dtype)
    adv_bt = jnp.asarray(advantages, dtype)
    log_ratio_bt = logp_bt - old_bt
    ratio_bt = jnp.exp(log_ratio_bt)
    pg1_bt = -adv_bt * ratio_bt
    pg2_bt = -adv_bt * jnp.clip(ratio_bt, 1.0 - clip_eps, 1.0 + clip_eps)
    pg_bt = jnp.maximum(pg1_bt, pg2_bt)
    loss = aggregate(pg_bt, mask, agg)
    metrics = {
        "pg_loss_token_mean": masked_mean(pg_bt, mask),
        "clip_frac": masked_mean((pg2_bt > pg1_bt).astype(dtype), mask),
        "approx_kl": masked_mean(-log_ratio_bt, mask),
        "ratio_mean": masked_mean(ratio_bt, mask),
    }
    return loss, metrics


def kl_penalty(logp, ref_logp, kind: str = "k1"):
    """Per-token KL(pi || pi_ref) estimators from sampled-token log-probs (B, L).

    ``k1 = logp - ref_logp``; ``k2 = (logp - ref_logp)^2 / 2``;
    ``k3 = exp(ref_logp - logp) - (ref_logp - logp) - 1`` (>= 0, low variance; Schulman's k3).
    """
    d_bt = jnp.asarray(logp) - jnp.asarray(ref_logp)
    if kind == "k1":
        return d_bt
    if kind == "k2":
        return 0.5 * jnp.square(d_bt)
    if kind == "k3":
        return jnp.expm1(-d_bt) + d_bt
    raise ValueError(f"kind must be 'k1', 'k2' or 'k3', got {kind!r}")


def sequence_scores(logp_prm, logp_ref, mask):
    """Per-response implicit reward ``sum_t q[i,t] * mask[i,t]`` (B,) (times beta for the ORM)."""
    return jnp.sum(rewards_lib.log_ratio(logp_prm, logp_ref, mask), axis=-1)


def bce_with_clamp(z_b, y_b):
    """``BCE(sigmoid(z), y) = -(y log s + (1-y) log(1-s))`` with each log clamped at -100 (torch).

    Uses ``log_sigmoid(z)`` and ``log_sigmoid(-z)`` (same values where torch's ``log(1 - s)`` is
    accurate; finite gradients where sigmoid saturates).
    """
    log_s = jnp.maximum(jax.nn.log_sigmoid(z_b), -100.0)
    log_1ms = jnp.maximum(jax.nn.log_sigmoid(-z_b), -100.0)
    return -(y_b * log_s + (1.0 - y_b) * log_1ms)


def prm_ce_loss(logp_prm, logp_ref, mask, labels, *, beta: float = 0.05, num_samples=None):
    """Implicit-PRM cross entropy: ``s_i = sigmoid(beta * sum_t q[i,t] mask[i,t])``,
    ``loss = mean_i BCE(s_i, acc_i)`` over the non-empty rows (:func:`row_valid`; soft labels in
    [0,1] allowed).

    Metrics (same rows): ``prm_score_mean`` (mean s_i), ``prm_acc`` (share with (s_i > 0.5) ==
    (acc_i > 0.5)), and ``pairwise_acc`` (:func:`pairwise_accuracy`) when ``num_samples`` is given.
    """
    score_b = sequence_scores(logp_prm, logp_ref, mask)
    y_b = jnp.asarray(labels, score_b.dtype)
    z_b = beta * score_b
    valid_b = row_valid(mask)
    loss = masked_mean(bce_with_clamp(z_b, y_b), valid_b)
    metrics = {
        "prm_score_mean": masked_mean(jax.nn.sigmoid(z_b), valid_b),
        "prm_acc": masked_mean(((z_b > 0) == (y_b > 0.5)).astype(score_b.dtype), valid_b),
    }
    if num_samples is not None:
        metrics["pairwise_acc"] = pairwise_accuracy(score_b, y_b, num_samples=num_samples, valid=valid_b)
    return loss, metrics


def _pair_diffs(x_b, num_samples):
    """(G, n, n) with ``d[g,i,j] = x[g*n+i] - x[g*n+j]``."""
    x_gn = x_b.reshape(-1, num_samples)
    return x_gn[:, :, None] - x_gn[:, None, :]


def pairwise_accuracy(scores, labels, *, num_samples: int, valid=None):
    """Within-group pairwise accuracy of the implicit reward (the reference's ``dpo_acc``).

    For pairs i < j of a group, with ``da = acc_i - acc_j`` and ``ds = score_i - score_j``:
    ``acc_g = sum [ (ds > 0) == (da > 0) ] |da| / sum |da|``, or 0.5 when all labels of the group
    are equal; the result is the mean over groups (over the groups with a ``valid`` row when
    ``valid`` (B,) is given). (Exactly like the reference, a score tie counts as "j ranks higher".)
    """
    score_b = jnp.asarray(scores)
    da_gnn = _pair_diffs(jnp.asarray(labels, score_b.dtype), num_samples)
    ds_gnn = _pair_diffs(score_b, num_samples)
    upper = jnp.triu(jnp.ones((num_samples, num_samples), bool), k=1)
    w_gnn = jnp.where(upper, jnp.abs(da_gnn), 0)
    hit_gnn = ((ds_gnn > 0) == (da_gnn > 0)).astype(score_b.dtype)
    den_g = jnp.sum(w_gnn, axis=(1, 2))
    num_g = jnp.sum(hit_gnn * w_gnn, axis=(1, 2))
    acc_g = jnp.where(den_g > 0, num_g / jnp.where(den_g > 0, den_g, 1), 0.5)
    if valid is None:
        return jnp.mean(acc_g)
    return masked_mean(acc_g, jnp.any(jnp.asarray(valid).reshape(-1, num_samples), axis=-1))


def prm_dpo_loss(logp_prm, logp_ref, mask, labels, *, num_samples: int, beta: float = 0.05):
    """DPO-style pairwise loss of the implicit reward ``R_i = beta * sum_t q[i,t] mask[i,t]``.

    Over ordered pairs (i, j) of one group with ``acc_i > acc_j``:
    ``loss = sum w_ij * -log sigmoid(R_i - R_j) / sum w_ij``, ``w_ij = acc_i - acc_j``
    (0 if no group has a pair with different labels). Metrics: ``pairwise_acc``, ``num_pairs``.
    """
    score_b = sequence_scores(logp_prm, logp_ref, mask)
    y_b = jnp.asarray(labels, score_b.dtype)
    da_gnn = _pair_diffs(y_b, num_samples)
    dr_gnn = beta * _pair_diffs(score_b, num_samples)
    w_gnn = jnp.maximum(da_gnn, 0)
    den = jnp.sum(w_gnn)
    loss = jnp.sum(w_gnn * -jax.nn.log_sigmoid(dr_gnn)) / jnp.where(den > 0, den, 1)
    metrics = {
        "pairwise_acc": pairwise_accuracy(score_b, y_b, num_samples=num_samples),
        "num_pairs": jnp.sum(da_gnn > 0, dtype=jnp.int32),
    }
    return loss, metrics
