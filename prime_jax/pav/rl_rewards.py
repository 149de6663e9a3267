"""PAV-RL from a Q^pi model's step scores: Rewarding Progress's estimator, and Math-Shepherd's.

A Q^pi model (an explicit PRM trained on Monte-Carlo step values, ``train_reward`` kind
``explicit_prm``) scores every step end t_h of a response: ``Q^pi(s_h, a_h) = sigmoid(z_{t_h})``.
With the Best-of-K prover ``mu = BoK(base)`` (``provers.best_of_k_q``; base = pi, or a separate
prover policy whose Q model is ``prover_prm``), per step h of row i:

    Q^mu(s_h, a_h)   = 1 - (1 - Q^base(s_h, a_h))^K
    V^mu(s_h)        = Q^mu(s_{h-1}, a_{h-1})                for h >= 1 (steps only append)
    V^mu(s_0)        = 1 - (1 - mean_{j in group, j != i, j has steps} Q^base(s_0, a_0^j))^K
    A^mu(s_h, a_h)   = Q^mu(s_h, a_h) - V^mu(s_h)

``V^mu(s_0)`` takes the prompt's value as the mean first-step Q of the *other* responses of its
group that have steps (leave-one-out; the row's own first step when no other has one), then the
BoK closed form.

``form = "q"`` (Math-Shepherd's step-by-step PPO): the step reward ``Q^pi(s_h, a_h)`` at each step
end, 0 elsewhere; the advantage kernel sums it into returns with the outcome and its baselines
(``pav_step_rewards`` -> ``advantages.advantages_from_rewards``).

``form = "effective"`` (PAV-RL) and ``"q_plus_q"`` (the paper's ablation) follow the paper's
gradient ``sum_h grad log pi(a_h | s_h) (Q^pi(s_h, a_h) + alpha A^mu(s_h, a_h))``: each token of
step h gets its own step's term, with no sum over later steps (``pav_token_advantages``):

    adv[i, t in step h] = (Qhat^pi_ih - b_i) + alpha * P_ih
    Qhat^pi_ih = R_i (``q_pi = "outcome"``: the response's outcome, the on-policy estimate)
               | Q^pi(s_h, a_h) (``q_pi = "model"``: the Q^pi model's score)
    b_i        = mean_{j in group, j != i} R_j
    P_ih       = A^mu(s_h, a_h) ("effective") | Q^mu(s_h, a_h) ("q_plus_q")

Tokens after a row's last step end (and rows without steps) get ``R_i - b_i``. The outcome
enters once (through Qhat^pi), then the advantages are whitened as usual.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from prime_jax.pav.provers import best_of_k_q
from prime_jax.config_checks import check_at_least, check_choice

FORMS = ("q", "effective", "q_plus_q")
PER_TOKEN_FORMS = ("effective", "q_plus_q")
Q_PI_SOURCES = ("outcome", "model")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PavRewardConfig:
    """Which step reward a Q^pi model gives (module docstring); ``alpha`` weighs the prover term
    (the paper: 3-5 for RL), ``best_of_k`` is the prover's K (``mu = BoK(base)``),
    ``prover_prm`` an explicit-PRM directory of a separate prover policy's Q (None: the base is pi)
    and ``q_pi`` the Q^pi estimate of the per-token forms (``"outcome"``: R_i; ``"model"``: the
    Q^pi model's step score)."""

    form: str = "q"
    alpha: float = 3.0
    best_of_k: int = 4
    prover_prm: str | None = None
    q_pi: str = "outcome"

    def __post_init__(self):
        check_choice("PavRewardConfig", "form", self.form, FORMS)
        check_choice("PavRewardConfig", "q_pi", self.q_pi, Q_PI_SOURCES)
        check_at_least("PavRewardConfig", "best_of_k", self.best_of_k, 1)
        check_at_least("PavRewardConfig", "alpha", self.alpha, 0)
        if self.prover_prm is not None and self.form == "q":
            raise ValueError(f"PavRewardConfig.prover_prm={self.prover_prm!r} with form='q': the plain Q^pi "
                             "reward has no prover term")


def previous_step_values(q_bl: jax.Array, ends_bl: jax.Array, first_b: jax.Array) -> jax.Array:
    """(B, L): at every step end t, ``q`` at the row's previous step end, or ``first_b`` at its
    first one; 0 off the step ends. ``prev(t) = max{s < t : ends[s]}`` by a running maximum."""
    _, length = q_bl.shape
    ends_bl = ends_bl.astype(bool)
    index_bl = jnp.where(ends_bl, jnp.arange(length)[None, :], -1)
    last_upto_bl = jax.lax.cummax(index_bl, axis=1)
    prev_bl = jnp.concatenate([jnp.full_like(last_upto_bl[:, :1], -1), last_upto_bl[:, :-1]], axis=1)
    gathered_bl = jnp.take_along_axis(q_bl, jnp.maximum(prev_bl, 0), axis=1)
    values_bl = jnp.where(prev_bl >= 0, gathered_bl, first_b[:, None])
    return jnp.where(ends_bl, values_bl, 0.0)


def first_step_q(q_bl: jax.Array, ends_bl: jax.Array) -> jax.Array:
    """(B,): ``q`` at each row's first step end (0 for a row without steps)."""
    ends_bl = ends_bl.astype(bool)
    first_l = jnp.argmax(ends_bl, axis=1)
    return jnp.where(ends_bl.any(axis=1), jnp.take_along_axis(q_bl, first_l[:, None], axis=1)[:, 0], 0.0)


def prover_start_values(q_base_bl: jax.Array, ends_bl: jax.Array, *, num_samples: int, best_of_k: int) -> jax.Array:
    """(B,): ``V^mu(s_0) = BoK(mean of the first-step Q^base of the group's other rows with steps)``;
    the row's own first-step Q when no other row of its group has a step."""
    has_b = ends_bl.any(axis=1)
    first_b = first_step_q(q_base_bl, ends_bl)
    others_sum_b = _leave_one_out_sum(jnp.where(has_b, first_b, 0.0), num_samples)
    others_count_b = _leave_one_out_sum(has_b.astype(jnp.float32), num_samples)
    mean_b = jnp.where(others_count_b > 0, others_sum_b / jnp.maximum(others_count_b, 1.0), first_b)
    return best_of_k_q(mean_b, best_of_k)


def _leave_one_out_sum(x_b: jax.Array, num_samples: int) -> jax.Array:
    x_gn = x_b.reshape(-1, num_samples)
    return (jnp.sum(x_gn, axis=1, keepdims=True) - x_gn).reshape(-1)


def prover_terms(q_base_bl: jax.Array, ends_bl: jax.Array, *, num_samples: int, config: PavRewardConfig):
    """``(Q^mu, A^mu)`` (B, L) at the step ends, 0 elsewhere (module docstring)."""
    q_mu_bl = jnp.where(ends_bl, best_of_k_q(q_base_bl, config.best_of_k), 0.0)
    v0_mu_b = prover_start_values(q_base_bl, ends_bl, num_samples=num_samples, best_of_k=config.best_of_k)
    return q_mu_bl, q_mu_bl - previous_step_values(q_mu_bl, ends_bl, v0_mu_b)


def pav_step_rewards(q_pi_bl: jax.Array, ends_bl: jax.Array, *, num_samples: int,
                     config: PavRewardConfig, q_prover_bl: jax.Array | None = None) -> jax.Array:
    """Step rewards (B, L) at the step ends ``ends_bl``, 0 elsewhere: ``Q^pi`` (form "q"), or the
    per-step terms ``Q^pi + alpha A^mu`` / ``Q^pi + alpha Q^mu`` of the per-token forms (recorded as
    the step's process rewards; their estimator is :func:`pav_token_advantages`, not a sum of these).
    Rows in groups of ``num_samples``; ``q_prover_bl``: a separate prover's ``Q^nu`` (None: pi's)."""
    ends_bl = ends_bl.astype(bool)
    q_pi_bl = jnp.where(ends_bl, q_pi_bl.astype(jnp.float32), 0.0)
    if config.form == "q":
        return q_pi_bl
    q_base_bl = q_pi_bl if q_prover_bl is None else jnp.where(ends_bl, q_prover_bl.astype(jnp.float32), 0.0)
    q_mu_bl, adv_mu_bl = prover_terms(q_base_bl, ends_bl, num_samples=num_samples, config=config)
    return q_pi_bl + config.alpha * (q_mu_bl if config.form == "q_plus_q" else adv_mu_bl)


def spread_over_steps(values_bl: jax.Array, ends_bl: jax.Array) -> jax.Array:
    """(B, L): every token gets the value at the end of its step (the first step end at or after
    it); tokens after the row's last step end get 0."""
    _, length = values_bl.shape
    index_bl = jnp.where(ends_bl, jnp.arange(length)[None, :], length)
    next_end_bl = jax.lax.cummin(index_bl, axis=1, reverse=True)
    gathered_bl = jnp.take_along_axis(values_bl, jnp.minimum(next_end_bl, length - 1), axis=1)
    return jnp.where(next_end_bl < length, gathered_bl, 0.0)


def pav_token_advantages(q_pi_bl: jax.Array, ends_bl: jax.Array, mask_bl: jax.Array, outcome_b: jax.Array, *,
                         num_samples: int, config: PavRewardConfig, q_prover_bl: jax.Array | None = None) -> jax.Array:
    """PAV-RL's pre-whitening advantages (B, L) (module docstring, forms "effective" / "q_plus_q"):
    ``(Qhat^pi_ih - b_i) + alpha * P_ih`` on every token of step h, no sum over later steps."""
    if config.form not in PER_TOKEN_FORMS:
        raise ValueError(f"pav_token_advantages takes form in {PER_TOKEN_FORMS}, got {config.form!r}")
    ends_bl = ends_bl.astype(bool) & mask_bl.astype(bool)
    q_pi_bl = jnp.where(ends_bl, q_pi_bl.astype(jnp.float32), 0.0)
    q_base_bl = q_pi_bl if q_prover_bl is None else jnp.where(ends_bl, q_prover_bl.astype(jnp.float32), 0.0)
    q_mu_bl, adv_mu_bl = prover_terms(q_base_bl, ends_bl, num_samples=num_samples, config=config)
    prover_bl = spread_over_steps(q_mu_bl if config.form == "q_plus_q" else adv_mu_bl, ends_bl)
    outcome_b = jnp.asarray(outcome_b, jnp.float32)
    baseline_b = _leave_one_out_sum(outcome_b, num_samples) / (num_samples - 1)
    in_step_bl = spread_over_steps(ends_bl.astype(jnp.float32), ends_bl) > 0
    q_hat_bl = outcome_b[:, None] if config.q_pi == "outcome" else jnp.where(
        in_step_bl, spread_over_steps(q_pi_bl, ends_bl), outcome_b[:, None])
    return jnp.where(mask_bl.astype(bool), q_hat_bl - baseline_b[:, None] + config.alpha * prover_bl, 0.0)
