"""Deterministic, problem-disjoint train/eval splits for generated tasks.

A problem belongs to the eval split iff a stable hash (CRC32) of its prompt text falls in the
lowest `eval_fraction` of the hash range. The assignment depends on the problem text only, never
on the seed, so an eval problem can never appear in any train set drawn from any seed.
Generation draws problems from a seeded numpy generator and keeps those whose bucket matches the
requested split (rejection sampling), optionally without repeats.
"""

from __future__ import annotations

import zlib
from typing import Callable, TypeVar

import numpy as np

SPLITS = ("train", "eval")
_BUCKETS = 1_000_000
_SPLIT_STREAM = {"train": 0, "eval": 1}

P = TypeVar("P")


def is_eval_problem(text: str, eval_fraction: float) -> bool:
    """True iff the problem with this prompt text is held out for evaluation."""
    bucket = zlib.crc32(text.encode("utf-8")) % _BUCKETS
    return bucket < int(round(eval_fraction * _BUCKETS))


def split_rng(seed: int, split: str, stream: int = 0) -> np.random.Generator:
    """An independent generator per (seed, split, stream); stream 1+ is for SFT noise."""
    if split not in _SPLIT_STREAM:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return np.random.default_rng([int(seed), _SPLIT_STREAM[split], int(stream)])


def draw_split(
    sample: Callable[[np.random.Generator], P],
    text_of: Callable[[P], str],
    *,
    num: int,
    seed: int,
    split: str,
    eval_fraction: float,
    unique: bool = True,
    max_attempts_per_item: int = 1000,
) -> list[P]:
    """Draws `num` problems of `split` with `sample(rng)`; raises if the space looks exhausted."""
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    rng = split_rng(seed, split)
    want_eval = split == "eval"
    seen: set[str] = set()
    out: list[P] = []
    attempts = 0
    budget = max_attempts_per_item * max(num, 1)
    while len(out) < num:
        attempts += 1
        if attempts > budget:
            raise ValueError(
                f"only {len(out)} of {num} {split} problems after {budget} draws: the problem "
                "space is too small for this request (lower num, allow repeats, or widen knobs)")
        problem = sample(rng)
        text = text_of(problem)
        if is_eval_problem(text, eval_fraction) != want_eval:
            continue
        if unique:
            if text in seen:
                continue
            seen.add(text)
        out.append(problem)
    return out
