"""Collection of one RL step's batch: rollout -> verify -> accuracy filter (SPEC 1.1-1.3).

Rounds of prompts (surplus prompts of the last step first) are sampled from the policy through
``generate``; their outcome verification runs in the verifier pool while the accelerator computes
the policy's ``old_logp`` and the reference's log-probs of the same rows (``logprob_fn``); groups
whose mean accuracy is inside the band are kept until the batch is full. A batch still short after
``max_rollout_rounds`` is, by default, trained on its kept groups only (``short_batch``).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from prime_jax import sharding
from prime_jax.config_checks import (check_at_least, check_choice, check_fields_at_least, check_in_range,
                                     check_positive)
from prime_jax.experience.accuracy_filter import accuracy_filter
from prime_jax.experience.batch import GroupBuffer, ScoredRollouts, join_sequences, score_rows
from prime_jax.experience.generate import generate
from prime_jax.rollout import SamplingConfig
from prime_jax.training.state import Role

SHORT_BATCH = ("mask", "fill_from_dropped")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CollectConfig:
    """One step's batch = ``batch_prompts`` kept prompts x ``num_samples`` responses.

    Rollout rounds of ``rollout_prompts`` prompts (default: ``batch_prompts`` times
    ``oversample``) repeat, at most ``max_rollout_rounds`` times, until the accuracy filter
    ``acc_low <= mean acc <= acc_high`` (when ``filter_accuracy``) has kept enough groups;
    ``drop_truncated`` also drops groups with a truncated response.

    ``short_batch`` says what a batch still short after the last round holds in its missing
    groups: ``mask`` (the reference's semantics: no out-of-band group is ever trained on; the
    missing groups are empty placeholder rows that every loss, baseline and whitening statistic
    skips) or ``fill_from_dropped`` (dropped groups, those closest to mean accuracy 0.5 first,
    trained on like kept ones). Either way the step logs ``short_batch_groups``.
    """

    num_samples: int = 4
    batch_prompts: int = 256
    oversample: float = 1.0
    rollout_prompts: int | None = None
    max_rollout_rounds: int = 4
    filter_accuracy: bool = True
    acc_low: float = 0.2
    acc_high: float = 0.8
    drop_truncated: bool = False
    short_batch: str = "mask"

    def __post_init__(self):
        check_choice("CollectConfig", "short_batch", self.short_batch, SHORT_BATCH)
        check_fields_at_least(self, {"num_samples": 1, "batch_prompts": 1, "max_rollout_rounds": 1})
        check_positive("CollectConfig", "oversample", self.oversample)
        check_in_range("CollectConfig", "acc_low", self.acc_low, 0.0, 1.0)
        check_in_range("CollectConfig", "acc_high", self.acc_high, self.acc_low, 1.0)
        if self.rollout_prompts is not None:
            check_at_least("CollectConfig", "rollout_prompts", self.rollout_prompts, 1)

    @property
    def prompts_per_round(self) -> int:
        return self.rollout_prompts or max(1, round(self.batch_prompts * self.oversample))


def collect(*, policy: Role, policy_params, reference_params, logprob_fn, pipeline, surplus: list[int],
            pool, tokenizer, sampling: SamplingConfig, config: CollectConfig, mesh,
            key: jax.Array) -> tuple[ScoredRollouts, list[int], dict]:
    """This process's share of one step's batch of ``config.batch_prompts`` groups, its new
    surplus prompts, and the step's metrics (over all processes)."""
    buffer = GroupBuffer(sharding.local_rows(config.batch_prompts), config.num_samples)
    module = policy.module(policy_params)
    per_round = sharding.local_rows(config.prompts_per_round)
    seconds = {"rollout": 0.0, "verify_wait": 0.0, "logprobs": 0.0}
    accs, lengths, truncated, kept, generated, rounds = [], [], [], 0, 0, 0
    # Every process runs the same number of rounds (the sampler is one global computation).
    while not sharding.all_processes(np.array([buffer.full])).all() and rounds < config.max_rollout_rounds:
        take, surplus = surplus[:per_round], surplus[per_round:]
        indices = take + pipeline.next_indices(per_round - len(take))
        prompts = pipeline.batch_for(indices)
        t0 = time.time()
        out = generate(module, prompts.prompt_ids, prompts.prompt_mask, ground_truth=prompts.ground_truth,
                       ability=prompts.ability, key=jax.random.fold_in(key, rounds), sampling=sampling,
                       tokenizer=tokenizer, pool=pool, mesh=mesh)
        seconds["rollout"] += time.time() - t0
        t0 = time.time()  # the accelerator works while the pool verifies
        sequences = sharding.place(join_sequences(prompts, out.tokens_bl, out.mask_bl), mesh)
        old_logp = sharding.fetch(logprob_fn(policy_params, sequences), mesh)
        ref_logp = sharding.fetch(logprob_fn(reference_params, sequences), mesh) if reference_params is not None \
            else np.zeros_like(old_logp)
        seconds["logprobs"] += time.time() - t0
        t0 = time.time()
        acc = np.asarray(out.scores.result(), np.float32)
        seconds["verify_wait"] += time.time() - t0
        scored = score_rows(prompts, out.tokens_bl, out.mask_bl, out.truncated_b, old_logp, ref_logp,
                            out.texts, acc)
        if config.filter_accuracy:
            result = accuracy_filter(acc, num_samples=config.num_samples, low=config.acc_low,
                                     high=config.acc_high, truncated=scored.truncated_b,
                                     drop_truncated=config.drop_truncated)
            keep_g = np.asarray(result.keep_g)
        else:
            keep_g = np.ones(len(indices), bool)
        buffer.add(scored, keep_g)
        accs.append(acc)
        lengths.append(out.mask_bl.sum(axis=1))
        truncated.append(scored.truncated_b)
        kept += int(keep_g.sum())
        generated += int(out.mask_bl.sum())
        rounds += 1
    short = buffer.capacity - len(buffer.groups) if not buffer.full else 0
    if short and config.short_batch == "fill_from_dropped":
        buffer.fill_from_dropped()
    elif short:
        buffer.pad_with_placeholders()
    sampled = rounds * per_round
    local = {
        "accuracy": float(np.mean(np.concatenate(accs))),
        "kept_fraction": kept / max(sampled, 1),
        "rollout_rounds": rounds, "short_batch_groups": short,
        "response_length": float(np.mean(np.concatenate(lengths))),
        "truncated_fraction": float(np.mean(np.concatenate(truncated))),
        "rollout_tokens_per_s": generated / max(seconds["rollout"], 1e-9),
        **{f"seconds_{k}": v for k, v in seconds.items()},
    }
    # Equal shares per process: the global value is the mean (counts: the sum) over processes.
    gathered = sharding.all_processes(np.array(list(local.values()), np.float64))
    summed = ("short_batch_groups", "rollout_tokens_per_s")
    metrics = {k: float(gathered[:, i].sum() if k in summed else gathered[:, i].mean())
               for i, k in enumerate(local)}
    return buffer.batch(), surplus + buffer.surplus, metrics
