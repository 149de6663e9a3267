"""The update half of a PRIME step: PRM update, process rewards, advantages, PPO.

Takes a full batch of kept groups (``ScoredRollouts``, host arrays) and the train state; returns
the new state and the step's metrics. Arrays cross to the mesh through ``sharding.place`` with
the batch spread over the data axes, micro-batches as a leading axis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from prime_jax import advantages, rewards, sharding
from prime_jax.experience.batch import ScoredRollouts
from prime_jax.pav.rl_rewards import pav_step_rewards
from prime_jax.reward_models.updates import LabelledMiniBatch, PrmLossConfig, make_prm_update
from prime_jax.rl.config import PrimeConfig
from prime_jax.rl.policy_update import PolicyLossConfig, PolicyMiniBatch, make_policy_update
from prime_jax.training.forward import SequenceBatch, make_logprob_fn
from prime_jax.training.state import TrainState
from prime_jax.training.updates import shardings_of


@dataclasses.dataclass(frozen=True)
class Updaters:
    """Jitted functions of one run (built once; shapes are static across steps)."""

    policy_update: object
    prm_update: object | None
    prm_logprobs: object | None


def make_updaters(policy_graphdef, prm_graphdef, policy_tx, prm_tx, config: PrimeConfig,
                  policy_loss: PolicyLossConfig, prm_loss: PrmLossConfig,
                  state: TrainState | None = None) -> Updaters:
    """The run's jitted steps; given ``state``, each returns weights and optimiser state in the
    shardings they have in it."""
    def shardings(params, opt):
        return (shardings_of(params), shardings_of(opt)) if state else None

    policy_update = make_policy_update(
        policy_graphdef, policy_tx, policy_loss, state and shardings(state.policy_params, state.policy_opt))
    if not config.uses_prm:
        return Updaters(policy_update, None, None)
    return Updaters(
        policy_update=policy_update,
        prm_update=make_prm_update(prm_graphdef, prm_tx, prm_loss, config.reward, config.num_samples,
                                   state and shardings(state.prm_params, state.prm_opt)),
        prm_logprobs=make_logprob_fn(prm_graphdef, config.logprob_rows_per_pass))


def _mean_metrics(parts: list[dict]) -> dict[str, float]:
    return {k: float(np.mean([float(p[k]) for p in parts])) for k in parts[0]} if parts else {}


@jax.jit
def _same_weights(params, reference_params) -> jax.Array:
    """True iff every weight of ``params`` equals the reference's bit for bit."""
    return jnp.all(jnp.stack([jnp.all(a == b) for a, b in zip(jax.tree.leaves(params),
                                                              jax.tree.leaves(reference_params))]))


def prm_phase(state: TrainState, batch: ScoredRollouts, updaters: Updaters, config: PrimeConfig,
              mesh, reference_params=None) -> tuple[TrainState, np.ndarray | None, dict]:
    """Update the implicit PRM on the batch (mini-batches in :func:`prm_row_order`) and return
    its token log-probs for the rewards (in batch row order), per ``config.prm_mode`` (SPEC 1.5):

    * ``after``: each mini-batch's log-probs come from the forward that computes its gradient,
      before that mini-batch's update;
    * ``before``: all updates first, then one forward with the updated PRM;
    * ``none``: the frozen PRM's forward.

    Given ``reference_params``, a PRM whose weights equal the reference's (step 1's first
    mini-batch; a PRM at learning rate 0) returns the reference's log-probs ``batch.ref_logp_bl``:
    its log-ratio is exactly 0. Its own forward is another compiled program (a gradient pass)
    and differs from the reference pass by float rounding (~1e-6), which ``batch_norm``
    (``r / (max |suffix sum| + 1e-6)``) would blow up into full-size process rewards.
    """
    if not config.uses_prm:
        return state, None, {}

    def same(params) -> bool:
        return reference_params is not None and bool(_same_weights(params, reference_params))

    if config.prm_mode == "none":
        if same(state.prm_params):
            return state, batch.ref_logp_bl, {}
        logp = updaters.prm_logprobs(state.prm_params, sharding.place(batch.sequences(), mesh))
        return state, sharding.fetch(logp, mesh), {}
    params, opt, parts, logps = state.prm_params, state.prm_opt, [], []
    size = sharding.local_rows(config.prm_mini_batch)
    chunks = max(1, sharding.local_rows(config.reward.num_chunks))  # this process's whole chunks
    order = prm_row_order(batch.num_rows, size, chunks)
    reference_weights = config.prm_mode == "after" and same(params)
    for start in range(0, batch.num_rows, size):
        rows = batch.rows(order[start:start + size])
        if start:  # once an update has moved the weights off the reference, stop comparing
            reference_weights = reference_weights and same(params)
        mb = sharding.place(LabelledMiniBatch.of(rows), mesh, micro=config.prm_micro_batches)
        params, opt, metrics, logp = updaters.prm_update(params, opt, mb)
        parts.append(metrics)
        logps.append(rows.ref_logp_bl if reference_weights else sharding.fetch(logp, mesh))
    state = dataclasses.replace(state, prm_params=params, prm_opt=opt)
    if config.prm_mode == "before":
        logp_prm = batch.ref_logp_bl if same(params) else sharding.fetch(
            updaters.prm_logprobs(params, sharding.place(batch.sequences(), mesh)), mesh)
    else:
        logp_prm = np.empty((batch.num_rows,) + logps[0].shape[1:], logps[0].dtype)
        logp_prm[order] = np.concatenate(logps)
    return state, logp_prm, _mean_metrics(parts)


