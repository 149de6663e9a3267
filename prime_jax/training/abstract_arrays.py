"""Shape-only stand-ins of the trainer's weights, optimiser state, batches and KV cache, laid out
in their mesh shardings as the trainer lays out the real ones: what an ahead-of-time compile
(``prime_jax.memory_plan``, the TPU lowering tests) takes instead of arrays. No device memory is used.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from prime_jax import sharding
from prime_jax.models import KVCache, ModelConfig, Transformer, param_shardings
from prime_jax.models.cache import KV_AXES
from prime_jax.training.forward import SequenceBatch
from prime_jax.training.state import optimizer_shardings


def per_device_bytes(tree) -> int:
    """Bytes one device holds of the abstract arrays of ``tree`` (the largest shard)."""
    total = 0
    for x in jax.tree.leaves(tree):
        shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
        total += math.prod(shape) * jnp.dtype(x.dtype).itemsize
    return total


def abstract_model(config: ModelConfig, mesh):
    """(graphdef, abstract params): the weights as ``ShapeDtypeStruct``s in their mesh sharding."""
    with jax.set_mesh(mesh), nnx.logical_axis_rules(sharding.PARAM_RULES):
        module = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
    graphdef, params = nnx.split(module, nnx.Param)
    shardings = param_shardings(params, mesh)
    return graphdef, jax.tree.map(lambda p, s: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=s),
                                  params, shardings)


def abstract_opt_state(tx: optax.GradientTransformation, params, mesh):
    """The abstract optimiser state as ``training.state.init_optimizer`` lays it out: every leaf
    shaped like a weight (Adam's moments) sharded like that weight, the rest replicated."""
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    with jax.set_mesh(mesh):
        shapes = jax.eval_shape(tx.init, params)
    with jax.default_device(jax.devices("cpu")[0]):  # optax builds a placeholder state eagerly
        shardings = optimizer_shardings(tx, params, replicated)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings)


def rows_array(mesh, shape, dtype, micro: bool = False):
    """A batch array laid out as ``sharding.place`` lays it out (rows over data x fsdp)."""
    axes = ((None, "batch") if micro else ("batch",)) + (None,) * (len(shape) - (2 if micro else 1))
    return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding.named_sharding(mesh, axes, shape))


def sequence_batch(mesh, lead: tuple, s: int, length: int) -> SequenceBatch:
    micro = len(lead) == 2
    return SequenceBatch(tokens_bs=rows_array(mesh, (*lead, s), jnp.int32, micro),
                         attention_mask_bs=rows_array(mesh, (*lead, s), jnp.int32, micro),
                         response_mask_bl=rows_array(mesh, (*lead, length), jnp.int32, micro))


def abstract_cache(config: ModelConfig, mesh, batch: int, max_len: int, dtype) -> KVCache:
    shape = (batch, config.num_kv_heads, max_len, config.head_dim)
    kv = lambda: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding.named_sharding(mesh, KV_AXES, shape))  # noqa: E731
    return KVCache(keys=tuple(kv() for _ in range(config.num_layers)),
                   values=tuple(kv() for _ in range(config.num_layers)),
                   mask_bs=rows_array(mesh, (batch, max_len), jnp.bool_),
                   index=jax.ShapeDtypeStruct((), jnp.int32, sharding=sharding.named_sharding(mesh, ())))
