"""Greedy and k-sample responses of every evaluation prompt, verified and optionally scored step by
step by step verifiers (``step_verifiers``), through the shared ``experience.generate`` path."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

import jax
import numpy as np
from tqdm import tqdm

from prime_jax.data import PromptPipeline, left_pad
from prime_jax.data.steps import delimiter_ids
from prime_jax.experience.generate import generate
from prime_jax.rollout import SamplingConfig
from prime_jax.step_verifiers import StepVerifier
from prime_jax.verifiers.answer import extract_answer, normalize_answer


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalSampling:
    """k samples per prompt at ``temperature`` / ``top_p`` (plus one greedy), ``batch_prompts``
    prompts a batch."""

    k: int
    temperature: float
    top_p: float
    max_new_tokens: int
    max_prompt_length: int
    batch_prompts: int
    seed: int
    decode_slots: int = 0
    kv_blocks: int = 0


def final_answer(text: str):
    """The normalised final answer of a response (None without one): what majority votes count."""
    answer = extract_answer(text)
    return None if answer is None else normalize_answer(answer)


def collect_samples(policy, tokenizer, records, pool, config: EvalSampling, *,
                    verifiers: Sequence[StepVerifier] = ()):
    """``(out, dropped)``: per prompt the greedy score, the k samples' scores, answers, lengths and
    truncation, and ``out["step_scores"][kind]``: every sample's step scores (in order) from each
    verifier (at most one per kind); ``dropped`` counts prompts longer than ``max_prompt_length``."""
    kinds = [v.kind for v in verifiers]
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"collect_samples: one verifier per kind, got {kinds}")
    for verifier in verifiers:  # its step ends must be where the policy's tokens put them
        if verifier.delimiter_ids != delimiter_ids(tokenizer, verifier.step_delimiter):
            raise ValueError(f"{verifier.name}: its tokenizer encodes the step delimiter {verifier.step_delimiter!r} "
                             f"as {verifier.delimiter_ids}, the policy's as "
                             f"{delimiter_ids(tokenizer, verifier.step_delimiter)}")
    pipeline = PromptPipeline(records, tokenizer, num_samples=1, shuffle=False,
                              max_prompt_length=config.max_prompt_length)
    count = len(pipeline)
    if count == 0:
        raise ValueError("no prompts to evaluate (all rows malformed or too long?)")
    sequences = [pipeline.prompt_tokens(i) for i in range(count)]
    width = -(-max(len(s) for s in sequences) // 8) * 8
    ids_np, mask_np = left_pad(sequences, width, pipeline.pad_id)
    base = {"max_new_tokens": config.max_new_tokens, "eos_id": tokenizer.eos_token_id, "pad_id": pipeline.pad_id,
            "decode_slots": config.decode_slots, "kv_blocks": config.kv_blocks}
    greedy_cfg = SamplingConfig(temperature=0.0, **base)
    sample_cfg = SamplingConfig(temperature=config.temperature, top_p=config.top_p, **base)
    k, per = config.k, config.batch_prompts
    out = collections.defaultdict(list)
    out["step_scores"] = {kind: [] for kind in kinds}
    key = jax.random.key(config.seed)
    for start in tqdm(range(0, count, per), desc="evaluate", unit="batch"):
        real = min(per, count - start)
        rows = np.minimum(np.arange(start, start + per), count - 1)  # pad with the last prompt
        ids_bp, mask_bp = ids_np[rows], mask_np[rows]
        prompts = dict(ground_truth=[pipeline.records[i].ground_truth for i in rows[:real]],
                       ability=[pipeline.records[i].ability for i in rows[:real]],
                       tokenizer=tokenizer, pool=pool, real_prompts=real)
        greedy = generate(policy, ids_bp, mask_bp, key=key, sampling=greedy_cfg, **prompts)
        many = generate(policy, ids_bp, mask_bp, key=jax.random.fold_in(key, start + 1), sampling=sample_cfg,
                        num_samples=k, **prompts)
        out["greedy"] += greedy.scores.result()
        scores = many.scores.result()
        out["correct"] += [scores[p * k:(p + 1) * k] for p in range(real)]
        out["answers"] += [[final_answer(t) for t in many.texts[p * k:(p + 1) * k]] for p in range(real)]
        out["lengths"] += many.mask_bl.sum(axis=1).tolist()
        out["truncated"] += many.truncated_b.tolist()
        if not verifiers:
            continue
        tokens_bs = np.concatenate([np.repeat(ids_bp[:real], k, 0), many.tokens_bl], axis=1)
        mask_bs = np.concatenate([np.repeat(mask_bp[:real], k, 0), many.mask_bl], axis=1)
        for verifier in verifiers:
            step = verifier.score_steps(tokens_bs, mask_bs, many.mask_bl)
            scores_bl, ends_bl = np.asarray(step.scores_bl, np.float64), np.asarray(step.step_end_bl)
            out["step_scores"][verifier.kind] += [scores_bl[j, ends_bl[j]].tolist() for j in range(real * k)]
    return out, len(records) - count
