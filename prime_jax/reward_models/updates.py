"""Jitted updates of the reward models on one mini-batch of labelled responses.

The implicit PRM (SPEC 1.5) learns from outcome labels through ``r = beta * log(pi_phi / pi_ref)``;
the outcome reward model (ORM) through its last-token score. Both read whole groups so the
within-group pairwise accuracy is defined. The explicit PRM (Let's Verify, Math-Shepherd) learns
from per-step labels through its score read at each step end (``StepLabelledMiniBatch``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from prime_jax import losses
from prime_jax.config_checks import check_choice
from prime_jax.rewards import ImplicitRewardConfig
from prime_jax.training.forward import SequenceBatch, response_logprobs
from prime_jax.training.updates import accumulate, clip_and_apply, jit_update

PRM_LOSSES = ("ce", "dpo")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrmLossConfig:
    """Implicit-PRM update settings (SPEC 1.5); beta comes from ``ImplicitRewardConfig``."""

    loss: str = "ce"
    max_grad_norm: float = 10.0

    def __post_init__(self):
        check_choice("PrmLossConfig", "loss", self.loss, PRM_LOSSES)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, kw_only=True)
class LabelledMiniBatch:
    """Responses with their reference log-probs and outcome labels; leading micro-batch axis K."""

    sequences: SequenceBatch
    ref_logp_bl: jax.Array
    acc_b: jax.Array

    @classmethod
    def of(cls, rows) -> "LabelledMiniBatch":
        """From scored rollouts (``experience.batch.ScoredRollouts``)."""
        return cls(sequences=rows.sequences(), ref_logp_bl=rows.ref_logp_bl, acc_b=rows.acc_b)


def make_prm_update(graphdef, tx: optax.GradientTransformation, config: PrmLossConfig,
                    reward: ImplicitRewardConfig, num_samples: int, state_shardings=None):
    """Jitted PRM step ``(params, opt, LabelledMiniBatch) -> (params, opt, metrics, logp_bl)``.

    CE: ``s_i = sigmoid(beta * sum_t q_it)``, ``loss = mean_i BCE(s_i, acc_i)``;
    ``dpo``: pairwise within groups. Empty rows (placeholders of a short batch) count nowhere:
    micro-batches are weighted by their non-empty rows and a mini-batch of placeholders only
    leaves the PRM as it is. Returns the PRM token log-probs of the forward that computed the
    gradient (the reference's "after" rewards).
    """
    loss_of = losses.prm_dpo_loss if config.loss == "dpo" else losses.prm_ce_loss

    def loss_fn(params, mb: LabelledMiniBatch):
        batch = mb.sequences
        logp_bl = response_logprobs(graphdef, params, batch)
        mask = batch.response_mask_bl.astype(jnp.float32)
        loss, metrics = loss_of(logp_bl, mb.ref_logp_bl, mask, mb.acc_b, beta=reward.beta,
                                num_samples=num_samples)
        metrics = {**{f"prm_{k}" if not k.startswith("prm_") else k: jnp.asarray(v, jnp.float32)
                      for k, v in metrics.items()}, "prm_loss": loss}
        return loss, (metrics, jax.lax.stop_gradient(logp_bl))

    def step(params, opt_state, mb: LabelledMiniBatch):
        rows_k = losses.row_valid(mb.sequences.response_mask_bl).sum(axis=1).astype(jnp.float32)
        grads, metrics, logp_kbl = accumulate(loss_fn, params, mb, rows_k / jnp.maximum(rows_k.sum(), 1.0))
        params, opt_state, info = clip_and_apply(tx, params, opt_state, grads, config.max_grad_norm,
                                                 active=rows_k.sum() > 0)
        logp_bl = logp_kbl.reshape((-1,) + logp_kbl.shape[2:])
        return params, opt_state, {**metrics, **{f"prm_{k}": v for k, v in info.items()}}, logp_bl

    return jit_update(step, state_shardings, 2)


def make_orm_update(graphdef, tx: optax.GradientTransformation, num_samples: int,
                    max_grad_norm: float = 10.0, state_shardings=None):
    """Jitted ORM step ``(params, opt, LabelledMiniBatch) -> (params, opt, metrics)``.

    ``r_i = ORM(x_i, y_i)`` (the last real token's score), ``loss = mean_i BCE(sigmoid(r_i), acc_i)``:
    the implicit PRM's CE objective with ``r_i`` in place of ``beta * sum_t q_it``
    (``ref_logp_bl`` is not read).
    """

    def loss_fn(params, mb: LabelledMiniBatch):
        batch = mb.sequences
        score_b = nnx.merge(graphdef, params)(batch.tokens_bs, batch.attention_mask_bs)
        loss = jnp.mean(losses.bce_with_clamp(score_b, mb.acc_b))
        metrics = {"orm_loss": loss, "orm_score_mean": jnp.mean(jax.nn.sigmoid(score_b)),
                   "orm_acc": jnp.mean(((score_b > 0) == (mb.acc_b > 0.5)).astype(jnp.float32)),
                   "orm_pairwise_acc": losses.pairwise_accuracy(score_b, mb.acc_b, num_samples=num_samples)}
        return loss, (metrics, None)

    def step(params, opt_state, mb: LabelledMiniBatch):
        k = mb.acc_b.shape[0]
        grads, metrics, _ = accumulate(loss_fn, params, mb, jnp.full((k,), 1.0 / k))
        params, opt_state, info = clip_and_apply(tx, params, opt_state, grads, max_grad_norm)
        return params, opt_state, {**metrics, **{f"orm_{k}": v for k, v in info.items()}}

    return jit_update(step, state_shardings, 1)


def step_weights(labels, up_to_first_error: bool) -> np.ndarray:
    """Float32 weights of one solution's step labels (hard 0/1, or soft targets in [0, 1]).

    All ones, or with ``up_to_first_error`` (Let's Verify's convention: a solution is labelled up
    to and including its first wrong step) ``w_k = 1`` for ``k <= f`` and 0 after, where ``f`` is
    the first step with ``label < 0.5`` (all ones if there is none).
    """
    labels_k = np.asarray(labels, np.float32)
    weights_k = np.ones(labels_k.shape, np.float32)
    wrong = np.flatnonzero(labels_k < 0.5)
    if up_to_first_error and wrong.size:
        weights_k[wrong[0] + 1:] = 0.0
    return weights_k


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, kw_only=True)
class StepLabelledMiniBatch:
    """Responses with per-step targets on the response positions (the last L columns); leading
    micro-batch axis K when split. ``step_ends_bl`` marks each step's last token,
    ``step_targets_bl`` in [0, 1] (hard or soft) and ``step_weights_bl`` >= 0 are read there only."""

    sequences: SequenceBatch
    step_ends_bl: jax.Array
    step_targets_bl: jax.Array
    step_weights_bl: jax.Array


def explicit_step_loss(logits_bs, mb: StepLabelledMiniBatch) -> tuple[jax.Array, dict]:
    """Weighted per-step BCE and its metrics, from the explicit PRM's logits over the (B, S) rows.

    With ``z`` the logits at the response positions, ``m = step_ends * w``::

        loss            = sum_{b,t} m_bt BCE(sigmoid(z_bt), y_bt) / sum_{b,t} m_bt
        step_acc        = sum_{b,t} m_bt [(z_bt >= 0) == (y_bt >= 0.5)] / sum_{b,t} m_bt
        first_error_acc = mean over rows with a weighted step of [first t with m_bt > 0 and z_bt < 0
                          == first t with m_bt > 0 and y_bt < 0.5]  (none == none counts as a match)

    A step is predicted wrong when p = sigmoid(z) < 0.5 and labelled wrong when y < 0.5.
    """
    length = mb.step_ends_bl.shape[1]
    z_bl = logits_bs[:, -length:]
    y_bl = mb.step_targets_bl.astype(jnp.float32)
    m_bl = mb.step_ends_bl.astype(jnp.float32) * mb.step_weights_bl.astype(jnp.float32)
    total = jnp.maximum(jnp.sum(m_bl), 1e-6)
    loss = jnp.sum(m_bl * losses.bce_with_clamp(z_bl, y_bl)) / total
    step_acc = jnp.sum(m_bl * ((z_bl >= 0) == (y_bl >= 0.5))) / total
    t_l = jnp.arange(length)
    scored_bl = m_bl > 0
    predicted_b = jnp.min(jnp.where(scored_bl & (z_bl < 0), t_l, length), axis=1)
    labelled_b = jnp.min(jnp.where(scored_bl & (y_bl < 0.5), t_l, length), axis=1)
    has_b = jnp.any(scored_bl, axis=1).astype(jnp.float32)
    first_error_acc = jnp.sum(has_b * (predicted_b == labelled_b)) / jnp.maximum(jnp.sum(has_b), 1.0)
    return loss, {"loss": loss, "step_acc": step_acc, "first_error_acc": first_error_acc,
                  "score_mean": jnp.sum(m_bl * jax.nn.sigmoid(z_bl)) / total}


def make_explicit_prm_update(graphdef, tx: optax.GradientTransformation, num_samples: int,
                             max_grad_norm: float = 10.0, state_shardings=None):
    """Jitted explicit-PRM step ``(params, opt, StepLabelledMiniBatch) -> (params, opt, metrics)``.

    ``z_t = PRM(x, y)_t`` at the step ends, the loss of ``explicit_step_loss`` (per-step BCE with
    hard or soft targets, averaged over the weighted step ends of each micro-batch); micro-batches
    are averaged with equal weights. Every micro-batch must hold whole groups of ``num_samples``
    responses (1 for rows that are not grouped).
    """

    def loss_fn(params, mb: StepLabelledMiniBatch):
        batch = mb.sequences
        logits_bs = nnx.merge(graphdef, params)(batch.tokens_bs, batch.attention_mask_bs)
        loss, metrics = explicit_step_loss(logits_bs, mb)
        return loss, ({f"eprm_{k}": v for k, v in metrics.items()}, None)

    def step(params, opt_state, mb: StepLabelledMiniBatch):
        k, rows = mb.step_ends_bl.shape[:2]
        if rows % num_samples:
            raise ValueError(f"explicit PRM update: micro-batches of {rows} rows split groups of "
                             f"num_samples={num_samples}")
        grads, metrics, _ = accumulate(loss_fn, params, mb, jnp.full((k,), 1.0 / k))
        params, opt_state, info = clip_and_apply(tx, params, opt_state, grads, max_grad_norm)
        return params, opt_state, {**metrics, **{f"eprm_{k}": v for k, v in info.items()}}

    return jit_update(step, state_shardings, 1)
