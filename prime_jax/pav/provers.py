"""Provers and process advantages (Rewarding Progress, Setlur et al. 2024, arXiv 2410.08146).

A *prover* is a policy ``mu`` used only to measure progress; its value functions are
``Q^mu(s, a)`` (probability of eventually being right after taking step ``a`` in state ``s`` and
then following ``mu``) and ``V^mu(s) = E_{a ~ mu(.|s)} Q^mu(s, a)``. A step's progress is the
advantage ``A^mu(s_h, a_h) = Q^mu(s_h, a_h) - V^mu(s_h)``; the policy being trained, ``pi``, is
rewarded per step with the effective reward ``Q^pi(s_h, a_h) + alpha * A^mu(s_h, a_h)``.

States are step prefixes and transitions are deterministic (``s_{h+1} = s_h + a_h``), so from
one trajectory's per-step Q values, ``V^mu(s_{h+1}) = Q^mu(s_h, a_h)``. Arrays are (B, H): row b,
step h; ``mask_bh`` is 1 on real steps. Pure functions of numpy / JAX arrays.
"""

from __future__ import annotations

import jax.numpy as jnp


def best_of_k_q(q_pi, k: int):
    """Q of the Best-of-K prover ``BoK(pi)`` (sample K completions from pi, keep a correct one).

        Q^{BoK(pi)}(s, a) = 1 - (1 - Q^pi(s, a))^K

    (K = 1 gives ``Q^pi``; K -> inf gives 1 wherever ``Q^pi > 0``). Same shape as ``q_pi``.
    """
    if k < 1:
        raise ValueError(f"best_of_k_q: k must be >= 1, got {k}")
    return 1.0 - (1.0 - jnp.asarray(q_pi)) ** k


def expected_state_values(q_next_bhv, prover_probs_bhv):
    """``V^mu(s_h) = sum_a mu(a | s_h) Q^mu(s_h, a)``: (B, H) from the Q of every next step
    (B, H, V) and the prover's next-step distribution (B, H, V)."""
    return jnp.sum(jnp.asarray(prover_probs_bhv) * jnp.asarray(q_next_bhv), axis=-1)


def trajectory_state_values(q_bh, v0_b):
    """``V^mu(s_0) = v0`` and ``V^mu(s_h) = Q^mu(s_{h-1}, a_{h-1})`` for h >= 1, (B, H).

    Holds for any prover because a step only appends to the prefix (deterministic transitions,
    no intermediate reward): the state after ``a_{h-1}`` is ``s_h``, so its value is that Q.
    """
    q_bh = jnp.asarray(q_bh)
    v0_b1 = jnp.asarray(v0_b, q_bh.dtype).reshape(-1, 1)
    return jnp.concatenate([v0_b1, q_bh[:, :-1]], axis=1)


def process_advantages(q_bh, v0_b, mask_bh):
    """``A^mu(s_h, a_h) = Q^mu(s_h, a_h) - V^mu(s_h)`` per step, 0 where ``mask_bh`` is 0.

    ``q_bh`` holds ``Q^mu`` of the steps a trajectory took, ``v0_b`` the prover's value of the
    start state; ``V^mu(s_h)`` comes from ``trajectory_state_values``. The advantages of a row
    telescope: ``sum_h A_h = Q^mu(s_{H'-1}, a_{H'-1}) - V^mu(s_0)`` over its H' real steps.
    """
    q_bh = jnp.asarray(q_bh)
    adv_bh = q_bh - trajectory_state_values(q_bh, v0_b)
    return jnp.where(jnp.asarray(mask_bh) > 0, adv_bh, 0.0)


def effective_rewards(q_pi_bh, adv_mu_bh, mask_bh, *, alpha: float):
    """Per-step effective reward ``Q^pi(s_h, a_h) + alpha * A^mu(s_h, a_h)``, 0 off the mask.

    (alpha = 0 is plain ``Q^pi``; the paper uses alpha ~ 1 on the didactic task, 3-5 for RL.)
    """
    r_bh = jnp.asarray(q_pi_bh) + alpha * jnp.asarray(adv_mu_bh)
    return jnp.where(jnp.asarray(mask_bh) > 0, r_bh, 0.0)
