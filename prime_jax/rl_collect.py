"""The collection half of a PRIME step: rollout -> verify -> accuracy filter (SPEC 1.1-1.3).

Rounds of prompts (surplus prompts of the last step first) are sampled from
the policy; their outcome verification runs in the verifier pool while the
accelerator computes the policy's ``old_logp`` and the reference's log-probs
of the same rows (``logprob_fn``, in passes of at most
``config.logprob_rows_per_pass`` rows); groups whose mean accuracy is inside
the band are kept until the batch is full.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from prime_jax import rewards, rollout, sharding
from prime_jax.prime_config import PrimeConfig
from prime_jax.rl_batch import GroupBuffer, ScoredRollouts, decode_responses, score_rows
from prime_jax.rl_update import fetch, local_rows, place, sequence_batch
from prime_jax.train_state import Role


def collect(*, policy: Role, policy_params, reference_params, logprob_fn, pipeline, surplus: list[int],
            pool, tokenizer, sampling: rollout.SamplingConfig, config: PrimeConfig, mesh,
            key: jax.Array) -> tuple[ScoredRollouts, list[int], dict]:
    """This process's share of one step's batch of ``config.batch_prompts`` groups, its new
    surplus prompts, and the step's metrics (over all processes)."""
    buffer = GroupBuffer(local_rows(config.batch_prompts), config.num_samples)
    module = policy.module(policy_params)
    per_round = local_rows(config.prompts_per_round)
    seconds = {"rollout": 0.0, "verify_wait": 0.0, "logprobs": 0.0}
    accs, lengths, truncated, kept, generated, rounds = [], [], [], 0, 0, 0
    # Every process runs the same number of rounds (the sampler is one global computation).
    while not sharding.all_processes(np.array([buffer.full])).all() and rounds < config.max_rollout_rounds:
        take, surplus = surplus[:per_round], surplus[per_round:]
        indices = take + pipeline.next_indices(per_round - len(take))
        prompts = pipeline.batch_for(indices)
        t0 = time.time()
        ids, prompt_mask = place((prompts.prompt_ids, prompts.prompt_mask), mesh)
        out = rollout.sample(module, ids, prompt_mask, key=jax.random.fold_in(key, rounds), config=sampling)
        tokens, mask, truncated_b = fetch((out.tokens, out.mask, out.truncated), mesh)
        seconds["rollout"] += time.time() - t0
        texts = decode_responses(tokenizer, tokens, mask)
        future = pool.submit(list(zip(texts, prompts.ground_truth, prompts.ability)))
        t0 = time.time()  # the accelerator works while the pool verifies
        seq = place(sequence_batch(_rows_only(prompts, tokens, mask)), mesh)
        old_logp = fetch(logprob_fn(policy_params, seq), mesh)
        ref_logp = fetch(logprob_fn(reference_params, seq), mesh) if reference_params is not None \
            else np.zeros_like(old_logp)
        seconds["logprobs"] += time.time() - t0
        t0 = time.time()
        acc = np.asarray(future.result(), np.float32)
        seconds["verify_wait"] += time.time() - t0
        scored = score_rows(prompts, tokens, mask, truncated_b, old_logp, ref_logp, texts, acc)
        if config.filter_accuracy:
            result = rewards.accuracy_filter(acc, num_samples=config.num_samples, low=config.acc_low,
                                             high=config.acc_high, truncated=scored.truncated_b,
                                             drop_truncated=config.drop_truncated)
            keep_g = np.asarray(result.keep_g)
        else:
            keep_g = np.ones(len(indices), bool)
        buffer.add(scored, keep_g)
        accs.append(acc)
        lengths.append(mask.sum(axis=1))
        truncated.append(scored.truncated_b)
        kept += int(keep_g.sum())
        generated += int(mask.sum())
        rounds += 1
    fallback = buffer.fill_from_dropped() if not buffer.full else 0
    sampled = rounds * per_round
    local = {
        "accuracy": float(np.mean(np.concatenate(accs))),
        "kept_fraction": kept / max(sampled, 1),
        "rollout_rounds": rounds, "filter_fallback_groups": fallback,
        "response_length": float(np.mean(np.concatenate(lengths))),
        "truncated_fraction": float(np.mean(np.concatenate(truncated))),
        "rollout_tokens_per_s": generated / max(seconds["rollout"], 1e-9),
        **{f"seconds_{k}": v for k, v in seconds.items()},
    }
    # Equal shares per process: the global value is the mean (counts: the sum) over processes.
    gathered = sharding.all_processes(np.array(list(local.values()), np.float64))
    summed = ("filter_fallback_groups", "rollout_tokens_per_s")
    metrics = {k: float(gathered[:, i].sum() if k in summed else gathered[:, i].mean())
               for i, k in enumerate(local)}
    return buffer.batch(), surplus + buffer.surplus, metrics


def _rows_only(prompts, tokens_bl, mask_bl) -> ScoredRollouts:
    """A round's rows before scoring (log-probs and scores zero) for the forward passes."""
    zeros = np.zeros(tokens_bl.shape, np.float32)
    return score_rows(prompts, tokens_bl, mask_bl, np.zeros(len(tokens_bl), bool), zeros, zeros,
                      [""] * len(tokens_bl), np.zeros(len(tokens_bl), np.float32))
