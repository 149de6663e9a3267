"""The online implicit PRM as a process-reward source (PRIME, SPEC 1.5).

Each step the PRM ``pi_phi`` is updated on the step's batch (mini-batches in ``prm_row_order``)
with the outcome labels, and its token log-probs give the implicit process rewards
``r_t = beta (log pi_phi(y_t) - log pi_ref(y_t))`` of ``advantages.prime_advantages``. Weights,
mini-batches, log-probs and rewards stay on the mesh; per ``PrimeConfig.prm_mode`` the log-probs
come from:

* ``after``: each mini-batch's own forward, the one that computes its gradient (before its update);
* ``before``: one forward of the whole batch after all updates;
* ``none``: the frozen PRM's forward (no update).

A PRM whose weights equal the reference's (step 1's first mini-batch; a PRM at learning rate 0)
reads the reference's log-probs ``ref_logp_bl`` instead of its own: its log-ratio is exactly 0,
while its own forward is another compiled program (a gradient pass) that differs from the
reference pass by float rounding (~1e-6), which ``batch_norm`` (``r / (max |suffix sum| + 1e-6)``)
would blow up into full-size process rewards. The weight comparison runs on the mesh.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from prime_jax import sharding
from prime_jax.models.source import ModelSource, build_model
from prime_jax.reward_models.updates import LabelledMiniBatch, make_prm_update
from prime_jax.rl.config import PrimeConfig
from prime_jax.rl.mesh_batch import MeshBatch, _row_layout, flat_rows, mesh_row_index, place_index, take_rows
from prime_jax.rl.reward_source import SourceOutput, SourceSettings, implicit_advantages
from prime_jax.training.forward import make_logprob_fn
from prime_jax.training.state import Role, TrainState
from prime_jax.training.updates import shardings_of


def _equal_weights(params, reference_params) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(a == b) for a, b in zip(jax.tree.leaves(params),
                                                              jax.tree.leaves(reference_params))]))


same_weights = jax.jit(_equal_weights)
same_weights.__doc__ = "True iff every weight of ``params`` equals the reference's bit for bit (on the mesh)."


@jax.jit
def still_same_weights(still, params, reference_params) -> jax.Array:
    """``still and same_weights(params, reference)``, comparing only while ``still`` holds."""
    return jax.lax.cond(still, _equal_weights, lambda *_: jnp.asarray(False), params, reference_params)


@functools.partial(jax.jit, static_argnames=("mesh",))
def _reference_if(same, ref_logp_bl, logp_bl, mesh):
    """``ref_logp`` where the PRM has the reference's weights, else its own log-probs (rows layout)."""
    ref_logp_bl = ref_logp_bl.reshape(logp_bl.shape)
    return _row_layout(jnp.where(same, ref_logp_bl, logp_bl), mesh, False)


