"""Step-level beam search guided by a step verifier (Rewarding Progress, arXiv 2410.08146, sec. 5).

A state is a token prefix ``s_h = prompt + a_1 + ... + a_h`` (a step ``a`` is the tokens up to and
including a step delimiter or EOS). For P problems at once, with beam width B and C proposals:

    live beams  S_0 = {prompt} * B                      (the start state fills every beam)
    round r:    for every live beam s, propose C steps  a^(1..C) ~ pi(. | s)   (one batched
                ``rollout.sample`` over all P * B beams, num_samples = C, stop ids = delimiter + EOS)
                score every candidate  g(s + a) = step_scorer(...)  (higher is better): a
                ``StepVerifier``'s score of the new step (``search.scorers``) or any ``CandidateScorer``
                keep the top  B - |finished|  distinct candidates of each problem (ties: lower index)
                kept candidates that emitted EOS or reached ``max_response_tokens`` are finished
    stop        when B beams of a problem are finished, none is live, or after ``max_steps`` rounds
    answer      argmax over finished beams of ``final_scorer`` (e.g. ``scorers.final_scorer`` of a
                verifier: an ORM's last score, a Q^pi model at the end, an explicit PRM's product
                or an implicit PRM's min step); beams cut by ``max_steps`` count only if none finished.

Compute is counted as **sampled tokens**: the lengths of every proposal of a live beam (kept or
discarded), per problem, so a search compares with best-of-N (N full samples) at matched tokens.
Prompt prefill and scorer forwards are not counted. Shapes stay static across rounds: all P * B
beam rows are sampled every round (rows of beams that are not live are masked out of the
selection and of the token count), so the sampler and scorers compile once.

Prefixes are left-padded to a fixed width W = prompt width + ``max_response_tokens``: the newest
token is always the last column, which is where step scorers read a prefix's value. Arrays: p =
problem, b = beam, n = candidate row (p * B * C + b * C + c), w = prefix column, l = step column.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np

from prime_jax.config_checks import check_fields_at_least
from prime_jax.models.transformer import Transformer
from prime_jax.rollout import Rollouts, SamplingConfig, sample
from prime_jax.search.candidates import CandidateScorer, FinalScorer, StepCandidates
from prime_jax.search.scorers import verifier_step_scorer
from prime_jax.step_verifiers import StepVerifier


@dataclasses.dataclass(frozen=True, kw_only=True)
class BeamSearchConfig:
    """Beam width ``beam_width`` (B), ``proposals`` (C) next steps per live beam, at most
    ``max_steps`` rounds of at most ``max_step_tokens`` tokens each and ``max_response_tokens`` in
    all. ``step_stop_ids`` end a step (the step delimiter's single token id, e.g. the newline),
    ``eos_id`` ends a response; ``temperature`` / ``top_p`` are the proposal sampling settings.
    ``dedupe``: a candidate identical to a lower-index candidate of the same problem (same prefix
    tokens) cannot be selected, so beams stay distinct (a near-deterministic policy proposes the
    same step often; its tokens are still counted as sampled)."""

    beam_width: int
    proposals: int = 3
    max_steps: int = 8
    max_step_tokens: int = 16
    max_response_tokens: int = 64
    eos_id: int
    step_stop_ids: tuple[int, ...]
    pad_id: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    dedupe: bool = True

    def __post_init__(self):
        check_fields_at_least(self, dict.fromkeys(
            ("beam_width", "proposals", "max_steps", "max_step_tokens", "max_response_tokens"), 1))
        object.__setattr__(self, "step_stop_ids", tuple(int(i) for i in self.step_stop_ids))

    def sampling(self) -> SamplingConfig:
        """The proposal sampler: one step, stopping at a step delimiter or EOS."""
        return SamplingConfig(max_new_tokens=self.max_step_tokens, temperature=self.temperature, top_p=self.top_p,
                              eos_id=(self.eos_id, *self.step_stop_ids), pad_id=self.pad_id, decode_segments=1)


# propose(prefix_tokens_mw, prefix_mask_mw, key, num_samples) -> Rollouts with M * num_samples rows
Proposer = Callable[[np.ndarray, np.ndarray, jax.Array, int], Rollouts]


@dataclasses.dataclass(frozen=True)
class BeamSearchResult:
    """Per problem p: the chosen response ``response_pl`` / ``response_mask_pl`` (right-padded to
    ``max_response_tokens``), ``sampled_tokens_p`` (int64), ``rounds`` run; and every beam of the
    final pool, (P, B, ...): ``beams_pbl`` / ``beams_mask_pbl``, ``finished_pb`` (emitted EOS or used
    the length budget), ``valid_pb`` (slot holds a beam) and ``final_scores_pb``."""

    response_pl: np.ndarray
    response_mask_pl: np.ndarray
    sampled_tokens_p: np.ndarray
    rounds: int
    beams_pbl: np.ndarray
    beams_mask_pbl: np.ndarray
    finished_pb: np.ndarray
    valid_pb: np.ndarray
    final_scores_pb: np.ndarray
    chosen_p: np.ndarray


def policy_proposer(policy: Transformer, config: BeamSearchConfig) -> Proposer:
    """Proposals from ``policy`` through ``rollout.sample`` (rows ``m * C + c``)."""
    sampling = config.sampling()

    def propose(tokens_mw, mask_mw, key, num_samples):
        return sample(policy, tokens_mw, mask_mw, key=key, config=sampling, num_samples=num_samples)

    return propose


def append_steps(tokens_nw: np.ndarray, mask_nw: np.ndarray, step_nl: np.ndarray, step_mask_nl: np.ndarray,
                 pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded ``prefix + step`` in the same W columns: the valid tokens of both, in order,
    right-aligned (a stable sort of the joint mask moves padding to the front)."""
    width = tokens_nw.shape[1]
    joint_mask = np.concatenate([mask_nw, step_mask_nl], axis=1).astype(np.int32)
    if (joint_mask.sum(axis=1) > width).any():
        raise ValueError("append_steps: a prefix outgrew its width")
    joint = np.concatenate([tokens_nw, step_nl], axis=1)
    order = np.argsort(joint_mask, axis=1, kind="stable")[:, -width:]
    new_mask = np.take_along_axis(joint_mask, order, axis=1)
    return np.where(new_mask > 0, np.take_along_axis(joint, order, axis=1), pad_id).astype(np.int32), new_mask


def right_padded_responses(tokens_nw: np.ndarray, length_n: np.ndarray, max_len: int, pad_id: int):
    """The last ``length_n`` columns of each left-padded row, right-padded to ``max_len``."""
    width = tokens_nw.shape[1]
    cols_nl = width - length_n[:, None] + np.arange(max_len)[None, :]
    mask_nl = (np.arange(max_len)[None, :] < length_n[:, None]).astype(np.int32)
    return np.where(mask_nl > 0, np.take_along_axis(tokens_nw, np.clip(cols_nl, 0, width - 1), 1), pad_id), mask_nl


def top_slots(scores_pk: np.ndarray, allowed_pk: np.ndarray, slots_p: np.ndarray) -> np.ndarray:
    """Bool (P, K): each problem's ``slots_p`` best allowed candidates by score, ties to the lower
    index (a stable sort of ``-score``); NaN scores rank last among allowed ones."""
    key_pk = np.where(allowed_pk, np.nan_to_num(-scores_pk.astype(np.float64), nan=np.inf), np.inf)
    order_pk = np.argsort(key_pk, axis=1, kind="stable")
    rank_pk = np.empty_like(order_pk)
    np.put_along_axis(rank_pk, order_pk, np.arange(scores_pk.shape[1])[None, :].repeat(len(scores_pk), 0), 1)
    return allowed_pk & (rank_pk < slots_p[:, None])


def first_occurrences(tokens_pkw: np.ndarray, allowed_pk: np.ndarray) -> np.ndarray:
    """Bool (P, K): allowed rows that no lower-index allowed row of the same problem repeats."""
    first_pk = np.zeros(allowed_pk.shape, bool)
    for prob in range(tokens_pkw.shape[0]):
        rows = np.flatnonzero(allowed_pk[prob])
        if rows.size:
            _, index = np.unique(tokens_pkw[prob, rows], axis=0, return_index=True)
            first_pk[prob, rows[index]] = True
    return first_pk


def beam_search(policy: Transformer | None, prompt_ids_pt, prompt_mask_pt, *, key: jax.Array,
                step_scorer: StepVerifier | CandidateScorer, final_scorer: FinalScorer, config: BeamSearchConfig,
                proposer: Proposer | None = None) -> BeamSearchResult:
    """Step-level beam search for P left-padded prompts (P, T); algorithm in the module docstring.

    ``step_scorer``: a ``StepVerifier`` (each candidate's new step gets the verifier's score of it,
    ``scorers.verifier_step_scorer``) or any callable on ``StepCandidates``.
    ``proposer`` replaces sampling from ``policy`` (tests use hand-built proposers). Round r draws
    its proposals with ``fold_in(key, r)``.
    """
    propose = proposer or policy_proposer(policy, config)
    if isinstance(step_scorer, StepVerifier):
        step_scorer = verifier_step_scorer(step_scorer)
    b, c, pad = config.beam_width, config.proposals, config.pad_id
    prompt_ids_pt, prompt_mask_pt = np.asarray(prompt_ids_pt, np.int32), np.asarray(prompt_mask_pt, np.int32)
    p, t = prompt_ids_pt.shape
    width = t + config.max_response_tokens
    extra = np.zeros((p, config.max_response_tokens), np.int32)
    start_tw = np.concatenate([np.full_like(extra, pad), prompt_ids_pt], 1)
    start_mask_tw = np.concatenate([extra, prompt_mask_pt], 1)
    beams_mw, beams_mask_mw = np.repeat(start_tw, b, 0), np.repeat(start_mask_tw, b, 0)
    resp_len_m = np.zeros(p * b, np.int64)
    steps_m = np.zeros(p * b, np.int64)
    live_pb = np.ones((p, b), bool)
    pool_tokens = np.full((p, b, width), pad, np.int32)
    pool_mask = np.zeros((p, b, width), np.int32)
    pool_len, pool_finished = np.zeros((p, b), np.int64), np.zeros((p, b), bool)
    pool_count = np.zeros(p, np.int64)
    sampled_p = np.zeros(p, np.int64)
    rounds = 0
    for r in range(config.max_steps):
        if not live_pb.any():
            break
        rounds += 1
        out = propose(beams_mw, beams_mask_mw, jax.random.fold_in(key, r), c)
        step_nl, step_mask_nl = np.asarray(out.tokens, np.int32), np.asarray(out.mask, np.int32)
        parent_n = np.repeat(np.arange(p * b), c)
        live_n = np.repeat(live_pb.reshape(-1), c)
        sampled_p += (np.asarray(out.lengths, np.int64) * live_n).reshape(p, b * c).sum(1)
        room_n = config.max_response_tokens - resp_len_m[parent_n]
        step_mask_nl = step_mask_nl * (np.arange(step_nl.shape[1])[None, :] < room_n[:, None])
        step_len_n = step_mask_nl.sum(1)
        eos_n = ((step_nl == config.eos_id) & (step_mask_nl > 0)).any(1)
        tokens_nw, mask_nw = append_steps(beams_mw[parent_n], beams_mask_mw[parent_n], step_nl, step_mask_nl, pad)
        len_n = resp_len_m[parent_n] + step_len_n
        cols_w = np.arange(width)[None, :]
        candidates = StepCandidates(
            tokens_nw=tokens_nw, mask_nw=mask_nw,
            step_mask_nw=(cols_w >= width - step_len_n[:, None]).astype(np.int32),
            response_mask_nw=(cols_w >= width - len_n[:, None]).astype(np.int32),
            parent_n=parent_n, parent_tokens_mw=beams_mw, parent_mask_mw=beams_mask_mw,
            parent_response_mask_mw=(cols_w >= width - resp_len_m[:, None]).astype(np.int32),
            step_index_n=steps_m[parent_n], live_n=live_n.astype(np.int32))
        scores_n = np.asarray(step_scorer(candidates), np.float64).reshape(-1)
        allowed_pk = live_n.reshape(p, b * c)
        if config.dedupe:
            allowed_pk = first_occurrences(np.where(mask_nw > 0, tokens_nw, -1).reshape(p, b * c, width), allowed_pk)
        keep_pk = top_slots(scores_n.reshape(p, b * c), allowed_pk, b - pool_count)
        done_n = eos_n | (len_n >= config.max_response_tokens)
        keep_n = keep_pk.reshape(-1)
        new_live_pb = np.zeros((p, b), bool)
        new_beams, new_mask = np.full_like(beams_mw, pad), np.zeros_like(beams_mask_mw)
        new_len, new_steps = np.zeros_like(resp_len_m), np.zeros_like(steps_m)
        for prob in range(p):  # scatter kept candidates: finished to the pool, the rest to beam slots
            rows = np.flatnonzero(keep_n[prob * b * c:(prob + 1) * b * c]) + prob * b * c
            for slot, n in enumerate(rows[~done_n[rows]]):
                m = prob * b + slot
                new_beams[m], new_mask[m], new_len[m], new_steps[m] = tokens_nw[n], mask_nw[n], len_n[n], steps_m[parent_n[n]] + 1
                new_live_pb[prob, slot] = True
            for n in rows[done_n[rows]]:
                j = pool_count[prob]
                pool_tokens[prob, j], pool_mask[prob, j], pool_len[prob, j] = tokens_nw[n], mask_nw[n], len_n[n]
                pool_finished[prob, j], pool_count[prob] = True, j + 1
            # slots of dead beams keep a valid (left-padded, last column real) prefix for the sampler
            for slot in range(b):
                if not new_live_pb[prob, slot]:
                    new_beams[prob * b + slot], new_mask[prob * b + slot] = start_tw[prob], start_mask_tw[prob]
        beams_mw, beams_mask_mw, resp_len_m, steps_m, live_pb = new_beams, new_mask, new_len, new_steps, new_live_pb
    for prob, slot in zip(*np.nonzero(live_pb)):  # cut by max_steps: kept, but ranked after finished ones
        j, m = pool_count[prob], prob * b + slot
        pool_tokens[prob, j], pool_mask[prob, j], pool_len[prob, j] = beams_mw[m], beams_mask_mw[m], resp_len_m[m]
        pool_count[prob] = j + 1
    valid_pb = np.arange(b)[None, :] < pool_count[:, None]
    flat_len = pool_len.reshape(-1)
    resp_mask_nw = (np.arange(width)[None, :] >= width - flat_len[:, None]).astype(np.int32)
    final_n = np.asarray(final_scorer(pool_tokens.reshape(p * b, width), pool_mask.reshape(p * b, width),
                                      resp_mask_nw), np.float64).reshape(p, b)
    rank_pb = np.where(valid_pb, np.nan_to_num(final_n, nan=-np.inf) + np.where(pool_finished, 0.0, -np.inf), -np.inf)
    rank_pb = np.where(valid_pb & ~pool_finished.any(1, keepdims=True), np.nan_to_num(final_n, nan=-np.inf), rank_pb)
    chosen_p = np.argmax(rank_pb, axis=1)
    beams_nl, beams_mask_nl = right_padded_responses(pool_tokens.reshape(p * b, width), flat_len,
                                                     config.max_response_tokens, pad)
    beams_pbl = beams_nl.reshape(p, b, -1)
    beams_mask_pbl = beams_mask_nl.reshape(p, b, -1)
    pick = np.arange(p)
    return BeamSearchResult(response_pl=beams_pbl[pick, chosen_p], response_mask_pl=beams_mask_pbl[pick, chosen_p],
                            sampled_tokens_p=sampled_p, rounds=rounds, beams_pbl=beams_pbl,
                            beams_mask_pbl=beams_mask_pbl, finished_pb=pool_finished, valid_pb=valid_pb,
                            final_scores_pb=np.where(valid_pb, final_n, np.nan), chosen_p=chosen_p)
