"""Outcome reward model (``models.OutcomeRewardModel``) read at every step end, as a step verifier."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from prime_jax.step_verifiers.base import StepScores, StepVerifier, last_prompt_column, read_columns, response_step_ends

FIXED_THRESHOLD = 0.5


class ORMStepVerifier(StepVerifier):
    """Step score: the ORM's head read at the step's last token ``e_s`` (the outcome score of the
    prefix that ends there),

        score_s = r_{e_s} = h_{e_s} . w,    p = sigmoid(r_{e_s})

    (ProcessBench's "ORM read at every step end"; at the response's last token it is the ORM's
    outcome score). ``prompt_score_b`` is ``r`` at the last prompt token. Threshold 0.5 on
    ``sigmoid(r)``."""

    kind = "orm"
    logit_scores = True

    def __init__(self, model, *, name: str, tokenizer, step_delimiter: str, delimiter_ids: tuple[int, ...],
                 threshold: float | None = FIXED_THRESHOLD):
        self.graphdef, self.params = nnx.split(model)
        self.config = model.config
        super().__init__(name=name, tokenizer=tokenizer, step_delimiter=step_delimiter, delimiter_ids=delimiter_ids,
                         threshold=threshold)

    def weights(self):
        return self.params

    def _score(self, weights, tokens_bs, attention_mask_bs, response_mask_bl, step_end_bl) -> StepScores:
        r_bs = nnx.merge(self.graphdef, weights).position_scores(tokens_bs, attention_mask_bs).astype(jnp.float32)
        ends_bl = response_step_ends(tokens_bs, response_mask_bl, self.delimiter_ids, step_end_bl)
        r_bl = r_bs[:, -response_mask_bl.shape[1]:]
        return StepScores(scores_bl=jnp.where(ends_bl, r_bl, 0.0), step_end_bl=ends_bl,
                          prompt_score_b=read_columns(r_bs, last_prompt_column(attention_mask_bs, response_mask_bl)))
