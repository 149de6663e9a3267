"""Jitted updates of the reward models on one mini-batch of labelled responses.

The implicit PRM (SPEC 1.5) learns from outcome labels through ``r = beta * log(pi_phi / pi_ref)``;
the outcome reward model (ORM) through its last-token score. Both read whole groups so the
within-group pairwise accuracy is defined.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from prime_jax import losses
from prime_jax.rewards import ImplicitRewardConfig, check_choice
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
    ``dpo``: pairwise within groups. Returns the PRM token log-probs of the
    forward that computed the gradient (the reference's "after" rewards).
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
        k = mb.acc_b.shape[0]
        grads, metrics, logp_kbl = accumulate(loss_fn, params, mb, jnp.full((k,), 1.0 / k))
        params, opt_state, info = clip_and_apply(tx, params, opt_state, grads, config.max_grad_norm)
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
