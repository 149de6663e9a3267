"""Shared by the ahead-of-time kernel tests (test_attention_tpu.py, test_attention_gpu.py): abstract
arguments on a compile-only mesh, compiled HLO text, and a model's training and paged decode steps."""

import jax
import jax.numpy as jnp
from flax import nnx

from prime_jax import sharding
from prime_jax.models import ModelConfig, Transformer
from prime_jax.models.cache import PagedKVCache
from prime_jax.training.abstract_arrays import abstract_model


def spec(mesh, shape, axes, dtype=jnp.bfloat16) -> jax.ShapeDtypeStruct:
    """An abstract array laid out on ``mesh`` by the logical ``axes``."""
    return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding.named_sharding(mesh, axes, shape))


def compiled_text(mesh, fn, *args) -> str:
    """The HLO of ``fn`` compiled for ``mesh``'s devices."""
    with jax.set_mesh(mesh):
        return jax.jit(fn).lower(*args).compile().as_text()


def model_steps(config: ModelConfig, mesh, length: int):
    """A model's training step (``jax.grad`` of a loss over 4 rows of ``length`` tokens) and paged
    decode step (one token per row over a 32-block pool), each as ``(fn, abstract args)``."""
    graphdef, params = abstract_model(config, mesh)

    def loss(params, ids):
        return jnp.mean(nnx.merge(graphdef, params)(ids, attention_mask_bt=ids > 0))

    def decode(params, cache, token_b1, write_b):
        policy: Transformer = nnx.merge(graphdef, params)
        return policy(token_b1, positions_bt=write_b[:, None], cache=cache, cache_index=write_b)[0]

    cache = jax.eval_shape(lambda: PagedKVCache.init(
        num_layers=config.num_layers, num_blocks=32, block_size=16, batch_size=4, max_blocks=4,
        num_kv_heads=config.num_kv_heads, head_dim=config.head_dim))
    train = (jax.grad(loss), (params, spec(mesh, (4, length), ("batch", "length"), jnp.int32)))
    step = (decode, (params, cache, jax.ShapeDtypeStruct((4, 1), jnp.int32), jax.ShapeDtypeStruct((4,), jnp.int32)))
    return train, step
