"""Held-out accuracy of a policy during training: sample, decode, verify.

``accuracy = mean_i verify(decode(y_i), ground_truth_i)`` over every
held-out prompt, one response each (greedy at temperature 0).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from prime_jax import rollout
from prime_jax.data import PromptPipeline
from prime_jax.rl_batch import decode_responses


def evaluate_accuracy(policy, records, tokenizer, pool, config: rollout.SamplingConfig, *,
                      batch_prompts: int, max_prompt_length: int, seed: int = 0) -> dict[str, float]:
    """``{"eval_accuracy", "eval_response_length", "eval_truncated"}`` over ``records``.

    Every batch has exactly ``batch_prompts`` rows (the last is padded by
    repeating its first prompt and the copies are ignored), so one compiled
    sampler serves the whole pass.
    """
    pipeline = PromptPipeline(records, tokenizer, num_samples=1, shuffle=False,
                              max_prompt_length=max_prompt_length)
    scores, lengths, truncated = [], [], []
    key = jax.random.key(seed)
    for index, batch in enumerate(pipeline.epoch_batches(batch_prompts)):
        real = batch.num_rows
        if real == 0:
            continue
        fill = np.concatenate([np.arange(real), np.zeros(batch_prompts - real, np.int64)])
        out = rollout.sample(policy, batch.prompt_ids[fill], batch.prompt_mask[fill],
                             key=jax.random.fold_in(key, index), config=config)
        tokens, mask = np.asarray(out.tokens)[:real], np.asarray(out.mask)[:real]
        texts = decode_responses(tokenizer, tokens, mask)
        rows = list(zip(texts, batch.ground_truth, batch.ability))
        scores += pool.score(rows)
        lengths += mask.sum(axis=1).tolist()
        truncated += np.asarray(out.truncated)[:real].tolist()
    return {"eval_accuracy": float(np.mean(scores)), "eval_response_length": float(np.mean(lengths)),
            "eval_truncated": float(np.mean(truncated))}


def greedy(config: rollout.SamplingConfig) -> rollout.SamplingConfig:
    """The same sampler settings at temperature 0."""
    return dataclasses.replace(config, temperature=0.0)
