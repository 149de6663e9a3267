"""KV-cache layouts, each owning its attention reads and writes behind one interface.

The model talks to a layout through two small protocols and never asks which layout it has:

* ``cache.begin(mask_bt, cache_index) -> KVStep`` opens one forward call of T new tokens
  (``NoCache`` for a forward without a cache). The step holds the call's ``AttentionMask`` and
  ``valid_b`` (real tokens cached before the call, where default positions continue);
* ``step.layer(l) -> KVLayer``; ``layer.attend(q_btnh, k_bkth, v_bkth, backend=...)`` writes the
  call's keys / values where the layout keeps them, attends, and returns ``(out_btnh, written)``;
* ``step.finish(written) -> cache`` (or None) builds the updated cache from every layer's writes.

Layouts:

* ``NoCache``: keys and values are the call's own tokens (causal + padding mask);
* ``KVCache`` (dense, also the shared-prefix rows of ``rollout.engine``): ``keys[l]``,
  ``values[l]`` ``(B, kv_heads, S, head_dim)`` (heads before slots: no transpose per step),
  ``mask_bs`` bool ``(B, S)`` (real tokens), ``index`` int32 (next slot). T new tokens go to
  slots ``[i, i + T)`` (``i = cache_index`` if given, else ``index``; one
  ``lax.dynamic_update_slice`` per layer); token t reads slots ``s <= i + t`` under the mask,
  over the first ``i + T`` slots when ``cache_index`` is a Python int (else all S). Memory:
  ``2 * layers * B * S * kv_heads * head_dim * bytes(dtype)`` (+ B * S bools); e.g.
  Qwen2.5-Math-7B (28 layers, 4 kv heads x 128), B=64, S=4096, bf16: 14.0 GiB;
* ``PagedKVCache``: rows own blocks of a shared pool (in groups, one per batch shard of a mesh);
  one decode token per row (``models.attention_paged`` reads the blocks).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from prime_jax import sharding
from prime_jax.models.attention import AttentionMask, attend
from prime_jax.models.attention_paged import constrain_pool, paged_attend, per_pool_shard

KV_AXES = ("batch", "kv_heads", "length", "head_dim")


class KVLayer(Protocol):
    """One layer's keys / values for one forward call."""

    def attend(self, q_btnh: jax.Array, k_bkth: jax.Array, v_bkth: jax.Array, *,
               backend: str) -> tuple[jax.Array, Any]:
        """Store this call's ``k_bkth`` / ``v_bkth``; return (``out_btnh``, what was written)."""


class KVStep(Protocol):
    """One forward call over a cache layout (see the module docstring)."""

    mask: AttentionMask
    valid_b: jax.Array | None

    def layer(self, index: int) -> KVLayer: ...

    def finish(self, written: list) -> Any: ...


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FreshKV:
    """A layer without a cache: queries read this call's keys under ``mask`` (a pytree, so it can
    be an argument of ``jax.checkpoint``)."""

    mask: AttentionMask

    def attend(self, q_btnh, k_bkth, v_bkth, *, backend: str):
        k_bkth, v_bkth = sharding.constrain(k_bkth, KV_AXES), sharding.constrain(v_bkth, KV_AXES)
        return attend(q_btnh, k_bkth, v_bkth, self.mask, backend=backend), None


@dataclasses.dataclass(frozen=True)
class FreshStep:
    mask: AttentionMask
    valid_b: None = None

    def layer(self, index: int) -> FreshKV:
        return FreshKV(self.mask)

    def finish(self, written: list) -> None:
        return None


class NoCache:
    """The layout of a forward without a cache (``model(tokens)``)."""

    def begin(self, mask_bt: jax.Array, cache_index=None) -> FreshStep:
        if cache_index is not None:
            raise ValueError(f"cache_index={cache_index!r} needs a cache")
        return FreshStep(AttentionMask.causal(mask_bt))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
    """Dense per-row slots (module docstring)."""

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

    def begin(self, mask_bt: jax.Array, cache_index=None) -> DenseStep:
        """Open a call of T tokens written from slot ``cache_index`` (default ``index``); a
        Python int index bounds the read span to ``index + T`` and is checked against max_len."""
        t = mask_bt.shape[1]
        static = isinstance(cache_index, int)
        if static:
            index = cache_index
            if not 0 <= index <= self.max_len - t:
                raise ValueError(f"cache_index={index} + {t} new tokens does not fit the "
                                 f"cache's max_len={self.max_len}")
        else:
            index = self.index if cache_index is None else jnp.asarray(cache_index, jnp.int32)
        kv_mask_bs = jax.lax.dynamic_update_slice(self.mask_bs, mask_bt, (0, index))
        span = index + t if static else self.max_len
        last_slot_bt = jnp.broadcast_to(index + jnp.arange(t), mask_bt.shape)
        mask = AttentionMask(kv_mask_bs[:, :span], last_slot_bt, static and index == 0)
        return DenseStep(self, mask, self.num_valid_bs(), kv_mask_bs, index, t)


