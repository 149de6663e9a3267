"""The pattern every jitted update follows, whatever the role.

A mini-batch is split into ``K`` equal micro-batches (leading axis), gradients are accumulated over
them with ``lax.scan`` as ``g = sum_k w_k * grad(loss_k)``, clipped to a global norm
``g * min(1, c / (|g| + 1e-6))`` and applied with optax. A non-finite gradient norm leaves weights
and optimiser state untouched and is reported. The role-specific losses live with their roles
(``rl.policy_update``, ``rl.sft``, ``reward_models.updates``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax


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


def clip_and_apply(tx: optax.GradientTransformation, params, opt_state, grads, max_grad_norm: float,
                   active=True):
    """Clip to ``max_grad_norm`` and apply; skip the update when the norm is not finite (counted
    as ``skipped``) or when ``active`` is False (a mini-batch of placeholder rows only: weights and
    optimiser state stay, nothing is counted). Weights and optimiser state keep their dtypes."""
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(grad_norm)
    apply = finite & active
    scale = jnp.minimum(1.0, max_grad_norm / (grad_norm + 1e-6))
    grads = jax.tree.map(lambda g: jnp.where(finite, g * scale, jnp.zeros_like(g)), grads)
    updates, new_opt = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    # the state keeps the dtypes it was created with: float32 gradients would otherwise promote
    # Adam's moments of bfloat16 weights to float32 after one step (a retrace, and more memory)
    keep = lambda new, old: jnp.where(apply, new, old).astype(old.dtype)  # noqa: E731
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


def split_micro(tree: Any, num_micro: int) -> Any:
    """Reshape every array's leading axis B into (num_micro, B // num_micro)."""
    def reshape(x):
        if x.shape[0] % num_micro:
            raise ValueError(f"batch of {x.shape[0]} rows is not divisible into {num_micro} micro-batches")
        return x.reshape((num_micro, x.shape[0] // num_micro) + x.shape[1:])
    return jax.tree.map(reshape, tree)
