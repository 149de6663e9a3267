"""Outcome reward model (``models.OutcomeRewardModel``) read at every step end, as a step verifier."""

from __future__ import annotations

from prime_jax.step_verifiers.head import HeadVerifier


class ORMStepVerifier(HeadVerifier):
    """Step score: the ORM's head read at the step's last token ``e_s`` (the outcome score of the
    prefix that ends there),

        score_s = r_{e_s} = h_{e_s} . w,    p = sigmoid(r_{e_s})

    (ProcessBench's "ORM read at every step end"; at the response's last token it is the ORM's
    outcome score). ``prompt_score_b`` is ``r`` at the last prompt token. Threshold 0.5 on
    ``sigmoid(r)``."""

    kind = "orm"

    @staticmethod
    def head_scores(model, tokens_bs, attention_mask_bs):
        return model.position_scores(tokens_bs, attention_mask_bs)
