"""The process-reward source of an RL step: one entry of a small table.

An RL step is ``collect -> process rewards -> advantages -> policy update``; only the middle part
differs between the methods this package runs, and a *process-reward source* is that part:
``source.advantages(state, batch) -> (state, SourceOutput)``, on the mesh from start to end.

    ==============  ==========================================  ========================
    name            process rewards                              method
    ==============  ==========================================  ========================
    implicit_prm    ``beta log pi_phi / pi_ref`` of an online   PRIME
                    implicit PRM, updated on the step's batch
    self_prm        ``beta log pi_theta / pi_ref`` of the policy  SPRO
                    that sampled the batch (no PRM)
    step_verifier   a frozen step verifier's step scores         step-by-step PPO, PAV-RL
    outcome_only    none: the outcome verifier's reward only     RLOO / GRPO
    ==============  ==========================================  ========================

``source_name(PrimeConfig)`` picks the entry: a ``PrimeConfig.explicit_prm`` directory is the
frozen step verifier, ``PrimeConfig.self_prm`` the policy itself, ``AdvantageConfig.process_coef
= 0`` the outcome only, anything else the online implicit PRM. A new source is one class with the
``ProcessRewardSource`` members and one row of ``SOURCES``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, Protocol

import jax

from prime_jax import advantages, rewards
from prime_jax.rl.config import PrimeConfig
from prime_jax.rl.mesh_batch import MeshBatch, _row_layout
from prime_jax.training.state import TrainState


@dataclasses.dataclass(frozen=True)
class SourceOutput:
    """What a source hands the policy update and the step's metrics, all on the mesh.

    ``metric_parts``: one dict of scalars per update of the source's own weights (averaged over
    its updates on the host); ``logp_prm_bl``: the implicit PRM's token log-probs of the batch,
    for the ``prm_q_length_corr`` diagnostic (None without an implicit PRM)."""

    advantages: advantages.PrimeAdvantages
    metric_parts: tuple[dict, ...] = ()
    logp_prm_bl: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class SourceSettings:
    """What building any source may read (each reads its part)."""

    config: PrimeConfig
    graphdef: object
    tx: object
    reference_params: object
    delimiter_ids: tuple[int, ...]
    vocab_size: int
    mesh: object


class ProcessRewardSource(Protocol):
    """One row of ``SOURCES``. ``trains_weights``: the source's weights live in
    ``TrainState.prm_params`` / ``prm_opt`` (updated, checkpointed); ``reads_reference``: it
    needs the reference's log-probs of every rollout."""

    trains_weights: ClassVar[bool]
    reads_reference: ClassVar[bool]

    @classmethod
    def from_settings(cls, settings: SourceSettings, state: TrainState) -> "ProcessRewardSource":
        """The source for ``settings.config``, ready for ``state``'s weights."""
        ...

    def advantages(self, state: TrainState, batch: MeshBatch) -> tuple[TrainState, SourceOutput]:
        ...


@functools.partial(jax.jit, static_argnames=("delimiter_ids", "mesh"))
def step_ends_on_mesh(batch: MeshBatch, delimiter_ids: tuple[int, ...], mesh) -> jax.Array:
    """Bool (B, L): the last token of each reasoning step of every response
    (``rewards.step_ends_from_tokens``), in the batch's row layout."""
    mask_bl = batch.response_mask_bl
    tokens_bl = batch.sequences.tokens_bs[:, -mask_bl.shape[1]:]
    return _row_layout(rewards.step_ends_from_tokens(tokens_bl, mask_bl, delimiter_ids), mesh, False)


def implicit_advantages(batch: MeshBatch, logp_prm_bl, config: PrimeConfig, delimiter_ids: tuple[int, ...],
                        mesh) -> advantages.PrimeAdvantages:
    """The fused kernel ``advantages.prime_advantages`` over the whole batch: implicit process
    rewards ``r = beta (log pi_phi - log pi_ref)`` (none when ``logp_prm_bl`` is None: the outcome
    only) -> RLOO returns -> whitened advantages."""
    with_prm = logp_prm_bl is not None
    ends = step_ends_on_mesh(batch, delimiter_ids, mesh) if with_prm and config.reward.granularity == "step" \
        else None
    logp_ref = batch.ref_logp_bl if with_prm else None
    return advantages.prime_advantages(logp_prm_bl, logp_ref, batch.response_mask_bl, batch.acc_b,
                                       num_samples=config.num_samples, reward=config.reward,
                                       advantage=config.advantage, step_ends=ends)


@dataclasses.dataclass(frozen=True)
class OutcomeOnly:
    """No process reward: RLOO (or GRPO) advantages of the outcome verifier's reward alone."""

    config: PrimeConfig
    mesh: object

    trains_weights: ClassVar[bool] = False
    reads_reference: ClassVar[bool] = False

    @classmethod
    def from_settings(cls, settings: SourceSettings, state: TrainState) -> "OutcomeOnly":
        return cls(settings.config, settings.mesh)

    def advantages(self, state: TrainState, batch: MeshBatch) -> tuple[TrainState, SourceOutput]:
        return state, SourceOutput(implicit_advantages(batch, None, self.config, (), self.mesh))


def source_name(config: PrimeConfig) -> str:
    """The ``SOURCES`` entry ``config`` asks for (see the module docstring)."""
    if config.explicit_prm is not None:
        return "step_verifier"
    if config.self_prm:
        return "self_prm"
    return "implicit_prm" if config.uses_prm else "outcome_only"

