"""Implicit-PRM scores of sampled responses, for best-of-N selection (2412.01981).

With a PRM ``pi_phi`` trained on outcome labels and the reference ``pi_ref`` it started from,
the token log-ratio is ``q_t = log pi_phi(y_t | y_<t) - log pi_ref(y_t | y_<t)`` and

    step reward    r_s = beta * sum_{t in step s} q_t         (steps end at a delimiter / EOS)
    outcome score  R   = beta * sum_t q_t = sum_s r_s          (the implicit outcome reward)

A trained outcome reward model (``models.OutcomeRewardModel``) scores the same rows by its
last-token score (``orm_scores``); an explicit PRM (``models.ExplicitPRM``) by its per-step
probabilities ``p_s = sigmoid(z_{e_s})`` read at the step ends ``e_s`` (``explicit_step_scores``).

``implicit_step_rewards`` returns the per-step sums ``sum_{t in s} q_t`` WITHOUT beta (min, sum
and last pick the same sample for any beta > 0; ``eval.metrics.aggregate_steps`` takes beta for
``prod_sigmoid``); ``implicit_outcome_scores`` multiplies by beta.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from prime_jax.models import ExplicitPRM, OutcomeRewardModel, Transformer, token_logprobs
from prime_jax.rewards import log_ratio


def token_log_ratios(prm: Transformer, reference: Transformer, tokens_bs, attention_mask_bs,
                     response_mask_bl) -> jax.Array:
    """``q[b, t]`` float32 (B, L) (jit-safe) on the response: the last L columns of the (B, S) sequences.

    ``tokens_bs`` / ``attention_mask_bs`` hold prompt then response (left-padded prompt), so the
    response sits in columns ``S - L .. S - 1``; ``q`` is 0 where ``response_mask_bl`` is 0.
    """
    tokens_bs = jnp.asarray(tokens_bs, jnp.int32)
    attention_mask_bs = jnp.asarray(attention_mask_bs, jnp.int32)
    length = np.shape(response_mask_bl)[1]
    logp_prm_bl = token_logprobs(prm, tokens_bs, attention_mask_bs, last=length)
    logp_ref_bl = token_logprobs(reference, tokens_bs, attention_mask_bs, last=length)
    return log_ratio(logp_prm_bl, logp_ref_bl, jnp.asarray(response_mask_bl))


token_log_ratios_jit = nnx.jit(token_log_ratios)


def segment_step_sums(q_bl: np.ndarray, response_mask_bl: np.ndarray,
                      step_ends_bl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-step sums of ``q``: (steps_bk float32 padded with 0, count_b int32), K = max count.

    Step s of row b covers the valid tokens after step end s-1 up to and including step end s;
    ``step_ends_bl`` is e.g. ``rewards.step_ends_from_tokens`` (which marks the last valid token).
    """
    q_bl = np.asarray(q_bl, np.float64) * np.asarray(response_mask_bl, bool)
    ends_bl = np.asarray(step_ends_bl, bool) & np.asarray(response_mask_bl, bool)
    count_b = ends_bl.sum(axis=1).astype(np.int32)
    steps_bk = np.zeros((q_bl.shape[0], max(int(count_b.max(initial=0)), 1)), np.float32)
    for b in range(q_bl.shape[0]):
        cum_l = np.cumsum(q_bl[b])
        at_ends = cum_l[ends_bl[b]]
        steps_bk[b, :len(at_ends)] = np.diff(at_ends, prepend=0.0)
    return steps_bk, count_b


def implicit_step_rewards(prm: Transformer, reference: Transformer, tokens_bs, attention_mask_bs,
                          response_mask_bl, step_ends_bl) -> tuple[np.ndarray, np.ndarray]:
    """(steps_bk, count_b): ``sum_{t in step s} q_t`` per step of each response (no beta)."""
    q_bl = np.asarray(token_log_ratios_jit(prm, reference, tokens_bs, attention_mask_bs, response_mask_bl))
    return segment_step_sums(q_bl, response_mask_bl, step_ends_bl)


def implicit_outcome_scores(steps_bk: np.ndarray, count_b: np.ndarray, *, beta: float = 0.05) -> np.ndarray:
    """Implicit outcome score ``R_b = beta * sum_t q[b, t]`` (= beta * the sum of the step sums)."""
    valid_bk = np.arange(np.shape(steps_bk)[1])[None, :] < np.asarray(count_b)[:, None]
    return beta * np.where(valid_bk, steps_bk, 0.0).sum(axis=1)


@nnx.jit
def orm_scores(orm: OutcomeRewardModel, tokens_bs, attention_mask_bs) -> jax.Array:
    """``r_b`` float32 (B,): the ORM's score at each row's last real token."""
    return orm(jnp.asarray(tokens_bs, jnp.int32), jnp.asarray(attention_mask_bs, jnp.int32))


@nnx.jit
def explicit_logits(prm: ExplicitPRM, tokens_bs, attention_mask_bs) -> jax.Array:
    """``z[b, t]`` float32 (B, S): the explicit PRM's logit at every position."""
    return prm(jnp.asarray(tokens_bs, jnp.int32), jnp.asarray(attention_mask_bs, jnp.int32))


def values_at_step_ends(values_bl: np.ndarray, step_ends_bl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values_bk float64 padded with 0, count_b int32), K = max count: ``values_bl`` read at each
    row's step ends, in order."""
    ends_bl = np.asarray(step_ends_bl, bool)
    count_b = ends_bl.sum(axis=1).astype(np.int32)
    values_bk = np.zeros((ends_bl.shape[0], max(int(count_b.max(initial=0)), 1)), np.float64)
    for b in range(ends_bl.shape[0]):
        values_bk[b, :count_b[b]] = np.asarray(values_bl)[b, ends_bl[b]]
    return values_bk, count_b


def explicit_step_logits(prm: ExplicitPRM, tokens_bs, attention_mask_bs, response_mask_bl,
                         step_ends_bl) -> tuple[np.ndarray, np.ndarray]:
    """(z_bk padded with 0, count_b): the explicit PRM's logit ``z[b, e_s]`` at the step ends
    ``e_s`` of each response, in order.

    The response is the last L columns of the (B, S) rows; ``step_ends_bl`` is e.g.
    ``rewards.step_ends_from_tokens`` (ends outside ``response_mask_bl`` are ignored).
    """
    length = np.shape(response_mask_bl)[1]
    z_bl = np.asarray(explicit_logits(prm, tokens_bs, attention_mask_bs), np.float64)[:, -length:]
    return values_at_step_ends(z_bl, np.asarray(step_ends_bl, bool) & np.asarray(response_mask_bl, bool))


def explicit_step_scores(prm: ExplicitPRM, tokens_bs, attention_mask_bs, response_mask_bl,
                         step_ends_bl) -> tuple[np.ndarray, np.ndarray]:
    """(probs_bk float32 padded with 0, count_b int32): ``p_s = sigmoid(z[b, e_s])`` of
    :func:`explicit_step_logits`."""
    z_bk, count_b = explicit_step_logits(prm, tokens_bs, attention_mask_bs, response_mask_bl, step_ends_bl)
    valid_bk = np.arange(z_bk.shape[1])[None, :] < count_b[:, None]
    return np.where(valid_bk, 1.0 / (1.0 + np.exp(-z_bk)), 0.0).astype(np.float32), count_b
