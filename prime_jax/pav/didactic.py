"""The didactic planted sub-sequence task of Rewarding Progress (arXiv 2410.08146, section 3.3 /
appendix B) and the exact values of its prover family ``mu_gamma``.

Responses are ``LENGTH = 10`` tokens over ``{0, ..., 14}``; ``EOS = 14`` ends a response and every
token after it is masked. The outcome reward is 1 iff a hidden target ``y*`` of 5 tokens (from
``0..13``) occurs contiguously before the first EOS.

Progress through ``y*`` is a Knuth-Morris-Pratt automaton: state ``m`` in ``0..4`` is the length
of the longest suffix of the prefix that is a prefix of ``y*`` (so a mismatch falls back correctly
when ``y*`` overlaps itself), ``FOUND = 5`` is absorbing (reward 1) and ``ENDED = 6`` is absorbing
after an EOS without ``y*`` (reward 0). The prover ``mu_gamma`` weighs the next token of ``y*``,
``y*[m]``, by ``gamma`` and every other token (EOS included) by 1:

    mu_gamma(a | m) = (gamma if a == y*[m] else 1) / (gamma + VOCAB - 1)      (m < 5)

(uniform once FOUND or ENDED). Its values follow from a backward recursion over (position,
state): with ``delta`` the automaton and ``h`` the number of tokens already emitted,

    V(h, FOUND) = 1,  V(h, ENDED) = 0,  V(LENGTH, m) = 0 for m < 5,
    Q(h, m, a)  = V(h + 1, delta(m, a)),
    V(h, m)     = sum_a mu_gamma(a | m) Q(h, m, a).

Everything here is numpy on small integer arrays (B, L): b = row, l = response position.
"""

from __future__ import annotations

import numpy as np

VOCAB = 15
EOS = 14
LENGTH = 10
TARGET_LEN = 5
FOUND = TARGET_LEN
ENDED = TARGET_LEN + 1
NUM_STATES = TARGET_LEN + 2


def random_target(rng: np.random.Generator) -> tuple[int, ...]:
    """A hidden ``y*``: ``TARGET_LEN`` tokens drawn uniformly from ``0..EOS-1``."""
    return tuple(int(t) for t in rng.integers(0, EOS, size=TARGET_LEN))


def _check_target(target) -> tuple[int, ...]:
    target = tuple(int(t) for t in target)
    if len(target) != TARGET_LEN or not all(0 <= t < EOS for t in target):
        raise ValueError(f"target must be {TARGET_LEN} tokens in 0..{EOS - 1}, got {target}")
    return target


def transitions(target) -> np.ndarray:
    """The automaton ``delta`` (NUM_STATES, VOCAB) int32: ``delta(m, a)`` = the longest k with
    ``y*[:k]`` a suffix of ``y*[:m] + [a]`` (``FOUND`` at k = 5), ``ENDED`` on EOS; FOUND and ENDED
    are absorbing."""
    target = _check_target(target)
    delta_ma = np.empty((NUM_STATES, VOCAB), np.int32)
    delta_ma[FOUND], delta_ma[ENDED] = FOUND, ENDED
    for m in range(TARGET_LEN):
        for a in range(VOCAB):
            if a == EOS:
                delta_ma[m, a] = ENDED
                continue
            seen = target[:m] + (a,)
            delta_ma[m, a] = max(k for k in range(len(seen) + 1) if seen[len(seen) - k:] == target[:k])
    return delta_ma


def matched_states(tokens_bl: np.ndarray, target) -> np.ndarray:
    """Automaton states (B, L + 1) int32: column l is the state after the first l tokens."""
    delta_ma = transitions(target)
    tokens_bl = np.asarray(tokens_bl)
    states_bl = np.zeros((tokens_bl.shape[0], tokens_bl.shape[1] + 1), np.int32)
    for l in range(tokens_bl.shape[1]):
        states_bl[:, l + 1] = delta_ma[states_bl[:, l], tokens_bl[:, l]]
    return states_bl


def outcome_rewards(tokens_bl: np.ndarray, target) -> np.ndarray:
    """``r_b = 1`` iff ``y*`` occurs contiguously in row b before its first EOS, float32 (B,)."""
    return (matched_states(tokens_bl, target)[:, -1] == FOUND).astype(np.float32)


def response_mask(tokens_bl: np.ndarray) -> np.ndarray:
    """int32 (B, L): 1 on every token up to and including the first EOS, 0 after it."""
    is_eos_bl = np.asarray(tokens_bl) == EOS
    eos_before_bl = np.cumsum(is_eos_bl, axis=1) - is_eos_bl
    return (eos_before_bl == 0).astype(np.int32)


def prover_probs(target, gamma: float) -> np.ndarray:
    """``mu_gamma(a | m)`` as float64 (NUM_STATES, VOCAB) (see the module docstring)."""
    target = _check_target(target)
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    weights_ma = np.ones((NUM_STATES, VOCAB))
    weights_ma[np.arange(TARGET_LEN), target] = gamma
    return weights_ma / weights_ma.sum(axis=1, keepdims=True)


def prover_values(target, gamma: float, length: int = LENGTH) -> np.ndarray:
    """Exact ``V^{mu_gamma}(h, m)``, float64 (length + 1, NUM_STATES), by the backward recursion
    of the module docstring (h = tokens already emitted, m = automaton state)."""
    delta_ma, probs_ma = transitions(target), prover_probs(target, gamma)
    values_hm = np.zeros((length + 1, NUM_STATES))
    values_hm[:, FOUND] = 1.0
    for h in range(length - 1, -1, -1):
        q_ma = values_hm[h + 1][delta_ma]
        values_hm[h, :FOUND] = np.sum(probs_ma * q_ma, axis=1)[:FOUND]
    return values_hm


def prover_step_q(tokens_bl: np.ndarray, target, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``Q^{mu_gamma}(s_l, a_l)`` of the tokens each row took, float32 (B, L), and
    ``V^{mu_gamma}(s_0)`` (B,): ``Q(s_l, a_l) = V(l + 1, state after a_l)``. After an EOS the
    state is ENDED or FOUND, so masked positions hold 0 or 1 and their advantages are 0."""
    values_hm = prover_values(target, gamma, length=np.shape(tokens_bl)[1])
    states_bl = matched_states(tokens_bl, target)
    q_bl = values_hm[np.arange(1, states_bl.shape[1])[None, :], states_bl[:, 1:]]
    v0_b = np.full(states_bl.shape[0], values_hm[0, 0])
    return q_bl.astype(np.float32), v0_b.astype(np.float32)


def sample_prover(target, gamma: float, num: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``num`` responses from ``mu_gamma``: tokens int32 (num, LENGTH), EOS-padded after the first
    EOS, and their ``response_mask``."""
    delta_ma, cum_ma = transitions(target), np.cumsum(prover_probs(target, gamma), axis=1)
    tokens_bl = np.full((num, LENGTH), EOS, np.int32)
    state_b, ended_b = np.zeros(num, np.int32), np.zeros(num, bool)
    for l in range(LENGTH):
        u_b1 = rng.random((num, 1))
        token_b = np.minimum(np.sum(u_b1 >= cum_ma[state_b], axis=1), VOCAB - 1)
        token_b = np.where(ended_b, EOS, token_b)
        tokens_bl[:, l] = token_b
        state_b, ended_b = delta_ma[state_b, token_b], ended_b | (token_b == EOS)
    return tokens_bl, response_mask(tokens_bl)
