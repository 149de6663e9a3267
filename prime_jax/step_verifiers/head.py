"""Verifiers that read one score head at every position (explicit PRM, ORM): the shared reading."""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp
from flax import nnx

from prime_jax.step_verifiers.base import StepScores, StepVerifier, last_prompt_column, read_columns, response_step_ends

FIXED_THRESHOLD = 0.5


class HeadVerifier(StepVerifier):
    """A model with a score head read at every position, ``v_t`` (B, S): the step score is
    ``v_{e_s}`` at the step's last token and ``prompt_score_b`` is ``v`` at the last prompt token.
    Subclasses name the head (``head_scores``) and what it means."""

    logit_scores = True

    def __init__(self, model, *, name: str, tokenizer, step_delimiter: str, delimiter_ids: tuple[int, ...],
                 threshold: float | None = FIXED_THRESHOLD):
        self.graphdef, self.params = nnx.split(model)
        self.config = model.config
        super().__init__(name=name, tokenizer=tokenizer, step_delimiter=step_delimiter, delimiter_ids=delimiter_ids,
                         threshold=threshold)

    @staticmethod
    @abc.abstractmethod
    def head_scores(model, tokens_bs, attention_mask_bs) -> jax.Array:
        """``v`` (B, S) float32: the head at every position."""

    def weights(self):
        return self.params

    def _score(self, weights, tokens_bs, attention_mask_bs, response_mask_bl, step_end_bl) -> StepScores:
        v_bs = self.head_scores(nnx.merge(self.graphdef, weights), tokens_bs, attention_mask_bs).astype(jnp.float32)
        ends_bl = response_step_ends(tokens_bs, response_mask_bl, self.delimiter_ids, step_end_bl)
        v_bl = v_bs[:, -response_mask_bl.shape[1]:]
        return StepScores(scores_bl=jnp.where(ends_bl, v_bl, 0.0), step_end_bl=ends_bl,
                          prompt_score_b=read_columns(v_bs, last_prompt_column(attention_mask_bs, response_mask_bl)))
