"""A step's batch on the mesh: placed once after collection, cut into mini-batches there.

``MeshBatch.place`` is the RL step's one host -> mesh crossing of the batch (``sharding.place``:
rows over the data axes). Every phase after it (reward-model update, process rewards, advantages,
PPO) picks its mini-batches with ``take_rows``, a gather on the mesh whose result has exactly the
layout ``sharding.place`` gives the same rows, so the jitted updates see the inputs they would
have seen from the host.

Row indices: each process holds ``n`` rows (its share, ``sharding.local_rows``) and process p's
row r is global row ``p n + r``. A mini-batch of local rows ``i_0 .. i_{m-1}`` (the same on every
process) in ``K`` micro-batches is the global (K, P m / K) index ``mesh_row_index`` builds, in
the order ``sharding.place(rows, micro=K)`` lays the processes' rows out.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from prime_jax import sharding
from prime_jax.experience.batch import ScoredRollouts
from prime_jax.training.forward import SequenceBatch


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, kw_only=True)
class MeshBatch:
    """The arrays of a step's ``ScoredRollouts`` that the update reads, as global mesh arrays."""

    sequences: SequenceBatch
    old_logp_bl: jax.Array
    ref_logp_bl: jax.Array
    acc_b: jax.Array

    @classmethod
    def place(cls, batch: ScoredRollouts, mesh) -> "MeshBatch":
        """This process's rows of ``batch`` on ``mesh`` (one ``sharding.place``)."""
        return sharding.place(cls(sequences=batch.sequences(), old_logp_bl=batch.old_logp_bl,
                                  ref_logp_bl=batch.ref_logp_bl, acc_b=batch.acc_b), mesh)

    @property
    def response_mask_bl(self) -> jax.Array:
        return self.sequences.response_mask_bl


def mesh_row_index(local_index: np.ndarray, local_rows: int, micro: int | None = None) -> np.ndarray:
    """Global rows of the mini-batch of local rows ``local_index`` (every process's), int32.

    ``micro=None``: shape (P m,), process p's rows ``p n + i_j`` after process p-1's. With
    ``micro=K``: shape (K, P m / K); micro-batch k holds ``i_{k m/K} .. i_{(k+1) m/K - 1}`` of
    every process, process by process (``sharding.place(..., micro=K)``'s layout).
    """
    local_index = np.asarray(local_index, np.int64)
    offsets_p = np.arange(jax.process_count(), dtype=np.int64) * local_rows
    k = 1 if micro is None else micro
    if local_index.size % k:
        raise ValueError(f"a mini-batch of {local_index.size} rows does not split into {k} micro-batches")
    index_kpm = local_index.reshape(k, 1, -1) + offsets_p[None, :, None]
    index = index_kpm.reshape(k, -1)
    return (index[0] if micro is None else index).astype(np.int32)


def place_index(index: np.ndarray, mesh) -> jax.Array:
    """A row index (the same on every process) replicated on ``mesh``."""
    return jax.device_put(np.asarray(index), sharding.named_sharding(mesh, ()))


def _row_layout(x: jax.Array, mesh, micro: bool) -> jax.Array:
    """``x`` in ``sharding.place``'s layout: rows (axis 0, or 1 after a micro-batch axis) over
    the data axes."""
    lead = (None, "batch") if micro else ("batch",)
    logical = lead + (None,) * (x.ndim - len(lead))
    return jax.lax.with_sharding_constraint(x, sharding.named_sharding(mesh, logical, x.shape))


@functools.partial(jax.jit, static_argnames=("mesh", "part"))
def take_rows(tree, index, mesh, part: int | None = None):
    """Every array of ``tree`` at global rows ``index`` ((B',) or (K, B') from ``mesh_row_index``;
    ``index[part]`` of a stack of them), laid out as ``sharding.place`` lays out the same rows
    (micro-batch axis first for 2-d)."""
    index = index if part is None else index[part]
    return jax.tree.map(lambda x: _row_layout(jnp.take(x, index, axis=0), mesh, index.ndim == 2), tree)


def flat_rows(index_kb: np.ndarray) -> np.ndarray:
    """The global row behind each row of a micro-batched output flattened to (K B', ...)."""
    return np.asarray(index_kb).reshape(-1)
