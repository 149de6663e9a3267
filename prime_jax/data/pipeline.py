"""The RL prompt pipeline: records -> left-padded numpy `PromptBatch`es, resumable and sharded.

Design choice: the pipeline runs straight on a Python list of `PromptRecord`s (loaded by
`eurus.load_eurus_records`, the synthetic generators, or `tasks.records_from_task`). Every
prompt is chat-templated and tokenised once at construction into one flat int32 array; prompts
longer than `max_prompt_length` are dropped there and counted in `stats.dropped_too_long`. The
order comes from `EpochSampler` (seeded per-epoch permutations over one global position), which
makes batches a pure function of (records, seed, position): `state()` is a small JSON dict (the
sampler's position, seed, size and shuffle flag, plus a sha256 of the tokenised prompts and their
answers) and `restore()` resumes exactly, on any number of processes, refusing prompts that differ
from the saved run's. seqio stays the task registry (see `tasks.py`; `seqio_source.py` reads any
registered Task or Mixture into records), whose tf.data iterators are neither cheap to
checkpoint nor needed here.

Layout: each prompt fills `num_samples` contiguous rows (row = prompt * n + k); `prompt_ids`
is LEFT-padded with the tokenizer's pad id so generation starts at the same column everywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Iterator, Sequence

import numpy as np

from prime_jax.data.chat import encode_prompts
from prime_jax.data.records import DataStats, PromptRecord
from prime_jax.data.sampler import EpochSampler, SamplerBacked


@dataclasses.dataclass(frozen=True)
class PromptBatch:
    """B = prompts x n rows, the n samples of a prompt in contiguous rows.

    prompt_ids    (B, P) int32, left-padded with the pad id
    prompt_mask   (B, P) int32, 1 on real tokens
    ground_truth  list[str] of length B (the row's prompt's ground truth)
    ability       list[str] of length B ("math" | "code" | "countdown")
    prompt_index  (B,) int64, index of the source prompt in `PromptPipeline.records`
    """

    prompt_ids: np.ndarray
    prompt_mask: np.ndarray
    ground_truth: list[str]
    ability: list[str]
    prompt_index: np.ndarray

    @property
    def num_rows(self) -> int:
        return int(self.prompt_ids.shape[0])


def left_pad(sequences: Sequence[np.ndarray], width: int,
             pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask) of shape (len(sequences), width), each sequence flush right."""
    ids = np.full((len(sequences), width), pad_id, np.int32)
    mask = np.zeros((len(sequences), width), np.int32)
    for row, seq in enumerate(sequences):
        if len(seq) > width:
            raise ValueError(f"sequence of length {len(seq)} does not fit width {width}")
        if len(seq):
            ids[row, width - len(seq):] = seq
            mask[row, width - len(seq):] = 1
    return ids, mask


