"""Step scorers and final scorers for ``pav.beam_search``.

A *Q model* ``q(tokens_nw, mask_nw, response_mask_nw)`` maps left-padded prefixes (N, W) to
``Q^pi(prefix)`` in [0, 1] (N,): the probability that the policy pi, continuing from the prefix,
ends right (= Q^pi(s_h, a_h) of the step that ends the prefix = V^pi of the state after it).
Built from an explicit PRM (``explicit_prm_q``: ``sigmoid(z)`` at the last token), from an
implicit PRM (``implicit_prm_q``: ``sigmoid(beta * sum_t log pi_prm / pi_ref)`` over the response
so far, the PRM's implicit Q squashed like its training objective) or by Monte-Carlo rollouts
(``MonteCarloQ``). Step scorers (higher is better):

* ``pav_scorer``: the effective reward ``Q^pi(s, a) + alpha * A^mu(s, a)`` with the Best-of-K
  prover mu = BoK(pi): ``Q^mu = 1 - (1 - Q^pi)^K`` (``provers.best_of_k_q``) and
  ``A^mu(s_h, a_h) = Q^mu(s_h + a_h) - V^mu(s_h)``, ``V^mu(s_h) = Q^mu(s_h)`` of the parent prefix
  (deterministic transitions; the prompt-only prefix gives ``V^mu(s_0)``);
* ``q_scorer``: ``Q^pi(s + a)`` alone (``pav_scorer`` with alpha = 0);
* ``implicit_prm_scorer``: the implicit PRM's step reward ``beta * sum_{t in a} log pi_phi/pi_ref``
  (or, ``cumulative=True``, over the whole response so far: the implicit Q of the prefix);
* ``explicit_prm_scorer``: the explicit PRM's step probability ``sigmoid(z)`` at the step's end.

Final scorers rank finished responses: ``orm_final`` (an ORM's last-token score), ``q_final``
(a Q model used as an outcome scorer), ``explicit_prod_final`` (product of explicit-PRM step
probabilities, Let's Verify), ``implicit_min_final`` (the implicit PRM's minimum step reward).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from prime_jax.models import ExplicitPRM, OutcomeRewardModel, Transformer
from prime_jax.pav import provers
from prime_jax.pav.beam_search import FinalScorer, StepCandidates, StepScorer
from prime_jax.reward_models import scoring
from prime_jax.rewards import step_ends_from_tokens
from prime_jax.rollout import SamplingConfig, sample

QModel = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def explicit_prm_q(prm: ExplicitPRM) -> QModel:
    """``Q^pi(prefix) ~= sigmoid(z_prm(prefix)[-1])``: the explicit PRM's step-correct probability
    at the prefix's last token (its step end)."""

    def q(tokens_nw, mask_nw, response_mask_nw=None):
        z_n = np.asarray(scoring.explicit_logits(prm, tokens_nw, mask_nw), np.float64)[:, -1]
        return 1.0 / (1.0 + np.exp(-z_n))

    return q


def implicit_prm_q(prm: Transformer, reference: Transformer, *, beta: float) -> QModel:
    """``Q^pi(prefix) ~= sigmoid(beta * sum_{t in response} log pi_prm(y_t|y_<t) / pi_ref(y_t|y_<t))``."""

    def q(tokens_nw, mask_nw, response_mask_nw):
        q_nw = scoring.token_log_ratios_jit(prm, reference, tokens_nw, mask_nw, response_mask_nw)
        return 1.0 / (1.0 + np.exp(-beta * np.asarray(q_nw, np.float64).sum(1)))

    return q


class MonteCarloQ:
    """Monte-Carlo ``Q^pi(prefix) ~= (1/n) sum_k r(prefix + c_k)``, ``c_k ~ pi(. | prefix)`` (a Q model).

    ``reward_fn(prefix_tokens_rw, prefix_mask_rw, completion_rl, completion_mask_rl)`` scores the
    R = N * n rows (row ``i * n + k`` = completion k of prefix i). A prefix whose last token is
    one of ``sampling``'s EOS ids is complete: its completions are empty (mask 0, not counted).
    Each call draws fresh keys from ``key``; ``sampled_tokens`` counts the completion tokens.
    """

    def __init__(self, policy: Transformer, reward_fn: Callable[..., np.ndarray], *, num_rollouts: int,
                 sampling: SamplingConfig, key: jax.Array):
        self.policy, self.reward_fn, self.num_rollouts = policy, reward_fn, num_rollouts
        self.sampling, self.key = sampling, key
        self.calls, self.sampled_tokens = 0, 0

    def __call__(self, tokens_nw, mask_nw, response_mask_nw=None) -> np.ndarray:
        self.calls += 1
        n = self.num_rollouts
        out = sample(self.policy, jnp.asarray(tokens_nw), jnp.asarray(mask_nw),
                     key=jax.random.fold_in(self.key, self.calls), config=self.sampling, num_samples=n)
        ended_n = np.isin(np.asarray(tokens_nw)[:, -1], self.sampling.eos_ids)
        completion_mask_rl = np.asarray(out.mask) * ~np.repeat(ended_n, n)[:, None]
        self.sampled_tokens += int(completion_mask_rl.sum())
        rewards_r = self.reward_fn(np.repeat(np.asarray(tokens_nw), n, 0), np.repeat(np.asarray(mask_nw), n, 0),
                                   np.asarray(out.tokens), completion_mask_rl)
        return np.asarray(rewards_r, np.float64).reshape(-1, n).mean(1)


