"""PAV (Rewarding Progress, arXiv 2410.08146): a Q^pi verifier plus a Best-of-K prover, as a step verifier."""

from __future__ import annotations

import jax.numpy as jnp

from prime_jax.config_checks import check_at_least
from prime_jax.pav.provers import best_of_k_q
from prime_jax.pav.rl_rewards import previous_step_values
from prime_jax.step_verifiers.base import StepScores, StepVerifier


class PavVerifier(StepVerifier):
    """Step score: the effective reward of step h (ending at ``e_h``) with a Best-of-K prover,

        Q^pi(s_h, a_h)  = sigmoid(q.score at e_h)          (the Q model: a logit-scored verifier)
        Q^mu(s_h, a_h)  = 1 - (1 - Q^base(s_h, a_h))^K      (base: ``prover``'s Q, else Q^pi)
        V^mu(s_h)       = Q^mu(s_{h-1}, a_{h-1}),  V^mu(s_0) = 1 - (1 - sigmoid(base prompt score))^K
        score_h         = Q^pi(s_h, a_h) + alpha * (Q^mu(s_h, a_h) - V^mu(s_h))

    States are prefixes and steps only append, so the parent's value is the Q at the previous step
    end of the same row and ``V(s_0)`` the Q model read at the last prompt token (one forward per
    verifier). Siblings keep ``Q^pi``'s order (``Q^mu`` increases with it); alpha = 0 is ``Q^pi``.
    Scores are not logits. ``prompt_score_b`` is ``V^mu(s_0)``."""

    kind = "pav"
    logit_scores = False

    def __init__(self, q: StepVerifier, *, prover: StepVerifier | None = None, alpha: float = 0.5, best_of_k: int = 4):
        for role, verifier in (("q", q), ("prover", prover)):
            if verifier is not None and not verifier.logit_scores:
                raise ValueError(f"PavVerifier.{role}={verifier!r}: a Q model's scores must be logits "
                                 "(explicit PRM, ORM or implicit PRM)")
        if prover is not None and prover.delimiter_ids != q.delimiter_ids:
            raise ValueError(f"PavVerifier.prover ends steps with ids {prover.delimiter_ids}, the Q model with "
                             f"{q.delimiter_ids}: both must use one step delimiter")
        check_at_least("PavVerifier", "best_of_k", best_of_k, 1)
        check_at_least("PavVerifier", "alpha", alpha, 0)
        self.q, self.prover, self.alpha, self.best_of_k = q, prover, alpha, best_of_k
        name = q.name + ("" if prover is None else f" + prover {prover.name}") + f" (alpha {alpha}, K {best_of_k})"
        super().__init__(name=name, tokenizer=q.tokenizer, step_delimiter=q.step_delimiter,
                         delimiter_ids=q.delimiter_ids, threshold=None)

    def weights(self):
        return self.q.weights(), None if self.prover is None else self.prover.weights()

    def _score(self, weights, tokens_bs, attention_mask_bs, response_mask_bl, step_end_bl) -> StepScores:
        q_weights, prover_weights = weights
        q_scores = self.q._score(q_weights, tokens_bs, attention_mask_bs, response_mask_bl, step_end_bl)
        ends_bl = q_scores.step_end_bl
        base = q_scores if self.prover is None else self.prover._score(
            prover_weights, tokens_bs, attention_mask_bs, response_mask_bl, ends_bl)
        q_pi_bl = jnp.where(ends_bl, self.q.step_probabilities(q_scores.scores_bl), 0.0)
        q_mu_bl = jnp.where(ends_bl, best_of_k_q(self.prover_probabilities(base.scores_bl), self.best_of_k), 0.0)
        v0_mu_b = best_of_k_q(self.prover_probabilities(base.prompt_score_b), self.best_of_k)
        adv_bl = q_mu_bl - previous_step_values(q_mu_bl, ends_bl, v0_mu_b)
        return StepScores(scores_bl=jnp.where(ends_bl, q_pi_bl + self.alpha * adv_bl, 0.0), step_end_bl=ends_bl,
                          prompt_score_b=v0_mu_b.astype(jnp.float32))

    def prover_probabilities(self, scores):
        """``sigmoid`` of the prover's (or, without one, the Q model's) logit scores."""
        return (self.prover or self.q).step_probabilities(scores)
