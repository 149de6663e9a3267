"""The step-verifier type: a trained model that scores every reasoning step of tokenised responses.

Rows hold ``[prompt | response]`` (the prompt left-padded, the response the last L columns, as in
``training.forward.SequenceBatch``, beam-search prefixes and ProcessBench rows). A step ends at
each occurrence of the verifier's step delimiter (its token ids, ``data.steps.delimiter_ids``) and
at the row's last response token (``rewards.step_ends_from_tokens``, the one token-side
segmentation), unless the caller gives the step ends (ProcessBench knows them from the text).

    score_steps(tokens_bs, attention_mask_bs, response_mask_bl[, step_end_bl]) -> StepScores

runs one jitted forward with the verifier's weights (placed on the mesh by the loader when it was
given one) and returns device arrays: no host round trip, so the RL step can call it on the mesh.
What a score means is each kind's (its class docstring has the equation). Kinds whose
``logit_scores`` is true give a logit: ``sigmoid(score)`` is the probability that the step is
good (``step_probabilities``), and ``threshold`` is the probability below which ProcessBench
flags a step (None: no calibrated threshold, choose one on data).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from prime_jax.config_checks import check_not_empty
from prime_jax.rewards import step_ends_from_tokens


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class StepScores:
    """A verifier's reading of B rows with L response columns (device arrays).

    * ``scores_bl`` float32: the step's score at its last response token, 0 elsewhere;
    * ``step_end_bl`` bool: where the steps end (only inside the response mask);
    * ``prompt_score_b`` float32: the score of the prompt alone, the state before the first step,
      read at the last prompt token (0 for kinds that score only response tokens).
    """

    scores_bl: jax.Array
    step_end_bl: jax.Array
    prompt_score_b: jax.Array


def response_step_ends(tokens_bs, response_mask_bl, delimiter_ids: tuple[int, ...], step_end_bl=None) -> jax.Array:
    """Bool (B, L): ``step_end_bl`` if given, else every delimiter end and the last response token
    (``rewards.step_ends_from_tokens`` on the last L columns); only inside ``response_mask_bl``."""
    mask_bl = jnp.asarray(response_mask_bl).astype(bool)
    if step_end_bl is None:
        length = mask_bl.shape[1]
        step_end_bl = step_ends_from_tokens(jnp.asarray(tokens_bs)[:, -length:], mask_bl, delimiter_ids)
    return jnp.asarray(step_end_bl).astype(bool) & mask_bl


def last_prompt_column(attention_mask_bs, response_mask_bl) -> jax.Array:
    """Int (B,): the column of each row's last prompt token: the one before its first response
    token (the response is the last L of the S columns, right- or left-padded inside them), or
    the row's last real token when its response is empty (a prompt-only prefix)."""
    attention_bs = jnp.asarray(attention_mask_bs).astype(bool)
    response_bl = jnp.asarray(response_mask_bl).astype(bool)
    width, length = attention_bs.shape[1], response_bl.shape[1]
    first_response_b = width - length + jnp.argmax(response_bl, axis=1)
    last_real_b = width - 1 - jnp.argmax(attention_bs[:, ::-1], axis=1)
    return jnp.where(response_bl.any(axis=1), first_response_b - 1, last_real_b)


def read_columns(values_bs: jax.Array, column_b: jax.Array) -> jax.Array:
    """``values_bs[b, column_b[b]]``, shape (B,)."""
    return jnp.take_along_axis(values_bs, column_b[:, None], axis=1)[:, 0]


class StepVerifier(abc.ABC):
    """Scores every step of tokenised responses (module docstring). Subclasses set ``kind``,
    ``logit_scores`` and implement ``_score`` (traced inside ``jax.jit``)."""

    kind: ClassVar[str]
    logit_scores: ClassVar[bool]

    def __init__(self, *, name: str, tokenizer, step_delimiter: str, delimiter_ids: tuple[int, ...],
                 threshold: float | None):
        check_not_empty(type(self).__name__, "step_delimiter", step_delimiter)
        check_not_empty(type(self).__name__, "delimiter_ids", delimiter_ids)
        if threshold is not None and not (0.0 < threshold < 1.0 and self.logit_scores):
            raise ValueError(f"{type(self).__name__}.threshold={threshold!r}: a threshold is a probability in "
                             "(0, 1) of a kind whose scores are logits")
        self.name, self.tokenizer, self.threshold = name, tokenizer, threshold
        self.step_delimiter, self.delimiter_ids = step_delimiter, tuple(int(i) for i in delimiter_ids)
        self._jitted = jax.jit(self._score)

    def score_steps(self, tokens_bs, attention_mask_bs, response_mask_bl, step_end_bl=None) -> StepScores:
        """Every step's score of the (B, S) ``[prompt | response]`` rows (module docstring);
        ``step_end_bl`` (B, L) overrides the delimiter's step ends. Jitted; callable under jit."""
        return self._jitted(self.weights(), jnp.asarray(tokens_bs, jnp.int32), jnp.asarray(attention_mask_bs, jnp.int32),
                            jnp.asarray(response_mask_bl, jnp.int32),
                            None if step_end_bl is None else jnp.asarray(step_end_bl, bool))

    def step_probabilities(self, scores: jax.Array) -> jax.Array:
        """``sigmoid(score)``: the probability that a step is good, for kinds that score in logits."""
        if not self.logit_scores:
            raise TypeError(f"{type(self).__name__} ({self.kind}) scores are not logits: they have no probability")
        return jax.nn.sigmoid(jnp.asarray(scores, jnp.float32))

    @abc.abstractmethod
    def weights(self):
        """The pytree of arrays ``_score`` reads (model weights), passed to the jitted call."""

    @abc.abstractmethod
    def _score(self, weights, tokens_bs, attention_mask_bs, response_mask_bl, step_end_bl) -> StepScores:
        """The traced computation of ``score_steps``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, name={self.name!r}, step_delimiter={self.step_delimiter!r})"