def pav_scores(q_child_n, q_parent_n, *, alpha: float, k: int) -> np.ndarray:
    """``Q^pi(s, a) + alpha * (Q^{BoK}(s, a) - Q^{BoK}(s))`` per candidate (N,)."""
    q_child_n1 = jnp.asarray(q_child_n, jnp.float32)[:, None]
    q_mu_n1 = provers.best_of_k_q(q_child_n1, k)
    v_mu_n = provers.best_of_k_q(jnp.asarray(q_parent_n, jnp.float32), k)
    ones_n1 = jnp.ones_like(q_child_n1)
    adv_n1 = provers.process_advantages(q_mu_n1, v_mu_n, ones_n1)
    return np.asarray(provers.effective_rewards(q_child_n1, adv_n1, ones_n1, alpha=alpha))[:, 0]


def pav_scorer(q_model: QModel, *, alpha: float = 0.5, k: int = 4) -> StepScorer:
    """Effective reward with the Best-of-K prover of ``q_model`` (module docstring); the parent
    prefixes are scored once each (M rows), the candidates once each (N rows).

    As ``Q^{BoK}`` is increasing in ``Q^pi``, siblings (same parent) are ordered exactly as by
    ``Q^pi`` alone: the advantage changes the ranking only across beams with different parents,
    where ``- alpha * V^mu(parent)`` favours steps that made progress from a weaker state (so with
    B = 1 the search equals ``q_scorer``'s)."""

    def score(c: StepCandidates):
        q_child_n = q_model(c.tokens_nw, c.mask_nw, c.response_mask_nw)
        q_parent_m = q_model(c.parent_tokens_mw, c.parent_mask_mw, c.parent_response_mask_mw)
        return pav_scores(q_child_n, np.asarray(q_parent_m)[c.parent_n], alpha=alpha, k=k)

    return score


def q_scorer(q_model: QModel) -> StepScorer:
    """``Q^pi(s + a)`` of each candidate prefix."""
    return lambda c: np.asarray(q_model(c.tokens_nw, c.mask_nw, c.response_mask_nw), np.float64)


def explicit_prm_scorer(prm: ExplicitPRM) -> StepScorer:
    """The explicit PRM's probability that the new step is correct, ``sigmoid(z)`` at its end."""
    return q_scorer(explicit_prm_q(prm))


def implicit_prm_scorer(prm: Transformer, reference: Transformer, *, beta: float,
                        cumulative: bool = False) -> StepScorer:
    """``beta * sum_t q_t`` over the new step (or the whole response when ``cumulative``), with
    ``q_t = log pi_prm(y_t | y_<t) - log pi_ref(y_t | y_<t)`` (``scoring.token_log_ratios``)."""

    def score(c: StepCandidates):
        mask_nw = c.response_mask_nw if cumulative else c.step_mask_nw
        q_nw = scoring.token_log_ratios_jit(prm, reference, c.tokens_nw, c.mask_nw, mask_nw)
        return beta * np.asarray(q_nw, np.float64).sum(1)

    return score


def orm_final(orm: OutcomeRewardModel) -> FinalScorer:
    """The ORM's last-token score of each finished response."""
    return lambda tokens_nw, mask_nw, response_mask_nw: np.asarray(scoring.orm_scores(orm, tokens_nw, mask_nw))


def q_final(q_model: QModel) -> FinalScorer:
    """A Q model read at the response's last token, used as an outcome scorer."""
    return lambda tokens_nw, mask_nw, response_mask_nw: np.asarray(q_model(tokens_nw, mask_nw, response_mask_nw))


def explicit_prod_final(prm: ExplicitPRM, delimiter: tuple[int, ...]) -> FinalScorer:
    """``prod_s sigmoid(z_s)`` over the response's steps (ends at ``delimiter`` and the last token)."""

    def score(tokens_nw, mask_nw, response_mask_nw):
        ends_nw = np.asarray(step_ends_from_tokens(jnp.asarray(tokens_nw), jnp.asarray(response_mask_nw), delimiter))
        probs_nk, count_n = scoring.explicit_step_scores(prm, tokens_nw, mask_nw, response_mask_nw, ends_nw)
        valid_nk = np.arange(probs_nk.shape[1])[None, :] < count_n[:, None]
        return np.where(valid_nk, np.log(np.maximum(probs_nk, 1e-12)), 0.0).sum(1)

    return score


def implicit_min_final(prm: Transformer, reference: Transformer, delimiter: tuple[int, ...]) -> FinalScorer:
    """``min_s sum_{t in s} log pi_prm / pi_ref`` over the response's steps (``scoring.implicit_step_rewards``)."""

    def score(tokens_nw, mask_nw, response_mask_nw):
        ends_nw = np.asarray(step_ends_from_tokens(jnp.asarray(tokens_nw), jnp.asarray(response_mask_nw), delimiter))
        steps_nk, count_n = scoring.implicit_step_rewards(prm, reference, tokens_nw, mask_nw, response_mask_nw, ends_nw)
        valid_nk = np.arange(steps_nk.shape[1])[None, :] < count_n[:, None]
        return np.where(count_n > 0, np.where(valid_nk, steps_nk, np.inf).min(1), -np.inf)

    return score
