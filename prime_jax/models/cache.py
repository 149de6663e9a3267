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
