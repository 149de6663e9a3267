"""Shared by the ahead-of-time kernel tests (test_attention_tpu.py, test_attention_gpu.py): abstract
arguments on a compile-only mesh, compiled HLO text, a paged decode attention step, and a model's
training and paged decode steps."""

import jax
import jax.numpy as jnp
from flax import nnx

from prime_jax import sharding
from prime_jax.models import ModelConfig, Transformer
from prime_jax.models.attention import AttentionMask
from prime_jax.models.attention_paged import paged_attend
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


def paged_decode(n: int, k: int, h: int, mesh=None, groups: int = 1):
    """``paged_attend`` with ``backend="auto"`` for 8 rows of ``n`` query heads over ``k`` kv heads
    of ``h``, each reading up to 8 blocks of 16 slots of a 64-block bf16 pool, as ``(fn, abstract args)``.
    With ``groups`` > 1 the pool is in groups, its blocks laid over ``mesh``'s batch shards."""
    rows, blocks, block_size, max_blocks = 8, 64, 16, 8

    def step(q, k_pool, v_pool, table, write_b):
        mask = AttentionMask(jnp.arange(max_blocks * block_size)[None] <= write_b[:, None], write_b[:, None])
        return paged_attend(q, k_pool, v_pool, table, mask, backend="auto", groups=groups)

    shape = (k, blocks, block_size, h)
    pool = spec(mesh, shape, (None, "batch", None, None)) if groups > 1 else jax.ShapeDtypeStruct(shape, jnp.bfloat16)
    return step, (jax.ShapeDtypeStruct((rows, 1, n, h), jnp.bfloat16), pool, pool,
                  jax.ShapeDtypeStruct((rows, max_blocks), jnp.int32), jax.ShapeDtypeStruct((rows,), jnp.int32))
