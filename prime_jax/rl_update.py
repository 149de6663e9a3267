"""The update half of a PRIME step: PRM update, process rewards, advantages, PPO.

Takes a full batch of kept groups (``ScoredRollouts``, host arrays) and the
train state; returns the new state and the step's metrics. Arrays are put
on the mesh with the batch spread over the data axes, micro-batches as a
leading axis.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from prime_jax import advantages, rewards, sharding, train_step
from prime_jax.prime_config import PrimeConfig
from prime_jax.rl_batch import ScoredRollouts
from prime_jax.train_state import TrainState


@dataclasses.dataclass(frozen=True)
class Updaters:
    """Jitted functions of one run (built once; shapes are static across steps)."""

    policy_update: object
    prm_update: object | None
    prm_logprobs: object | None


def make_updaters(policy_graphdef, prm_graphdef, policy_tx, prm_tx, config: PrimeConfig,
                  policy_loss: train_step.PolicyLossConfig, prm_loss: train_step.PrmLossConfig,
                  state: TrainState | None = None) -> Updaters:
    """The run's jitted steps; given ``state``, each returns weights and optimiser state in the
    shardings they have in it."""
    def shardings(params, opt):
        return (train_step.shardings_of(params), train_step.shardings_of(opt)) if state else None

    policy_update = train_step.make_policy_update(
        policy_graphdef, policy_tx, policy_loss, state and shardings(state.policy_params, state.policy_opt))
    if not config.uses_prm:
        return Updaters(policy_update, None, None)
    return Updaters(
        policy_update=policy_update,
        prm_update=train_step.make_prm_update(prm_graphdef, prm_tx, prm_loss, config.num_samples,
                                              state and shardings(state.prm_params, state.prm_opt)),
        prm_logprobs=train_step.make_logprob_fn(prm_graphdef, config.logprob_rows_per_pass))


def place(tree, mesh, *, micro: int | None = None):
    """This process's host rows -> global arrays, rows over (data, fsdp); with ``micro``, rows
    are first split into a leading (micro-batch) axis."""
    def put(x):
        x = np.asarray(x)
        if micro is None:
            return sharding.host_to_global(x, mesh, ("batch",) + (None,) * (x.ndim - 1))
        x = x.reshape((micro, x.shape[0] // micro) + x.shape[1:])
        return sharding.host_to_global(x, mesh, (None, "batch") + (None,) * (x.ndim - 2))
    return jax.tree.map(put, tree)


def fetch(tree, mesh):
    """Global row arrays -> this process's rows on the host (inverse of ``place``)."""
    return jax.tree.map(lambda x: sharding.global_to_host(x, mesh, ("batch",) + (None,) * (x.ndim - 1)), tree)


def local_rows(global_rows: int) -> int:
    """This process's share of a global count of rows."""
    return global_rows // jax.process_count()


def sequence_batch(rows: ScoredRollouts) -> train_step.SequenceBatch:
    return train_step.SequenceBatch(tokens_bs=rows.tokens_bs, attention_mask_bs=rows.attention_mask_bs,
                                    response_mask_bl=rows.response_mask_bl)


def _mean_metrics(parts: list[dict]) -> dict[str, float]:
    return {k: float(np.mean([float(p[k]) for p in parts])) for k in parts[0]} if parts else {}


def prm_phase(state: TrainState, batch: ScoredRollouts, updaters: Updaters, config: PrimeConfig,
              mesh) -> tuple[TrainState, np.ndarray | None, dict]:
    """Update the implicit PRM on the batch (mini-batches in order) and return its token
    log-probs for the rewards, per ``config.prm_mode`` (SPEC 1.5):

    * ``after``: each mini-batch's log-probs come from the forward that computes its gradient,
      before that mini-batch's update;
    * ``before``: all updates first, then one forward with the updated PRM;
    * ``none``: the frozen PRM's forward.
    """
    if not config.uses_prm:
        return state, None, {}
    if config.prm_mode == "none":
        logp = updaters.prm_logprobs(state.prm_params, place(sequence_batch(batch), mesh))
        return state, fetch(logp, mesh), {}
    params, opt, parts, logps = state.prm_params, state.prm_opt, [], []
    size = local_rows(config.prm_mini_batch)
    for start in range(0, batch.num_rows, size):
        rows = batch.rows(np.arange(start, start + size))
        mb = place((sequence_batch(rows), rows.ref_logp_bl, rows.acc_b), mesh, micro=config.prm_micro_batches)
        params, opt, metrics, logp = updaters.prm_update(params, opt, mb)
        parts.append(metrics)
        logps.append(fetch(logp, mesh))
    state = dataclasses.replace(state, prm_params=params, prm_opt=opt)
    if config.prm_mode == "before":
        logp_prm = fetch(updaters.prm_logprobs(params, place(sequence_batch(batch), mesh)), mesh)
    else:
        logp_prm = np.concatenate(logps)
    return state, logp_prm, _mean_metrics(parts)


def step_ends(batch: ScoredRollouts, delimiter_ids: tuple[int, ...]) -> np.ndarray | None:
    width = batch.response_mask_bl.shape[1]
    return np.asarray(rewards.step_ends_from_tokens(
        jnp.asarray(batch.tokens_bs[:, -width:]), jnp.asarray(batch.response_mask_bl), delimiter_ids))


def advantage_phase(batch: ScoredRollouts, logp_prm, config: PrimeConfig, delimiter_ids: tuple[int, ...],
                    mesh) -> advantages.PrimeAdvantages:
    """The fused kernel over the whole (global) batch: log-probs -> process rewards -> RLOO
    returns -> whitened advantages; returns this process's rows."""
    ends = step_ends(batch, delimiter_ids) if config.granularity == "step" and config.uses_prm else None
    logps = (logp_prm, batch.ref_logp_bl) if config.uses_prm else (None, None)
    logp_prm, logp_ref, mask, acc, ends = place((*logps, batch.response_mask_bl, batch.acc_b, ends), mesh)
    out = advantages.prime_advantages(
        logp_prm, logp_ref, mask, acc, num_samples=config.num_samples,
        granularity=config.granularity, norm=config.norm, num_chunks=config.num_chunks,
        beta=config.beta, process_coef=config.process_coef, outcome_coef=config.outcome_coef,
        process_gamma=config.process_gamma, outcome_gamma=config.outcome_gamma,
        estimator=config.estimator, process_baseline=config.process_baseline, step_ends=ends)
    return advantages.PrimeAdvantages(*fetch(tuple(out), mesh))


def policy_phase(state: TrainState, batch: ScoredRollouts, adv_bl: np.ndarray, updaters: Updaters,
                 config: PrimeConfig, mesh, rng: np.random.Generator) -> tuple[TrainState, dict]:
    """One epoch of PPO over shuffled mini-batches of ``policy_mini_batch`` responses."""
    order = rng.permutation(batch.num_rows)
    params, opt, parts = state.policy_params, state.policy_opt, []
    size = local_rows(config.policy_mini_batch)
    for start in range(0, batch.num_rows, size):
        index = order[start:start + size]
        rows = batch.rows(index)
        mb = place((sequence_batch(rows), rows.old_logp_bl, adv_bl[index], rows.ref_logp_bl), mesh,
                   micro=config.policy_micro_batches)
        params, opt, metrics = updaters.policy_update(params, opt, mb)
        parts.append(metrics)
    return dataclasses.replace(state, policy_params=params, policy_opt=opt), _mean_metrics(parts)
