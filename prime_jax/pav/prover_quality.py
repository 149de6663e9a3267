"""How useful a prover ``mu`` is to a policy ``pi``: the distinguishability and alignment
quantities of Rewarding Progress (Setlur et al. 2024, arXiv 2410.08146, section 3 / Theorem 3.1).

A policy-gradient step on the effective reward ``Q^pi + alpha A^mu`` improves ``pi`` by (to first
order, up to the step size) a term in ``E_s E_{a~pi}[A^mu(s, a) A^pi(s, a)]`` plus a term in
``E_s Var_{a~pi}[A^mu(s, a)]``: the prover must *distinguish* the actions ``pi`` takes, and its
advantages must be *aligned* with ``pi``'s own. These are measured here on a set of S states
``s`` (e.g. the prefixes of rollouts of ``pi``, i.e. samples of its state distribution) with
every one of V actions scored, all as arrays ``(S, V)``:

    pi_sv[s, a]    = pi(a | s)                  (the policy's next-step distribution; rows sum to 1)
    q_mu_sv[s, a]  = Q^mu(s, a)                 (the prover's value of taking a, then following mu)
    q_pi_sv[s, a]  = Q^pi(s, a)                 (exact, or a Monte-Carlo mean of n rollouts of pi)

Within a state, moments are under ``a ~ pi(. | s)``:

    E_pi[x](s)      = sum_a pi(a|s) x(s, a)
    Var_pi[x](s)    = sum_a pi(a|s) (x(s, a) - E_pi[x](s))^2
    Cov_pi[x, y](s) = sum_a pi(a|s) (x(s, a) - E_pi[x](s)) (y(s, a) - E_pi[y](s))

``A^mu(s, a) = Q^mu(s, a) - V^mu(s)`` and ``A^pi(s, a) = Q^pi(s, a) - V^pi(s)`` differ from the Q's
by a per-state constant, so ``Var_pi[A^mu] = Var_pi[Q^mu]``, and since ``E_pi[A^pi](s) = 0``,
``E_pi[A^mu A^pi](s) = Cov_pi[Q^mu, Q^pi](s)``. Over states (``w_s``: a 0/1 state mask, means
``E_s[f] = sum_s w_s f(s) / sum_s w_s``):

    distinguishability  D(mu; pi)   = E_s[ Var_pi[A^mu](s) ]
    alignment           C(mu; pi)   = E_s[ Cov_pi[A^mu, A^pi](s) ]  = E_s E_{a~pi}[A^mu A^pi]
    pi's own spread     D(pi; pi)   = E_s[ Var_pi[A^pi](s) ]
    correlation         rho(mu; pi) = C(mu; pi) / sqrt(D(mu; pi) * D(pi; pi))

``rho`` is the pooled within-state correlation of ``A^mu`` with ``A^pi`` over pi's (state, action)
pairs, in [-1, 1] (Cauchy-Schwarz over the pairs): 1 for ``mu = pi`` (or any ``Q^mu = c Q^pi + b``,
c > 0), -1 for an anti-aligned prover such as ``Q^mu = 1 - Q^pi``; ``D = 0`` for a prover whose Q is
constant over the actions of every state (too strong or too weak: ``A^mu = 0``).

Monte-Carlo ``Q^pi``: with ``Qhat^pi(s, a)`` the mean of n independent 0/1 outcomes, ``C`` is
unbiased as it is (linear in ``Qhat``), but ``Var_pi[Qhat]`` over-estimates ``Var_pi[Q^pi]`` by
the noise ``sum_a pi(a) (1 - pi(a)) sigma^2(s, a)`` with ``sigma^2 = Q (1 - Q) / n``;
``mc_noise_variance`` gives the unbiased estimate ``Qhat (1 - Qhat) / (n - 1)`` of ``sigma^2`` and
``quality(..., q_pi_noise_sv=...)`` subtracts it, so ``D(pi; pi)`` and ``rho`` are not shrunk by
label noise (the corrected ``rho`` can leave [-1, 1] by estimation error). ``rho`` is nan when
``D(pi; pi)`` or ``D(mu; pi)`` is not positive (e.g. a policy that never succeeds from its states:
``A^pi = 0`` and nothing is there to align with).

Restricting to a subset of actions (e.g. every action but EOS, to separate "don't stop" from
"make progress"): ``condition_on_actions`` gives ``pi(a | s, a in K_s)`` and the states with mass
on K_s; the quantities above under that conditional policy are the within-K_s part of the
law-of-total-variance split of ``Var_pi``.

Pure numpy (float64) functions; shape suffixes s = state, a/v = action.
"""

from __future__ import annotations

import numpy as np

_TINY = 1e-12


def _check_policy(pi_sv) -> np.ndarray:
    pi_sv = np.asarray(pi_sv, np.float64)
    if pi_sv.ndim != 2:
        raise ValueError(f"pi_sv must be (S, V), got shape {pi_sv.shape}")
    if np.any(pi_sv < 0) or not np.allclose(pi_sv.sum(axis=1), 1.0, atol=1e-5):
        raise ValueError("pi_sv rows must be probability distributions")
    return pi_sv


def _state_weights(mask_s, num_states: int) -> np.ndarray:
    w_s = np.ones(num_states) if mask_s is None else np.asarray(mask_s, np.float64)
    if w_s.shape != (num_states,) or w_s.sum() <= 0:
        raise ValueError(f"mask_s must be ({num_states},) with at least one state")
    return w_s


