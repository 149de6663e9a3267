"""Explicit PRM (Let's Verify / Math-Shepherd head, ``models.ExplicitPRM``) as a step verifier."""

from __future__ import annotations

from prime_jax.step_verifiers.head import HeadVerifier


class ExplicitPRMVerifier(HeadVerifier):
    """Step score: the explicit PRM's logit at the step's last token ``e_s``,

        score_s = z_{e_s},    p(step s correct) = sigmoid(z_{e_s})

    (trained on exact or Monte-Carlo step labels; on Monte-Carlo values, ``sigmoid(z)`` estimates
    ``Q^pi`` of the prefix: the probability that the policy, continuing, ends right).
    ``prompt_score_b`` is the logit at the last prompt token (the value before any step).
    Threshold 0.5 on ``sigmoid(z)``."""

    kind = "explicit_prm"

    @staticmethod
    def head_scores(model, tokens_bs, attention_mask_bs):
        return model(tokens_bs, attention_mask_bs)
