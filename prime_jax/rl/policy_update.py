"""The policy's PPO update (SPEC 1.7) on one mini-batch of scored responses."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from prime_jax import losses
from prime_jax.config_checks import check_choice, check_positive
from prime_jax.losses import AGGREGATIONS
from prime_jax.models import token_logprobs_and_entropy
from prime_jax.training.forward import SequenceBatch
from prime_jax.training.updates import accumulate, clip_and_apply, jit_update

KL_KINDS = ("k1", "k2", "k3")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PolicyLossConfig:
    """PPO settings of the policy update (SPEC 1.7)."""

    clip_eps: float = 0.2
    agg: str = "seq-mean-token-mean"
    entropy_coef: float = 0.0
    kl_coef: float = 0.0
    kl_kind: str = "k3"
    max_grad_norm: float = 1.0

    def __post_init__(self):
        check_choice("PolicyLossConfig", "agg", self.agg, AGGREGATIONS)
        check_choice("PolicyLossConfig", "kl_kind", self.kl_kind, KL_KINDS)
        check_positive("PolicyLossConfig", "clip_eps", self.clip_eps)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, kw_only=True)
class PolicyMiniBatch:
    """One PPO mini-batch; every array has a leading micro-batch axis K."""

    sequences: SequenceBatch
    old_logp_bl: jax.Array
    advantages_bl: jax.Array
    ref_logp_bl: jax.Array


def make_policy_update(graphdef, tx: optax.GradientTransformation, config: PolicyLossConfig,
                       state_shardings=None):
    """Jitted PPO step ``(params, opt, PolicyMiniBatch) -> (params, opt, metrics)``.

    The loss is ``max(-A r, -A clip(r, 1-eps, 1+eps))`` aggregated by
    ``config.agg``, minus ``entropy_coef * H`` plus ``kl_coef * KL(pi || ref)``.
    """

    def loss_fn(params, mb: PolicyMiniBatch):
        batch = mb.sequences
        model = nnx.merge(graphdef, params)
        logp_bl, entropy_bl = token_logprobs_and_entropy(model, batch.tokens_bs, batch.attention_mask_bs,
                                                         last=batch.response_mask_bl.shape[1])
        mask = batch.response_mask_bl.astype(jnp.float32)
        loss, metrics = losses.ppo_policy_loss(logp_bl, mb.old_logp_bl, mb.advantages_bl, mask,
                                               clip_eps=config.clip_eps, agg=config.agg)
        entropy = jnp.sum(entropy_bl * mask) / jnp.maximum(mask.sum(), 1.0)
        loss = loss - config.entropy_coef * entropy
        if config.kl_coef:
            kl_bl = losses.kl_penalty(logp_bl, mb.ref_logp_bl, kind=config.kl_kind)
            kl = jnp.sum(kl_bl * mask) / jnp.maximum(mask.sum(), 1.0)
            loss = loss + config.kl_coef * kl
            metrics = {**metrics, "kl_to_reference": kl}
        metrics = {**{k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()},
                   "policy_loss": loss, "entropy": entropy}
        return loss, (metrics, None)

    def step(params, opt_state, mb: PolicyMiniBatch):
        mask_kbl = mb.sequences.response_mask_bl
        count_k = (mask_kbl.sum(axis=(1, 2)) if config.agg == "token-mean"
                   else losses.row_valid(mask_kbl).sum(axis=1)).astype(jnp.float32)
        grads, metrics, _ = accumulate(loss_fn, params, mb, count_k / jnp.maximum(count_k.sum(), 1.0))
        params, opt_state, info = clip_and_apply(tx, params, opt_state, grads, config.max_grad_norm,
                                                 active=count_k.sum() > 0)
        return params, opt_state, {**metrics, **{f"policy_{k}": v for k, v in info.items()}}

    return jit_update(step, state_shardings, 1)
