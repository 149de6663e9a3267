"""Jitted forward and update steps of the three roles.

Every update follows one pattern: a mini-batch is split into ``K`` equal
micro-batches (leading axis), gradients are accumulated over them with
``lax.scan`` as ``g = sum_k w_k * grad(loss_k)``, clipped to a global norm
``g * min(1, c / (|g| + 1e-6))`` and applied with optax. A non-finite gradient
norm leaves weights and optimiser state untouched and is reported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from prime_jax import losses, sharding
from prime_jax.models import token_logprobs, token_logprobs_and_entropy


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, kw_only=True)
class SequenceBatch:
    """Prompt + response rows: ``tokens_bs``/``attention_mask_bs`` span prompt and
    response (S = P + L); ``response_mask_bl`` covers the last L positions."""

    tokens_bs: jax.Array
    attention_mask_bs: jax.Array
    response_mask_bl: jax.Array


def response_logprobs(graphdef, params, batch: SequenceBatch) -> jax.Array:
    """``logp[b, t] = log pi(y_t | x, y_<t)`` for the L response positions, float32."""
    model = nnx.merge(graphdef, params)
    return token_logprobs(model, batch.tokens_bs, batch.attention_mask_bs, last=batch.response_mask_bl.shape[1])


def jit_update(step: Callable, state_shardings, extra_outputs: int) -> Callable:
    """``jax.jit`` of ``step(params, opt_state, batch) -> (params, opt_state, *extra)`` with the
    weights and optimiser state donated and, when ``state_shardings = (params, opt_state)``
    shardings are given, returned in exactly those shardings (the "pjit" form)."""
    if state_shardings is None:
        return jax.jit(step, donate_argnums=(0, 1))
    return jax.jit(step, donate_argnums=(0, 1), out_shardings=(*state_shardings, *[None] * extra_outputs))


def shardings_of(tree):
    """The sharding of every array leaf (None leaves stay None)."""
    return jax.tree.map(lambda x: x.sharding, tree)


def make_logprob_fn(graphdef, rows_per_pass: int | None = None) -> Callable:
    """Jitted ``(params, batch) -> logp_bl``, at most ``rows_per_pass`` rows per forward pass.

    A batch of B > R = ``rows_per_pass`` rows is cut into K = B / R passes run one after the
    other (``lax.map``), so only one pass's activations exist at a time. Pass k takes the rows
    ``b = j K + k``: a row-sharded batch splits without moving data when every device's rows
    divide into the K passes (R a multiple of the data-parallel size data x fsdp; required).
    """
    def logprobs(params, batch: SequenceBatch) -> jax.Array:
        rows = batch.tokens_bs.shape[0]
        if rows_per_pass is None or rows <= rows_per_pass:
            return response_logprobs(graphdef, params, batch)
        if rows % rows_per_pass:
            raise ValueError(f"make_logprob_fn: a batch of {rows} rows does not split into passes "
                             f"of rows_per_pass={rows_per_pass} (PrimeConfig.logprob_rows_per_pass)")
        mesh = jax.sharding.get_abstract_mesh()
        shards = 1 if mesh.empty else sharding.data_parallel_size(mesh)
        if rows_per_pass % shards:
            raise ValueError(f"make_logprob_fn: rows_per_pass={rows_per_pass} (PrimeConfig."
                             f"logprob_rows_per_pass) is not a multiple of the {shards} batch shards "
                             "(data x fsdp) of the mesh")
        passes = rows // rows_per_pass
        # (B, ...) -> (R, K, ...) -> (K, R, ...): pass k holds rows j K + k.
        split = lambda x: jnp.swapaxes(x.reshape((rows_per_pass, passes) + x.shape[1:]), 0, 1)
        logp_kbl = jax.lax.map(lambda mb: response_logprobs(graphdef, params, mb),
                               jax.tree.map(split, batch))
        return jnp.swapaxes(logp_kbl, 0, 1).reshape((rows,) + logp_kbl.shape[2:])

    return jax.jit(logprobs)


def clip_and_apply(tx: optax.GradientTransformation, params, opt_state, grads, max_grad_norm: float):
    """Clip to ``max_grad_norm`` and apply; skip the update when the norm is not finite."""
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(grad_norm)
    scale = jnp.minimum(1.0, max_grad_norm / (grad_norm + 1e-6))
    grads = jax.tree.map(lambda g: jnp.where(finite, g * scale, jnp.zeros_like(g)), grads)
    updates, new_opt = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
    return (jax.tree.map(keep, new_params, params), jax.tree.map(keep, new_opt, opt_state),
            {"grad_norm": grad_norm, "skipped": (~finite).astype(jnp.float32)})


def accumulate(loss_fn: Callable, params, micro_batches, weights_k: jax.Array):
    """``sum_k w_k * (grad, metrics)(loss_fn(params, micro_batch_k))`` plus stacked aux.

    ``loss_fn(params, mb) -> (loss, (metrics, aux))``; ``micro_batches`` has a
    leading K axis. Returns (grads, weighted metrics, aux stacked over K).
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def body(carry, xs):
        grads_acc, metrics_acc = carry
        mb, w = xs
        (_, (metrics, aux)), grads = grad_fn(params, mb)
        grads_acc = jax.tree.map(lambda a, g: a + w * g.astype(a.dtype), grads_acc, grads)
        metrics_acc = jax.tree.map(lambda a, m: a + w * m, metrics_acc, metrics)
        return (grads_acc, metrics_acc), aux

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    first = jax.tree.map(lambda x: x[0], micro_batches)
    metrics0 = jax.tree.map(jnp.zeros_like, jax.eval_shape(lambda p, mb: loss_fn(p, mb)[1][0], params, first))
    (grads, metrics), aux = jax.lax.scan(body, (zeros, metrics0), (micro_batches, weights_k))
    return grads, metrics, aux


