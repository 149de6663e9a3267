"""The one sample -> decode -> verify path that training, greedy evaluation and ``evaluate`` share.

``generate`` samples responses to left-padded prompts (host arrays, placed on the mesh when one
is given), brings the tokens back to the host, decodes the text of each valid response and hands
``(text, ground_truth, ability)`` rows to the verifier pool without waiting: the caller can run
accelerator work while the pool verifies, then read ``Generation.scores.result()``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

from prime_jax import rollout, sharding


@dataclasses.dataclass(frozen=True)
class Generation:
    """Host arrays of the sampled rows (B * n, L) and the pending verifier scores of each row."""

    tokens_bl: np.ndarray
    mask_bl: np.ndarray
    truncated_b: np.ndarray
    texts: list[str]
    scores: concurrent.futures.Future


def decode_responses(tokenizer, tokens_bl: np.ndarray, mask_bl: np.ndarray) -> list[str]:
    """Text of each response's valid tokens (special tokens such as EOS removed)."""
    return tokenizer.batch_decode([row[m.astype(bool)].tolist() for row, m in zip(tokens_bl, mask_bl)],
                                  skip_special_tokens=True)


def generate(policy, prompt_ids_bp: np.ndarray, prompt_mask_bp: np.ndarray, *, ground_truth: Sequence[str],
             ability: Sequence[str], key: jax.Array, sampling: rollout.SamplingConfig, tokenizer, pool,
             mesh=None, num_samples: int = 1, real_prompts: int | None = None) -> Generation:
    """Sample ``num_samples`` responses per prompt row and submit them for verification.

    Row ``p * n + k`` is sample k of prompt p. Only the first ``real_prompts`` prompts (default:
    all) are real - the rest pad a batch to its compiled size and are dropped before decoding.
    ``ground_truth``/``ability`` describe the real prompts.
    """
    real = (prompt_ids_bp.shape[0] if real_prompts is None else real_prompts) * num_samples
    ids, mask = (prompt_ids_bp, prompt_mask_bp) if mesh is None else sharding.place(
        (prompt_ids_bp, prompt_mask_bp), mesh)
    out = rollout.sample(policy, ids, mask, key=key, config=sampling, num_samples=num_samples)
    arrays = (out.tokens, out.mask, out.truncated)
    tokens_bl, mask_bl, truncated_b = (np.asarray(x)[:real] for x in (
        arrays if mesh is None else sharding.fetch(arrays, mesh)))
    texts = decode_responses(tokenizer, tokens_bl, mask_bl)
    rows = [(text, ground_truth[j // num_samples], ability[j // num_samples]) for j, text in enumerate(texts)]
    return Generation(tokens_bl=tokens_bl, mask_bl=mask_bl, truncated_b=truncated_b, texts=texts,
                      scores=pool.submit(rows))