@dataclasses.dataclass(frozen=True)
class DenseLayer:
    keys: jax.Array
    values: jax.Array
    mask: AttentionMask
    index: Any  # a Python int or an int32 scalar

    def attend(self, q_btnh, k_bkth, v_bkth, *, backend: str):
        start = (0, 0, self.index, 0)
        k_bksh = jax.lax.dynamic_update_slice(self.keys, k_bkth.astype(self.keys.dtype), start)
        v_bksh = jax.lax.dynamic_update_slice(self.values, v_bkth.astype(self.values.dtype), start)
        k_bksh, v_bksh = sharding.constrain(k_bksh, KV_AXES), sharding.constrain(v_bksh, KV_AXES)
        span = self.mask.kv_mask_bs.shape[1]  # the slots this call may read (static)
        out_btnh = attend(q_btnh, k_bksh[:, :, :span].astype(q_btnh.dtype),
                          v_bksh[:, :, :span].astype(q_btnh.dtype), self.mask, backend=backend)
        return out_btnh, (k_bksh, v_bksh)


@dataclasses.dataclass(frozen=True)
class DenseStep:
    cache: KVCache
    mask: AttentionMask
    valid_b: jax.Array
    kv_mask_bs: jax.Array
    index: Any
    length: int

    def layer(self, index: int) -> DenseLayer:
        return DenseLayer(self.cache.keys[index], self.cache.values[index], self.mask, self.index)

    def finish(self, written: list) -> KVCache:
        return KVCache(keys=tuple(k for k, _ in written), values=tuple(v for _, v in written),
                       mask_bs=self.kv_mask_bs, index=jnp.asarray(self.index + self.length, jnp.int32))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PagedKVCache:
    """A block-allocated KV cache: rows own blocks of a shared pool instead of dense slots.

    * ``keys[l]``, ``values[l]``: ``(kv_heads, num_blocks, block_size, head_dim)`` block pools
      (the layout of the TPU and GPU paged-attention kernels);
    * ``table_bm``: int32 ``(B, M)``, the pool block holding row b's logical slots
      ``[m * block_size, (m + 1) * block_size)``; ``num_blocks`` marks "no block" (reads give
      zeros, writes are dropped);
    * ``mask_bs``: bool ``(B, M * block_size)``, True where a logical slot holds a real token.
    * ``groups`` (static): G; row b takes blocks of group ``b // (B / G)`` only, blocks
      ``[g * num_blocks / G, (g + 1) * num_blocks / G)`` (``attention_paged``: with G the mesh's
      batch shards, each device holds its rows' blocks).

    A decode step (one token per row, ``cache_index = write_b``) writes row b's key / value at
    logical slot ``write_b[b]`` (block ``table_bm[b, w // block_size]``, offset
    ``w % block_size``) and reads its slots ``s <= write_b[b]`` under the mask
    (``attention_paged.paged_attend``). Bytes held:
    ``2 * layers * num_blocks * block_size * kv_heads * head_dim * itemsize`` - sized to the
    tokens in flight, not to ``B`` rows of the longest possible sequence.
    """

    keys: tuple[jax.Array, ...]
    values: tuple[jax.Array, ...]
    table_bm: jax.Array
    mask_bs: jax.Array
    groups: int = dataclasses.field(default=1, metadata=dict(static=True))

    @classmethod
    def init(cls, *, num_layers: int, num_blocks: int, block_size: int, batch_size: int,
             max_blocks: int, num_kv_heads: int, head_dim: int, dtype=jnp.bfloat16,
             groups: int = 1) -> PagedKVCache:
        """An empty pool (zeros), every row without blocks and without tokens, laid out on the
        current mesh (the blocks over the batch shards where each holds one group)."""
        if batch_size % groups or num_blocks % groups:
            raise ValueError(f"PagedKVCache: {groups} groups must divide the rows ({batch_size}) and the "
                             f"blocks ({num_blocks})")
        shape = (num_kv_heads, num_blocks, block_size, head_dim)

        def zeros():
            return constrain_pool(jnp.zeros(shape, dtype), groups)

        return cls(keys=tuple(zeros() for _ in range(num_layers)), values=tuple(zeros() for _ in range(num_layers)),
                   table_bm=sharding.constrain(jnp.full((batch_size, max_blocks), num_blocks, jnp.int32),
                                               ("batch", None)),
                   mask_bs=sharding.constrain(jnp.zeros((batch_size, max_blocks * block_size), bool),
                                              ("batch", "length")),
                   groups=groups)

    def replace(self, **changes) -> PagedKVCache:
        return dataclasses.replace(self, **changes)

    def num_valid_bs(self) -> jax.Array:
        """int32 (B,): real tokens held per row."""
        return jnp.sum(self.mask_bs, axis=-1, dtype=jnp.int32)

    def begin(self, mask_bt: jax.Array, cache_index=None) -> PagedStep:
        """Open a decode step: one token per row, written at logical slot ``cache_index[b]``."""
        b, t = mask_bt.shape
        if t != 1 or cache_index is None:
            raise ValueError("a PagedKVCache takes decode steps: one token per row and cache_index = "
                             "each row's logical slot (B,)")
        write_b = jnp.asarray(cache_index, jnp.int32)
        kv_mask_bs = self.mask_bs.at[jnp.arange(b), write_b].set(mask_bt[:, 0])
        return PagedStep(self, AttentionMask(kv_mask_bs, write_b[:, None]), self.num_valid_bs(), write_b)


