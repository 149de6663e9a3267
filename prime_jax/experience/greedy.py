"""Held-out accuracy of a policy during training: sample, decode, verify.

``accuracy = mean_i verify(decode(y_i), ground_truth_i)`` over every
held-out prompt, one response each (greedy at temperature 0).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from prime_jax import sharding
from prime_jax.data import PromptPipeline
from prime_jax.experience.generate import generate
from prime_jax.rollout import SamplingConfig


def evaluate_accuracy(policy, records, tokenizer, pool, config: SamplingConfig, *,
                      mesh, batch_prompts: int, max_prompt_length: int, seed: int = 0) -> dict[str, float]:
    """``{"eval_accuracy", "eval_response_length", "eval_truncated"}`` over ``records``.

    Every batch has exactly ``batch_prompts`` rows over all processes (a short
    last batch is padded with copies of a prompt that are ignored), so one
    compiled sampler serves the whole pass and every process samples as often.
    """
    count = jax.process_count()
    pipeline = PromptPipeline(records, tokenizer, num_samples=1, shuffle=False,
                              max_prompt_length=max_prompt_length, process_index=jax.process_index(),
                              process_count=count)
    local = batch_prompts // count
    totals = np.zeros(4)  # score, length, truncated, rows
    key = jax.random.key(seed)
    for index, batch in enumerate(pipeline.epoch_batches(local)):
        real = batch.num_rows
        batch = batch if real else pipeline.batch_for([0])
        fill = np.concatenate([np.arange(max(real, 1)), np.zeros(local - max(real, 1), np.int64)])
        out = generate(policy, batch.prompt_ids[fill], batch.prompt_mask[fill], ground_truth=batch.ground_truth,
                       ability=batch.ability, key=jax.random.fold_in(key, index), sampling=config,
                       tokenizer=tokenizer, pool=pool, mesh=mesh, real_prompts=real)
        totals += [sum(out.scores.result()), out.mask_bl.sum(), out.truncated_b.sum(), real]
    score, length, truncated, rows = sharding.all_processes(totals).sum(axis=0)
    return {"eval_accuracy": score / rows, "eval_response_length": length / rows, "eval_truncated": truncated / rows}


def greedy(config: SamplingConfig) -> SamplingConfig:
    """The same sampler settings at temperature 0."""
    return dataclasses.replace(config, temperature=0.0)