def prm_row_order(rows: int, mini_batch: int, chunks: int) -> np.ndarray:
    """The rows of the PRM's mini-batches, in order, in the reference's shard layout.

    The reference normalises each of its ``chunks`` data-parallel shards (``rows / chunks``
    contiguous rows) alone, and each shard runs its own sequence of ``m = mini_batch / chunks``-row
    mini-batches; global mini-batch k is the k-th slice of every shard::

        order = [c * rows/chunks + k*m + j  for k, then c < chunks, then j < m]

    so every normalisation chunk holds rows of every PRM version ("after" mode), never only
    rows that the PRM scored before its first update. ``chunks = 1`` is plain row order.
    """
    if rows % chunks or mini_batch % chunks or (rows // chunks) % (mini_batch // chunks):
        raise ValueError(f"PRM mini-batches of {mini_batch} rows do not split {rows} rows into {chunks} "
                         "equal normalisation chunks (ImplicitRewardConfig.num_chunks)")
    m = mini_batch // chunks
    return np.arange(rows).reshape(chunks, rows // chunks // m, m).transpose(1, 0, 2).reshape(-1)


def q_length_correlation(mask_bl: np.ndarray, ref_logp_bl: np.ndarray, logp_prm_bl: np.ndarray) -> float:
    """Pearson correlation over the batch's non-empty rows of the implicit outcome score
    ``sum_t q_t`` (``q_t = log pi_phi - log pi_ref`` on response tokens) with the response length:
    a PRM that scores length rather than correctness drifts away from 0. NaN if either is constant."""
    mask_bl = mask_bl.astype(np.float64)
    rows_b = mask_bl.sum(axis=1) > 0
    q_sum_b = ((np.asarray(logp_prm_bl, np.float64) - ref_logp_bl) * mask_bl).sum(axis=1)[rows_b]
    length_b = mask_bl.sum(axis=1)[rows_b]
    if rows_b.sum() < 2 or q_sum_b.std() == 0 or length_b.std() == 0:
        return float("nan")
    return float(np.corrcoef(q_sum_b, length_b)[0, 1])


def initial_prm(path: str, model: ModelSource, policy: Role, mesh, seed: int):
    """The weights of the HF directory ``path`` as the PRM's starting point; the architecture must
    be the policy's (both roles share one graph)."""
    module = build_model(dataclasses.replace(model, hf_path=path), mesh, seed=seed)
    expected = policy.module().config
    if module.config != expected:
        raise ValueError(f"PrimeConfig.prm_init={path!r}: its config.json ({module.config}) differs from the "
                         f"policy's ({expected})")
    return Role.of(module).params


@dataclasses.dataclass(frozen=True)
class OnlineImplicitPrm:
    """PRIME's process-reward source (``reward_source.SOURCES["implicit_prm"]``); build with
    :meth:`build` once the train state holds the PRM's weights."""

    config: PrimeConfig
    prm_update: Callable
    prm_logprobs: Callable
    reference_params: object
    delimiter_ids: tuple[int, ...]
    mesh: object
    mini_batch_index: tuple[jax.Array, ...]  # (K, B') global rows of each PRM mini-batch, on the mesh
    batch_order: jax.Array  # the batch's rows among the concatenated mini-batch outputs
    frozen_is_reference: bool

    trains_weights: ClassVar[bool] = True
    reads_reference: ClassVar[bool] = True

    @classmethod
    def from_settings(cls, settings: SourceSettings, state: TrainState) -> "OnlineImplicitPrm":
        """``build`` from the settings every source is given."""
        s = settings
        return cls.build(s.config, graphdef=s.graphdef, tx=s.tx, state=state, reference_params=s.reference_params,
                         delimiter_ids=s.delimiter_ids, mesh=s.mesh)

    @classmethod
    def build(cls, config: PrimeConfig, *, graphdef, tx, state: TrainState,
              reference_params, delimiter_ids: tuple[int, ...], mesh) -> "OnlineImplicitPrm":
        """Jitted update (``config.prm_loss``, ``tx``) and forward, weights returned in the
        shardings ``state`` has, and the mini-batches' row indices (the same every step)."""
        shardings = (shardings_of(state.prm_params), shardings_of(state.prm_opt))
        local = sharding.local_rows(config.collect.batch_prompts * config.num_samples)
        size = sharding.local_rows(config.prm_mini_batch)
        chunks = max(1, sharding.local_rows(config.reward.num_chunks))  # this process's whole chunks
        order = prm_row_order(local, size, chunks)
        index = [mesh_row_index(order[s:s + size], local, config.prm_micro_batches) for s in range(0, local, size)]
        frozen_is_reference = config.prm_mode == "none" and bool(same_weights(state.prm_params, reference_params))
        return cls(config=config,
                   prm_update=make_prm_update(graphdef, tx, config.prm_loss, config.reward, config.num_samples, shardings),
                   prm_logprobs=make_logprob_fn(graphdef, config.logprob_rows_per_pass),
                   reference_params=reference_params, delimiter_ids=delimiter_ids, mesh=mesh,
                   mini_batch_index=tuple(place_index(i, mesh) for i in index),
                   batch_order=place_index(np.argsort(np.concatenate([flat_rows(i) for i in index])), mesh),
                   frozen_is_reference=frozen_is_reference)

    def advantages(self, state: TrainState, batch: MeshBatch) -> tuple[TrainState, SourceOutput]:
        """Update the PRM, read its log-probs, and turn them into advantages."""
        state, logp_prm_bl, parts = self.update(state, batch)
        out = implicit_advantages(batch, logp_prm_bl, self.config, self.delimiter_ids, self.mesh)
        return state, SourceOutput(out, parts, logp_prm_bl)

    def update(self, state: TrainState, batch: MeshBatch) -> tuple[TrainState, jax.Array, tuple[dict, ...]]:
        """The PRM's updates on the batch (none in mode "none"), its token log-probs in batch row
        order, and the metrics of each update."""
        mode, reference = self.config.prm_mode, self.reference_params
        if mode == "none":
            if self.frozen_is_reference:
                return state, batch.ref_logp_bl, ()
            logp_bl = self.prm_logprobs(state.prm_params, batch.sequences)
            return state, _row_layout_jit(logp_bl, self.mesh), ()
        labelled = LabelledMiniBatch(sequences=batch.sequences, ref_logp_bl=batch.ref_logp_bl, acc_b=batch.acc_b)
        params, opt, parts, logps = state.prm_params, state.prm_opt, [], []
        still = same_weights(params, reference) if mode == "after" else None
        for k, index in enumerate(self.mini_batch_index):
            if k and mode == "after":  # once an update has moved the weights off the reference, stop comparing
                still = still_same_weights(still, params, reference)
            mb = take_rows(labelled, index, self.mesh)
            params, opt, metrics, logp_bl = self.prm_update(params, opt, mb)
            parts.append(metrics)
            if mode == "after":
                logps.append(_reference_if(still, mb.ref_logp_bl, logp_bl, self.mesh))
        state = dataclasses.replace(state, prm_params=params, prm_opt=opt)
        if mode == "before":
            logp_prm_bl = _reference_if(same_weights(params, reference), batch.ref_logp_bl,
                                        self.prm_logprobs(params, batch.sequences), self.mesh)
        else:
            logp_prm_bl = take_rows(jnp.concatenate(logps), self.batch_order, self.mesh)
        return state, logp_prm_bl, tuple(parts)


@functools.partial(jax.jit, static_argnames=("mesh",))
def _row_layout_jit(x, mesh):
    return _row_layout(x, mesh, False)