@dataclasses.dataclass(frozen=True)
class PagedLayer:
    keys: jax.Array
    values: jax.Array
    table_bm: jax.Array
    write_b: jax.Array
    mask: AttentionMask
    groups: int

    def attend(self, q_btnh, k_bkth, v_bkth, *, backend: str):
        """Write each row's token into its block (in its group's share of the pool), then attend
        over the row's blocks."""
        block_size = self.keys.shape[2]  # pools (kv_heads, num_blocks, block_size, head_dim)
        rows_b = jnp.arange(self.table_bm.shape[0])
        block_b = self.table_bm[rows_b, self.write_b // block_size]
        offset_b = self.write_b % block_size

        def write(local, pools, rows, _):
            block_b, offset_b, new_k_bkh, new_v_bkh = rows
            return tuple(pool.at[:, local(block_b), offset_b, :].set(new_bkh.transpose(1, 0, 2).astype(pool.dtype),
                                                                     mode="drop")
                         for pool, new_bkh in zip(pools, (new_k_bkh, new_v_bkh)))

        k_pool, v_pool = per_pool_shard(write, self.groups, (self.keys, self.values),
                                        (block_b, offset_b, k_bkth[:, :, 0], v_bkth[:, :, 0]), out="pool")
        out_btnh = paged_attend(q_btnh, k_pool, v_pool, self.table_bm, self.mask, backend=backend,
                                groups=self.groups)
        return out_btnh, (k_pool, v_pool)


@dataclasses.dataclass(frozen=True)
class PagedStep:
    cache: PagedKVCache
    mask: AttentionMask
    valid_b: jax.Array
    write_b: jax.Array

    def layer(self, index: int) -> PagedLayer:
        c = self.cache
        return PagedLayer(c.keys[index], c.values[index], c.table_bm, self.write_b, self.mask, c.groups)

    def finish(self, written: list) -> PagedKVCache:
        return self.cache.replace(keys=tuple(k for k, _ in written), values=tuple(v for _, v in written),
                                  mask_bs=self.mask.kv_mask_bs)


def cache_bytes(*, num_layers: int, batch_size: int, max_len: int, num_kv_heads: int,
                head_dim: int, dtype=jnp.bfloat16) -> int:
    """``2 * layers * B * max_len * kv_heads * head_dim * bytes`` + the (B, max_len) bool mask."""
    itemsize = jnp.dtype(dtype).itemsize
    return 2 * num_layers * batch_size * max_len * num_kv_heads * head_dim * itemsize + (
        batch_size * max_len)
