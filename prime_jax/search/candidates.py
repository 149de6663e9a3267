"""What a beam-search round hands its scorers: the candidates (new step appended to a live beam)."""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np


@dataclasses.dataclass(frozen=True)
class StepCandidates:
    """The N = M * C candidates of one round, host numpy arrays.

    * ``tokens_nw`` / ``mask_nw``: the candidate prefix (prompt + earlier steps + new step),
      left-padded to W columns (the new step's last token is column W - 1);
    * ``step_mask_nw``: 1 on the new step's tokens; ``response_mask_nw``: 1 on every response token;
    * ``parent_n``: the row of each candidate's parent in ``parent_tokens_mw`` / ``parent_mask_mw`` /
      ``parent_response_mask_mw`` (the prefix before the step; the prompt alone on the first
      step), M = P * B;
    * ``step_index_n``: how many steps the parent already has (0 on the first step);
    * ``live_n``: 1 where the parent beam is live (other rows are never selected).
    """

    tokens_nw: np.ndarray
    mask_nw: np.ndarray
    step_mask_nw: np.ndarray
    response_mask_nw: np.ndarray
    parent_n: np.ndarray
    parent_tokens_mw: np.ndarray
    parent_mask_mw: np.ndarray
    parent_response_mask_mw: np.ndarray
    step_index_n: np.ndarray
    live_n: np.ndarray


class CandidateScorer(Protocol):
    """``scorer(candidates) -> float (N,)``: the score of each candidate's new step (higher is better)."""

    def __call__(self, candidates: StepCandidates) -> np.ndarray: ...


class FinalScorer(Protocol):
    """``scorer(tokens_nw, mask_nw, response_mask_nw) -> float (N,)``: the score of finished responses."""

    def __call__(self, tokens_nw: np.ndarray, mask_nw: np.ndarray, response_mask_nw: np.ndarray) -> np.ndarray: ...


