"""Decode attention over a paged KV cache: ``paged_attend(q_b1nh, k_pool, v_pool, table_bm, mask)``.

Pools are ``(kv_heads, num_blocks, block_size, head_dim)``; row b's logical slot
``m * block_size + o`` lives in pool block ``table_bm[b, m]`` at offset o (``num_blocks`` = no
block). One query token per row reads its slots ``s <= last_slot_bt[b, 0]`` under the mask.

The reference (``xla`` and ``dot_product_attention``, and ``splash`` on the CPU) gathers each
row's blocks into a dense ``(B, kv_heads, M * block_size, head_dim)`` view, one layer at a time,
and attends over it. The accelerator backends read only the blocks in use with the platform's
kernel instead: ``splash`` (TPU) ``pallas.ops.tpu.paged_attention``, ``cudnn`` / ``pallas_gpu``
(GPU) ``pallas.ops.gpu.paged_attention`` (``pallas_gpu`` is interpreted on the CPU, for tests).
(The TPU kernel needs head_dim a multiple of 128, a 64-wide model keeps the gather there; the
GPU kernel's Triton lowering needs a power of two, an 80-wide model keeps it there.)
The kernels take the pools as they are and bound each row by a length: they read slots
``[0, last_slot + 1)`` and ignore ``kv_mask_bs``, which is right for ``rollout.paged`` (a
row's slots up to its decode position all hold real tokens: left padding takes no block).

Groups: a pool of ``groups`` = G > 1 is G pools of ``num_blocks / G`` blocks side by side, and
row b (of B) takes blocks of group ``b // (B / G)`` only (ids stay global). When G is the mesh's
number of batch shards, shard g then holds its rows and their blocks, and every read and write
runs per shard on its own blocks (``per_pool_shard``, a ``shard_map``): nothing crosses devices,
and N devices hold N times the tokens of one.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from prime_jax import sharding
from prime_jax.models import attention
from prime_jax.models.attention import AttentionMask, attend

_PAGED_KERNELS = {"splash": "tpu", "cudnn": "gpu", "pallas_gpu": "gpu"}


def pool_split(groups: int) -> tuple[str, ...] | None:
    """The mesh axes splitting the pool's blocks and its rows: the batch axes where the pool's
    ``groups`` are the current mesh's batch shards, else None (the pool is whole wherever it is)."""
    mesh = jax.sharding.get_abstract_mesh()
    if groups == 1 or mesh.empty or sharding.data_parallel_size(mesh) != groups:
        return None
    return tuple(a for a in sharding.BATCH_AXES if mesh.shape[a] > 1)


def constrain_pool(pool: jax.Array, groups: int) -> jax.Array:
    """Lay the pool's blocks over the mesh's batch shards when each shard holds one group."""
    return pool if pool_split(groups) is None else sharding.constrain(pool, (None, "batch", None, None))


def per_pool_shard(fn, groups: int, pools, rows=(), shared=(), *, out: str):
    """``fn(local, pools, rows, shared)`` on each batch shard's rows and its blocks of the pools
    where ``pool_split(groups)`` splits them (a ``shard_map``: nothing crosses devices), else
    once on the whole arrays. ``local(ids)`` turns global block ids into ids in the pool at hand
    (ids of another shard's blocks and "no block" fall past its end: reads fill, writes drop).
    ``out``: "pool" (results laid out as the pools) or "rows" (as the rows)."""
    num_blocks = jax.tree.leaves(pools)[0].shape[1]
    axes = pool_split(groups)
    if axes is None:
        return fn(lambda ids: ids, pools, rows, shared)
    per = num_blocks // groups

    def body(pools, rows, shared):
        ids_start = jax.lax.axis_index(axes) * per

        def local(ids):
            ids = ids - ids_start
            return jnp.where((ids >= 0) & (ids < per), ids, per)

        return fn(local, pools, rows, shared)

    spec = jax.sharding.PartitionSpec
    specs = {"pool": spec(None, axes), "rows": spec(axes)}
    return jax.shard_map(body, mesh=jax.sharding.get_abstract_mesh(), in_specs=(specs["pool"], specs["rows"], spec()),
                         out_specs=specs[out], check_vma=False)(pools, rows, shared)


def gather_blocks(pool: jax.Array, table_bm: jax.Array, groups: int = 1) -> jax.Array:
    """Row b's blocks in table order as dense ``(B, kv_heads, M * block_size, head_dim)``
    (zeros for "no block"), each shard reading its own blocks."""
    def gather(local, pool, table_bm, _):
        blocks_kbmsh = jnp.take(pool, local(table_bm), axis=1, mode="fill", fill_value=0)
        k, b, m, s, h = blocks_kbmsh.shape
        return blocks_kbmsh.transpose(1, 0, 2, 3, 4).reshape(b, k, m * s, h)

    return per_pool_shard(gather, groups, pool, table_bm, out="rows")


