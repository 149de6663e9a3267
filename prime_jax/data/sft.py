"""SFT batches: chat-templated prompt + response + EOS, right-padded, loss on the response.

Each example becomes `prompt_ids + response_ids + [eos]` (see `chat.py`); `loss_mask` is 1 on the
response tokens including EOS, so a next-token loss uses `logits[:, :-1]` against `tokens[:, 1:]`
weighted by `loss_mask[:, 1:]`. Examples longer than `seq_len` are dropped and counted
(`overflow="drop"`, default) or keep their prompt and a truncated response without EOS
(`overflow="truncate"`; a prompt alone longer than `seq_len` is still dropped). Order, resume
and multi-process sharding work as in `PromptPipeline` (one global position, per-epoch seeds).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import numpy as np

from prime_jax.data.chat import encode_prompts, encode_responses
from prime_jax.data.records import DataStats, SFTExample
from prime_jax.data.sampler import EpochSampler, SamplerBacked


@dataclasses.dataclass(frozen=True)
class SFTBatch:
    """tokens (B, T) int32 right-padded; loss_mask (B, T) int32, 1 on response tokens incl.
    EOS; attention_mask (B, T) int32, 1 on real tokens; example_index (B,) int64."""

    tokens: np.ndarray
    loss_mask: np.ndarray
    attention_mask: np.ndarray
    example_index: np.ndarray


class SFTBatcher(SamplerBacked):
    """Deterministic, resumable stream of `SFTBatch`es of `batch_size` rows per process."""

    def __init__(self, examples: Sequence[SFTExample], tokenizer, *, batch_size: int,
                 seq_len: int, seed: int = 0, shuffle: bool = True, process_index: int = 0,
                 process_count: int = 1, overflow: str = "drop",
                 stats: DataStats | None = None):
        if overflow not in ("drop", "truncate"):
            raise ValueError("overflow must be 'drop' or 'truncate'")
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.stats = stats if stats is not None else DataStats()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
            else tokenizer.eos_token_id
        prompts = encode_prompts(tokenizer, [e.messages for e in examples])
        responses = encode_responses(tokenizer, [e.response for e in examples])
        self.examples: list[SFTExample] = []
        self._rows: list[tuple[np.ndarray, int]] = []  # (tokens, prompt length)
        for example, prompt, response in zip(examples, prompts, responses):
            total = len(prompt) + len(response)
            if total > seq_len and (overflow == "drop" or len(prompt) >= seq_len):
                self.stats.dropped_too_long += 1
                continue
            tokens = np.asarray((prompt + response)[:seq_len], np.int32)
            self.examples.append(example)
            self._rows.append((tokens, len(prompt)))
        self.sampler = EpochSampler(len(self._rows), seed=seed, shuffle=shuffle,
                                    process_index=process_index, process_count=process_count)

    def __len__(self) -> int:
        return len(self._rows)

    def batch_for(self, indices: Sequence[int]) -> SFTBatch:
        count = len(indices)
        tokens = np.full((count, self.seq_len), self.pad_id, np.int32)
        loss_mask = np.zeros((count, self.seq_len), np.int32)
        attention_mask = np.zeros((count, self.seq_len), np.int32)
        for row, index in enumerate(indices):
            seq, prompt_len = self._rows[int(index)]
            tokens[row, :len(seq)] = seq
            attention_mask[row, :len(seq)] = 1
            loss_mask[row, prompt_len:len(seq)] = 1
        return SFTBatch(tokens, loss_mask, attention_mask, np.asarray(indices, np.int64))

    def __iter__(self) -> Iterator[SFTBatch]:
        return self

    def __next__(self) -> SFTBatch:
        return self.batch_for(self.sampler.take(self.batch_size))
