"""PAV-RL step rewards: a Q^pi model's step scores turned into Rewarding Progress's dense rewards.

A Q^pi model (an explicit PRM trained on Monte-Carlo step values, ``train_reward`` kind
``explicit_prm``) scores every step end t_h of a response: ``Q^pi(s_h, a_h) = sigmoid(z_{t_h})``.
With the Best-of-K prover ``mu = BoK(pi)`` (``provers.best_of_k_q``), per step h of row i:

    Q^mu(s_h, a_h)   = 1 - (1 - Q^pi(s_h, a_h))^K
    V^mu(s_h)        = Q^mu(s_{h-1}, a_{h-1})                for h >= 1 (steps only append)
    V^mu(s_0)        = 1 - (1 - mean_{j in group} Q^pi(s_0, a_0^j))^K
    A^mu(s_h, a_h)   = Q^mu(s_h, a_h) - V^mu(s_h)

``V^mu(s_0)`` takes the prompt's value under pi as the mean first-step Q^pi of its n sampled
responses (``V^pi(s_0) = E_{a ~ pi} Q^pi(s_0, a)``), then the BoK closed form. The reward placed
at step end t_h is, per ``PavRewardConfig.form``:

    "q"          Q^pi(s_h, a_h)                            (Math-Shepherd's step-by-step PPO)
    "effective"  Q^pi(s_h, a_h) + alpha * A^mu(s_h, a_h)   (PAV-RL, the paper's effective reward)
    "advantage"  alpha * A^mu(s_h, a_h)                    (progress only, beside the outcome)
    "q_plus_q"   Q^pi(s_h, a_h) + alpha * Q^mu(s_h, a_h)   (the paper's ablation: collapses)

and 0 off the step ends; the outcome reward and the baselines, discounts and whitening are the
advantage kernel's (``advantages.advantages_from_rewards``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from prime_jax.pav.provers import best_of_k_q
from prime_jax.config_checks import check_at_least, check_choice

FORMS = ("q", "effective", "advantage", "q_plus_q")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PavRewardConfig:
    """Which step reward a Q^pi model gives (module docstring); ``alpha`` weighs the prover term
    (the paper: 3-5 for RL), ``best_of_k`` is the prover's K (``mu = BoK(base)``) and
    ``prover_prm`` an explicit-PRM directory of a separate prover policy's Q (None: the base is pi)."""

    form: str = "q"
    alpha: float = 3.0
    best_of_k: int = 4
    prover_prm: str | None = None

    def __post_init__(self):
        check_choice("PavRewardConfig", "form", self.form, FORMS)
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


def pav_step_rewards(q_pi_bl: jax.Array, ends_bl: jax.Array, *, num_samples: int,
                     config: PavRewardConfig, q_prover_bl: jax.Array | None = None) -> jax.Array:
    """Step rewards (B, L) from ``Q^pi`` at the step ends ``ends_bl`` (module docstring); rows in
    groups of ``num_samples`` contiguous responses to one prompt. ``q_prover_bl``: a separate
    prover policy's ``Q^nu`` at the same step ends (None: the prover's base is pi)."""
    ends_bl = ends_bl.astype(bool)
    q_pi_bl = jnp.where(ends_bl, q_pi_bl.astype(jnp.float32), 0.0)
    if config.form == "q":
        return q_pi_bl
    q_base_bl = q_pi_bl if q_prover_bl is None else jnp.where(ends_bl, q_prover_bl.astype(jnp.float32), 0.0)
    q_mu_bl = jnp.where(ends_bl, best_of_k_q(q_base_bl, config.best_of_k), 0.0)
    if config.form == "q_plus_q":
        return q_pi_bl + config.alpha * q_mu_bl
    b = q_pi_bl.shape[0]
    first_gn = first_step_q(q_base_bl, ends_bl).reshape(b // num_samples, num_samples)
    v0_base_g = jnp.mean(first_gn, axis=1)  # rows without steps count as Q = 0
    v0_mu_b = jnp.repeat(best_of_k_q(v0_base_g, config.best_of_k), num_samples)
    adv_mu_bl = q_mu_bl - previous_step_values(q_mu_bl, ends_bl, v0_mu_b)
    if config.form == "advantage":
        return config.alpha * adv_mu_bl
    return q_pi_bl + config.alpha * adv_mu_bl