def q_length_correlation(batch: ScoredRollouts, logp_prm: np.ndarray) -> float:
    """Pearson correlation over the batch's non-empty rows of the implicit outcome score
    ``sum_t q_t`` (``q_t = log pi_phi - log pi_ref`` on response tokens) with the response length:
    a PRM that scores length rather than correctness drifts away from 0. NaN if either is constant."""
    mask_bl = batch.response_mask_bl.astype(np.float64)
    rows_b = mask_bl.sum(axis=1) > 0
    q_sum_b = ((np.asarray(logp_prm, np.float64) - batch.ref_logp_bl) * mask_bl).sum(axis=1)[rows_b]
    length_b = mask_bl.sum(axis=1)[rows_b]
    if rows_b.sum() < 2 or q_sum_b.std() == 0 or length_b.std() == 0:
        return float("nan")
    return float(np.corrcoef(q_sum_b, length_b)[0, 1])


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


def step_ends(batch: ScoredRollouts, delimiter_ids: tuple[int, ...]) -> np.ndarray:
    """Bool (B, L): the last token of each reasoning step of every response."""
    width = batch.response_mask_bl.shape[1]
    return np.asarray(rewards.step_ends_from_tokens(
        jnp.asarray(batch.tokens_bs[:, -width:]), jnp.asarray(batch.response_mask_bl), delimiter_ids))


def advantage_phase(batch: ScoredRollouts, logp_prm, config: PrimeConfig, delimiter_ids: tuple[int, ...],
                    mesh) -> advantages.PrimeAdvantages:
    """The fused kernel over the whole (global) batch: log-probs -> process rewards -> returns ->
    whitened advantages; returns this process's rows."""
    uses_step_ends = config.reward.granularity == "step" and config.uses_prm
    ends = step_ends(batch, delimiter_ids) if uses_step_ends else None
    logps = (logp_prm, batch.ref_logp_bl) if config.uses_prm else (None, None)
    logp_prm, logp_ref, mask, acc, ends = sharding.place((*logps, batch.response_mask_bl, batch.acc_b, ends), mesh)
    out = advantages.prime_advantages(logp_prm, logp_ref, mask, acc, num_samples=config.num_samples,
                                      reward=config.reward, advantage=config.advantage, step_ends=ends)
    return advantages.PrimeAdvantages(*sharding.fetch(tuple(out), mesh))


def make_explicit_reward_fn(graphdef) -> Callable:
    """Jitted ``(params, SequenceBatch, step_ends_bl) -> r_bl``: a frozen explicit PRM's step
    probability ``r[b, t] = sigmoid(z[b, t])`` at every step end t of the response, 0 elsewhere
    (Math-Shepherd's step-by-step reward)."""
    def rewards(params, batch: SequenceBatch, step_ends_bl):
        z_bs = nnx.merge(graphdef, params)(batch.tokens_bs, batch.attention_mask_bs)
        z_bl = z_bs[:, -batch.response_mask_bl.shape[1]:]
        ends_bl = step_ends_bl & batch.response_mask_bl.astype(bool)
        return jnp.where(ends_bl, jax.nn.sigmoid(z_bl.astype(jnp.float32)), 0.0)

    return jax.jit(rewards)


_pav_step_rewards = jax.jit(pav_step_rewards, static_argnames=("num_samples", "config"))


def explicit_advantage_phase(batch: ScoredRollouts, reward_fn: Callable, params, config: PrimeConfig,
                             delimiter_ids: tuple[int, ...], mesh,
                             prover: tuple[Callable, object] | None = None) -> advantages.PrimeAdvantages:
    """Step-by-step PPO's advantages: the explicit PRM's step scores (``make_explicit_reward_fn``)
    as ``config.step_reward`` makes them step rewards (Q^pi, or PAV-RL's ``Q^pi + alpha A^mu``;
    ``prover`` = (scorer, weights) of a separate prover policy's explicit PRM, read as its Q),
    plus the outcome, through the same baselines, discounts and whitening as PRIME's."""
    ends, mask, acc = sharding.place((step_ends(batch, delimiter_ids), batch.response_mask_bl, batch.acc_b), mesh)
    sequences = sharding.place(batch.sequences(), mesh)
    q_pi_bl = reward_fn(params, sequences, ends)
    q_prover_bl = None if prover is None else prover[0](prover[1], sequences, ends)
    rewards_bl = _pav_step_rewards(q_pi_bl, ends, num_samples=config.num_samples, config=config.step_reward,
                                   q_prover_bl=q_prover_bl)
    out = advantages.advantages_from_rewards(rewards_bl, mask, acc, num_samples=config.num_samples,
                                             advantage=config.advantage, positions=ends)
    return advantages.PrimeAdvantages(*sharding.fetch(tuple(out), mesh))


def policy_phase(state: TrainState, batch: ScoredRollouts, adv_bl: np.ndarray, updaters: Updaters,
                 config: PrimeConfig, mesh, rng: np.random.Generator) -> tuple[TrainState, dict]:
    """One epoch of PPO over shuffled mini-batches of ``policy_mini_batch`` responses."""
    order = rng.permutation(batch.num_rows)
    params, opt, parts = state.policy_params, state.policy_opt, []
    size = sharding.local_rows(config.policy_mini_batch)
    for start in range(0, batch.num_rows, size):
        index = order[start:start + size]
        rows = batch.rows(index)
        mb = PolicyMiniBatch(sequences=rows.sequences(), old_logp_bl=rows.old_logp_bl,
                             advantages_bl=adv_bl[index], ref_logp_bl=rows.ref_logp_bl)
        params, opt, metrics = updaters.policy_update(params, opt,
                                                      sharding.place(mb, mesh, micro=config.policy_micro_batches))
        parts.append(metrics)
    return dataclasses.replace(state, policy_params=params, policy_opt=opt), _mean_metrics(parts)