class PromptPipeline(SamplerBacked):
    """Deterministic, resumable, per-process-sharded stream of RL prompt batches.

    Args:
      records: the source prompts (a list; its order defines `prompt_index`).
      tokenizer: a Hugging Face tokenizer with a chat template and a pad token.
      num_samples: n, rows per prompt.
      max_prompt_length: longer prompts are dropped (counted). Also the padded width P unless
        `pad_multiple` is set, in which case P = the batch's longest prompt rounded up to it.
      seed / shuffle: per-epoch permutation of the prompts.
      process_index / process_count: multi-host sharding (each process gets its contiguous
        share of every global step's prompts).
      prompts_per_batch: default prompt count for `next(pipeline)`.
    """

    def __init__(self, records: Sequence[PromptRecord], tokenizer, *, num_samples: int = 4,
                 max_prompt_length: int = 1024, seed: int = 0, shuffle: bool = True,
                 process_index: int = 0, process_count: int = 1,
                 prompts_per_batch: int | None = None, pad_multiple: int | None = None,
                 stats: DataStats | None = None):
        if num_samples < 1:
            raise ValueError("num_samples must be >= 1")
        self.tokenizer = tokenizer
        self.num_samples = num_samples
        self.max_prompt_length = max_prompt_length
        self.pad_multiple = pad_multiple
        self.prompts_per_batch = prompts_per_batch
        self.stats = stats if stats is not None else DataStats()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
            else tokenizer.eos_token_id
        ids = encode_prompts(tokenizer, [r.messages for r in records])
        keep = [i for i, seq in enumerate(ids) if len(seq) <= max_prompt_length]
        self.stats.dropped_too_long += len(records) - len(keep)
        self.records: list[PromptRecord] = [records[i] for i in keep]
        lengths = np.array([len(ids[i]) for i in keep], np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(lengths)])
        self._tokens = np.concatenate([np.asarray(ids[i], np.int32) for i in keep]
                                      or [np.zeros(0, np.int32)])
        self.sampler = EpochSampler(len(self.records), seed=seed, shuffle=shuffle,
                                    process_index=process_index, process_count=process_count)
        self.prompts_sha256 = self._digest()

    def _digest(self) -> str:
        """sha256 over the prompt tokens, their offsets and each record's answer and ability."""
        digest = hashlib.sha256(self._tokens.tobytes())
        digest.update(self._offsets.astype(np.int64).tobytes())
        for record in self.records:
            digest.update(f"{record.ground_truth}\0{record.ability}\0".encode())
        return digest.hexdigest()

    def state(self) -> dict:
        """The sampler's state plus the prompts' digest (JSON-able)."""
        return {**self.sampler.state(), "prompts_sha256": self.prompts_sha256}

    def restore(self, state: dict) -> None:
        """Continues from ``state``; a state saved over other prompts (same count, different
        text, answers or tokenizer) is refused. States saved before the digest existed restore."""
        saved = state.get("prompts_sha256")
        if saved is not None and saved != self.prompts_sha256:
            raise ValueError("cannot restore: the prompts differ from the saved run's (prompts_sha256 "
                             f"{self.prompts_sha256[:12]}... here, {saved[:12]}... saved); the data source "
                             "changed since the checkpoint")
        self.sampler.restore({k: v for k, v in state.items() if k != "prompts_sha256"})

    def __len__(self) -> int:
        """Number of usable prompts (after dropping too-long ones)."""
        return len(self.records)

    def prompt_tokens(self, index: int) -> np.ndarray:
        return self._tokens[self._offsets[index]:self._offsets[index + 1]]

    def batch_for(self, indices: Sequence[int]) -> PromptBatch:
        """The batch for explicit prompt indices (each repeated `num_samples` times)."""
        rows = np.repeat(np.asarray(indices, np.int64), self.num_samples)
        sequences = [self.prompt_tokens(int(i)) for i in indices]
        width = self.max_prompt_length
        if self.pad_multiple:
            longest = max((len(s) for s in sequences), default=1)
            width = min(width, -(-max(longest, 1) // self.pad_multiple) * self.pad_multiple)
        ids, mask = left_pad(sequences, width, self.pad_id)
        n = self.num_samples
        return PromptBatch(prompt_ids=np.repeat(ids, n, axis=0),
                           prompt_mask=np.repeat(mask, n, axis=0),
                           ground_truth=[self.records[i].ground_truth for i in rows],
                           ability=[self.records[i].ability for i in rows],
                           prompt_index=rows)

    def next_indices(self, num_prompts: int) -> list[int]:
        """Indices of this process's next `num_prompts` prompts (advances the stream)."""
        return [int(i) for i in self.sampler.take(num_prompts)]

    def next_prompts(self, num_prompts: int) -> PromptBatch:
        """This process's next `num_prompts` prompts (num_prompts * n rows); call repeatedly
        to oversample when the accuracy filter drops groups."""
        return self.batch_for(self.next_indices(num_prompts))

    def __iter__(self) -> Iterator[PromptBatch]:
        return self

    def __next__(self) -> PromptBatch:
        if not self.prompts_per_batch:
            raise ValueError("set prompts_per_batch to iterate, or call next_prompts(k)")
        return self.next_prompts(self.prompts_per_batch)

    def epoch_batches(self, num_prompts: int) -> Iterator[PromptBatch]:
        """One in-order pass over all prompts (evaluation); does not touch the stream state.

        Global batches hold `num_prompts * process_count` prompts; each process gets its
        contiguous share (`np.array_split`, so the last batch may be smaller or even empty:
        every process sees the same number of batches, as collective steps need).
        """
        sampler = self.sampler
        step = num_prompts * sampler.process_count
        for start in range(0, len(self), step):
            chunk = np.arange(start, min(start + step, len(self)))
            yield self.batch_for(np.array_split(chunk, sampler.process_count)[sampler.process_index])
