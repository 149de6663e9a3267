"""Process-credit forms other than the summed return (SPEC 1.6): the process source's returns G_p.

PURE's and the future-minimum form take process rewards ``r`` (B, L) at their positions ``P_i`` (step ends and the last
token at step granularity, every token at token granularity) and return G_p (B, L) at gamma 1,
before ``process_coef``; the advantage kernel adds the outcome source and whitens.

``pure`` (PURE, arXiv 2504.15275; code: CJReinforce/PURE, ``openrlhf/utils/utils.py:
turn_process_reward_logits_to_reward`` and ``openrlhf/trainer/ppo_utils/experience_maker.py:
process_experiences``): per response, softmax weights over its steps of the negated step rewards,

    w_k = exp(-r_k / T) / sum_{k' in P_i} exp(-r_k' / T)          (T = 0.1 in PURE)
    x_k = w_k * r_k                                               (at the step ends, 0 elsewhere)

then PURE's leave-one-out baseline subtracted at each step end and ordinary summed returns
``G_p[t] = sum_{k in P_i, k >= t} (x_k - base_k)``. As T -> 0, ``sum_k x_k -> min_k r_k`` and the
whole weight sits on the worst step: tokens up to it get about ``min_k r_k``, tokens after it
about 0. Baselines (PURE's ``--reward_baseline``), with ``R_i = sum_k x_k``:

    token  base_k = n_k * sum_{j != i} R_j / sum_{j != i} len_j    (n_k: tokens of step k before
           its end token; len_j: valid tokens of row j; PURE's train_pure.sh uses this one)
    step   base_k = mean_{j != i} (R_j / |P_j|)                     (PURE's CLI default)

``future_min`` (not PURE): the minimum of the process rewards at the positions s >= t, with the
token baseline above scaled to the length from the start of t's step. At token granularity this is
the minimum of future *token* rewards; the logged ``prime_min`` rows measured it.

A row without positions (no step ends, or an empty row) gets no process return and counts as
``R = 0`` in the others' baselines (PURE never has one: its last token always ends a step).

``msa`` (SPRO's masked step advantage, arXiv 2507.01551, Eqs. 11-12): in SPRO's token-level MDP a
"step" is a token position t of the response. The cumulative process reward of response i at t is

    CPR[i,t] = sum_{s <= t} r[i,s]                    (r = beta log pi_theta / pi_ref per token)

and its advantage the CPR centred over the responses of the same prompt that still have a token at t:

    MSA[i,t] = CPR[i,t] - mean_{j in group(i), len_j > t} CPR[j,t]

(the response itself included: a token only one response of the group reaches gets MSA 0). SPRO
adds MSA to the GRPO-normalised outcome and does not whiten (``configs/spro.gin``). The paper's
text was read through its abstract, its public reviews and third-party descriptions of Eqs. 11-13;
no code of the authors was found.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PURE_BASELINES = ("token", "step")


def step_starts(positions_bt):
    """Int (B, L): at each t, 1 + the last position before t (0 if none): where t's step starts."""
    t_l = jnp.arange(positions_bt.shape[-1], dtype=jnp.int32)
    last_at_or_before_bt = jax.lax.cummax(jnp.where(positions_bt, t_l[None, :], -1), axis=1)
    return jnp.concatenate([jnp.zeros_like(last_at_or_before_bt[:, :1]), last_at_or_before_bt[:, :-1] + 1],
                           axis=1)


def leave_one_out_sum(x_b, num_samples: int):
    """``sum_{j in group(i), j != i} x_j`` (B,) for groups of ``num_samples`` contiguous rows."""
    x_gn = x_b.reshape(-1, num_samples)
    return (jnp.sum(x_gn, axis=1, keepdims=True) - x_gn).reshape(-1)


def pure_weights(r_bt, positions_bt, temperature: float):
    """``w_k = softmax_{k in P_i}(-r_k / T)`` at the positions, 0 elsewhere and on rows without any."""
    logits_bt = jnp.where(positions_bt, -r_bt / temperature, -jnp.inf)
    top_b = jnp.max(logits_bt, axis=-1, keepdims=True)
    e_bt = jnp.where(positions_bt, jnp.exp(logits_bt - jnp.where(jnp.isfinite(top_b), top_b, 0.0)), 0.0)
    return e_bt / jnp.maximum(jnp.sum(e_bt, axis=-1, keepdims=True), jnp.finfo(e_bt.dtype).tiny)


