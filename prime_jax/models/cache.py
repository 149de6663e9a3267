"""KVCache: per-layer keys and values of a batch of sequences, for incremental decoding.

Layout (static shapes, so it lives happily in ``jax.jit`` / ``lax.while_loop`` carries):

* ``keys[l]``, ``values[l]``: ``(B, kv_heads, S, head_dim)`` in the cache dtype, S = max_len
  (heads before slots: attention batches over (b, k) with no transpose of the cache);
* ``mask_bs``: bool ``(B, S)``, True where slot s of row b holds a real (non-padding) token;
* ``index``: int32 scalar, the next slot to write (slots ``[0, index)`` are filled).

A forward call with T new tokens writes them at slots ``[index, index + T)`` (one
``lax.dynamic_update_slice`` per layer), lets token t read slots ``s <= index + t`` whose mask is
True, and returns the cache with ``index + T``. Memory:
``2 * num_layers * B * max_len * num_kv_heads * head_dim * bytes(dtype)`` (+ B * max_len bools);
e.g. Qwen2.5-Math-7B (28 layers, 4 kv heads x 128), B=64, S=4096, bf16: 14.0 GiB.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from prime_jax import sharding

KV_AXES = ("batch", "kv_heads", "length", "head_dim")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
    keys: tuple[jax.Array, ...]
    values: tuple[jax.Array, ...]
    mask_bs: jax.Array
    index: jax.Array

    @classmethod
    def init(cls, *, num_layers: int, batch_size: int, max_len: int, num_kv_heads: int,
             head_dim: int, dtype=jnp.bfloat16) -> KVCache:
        """An empty cache (zeros, mask all False, index 0), laid out on the current mesh."""
        shape = (batch_size, num_kv_heads, max_len, head_dim)

        def zeros():
            return sharding.constrain(jnp.zeros(shape, dtype), KV_AXES)

        return cls(keys=tuple(zeros() for _ in range(num_layers)),
                   values=tuple(zeros() for _ in range(num_layers)),
                   mask_bs=sharding.constrain(jnp.zeros((batch_size, max_len), bool),
                                              ("batch", "length")),
                   index=jnp.zeros((), jnp.int32))

    @property
    def batch_size(self) -> int:
        return self.mask_bs.shape[0]

    @property
    def max_len(self) -> int:
        return self.mask_bs.shape[1]

    def replace(self, **changes) -> KVCache:
        return dataclasses.replace(self, **changes)

    def num_valid_bs(self) -> jax.Array:
        """int32 (B,): real tokens already cached per row (the next token's default position)."""
        return jnp.sum(self.mask_bs, axis=-1, dtype=jnp.int32)


def cache_bytes(*, num_layers: int, batch_size: int, max_len: int, num_kv_heads: int,
                head_dim: int, dtype=jnp.bfloat16) -> int:
    """``2 * layers * B * max_len * kv_heads * head_dim * bytes`` + the (B, max_len) bool mask."""
    itemsize = jnp.dtype(dtype).itemsize
    return 2 * num_layers * batch_size * max_len * num_kv_heads * head_dim * itemsize + (
        batch_size * max_len)


class PagedLayer(NamedTuple):
    """One layer's view of a ``PagedKVCache`` for a decode step: its key / value block pools, the
    rows' block tables and each row's logical slot to write (see ``PagedKVCache``)."""

    keys: jax.Array
    values: jax.Array
    table_bm: jax.Array
    write_b: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PagedKVCache:
    """A block-allocated KV cache: rows own blocks of a shared pool instead of dense slots.

    * ``keys[l]``, ``values[l]``: ``(num_blocks, kv_heads, block_size, head_dim)`` block pools;
    * ``table_bm``: int32 ``(B, M)``, the pool block holding row b's logical slots
      ``[m * block_size, (m + 1) * block_size)``; ``num_blocks`` marks "no block" (reads give
      zeros, writes are dropped);
    * ``mask_bs``: bool ``(B, M * block_size)``, True where a logical slot holds a real token.

    A decode step (one token per row) writes row b's key / value at logical slot ``write_b[b]``
    (block ``table_bm[b, w // block_size]``, offset ``w % block_size``) and attends over the row's
    gathered blocks, slots ``s <= write_b[b]`` under the mask: one layer's dense view at a time,
    so a step's extra memory is one layer's ``B * M * block_size`` slots. Bytes held:
    ``2 * layers * num_blocks * block_size * kv_heads * head_dim * itemsize`` - sized to the
    tokens in flight, not to ``B`` rows of the longest possible sequence.
    """

    keys: tuple[jax.Array, ...]
    values: tuple[jax.Array, ...]
    table_bm: jax.Array
    mask_bs: jax.Array

    @classmethod
    def init(cls, *, num_layers: int, num_blocks: int, block_size: int, batch_size: int,
             max_blocks: int, num_kv_heads: int, head_dim: int, dtype=jnp.bfloat16) -> PagedKVCache:
        """An empty pool (zeros), every row without blocks and without tokens."""
        shape = (num_blocks, num_kv_heads, block_size, head_dim)
        return cls(keys=tuple(jnp.zeros(shape, dtype) for _ in range(num_layers)),
                   values=tuple(jnp.zeros(shape, dtype) for _ in range(num_layers)),
                   table_bm=jnp.full((batch_size, max_blocks), num_blocks, jnp.int32),
                   mask_bs=jnp.zeros((batch_size, max_blocks * block_size), bool))

    def replace(self, **changes) -> PagedKVCache:
        return dataclasses.replace(self, **changes)

    def layer(self, i: int, write_b: jax.Array) -> PagedLayer:
        return PagedLayer(self.keys[i], self.values[i], self.table_bm, write_b)


def paged_write_and_read(layer: PagedLayer, k_bkh: jax.Array, v_bkh: jax.Array):
    """Write one token's key / value per row into its block, then gather every row's blocks into
    dense ``(B, kv_heads, M * block_size, head_dim)`` keys and values. Returns
    ``(k_pool, v_pool, k_bksh, v_bksh)``."""
    block_size = layer.keys.shape[2]
    rows_b = jnp.arange(layer.table_bm.shape[0])
    block_b = layer.table_bm[rows_b, layer.write_b // block_size]
    offset_b = layer.write_b % block_size
    pools = []
    for pool, new_bkh in ((layer.keys, k_bkh), (layer.values, v_bkh)):
        pools.append(pool.at[block_b, :, offset_b, :].set(new_bkh.astype(pool.dtype), mode="drop"))
    dense = []
    for pool in pools:
        blocks_bmksh = jnp.take(pool, layer.table_bm, axis=0, mode="fill", fill_value=0)
        b, m, k, s, h = blocks_bmksh.shape
        dense.append(blocks_bmksh.transpose(0, 2, 1, 3, 4).reshape(b, k, m * s, h))
    return pools[0], pools[1], dense[0], dense[1]