def _divisor_at_most(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def tpu_paged_attention(q_bnh, k_kpsh, v_kpsh, lengths_b, table_bm):
    """``pallas.ops.tpu.paged_attention`` (compute blocks of up to 8 pages dividing M); each kv
    head's query group is zero-padded to a multiple of 8 rows (extra rows are sliced off)."""
    from jax.experimental.pallas.ops.tpu.paged_attention import paged_attention

    per_block = _divisor_at_most(table_bm.shape[1], 8)
    b, n, h = q_bnh.shape
    k = k_kpsh.shape[0]
    g, g8 = n // k, -(-(n // k) // 8) * 8  # the kernel's query block: groups in multiples of 8 sublanes
    q_bkgh = jnp.pad(q_bnh.reshape(b, k, g, h), ((0, 0), (0, 0), (0, g8 - g), (0, 0)))
    out = paged_attention(q_bkgh.reshape(b, k * g8, h), k_kpsh, v_kpsh, lengths_b, table_bm,
                          pages_per_compute_block=per_block)
    return out.reshape(b, k, g8, h)[:, :, :g].reshape(b, n, h)


def gpu_paged_attention(q_bnh, k_kpsh, v_kpsh, lengths_b, table_bm, *, interpret: bool = False):
    """``pallas.ops.gpu.paged_attention``; the table is padded to a whole number of k-splits x
    compute blocks (padding columns are past every length: never read)."""
    from jax.experimental.pallas.ops.gpu.paged_attention import paged_attention

    m = table_bm.shape[1]
    splits, per_block = min(16, m), min(8, -(-m // min(16, m)))
    table_bm = jnp.pad(table_bm, ((0, 0), (0, -m % (splits * per_block))))
    return paged_attention(q_bnh, k_kpsh, v_kpsh, table_bm, lengths_b, k_splits=splits,
                           pages_per_compute_block=per_block, interpret=interpret)


def _kernel(backend: str, head_dim: int):
    """The paged kernel of ``backend`` on the target platform, or None (the gather reference).
    The TPU kernel needs a head dim of whole 128-lane tiles, the GPU kernel (Triton) a power of
    two: padding the pool would cost up to twice a cache's bytes, so such models keep the gather."""
    home = _PAGED_KERNELS.get(backend)
    platform = attention.target_platform()
    platform = "gpu" if platform in ("cuda", "rocm") else platform
    if home is None or (platform != home and not (platform == "cpu" and backend == "pallas_gpu")):
        return None
    if (home == "tpu" and head_dim % 128) or (home == "gpu" and head_dim & (head_dim - 1)):
        return None
    return tpu_paged_attention if home == "tpu" else functools.partial(
        gpu_paged_attention, interpret=platform == "cpu")


def paged_attend(q_btnh, k_pool, v_pool, table_bm, mask: AttentionMask, *, backend: str = "xla",
                 groups: int = 1):
    """Attention of one token per row over its blocks (module docstring); returns ``out_btnh``
    (T = 1)."""
    head_dim = q_btnh.shape[-1]
    kernel = _kernel(attention.resolve(backend, dtype=q_btnh.dtype, head_dim=head_dim), head_dim)
    if kernel is None:
        k_bksh, v_bksh = (gather_blocks(pool, table_bm, groups).astype(q_btnh.dtype) for pool in (k_pool, v_pool))
        return attend(q_btnh, k_bksh, v_bksh, mask, backend=backend)
    table_bm = jnp.minimum(table_bm, k_pool.shape[1] - 1)  # "no block" -> a real block past the length
    lengths_b = mask.last_slot_bt[:, 0] + 1
    q_bnh = (q_btnh[:, 0].astype(jnp.float32) * q_btnh.shape[-1] ** -0.5).astype(k_pool.dtype)  # kernels don't scale
    out_bnh = _per_row_shard(kernel, q_bnh, k_pool, v_pool, lengths_b, table_bm, groups)
    return out_bnh[:, None].astype(q_btnh.dtype)


def _per_row_shard(kernel, q_bnh, k_pool, v_pool, lengths_b, table_bm, groups: int):
    """``kernel`` with the rows split over the current mesh's batch axes (a Pallas call is opaque
    to XLA's partitioner). The pools are split with them where each shard holds one group (its
    rows' blocks, read by ids local to the shard), else whole on every device."""
    def local(q, k, v, lengths, table):  # ids modulo the pool a device holds: global ids or its group's
        return kernel(q, k, v, lengths, table % k.shape[1])

    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return local(q_bnh, k_pool, v_pool, lengths_b, table_bm)
    rows = sharding.logical_to_spec(("batch",), shape=lengths_b.shape, mesh=mesh)[0]
    spec = jax.sharding.PartitionSpec
    pool = spec(None, rows) if rows is not None and pool_split(groups) is not None else spec()
    return jax.shard_map(local, mesh=mesh, in_specs=(spec(rows), pool, pool, spec(rows), spec(rows)),
                         out_specs=spec(rows), check_vma=False)(q_bnh, k_pool, v_pool, lengths_b, table_bm)
