"""Host-side stages between the accelerator steps: prompts -> rollouts -> scored groups.

``ScoredRollouts`` is one rollout round in the contiguous-group layout
(row = group * n + k) with everything the update needs; ``GroupBuffer``
collects kept groups over rounds until a step's batch is full and holds the
surplus prompts for the next step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from prime_jax.data import PromptBatch
from prime_jax.training.forward import SequenceBatch


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScoredRollouts:
    """Arrays (rows first) of one round; ``tokens_bs = [prompt_ids | response]``."""

    tokens_bs: np.ndarray
    attention_mask_bs: np.ndarray
    response_mask_bl: np.ndarray
    truncated_b: np.ndarray
    old_logp_bl: np.ndarray
    ref_logp_bl: np.ndarray
    acc_b: np.ndarray
    prompt_index_b: np.ndarray
    responses: list[str]
    ground_truth: list[str]
    ability: list[str]

    @property
    def num_rows(self) -> int:
        return self.tokens_bs.shape[0]

    def sequences(self) -> SequenceBatch:
        """The prompt + response rows the forward passes read."""
        return SequenceBatch(tokens_bs=self.tokens_bs, attention_mask_bs=self.attention_mask_bs,
                             response_mask_bl=self.response_mask_bl)

    def rows(self, index: np.ndarray) -> "ScoredRollouts":
        """The given rows, in order."""
        index = np.asarray(index, np.int64)
        pick = lambda xs: [xs[i] for i in index]  # noqa: E731
        return ScoredRollouts(
            tokens_bs=self.tokens_bs[index], attention_mask_bs=self.attention_mask_bs[index],
            response_mask_bl=self.response_mask_bl[index], truncated_b=self.truncated_b[index],
            old_logp_bl=self.old_logp_bl[index], ref_logp_bl=self.ref_logp_bl[index], acc_b=self.acc_b[index],
            prompt_index_b=self.prompt_index_b[index],
            responses=pick(self.responses), ground_truth=pick(self.ground_truth),
            ability=pick(self.ability))


def concat(parts: Sequence[ScoredRollouts]) -> ScoredRollouts:
    """Rows of several rounds stacked; prompt widths must agree."""
    fields = {f.name: [getattr(p, f.name) for p in parts] for f in dataclasses.fields(ScoredRollouts)}
    return ScoredRollouts(**{
        k: (np.concatenate(v) if isinstance(v[0], np.ndarray) else [x for xs in v for x in xs])
        for k, v in fields.items()})


def join_sequences(prompts: PromptBatch, tokens_bl, mask_bl) -> SequenceBatch:
    """``[prompt | response]`` rows with their attention and response masks."""
    mask_bl = np.asarray(mask_bl, np.int32)
    return SequenceBatch(tokens_bs=np.concatenate([prompts.prompt_ids, np.asarray(tokens_bl, np.int32)], axis=1),
                         attention_mask_bs=np.concatenate([prompts.prompt_mask, mask_bl], axis=1),
                         response_mask_bl=mask_bl)


def score_rows(prompts: PromptBatch, tokens_bl, mask_bl, truncated_b, old_logp_bl, ref_logp_bl,
               responses, acc_b) -> ScoredRollouts:
    """Join a prompt batch, its sampled responses, their log-probs and outcome scores."""
    sequences = join_sequences(prompts, tokens_bl, mask_bl)
    return ScoredRollouts(
        tokens_bs=sequences.tokens_bs, attention_mask_bs=sequences.attention_mask_bs,
        response_mask_bl=sequences.response_mask_bl, truncated_b=np.asarray(truncated_b, bool),
        old_logp_bl=np.asarray(old_logp_bl, np.float32), ref_logp_bl=np.asarray(ref_logp_bl, np.float32),
        acc_b=np.asarray(acc_b, np.float32), prompt_index_b=np.asarray(prompts.prompt_index),
        responses=list(responses), ground_truth=list(prompts.ground_truth),
        ability=list(prompts.ability))


class GroupBuffer:
    """Kept groups of the current step plus surplus prompts carried to the next.

    ``add`` takes a round and its kept-group mask; groups beyond ``capacity``
    give their prompt back (``surplus``) to be re-sampled first next step, as
    in PRIME's oversampling. A short batch keeps its static shape through
    ``pad_with_placeholders`` (empty rows) or ``fill_from_dropped``.
    """

    def __init__(self, capacity: int, num_samples: int):
        self.capacity, self.n = capacity, num_samples
        self.groups: list[ScoredRollouts] = []
        self.dropped: list[ScoredRollouts] = []
        self.surplus: list[int] = []

    def _split(self, rounds: ScoredRollouts) -> list[ScoredRollouts]:
        return [rounds.rows(np.arange(g * self.n, (g + 1) * self.n)) for g in range(rounds.num_rows // self.n)]

    def add(self, rounds: ScoredRollouts, keep_g: np.ndarray) -> None:
        for group, keep in zip(self._split(rounds), np.asarray(keep_g, bool)):
            if not keep:
                self.dropped.append(group)
            elif len(self.groups) < self.capacity:
                self.groups.append(group)
            else:
                self.surplus.append(int(group.prompt_index_b[0]))

    @property
    def full(self) -> bool:
        return len(self.groups) >= self.capacity

    def fill_from_dropped(self) -> None:
        """Top up with dropped groups (closest mean accuracy to 0.5 first), then placeholders if
        too few were dropped."""
        order = sorted(self.dropped, key=lambda g: abs(float(g.acc_b.mean()) - 0.5))
        self.groups += order[:self.capacity - len(self.groups)]
        self.pad_with_placeholders()

    def pad_with_placeholders(self) -> None:
        """Top up with placeholder groups: copies of a collected group (kept first, else dropped)
        whose response masks, outcome and log-probs are zero. A row without a valid response token
        counts in no loss, baseline or statistic (``losses.row_valid``); its prompt still gives the
        forward passes finite inputs."""
        template = (self.groups or self.dropped)[0]
        empty = dataclasses.replace(
            template, response_mask_bl=np.zeros_like(template.response_mask_bl),
            acc_b=np.zeros_like(template.acc_b), old_logp_bl=np.zeros_like(template.old_logp_bl),
            ref_logp_bl=np.zeros_like(template.ref_logp_bl), truncated_b=np.zeros_like(template.truncated_b),
            responses=[""] * self.n)
        self.groups += [empty] * (self.capacity - len(self.groups))

    def batch(self) -> ScoredRollouts:
        if len(self.groups) < self.capacity:
            raise RuntimeError(f"only {len(self.groups)} of {self.capacity} groups collected")
        return concat(self.groups)