def policy_mean(pi_sv, x_sv) -> np.ndarray:
    """``E_{a~pi}[x](s) = sum_a pi(a|s) x(s, a)``, (S,)."""
    return np.sum(_check_policy(pi_sv) * np.asarray(x_sv, np.float64), axis=1)


def policy_advantages(pi_sv, q_sv) -> np.ndarray:
    """``A(s, a) = Q(s, a) - E_{a'~pi}[Q](s)``, (S, V): advantages centred under ``pi`` (for
    ``Q = Q^pi`` this is ``A^pi``; a prover's ``A^mu`` centres on ``V^mu`` instead, which only shifts
    each state by a constant)."""
    q_sv = np.asarray(q_sv, np.float64)
    return q_sv - policy_mean(pi_sv, q_sv)[:, None]


def policy_covariance(pi_sv, x_sv, y_sv) -> np.ndarray:
    """``Cov_{a~pi}[x, y](s)``, (S,) (module docstring); ``x = y`` gives ``Var_{a~pi}[x](s)``."""
    pi_sv = _check_policy(pi_sv)
    return np.sum(pi_sv * policy_advantages(pi_sv, x_sv) * policy_advantages(pi_sv, y_sv), axis=1)


def condition_on_actions(pi_sv, keep_sv) -> tuple[np.ndarray, np.ndarray]:
    """``pi(a | s, a in K_s)`` (S, V) for the 0/1 action mask ``keep_sv`` (K_s), and the 0/1 state
    mask (S,) of states where pi puts positive mass on K_s (their rows are uniform, unused)."""
    pi_sv = _check_policy(pi_sv)
    kept_sv = pi_sv * (np.asarray(keep_sv) > 0)
    mass_s = kept_sv.sum(axis=1)
    valid_s = (mass_s > 0).astype(np.float64)
    uniform_sv = np.full_like(pi_sv, 1.0 / pi_sv.shape[1])
    return np.where(valid_s[:, None] > 0, kept_sv / np.maximum(mass_s, _TINY)[:, None], uniform_sv), valid_s


def mc_noise_variance(q_hat_sv, num_rollouts: int) -> np.ndarray:
    """Unbiased estimate of ``Var(Qhat)``, ``Qhat (1 - Qhat) / (n - 1)``, for ``Qhat`` the mean of n
    independent 0/1 outcomes, (S, V). Entries known exactly (no rollouts needed) should be set to 0
    by the caller."""
    if num_rollouts < 2:
        raise ValueError(f"mc_noise_variance needs num_rollouts >= 2, got {num_rollouts}")
    q_hat_sv = np.asarray(q_hat_sv, np.float64)
    return q_hat_sv * (1.0 - q_hat_sv) / (num_rollouts - 1)


def distinguishability(pi_sv, q_mu_sv, mask_s=None) -> float:
    """``D(mu; pi) = E_s[Var_{a~pi}[A^mu](s)]`` (module docstring)."""
    var_s = policy_covariance(pi_sv, q_mu_sv, q_mu_sv)
    w_s = _state_weights(mask_s, var_s.shape[0])
    return float(np.sum(w_s * var_s) / w_s.sum())


def alignment(pi_sv, q_mu_sv, q_pi_sv, mask_s=None) -> float:
    """``C(mu; pi) = E_s[Cov_{a~pi}[A^mu, A^pi](s)] = E_s E_{a~pi}[A^mu A^pi]`` (module docstring)."""
    cov_s = policy_covariance(pi_sv, q_mu_sv, q_pi_sv)
    w_s = _state_weights(mask_s, cov_s.shape[0])
    return float(np.sum(w_s * cov_s) / w_s.sum())


def quality(pi_sv, q_mu_sv, q_pi_sv, mask_s=None, q_pi_noise_sv=None) -> dict[str, float]:
    """All four quantities of the module docstring: ``distinguishability`` D(mu; pi),
    ``alignment`` C(mu; pi), ``pi_spread`` D(pi; pi) and ``correlation`` rho(mu; pi) (nan when
    either D is not positive).

    ``q_pi_noise_sv``: per-(s, a) variance of a Monte-Carlo ``q_pi_sv`` (``mc_noise_variance``);
    its contribution ``sum_a pi (1 - pi) sigma^2`` is removed from ``D(pi; pi)`` before ``rho``.
    """
    pi_sv = _check_policy(pi_sv)
    w_s = _state_weights(mask_s, pi_sv.shape[0])
    d_mu = distinguishability(pi_sv, q_mu_sv, w_s)
    c = alignment(pi_sv, q_mu_sv, q_pi_sv, w_s)
    var_pi_s = policy_covariance(pi_sv, q_pi_sv, q_pi_sv)
    if q_pi_noise_sv is not None:
        var_pi_s = var_pi_s - np.sum(pi_sv * (1.0 - pi_sv) * np.asarray(q_pi_noise_sv, np.float64), axis=1)
    d_pi = float(np.sum(w_s * var_pi_s) / w_s.sum())
    rho = c / np.sqrt(d_mu * d_pi) if min(d_mu, d_pi) > _TINY else float("nan")
    return {"distinguishability": d_mu, "alignment": c, "pi_spread": d_pi, "correlation": float(rho)}
