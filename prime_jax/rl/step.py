"""One RL step after collection: process rewards -> advantages -> PPO, on the mesh.

    batch (host)  --place once-->  MeshBatch
                  source.advantages(state, batch)     PRM update / step verifier / outcome only
                  policy_phase(state, batch, adv)     one epoch of shuffled PPO mini-batches
    metrics       <--fetch once--   every update's metrics (+ the diagnostics' arrays)

Host <-> mesh traffic of a step: the batch and the PPO mini-batches' row index go to the mesh,
the metrics (and the two arrays the host-side diagnostics read) come back; the PRM's log-probs
and the advantages stay on the mesh between the phases. ``SOURCES`` is the table of
process-reward sources (``reward_source``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from prime_jax import sharding
from prime_jax.experience.batch import ScoredRollouts
from prime_jax.rl.config import PrimeConfig
from prime_jax.rl.frozen_verifier import FrozenStepVerifier
from prime_jax.rl.mesh_batch import MeshBatch, mesh_row_index, place_index, take_rows
from prime_jax.rl.online_prm import OnlineImplicitPrm, q_length_correlation
from prime_jax.rl.policy_update import PolicyMiniBatch
from prime_jax.rl.reward_source import OutcomeOnly, ProcessRewardSource, SourceSettings, source_name
from prime_jax.rl.self_prm import SelfImplicitPrm
from prime_jax.training.state import TrainState

SOURCES: dict[str, type] = {
    "implicit_prm": OnlineImplicitPrm,
    "self_prm": SelfImplicitPrm,
    "step_verifier": FrozenStepVerifier,
    "outcome_only": OutcomeOnly,
}


def source_class(config: PrimeConfig) -> type:
    """The ``SOURCES`` row ``config`` selects (``reward_source.source_name``)."""
    return SOURCES[source_name(config)]


def build_source(settings: SourceSettings, state: TrainState) -> ProcessRewardSource:
    """The process-reward source of ``settings.config``, ready for ``state``'s weights."""
    return source_class(settings.config).from_settings(settings, state)


def fetch_metric_means(*phases) -> list[dict[str, float]]:
    """Per phase (a sequence of per-update dicts of scalars on the mesh), each metric's mean over
    the phase's updates, on the host: every scalar of every phase crosses in one array."""
    names = [[(i, k) for i, part in enumerate(parts) for k in part] for parts in phases]
    scalars = [jnp.asarray(parts[i][k], jnp.float32) for parts, keys in zip(phases, names) for i, k in keys]
    values = iter(np.asarray(jax.device_get(jnp.stack(scalars))).tolist() if scalars else ())
    means = []
    for keys in names:
        host = {}
        for _, k in keys:
            host.setdefault(k, []).append(next(values))
        means.append({k: float(np.mean(v)) for k, v in host.items()})
    return means


def policy_phase(state: TrainState, batch: MeshBatch, adv_bl: jax.Array, policy_update: Callable,
                 config: PrimeConfig, mesh, order: np.ndarray) -> tuple[TrainState, list[dict]]:
    """One epoch of PPO over the mini-batches of ``policy_mini_batch`` responses in ``order``
    (this process's rows, shuffled); returns each update's metrics (on the mesh)."""
    size = sharding.local_rows(config.policy_mini_batch)
    local = len(order)
    index = np.stack([mesh_row_index(order[s:s + size], local, config.policy_micro_batches)
                      for s in range(0, local, size)])
    index_on_mesh = place_index(index, mesh)
    params, opt, parts = state.policy_params, state.policy_opt, []
    rows = PolicyMiniBatch(sequences=batch.sequences, old_logp_bl=batch.old_logp_bl, advantages_bl=adv_bl,
                           ref_logp_bl=batch.ref_logp_bl)
    for k in range(index.shape[0]):
        params, opt, metrics = policy_update(params, opt, take_rows(rows, index_on_mesh, mesh, part=k))
        parts.append(metrics)
    return dataclasses.replace(state, policy_params=params, policy_opt=opt), parts


def rl_step(state: TrainState, batch: ScoredRollouts, *, source: ProcessRewardSource, policy_update: Callable,
            config: PrimeConfig, mesh, rng: np.random.Generator) -> tuple[TrainState, dict]:
    """The update half of an RL step on this process's ``batch``; returns the new state and the
    step's metrics (PRM / policy means over their updates, ``process_reward_mean``,
    ``prm_q_length_corr`` with an implicit PRM, and the phases' wall times)."""
    t0 = time.time()
    on_mesh = MeshBatch.place(batch, mesh)
    state, out = source.advantages(state, on_mesh)
    jax.block_until_ready(out.advantages.advantages)
    seconds_prm = time.time() - t0
    t0 = time.time()
    state, policy_parts = policy_phase(state, on_mesh, out.advantages.advantages, policy_update, config, mesh,
                                       rng.permutation(batch.num_rows))
    jax.block_until_ready(state.policy_params)
    seconds_policy = time.time() - t0
    prm_means, policy_means = fetch_metric_means(out.metric_parts, policy_parts)
    logp_prm_bl, process_rewards_bl = sharding.fetch((out.logp_prm_bl, out.advantages.process_rewards), mesh)
    metrics = {"seconds_prm": seconds_prm}
    if logp_prm_bl is not None:
        metrics["prm_q_length_corr"] = q_length_correlation(batch.response_mask_bl, batch.ref_logp_bl, logp_prm_bl)
    tokens = max(int(batch.response_mask_bl.sum()), 1)
    metrics.update(seconds_policy=seconds_policy, **prm_means, **policy_means,
                   process_reward_mean=float(np.sum(process_rewards_bl) / tokens))
    return state, metrics
