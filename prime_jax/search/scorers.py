"""Step verifiers as beam-search scorers: the score of each candidate's new step, and a final pick.

A candidate is a left-padded prefix whose last column is the new step's last token; its parent is
the same row without the new step. ``verifier_step_scorer`` gives the verifier two step ends in
the candidate row - the parent's last response token (when the parent has a response) and the
last column - so the new step is exactly the tokens the round appended, and a PAV verifier's
``V(parent)`` is its Q at the parent's end (or at the prompt's end on the first step). Its
score is the verifier's score at the last column, per kind (``step_verifiers``):

* explicit PRM: ``z`` at the new step's end (``sigmoid(z)`` = Q^pi for a Monte-Carlo-trained one);
* implicit PRM: ``beta * sum_{t in new step} log pi_prm / pi_ref`` (cumulative reading: over the
  whole response, the implicit Q);
* PAV: ``Q^pi(s, a) + alpha * (Q^mu(s, a) - V^mu(s))`` with a Best-of-K prover;
* ORM: ``r`` at the new step's end.

``final_scorer(verifier, aggregate)`` ranks finished responses by the verifier's scores over all
their steps (ends at the delimiter and the last token): ``"last"`` (the score at the response's
end: an ORM's outcome score, a Q model read as an outcome scorer), ``"min"`` (the weakest step),
``"log_prod"`` (``sum_s log sigmoid(score_s)``: the product of step probabilities, Let's Verify).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from prime_jax.search.candidates import CandidateScorer, FinalScorer, StepCandidates
from prime_jax.step_verifiers import StepVerifier

AGGREGATES = ("last", "min", "log_prod")


def candidate_step_ends(candidates: StepCandidates) -> np.ndarray:
    """Bool (N, W): the parent's last response token (if any) and the new step's last token."""
    step_len_n = candidates.step_mask_nw.sum(1)
    response_nw = candidates.response_mask_nw > 0
    width = response_nw.shape[1]
    ends_nw = np.zeros(response_nw.shape, bool)
    ends_nw[:, -1] = response_nw[:, -1]
    parent_end_n = width - 1 - step_len_n
    rows = np.flatnonzero(parent_end_n >= 0)
    ends_nw[rows, parent_end_n[rows]] = response_nw[rows, parent_end_n[rows]]
    return ends_nw


def verifier_step_scorer(verifier: StepVerifier) -> CandidateScorer:
    """Each candidate's new step scored by ``verifier`` (module docstring), float64 (N,)."""

    def score(candidates: StepCandidates) -> np.ndarray:
        out = verifier.score_steps(candidates.tokens_nw, candidates.mask_nw, candidates.response_mask_nw,
                                   step_end_bl=candidate_step_ends(candidates))
        return np.asarray(out.scores_bl[:, -1], np.float64)

    return score


def final_scorer(verifier: StepVerifier, aggregate: str) -> FinalScorer:
    """Finished responses ranked by ``aggregate`` of ``verifier``'s step scores (module docstring);
    a response without steps scores -inf."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"final_scorer aggregate={aggregate!r}: expected one of {AGGREGATES}")
    if aggregate == "log_prod" and not verifier.logit_scores:
        raise ValueError(f"final_scorer aggregate='log_prod' needs logit scores; {verifier.kind} has none")

    def score(tokens_nw, mask_nw, response_mask_nw) -> np.ndarray:
        out = verifier.score_steps(tokens_nw, mask_nw, response_mask_nw)
        ends_nl, scores_nl = out.step_end_bl, out.scores_bl
        if aggregate == "last":
            value_n = scores_nl[:, -1]  # the response's last token is always a step end
        elif aggregate == "min":
            value_n = jnp.where(ends_nl, scores_nl, jnp.inf).min(axis=1)
        else:
            value_n = jnp.where(ends_nl, jnp.log(jnp.maximum(verifier.step_probabilities(scores_nl), 1e-12)), 0.0).sum(1)
        return np.where(np.asarray(ends_nl).any(axis=1), np.asarray(value_n, np.float64), -np.inf)

    return score