@dataclasses.dataclass(frozen=True, kw_only=True)
class PolicyLossConfig:
    """PPO settings of the policy update (SPEC 1.7)."""

    clip_eps: float = 0.2
    agg: str = "seq-mean-token-mean"
    entropy_coef: float = 0.0
    kl_coef: float = 0.0
    kl_kind: str = "k3"
    max_grad_norm: float = 1.0


def make_policy_update(graphdef, tx: optax.GradientTransformation, config: PolicyLossConfig,
                       state_shardings=None):
    """Jitted PPO step on one mini-batch: ``(params, opt, batch, old_logp, adv, ref_logp)``.

    The loss is ``max(-A r, -A clip(r, 1-eps, 1+eps))`` aggregated by
    ``config.agg``, minus ``entropy_coef * H`` plus ``kl_coef * KL(pi || ref)``.
    Arrays carry a leading micro-batch axis K.
    """

    def loss_fn(params, mb):
        batch, old_logp_bl, adv_bl, ref_logp_bl = mb
        model = nnx.merge(graphdef, params)
        logp_bl, entropy_bl = token_logprobs_and_entropy(model, batch.tokens_bs, batch.attention_mask_bs,
                                                         last=batch.response_mask_bl.shape[1])
        mask = batch.response_mask_bl.astype(jnp.float32)
        loss, metrics = losses.ppo_policy_loss(logp_bl, old_logp_bl, adv_bl, mask,
                                               clip_eps=config.clip_eps, agg=config.agg)
        entropy = jnp.sum(entropy_bl * mask) / jnp.maximum(mask.sum(), 1.0)
        loss = loss - config.entropy_coef * entropy
        if config.kl_coef:
            kl_bl = losses.kl_penalty(logp_bl, ref_logp_bl, kind=config.kl_kind)
            kl = jnp.sum(kl_bl * mask) / jnp.maximum(mask.sum(), 1.0)
            loss = loss + config.kl_coef * kl
            metrics = {**metrics, "kl_to_reference": kl}
        metrics = {**{k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()},
                   "policy_loss": loss, "entropy": entropy}
        return loss, (metrics, None)

    def step(params, opt_state, mb):
        mask_k = mb[0].response_mask_bl.sum(axis=(1, 2)).astype(jnp.float32)
        if config.agg == "token-mean":
            weights_k = mask_k / jnp.maximum(mask_k.sum(), 1.0)
        else:
            weights_k = jnp.full_like(mask_k, 1.0 / mask_k.shape[0])
        grads, metrics, _ = accumulate(loss_fn, params, mb, weights_k)
        params, opt_state, info = clip_and_apply(tx, params, opt_state, grads, config.max_grad_norm)
        return params, opt_state, {**metrics, **{f"policy_{k}": v for k, v in info.items()}}

    return jit_update(step, state_shardings, 1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrmLossConfig:
    """Implicit-PRM update settings (SPEC 1.5)."""

    beta: float = 0.05
    loss: str = "ce"
    max_grad_norm: float = 10.0


def make_prm_update(graphdef, tx: optax.GradientTransformation, config: PrmLossConfig,
                    num_samples: int, state_shardings=None):
    """Jitted PRM step on one mini-batch: ``(params, opt, (batch, ref_logp, acc))``.

    CE: ``s_i = sigmoid(beta * sum_t q_it)``, ``loss = mean_i BCE(s_i, acc_i)``;
    ``dpo``: pairwise within groups. Returns the PRM token log-probs of the
    forward that computed the gradient (the reference's "after" rewards).
    """

    def loss_fn(params, mb):
        batch, ref_logp_bl, acc_b = mb
        logp_bl = response_logprobs(graphdef, params, batch)
        mask = batch.response_mask_bl.astype(jnp.float32)
        if config.loss == "dpo":
            loss, metrics = losses.prm_dpo_loss(logp_bl, ref_logp_bl, mask, acc_b,
                                                beta=config.beta, num_samples=num_samples)
        else:
            loss, metrics = losses.prm_ce_loss(logp_bl, ref_logp_bl, mask, acc_b, beta=config.beta,
                                               num_samples=num_samples)
        metrics = {**{f"prm_{k}" if not k.startswith("prm_") else k: jnp.asarray(v, jnp.float32)
                      for k, v in metrics.items()}, "prm_loss": loss}
        return loss, (metrics, jax.lax.stop_gradient(logp_bl))

    def step(params, opt_state, mb):
        k = mb[2].shape[0]
        grads, metrics, logp_kbl = accumulate(loss_fn, params, mb, jnp.full((k,), 1.0 / k))
        params, opt_state, info = clip_and_apply(tx, params, opt_state, grads, config.max_grad_norm)
        logp_bl = logp_kbl.reshape((-1,) + logp_kbl.shape[2:])
        return params, opt_state, {**metrics, **{f"prm_{k}": v for k, v in info.items()}}, logp_bl

    return jit_update(step, state_shardings, 2)


def make_orm_update(graphdef, tx: optax.GradientTransformation, num_samples: int,
                    max_grad_norm: float = 10.0, state_shardings=None):
    """Jitted outcome-reward-model step on one mini-batch: ``(params, opt, (batch, acc))``.

    ``r_i = ORM(x_i, y_i)`` (the last real token's score), ``loss = mean_i BCE(sigmoid(r_i), acc_i)``:
    the implicit PRM's CE objective with ``r_i`` in place of ``beta * sum_t q_it``.
    """

    def loss_fn(params, mb):
        batch, acc_b = mb
        score_b = nnx.merge(graphdef, params)(batch.tokens_bs, batch.attention_mask_bs)
        loss = jnp.mean(losses.bce_with_clamp(score_b, acc_b))
        metrics = {"orm_loss": loss, "orm_score_mean": jnp.mean(jax.nn.sigmoid(score_b)),
                   "orm_acc": jnp.mean(((score_b > 0) == (acc_b > 0.5)).astype(jnp.float32)),
                   "orm_pairwise_acc": losses.pairwise_accuracy(score_b, acc_b, num_samples=num_samples)}
        return loss, (metrics, None)

    def step(params, opt_state, mb):
        k = mb[1].shape[0]
        grads, metrics, _ = accumulate(loss_fn, params, mb, jnp.full((k,), 1.0 / k))
        params, opt_state, info = clip_and_apply(tx, params, opt_state, grads, max_grad_norm)
        return params, opt_state, {**metrics, **{f"orm_{k}": v for k, v in info.items()}}

    return jit_update(step, state_shardings, 1)


def make_sft_update(graphdef, tx: optax.GradientTransformation, max_grad_norm: float = 1.0,
                    state_shardings=None):
    """Jitted SFT step: ``loss = -sum(logp * m) / sum(m)`` over response tokens ``m``.

    ``mb = (tokens_bt, attention_mask_bt, loss_mask_bt)`` with a leading K axis;
    micro-batches are weighted by their share of response tokens.
    """

    def loss_fn(params, mb):
        tokens, attention_mask, loss_mask = mb
        logp_bt = token_logprobs(nnx.merge(graphdef, params), tokens, attention_mask)
        m = loss_mask.astype(jnp.float32)
        loss = -jnp.sum(logp_bt * m) / jnp.maximum(m.sum(), 1.0)
        return loss, ({"sft_loss": loss}, None)

    def step(params, opt_state, mb):
        tokens_k = mb[2].sum(axis=(1, 2)).astype(jnp.float32)
        grads, metrics, _ = accumulate(loss_fn, params, mb, tokens_k / jnp.maximum(tokens_k.sum(), 1.0))
        params, opt_state, info = clip_and_apply(tx, params, opt_state, grads, max_grad_norm)
        return params, opt_state, {**metrics, **info}

    return jit_update(step, state_shardings, 1)


def split_micro(tree: Any, num_micro: int) -> Any:
    """Reshape every array's leading axis B into (num_micro, B // num_micro)."""
    def reshape(x):
        if x.shape[0] % num_micro:
            raise ValueError(f"batch of {x.shape[0]} rows is not divisible into {num_micro} micro-batches")
        return x.reshape((num_micro, x.shape[0] // num_micro) + x.shape[1:])
    return jax.tree.map(reshape, tree)
