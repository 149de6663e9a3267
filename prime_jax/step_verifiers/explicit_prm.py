"""Explicit PRM (Let's Verify / Math-Shepherd head, ``models.ExplicitPRM``) as a step verifier."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from prime_jax.step_verifiers.base import StepScores, StepVerifier, last_prompt_column, read_columns, response_step_ends

FIXED_THRESHOLD = 0.5


class ExplicitPRMVerifier(StepVerifier):
    """Step score: the explicit PRM's logit at the step's last token ``e_s``,

        score_s = z_{e_s},    p(step s correct) = sigmoid(z_{e_s})

    (trained on exact or Monte-Carlo step labels; on Monte-Carlo values, ``sigmoid(z)`` estimates
    ``Q^pi`` of the prefix: the probability that the policy, continuing, ends right).
    ``prompt_score_b`` is the logit at the last prompt token (the value before any step).
    Threshold 0.5 on ``sigmoid(z)``."""

    kind = "explicit_prm"
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
        z_bs = nnx.merge(self.graphdef, weights)(tokens_bs, attention_mask_bs).astype(jnp.float32)
        ends_bl = response_step_ends(tokens_bs, response_mask_bl, self.delimiter_ids, step_end_bl)
        z_bl = z_bs[:, -response_mask_bl.shape[1]:]
        return StepScores(scores_bl=jnp.where(ends_bl, z_bl, 0.0), step_end_bl=ends_bl,
                          prompt_score_b=read_columns(z_bs, last_prompt_column(attention_mask_bs, response_mask_bl)))