def pure_process_returns(r_bt, positions_bt, valid_bt, *, num_samples: int, temperature: float = 0.1,
                         baseline: str = "token"):
    """PURE's process returns G_p (B, L) (module docstring): weighted step rewards minus the
    leave-one-out baseline at the step ends, summed over the step ends at or after t."""
    valid_bt = jnp.asarray(valid_bt).astype(bool)
    positions_bt = jnp.asarray(positions_bt).astype(bool) & valid_bt
    r_bt = jnp.where(positions_bt, jnp.asarray(r_bt, jnp.float32), 0.0)
    x_bt = pure_weights(r_bt, positions_bt, temperature) * r_bt
    total_b = jnp.sum(x_bt, axis=-1)
    if baseline == "token":
        len_b = jnp.sum(valid_bt, axis=-1).astype(jnp.float32)
        per_token_b = leave_one_out_sum(total_b, num_samples) / jnp.maximum(
            leave_one_out_sum(len_b, num_samples), 1.0)
        t_l = jnp.arange(valid_bt.shape[-1], dtype=jnp.int32)
        step_tokens_bt = (t_l[None, :] - step_starts(positions_bt)).astype(jnp.float32)
        base_bt = per_token_b[:, None] * step_tokens_bt
    elif baseline == "step":
        steps_b = jnp.sum(positions_bt, axis=-1).astype(jnp.float32)
        per_step_b = total_b / jnp.maximum(steps_b, 1.0)
        base_bt = jnp.broadcast_to((leave_one_out_sum(per_step_b, num_samples) / (num_samples - 1))[:, None],
                                   r_bt.shape)
    else:
        raise ValueError(f"baseline must be one of {PURE_BASELINES}, got {baseline!r}")
    y_bt = jnp.where(positions_bt, x_bt - base_bt, 0.0)
    return jnp.where(valid_bt, jax.lax.cumsum(y_bt, axis=1, reverse=True), 0.0)


def future_min_process_returns(r_bt, positions_bt, valid_bt, *, num_samples: int):
    """The future-minimum form's G_p (B, L) (module docstring; not PURE's transform):

        M[i,t] = min_{s >= t, s in P_i} r[i,s],   m_i = M[i,0]
        b_i    = sum_{j != i} m_j / sum_{j != i} len_j
        G_p    = M[i,t] - b_i * (len_i - start_i(t))   on valid tokens with a position at or after t
    """
    valid_bt = jnp.asarray(valid_bt).astype(bool)
    positions_bt = jnp.asarray(positions_bt).astype(bool) & valid_bt
    r_bt = jnp.where(positions_bt, jnp.asarray(r_bt, jnp.float32), jnp.inf)
    future_min_bt = jax.lax.cummin(r_bt, axis=1, reverse=True)
    len_b = jnp.sum(valid_bt, axis=-1).astype(jnp.float32)
    m_b = jnp.where(jnp.isfinite(future_min_bt[:, 0]), future_min_bt[:, 0], 0.0)
    base_b = leave_one_out_sum(m_b, num_samples) / jnp.maximum(leave_one_out_sum(len_b, num_samples), 1.0)
    g_bt = future_min_bt - base_b[:, None] * (len_b[:, None] - step_starts(positions_bt).astype(jnp.float32))
    return jnp.where(valid_bt & jnp.isfinite(future_min_bt), g_bt, 0.0)


def masked_step_process_returns(r_bt, valid_bt, *, num_samples: int):
    """SPRO's masked step advantage (module docstring) as G_p (B, L), 0 on padding: the cumulative
    process reward minus its mean over the group's responses that reach the same token position."""
    valid_bt = jnp.asarray(valid_bt).astype(bool)
    cpr_bt = jax.lax.cumsum(jnp.where(valid_bt, jnp.asarray(r_bt, jnp.float32), 0.0), axis=1)
    shape_gnl = (-1, num_samples, valid_bt.shape[-1])
    alive_gnl = valid_bt.reshape(shape_gnl).astype(jnp.float32)
    total_gl = jnp.sum(cpr_bt.reshape(shape_gnl) * alive_gnl, axis=1)
    count_gl = jnp.sum(alive_gnl, axis=1)
    mean_bt = jnp.repeat(total_gl / jnp.maximum(count_gl, 1.0), num_samples, axis=0)
    return jnp.where(valid_bt, cpr_bt - mean_bt, 0.0)
