"""The trainable state of a PRIME run as plain pytrees.

Each role (``policy``, ``prm``) is an NNX module split once into a static
``graphdef`` and its ``nnx.Param`` state; jitted steps take and return the
param state and the optax state, never a mutable module. The frozen
``reference`` is held as params alone and is not checkpointed (it is the SFT
model, reloaded on resume).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx


@dataclasses.dataclass(frozen=True)
class Role:
    """A model split into its static structure and its weights."""

    graphdef: Any
    params: Any

    @classmethod
    def of(cls, module: nnx.Module) -> "Role":
        graphdef, params = nnx.split(module, nnx.Param)
        return cls(graphdef, params)

    def module(self, params=None) -> nnx.Module:
        return nnx.merge(self.graphdef, self.params if params is None else params)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainState:
    """Everything a PRIME run updates: step, weights, optimiser states, RNG key.

    ``prm_params``/``prm_opt`` are ``None`` for the RLOO-with-outcome-only
    baseline, which has no PRM.
    """

    step: jax.Array
    policy_params: Any
    policy_opt: Any
    prm_params: Any
    prm_opt: Any
    rng: jax.Array


def init_optimizer(tx: optax.GradientTransformation, params):
    """``tx.init(params)`` with every parameter-shaped leaf (Adam's moments) created in the sharding
    of its parameter, so a sharded model's optimiser state is sharded too (``jax.jit(tx.init)``
    alone left the moments on one device, to be replicated on every chip). Other leaves (counts)
    are left to the compiler; ``sharding.replicate_unsharded`` gives them the mesh."""
    return jax.jit(tx.init, out_shardings=optimizer_shardings(tx, params))(params)


def optimizer_shardings(tx: optax.GradientTransformation, params, other=None):
    """The sharding of each leaf of ``tx.init(params)``: a parameter-shaped leaf takes its
    parameter's, any other leaf ``other`` (None: the compiler's choice)."""
    return optax.tree_map_params(tx, lambda _, param: param.sharding, jax.eval_shape(tx.init, params), params,
                                 transform_non_params=lambda _: other)


def make_train_state(policy_params, prm_params, policy_tx: optax.GradientTransformation,
                     prm_tx: optax.GradientTransformation | None, seed: int) -> TrainState:
    """Initial state: optimiser moments created with the same sharding as the weights."""
    policy_opt = init_optimizer(policy_tx, policy_params)
    prm_opt = init_optimizer(prm_tx, prm_params) if prm_params is not None else None
    return TrainState(step=jnp.zeros((), jnp.int32), policy_params=policy_params,
                      policy_opt=policy_opt, prm_params=prm_params, prm_opt=prm_opt,
                      rng=jax.random.key_data(jax.random.key(seed)))
