"""The fused advantage kernel (SPEC 1.6): per-source baselines, discounted returns, whitening.

Two reward sources share one structure. The process source ``x = r`` lives on every valid token,
the outcome source ``x = acc`` on the last valid token only (``t = len_i - 1``). Per source:

    m_i        = mean of x over the source's masked positions of row i
    x'[i,t]    = scale_i * (x[i,t] - base_i)  on masked positions, 0 elsewhere
    G[i,t]     = x'[i,t] + gamma * G[i,t+1]   over the padded width (G[i,L] = 0)
    returns    = process_coef * G_process + outcome_coef * G_outcome
    advantages = masked_whiten(returns, mask)

``(scale_i, base_i)`` per ``estimator`` (group = the n contiguous rows of a prompt):

    rloo (reference)    n/(n-1),            mean_{j in group} m_j
    rloo (paper, Eq. 5) 1,                  mean_{j in group, j != i} m_j
    grpo                1/(std_g(m) + 1e-6), mean_{j in group} m_j  (std with Bessel, like torch)
    reinforce           1,                  0
    reinforce_mean      1,                  mean over the whole batch of m

For the outcome the reference rloo form is exactly ``acc_i - mean_{j != i} acc_j``; the paper and
reference forms differ only for the process source at t > 0 (by a zero-sum-per-row term).

``credit`` other than ``"sum"`` replaces G_process by a form of ``prime_jax.credit``: ``"pure"``
(PURE's softmin-weighted step rewards, temperature ``pure_temperature``, PURE's leave-one-out
baseline ``pure_baseline``), ``"msa"`` (SPRO's masked step advantage: the cumulative process
reward centred over the group's responses at the same token position) or ``"future_min"`` (the
minimum of the future process rewards; not PURE, kept because logged results measured it).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from prime_jax import credit as credit_lib
from prime_jax import rewards as rewards_lib
from prime_jax.config_checks import check_choice, check_in_range, check_positive
from prime_jax.rewards import ImplicitRewardConfig
from prime_jax.scans import DEFAULT_SCAN_METHOD, SCAN_METHODS, discounted_reverse_cumsum

ESTIMATORS = ("rloo", "grpo", "reinforce", "reinforce_mean")
PROCESS_BASELINES = ("reference", "paper")
CREDITS = ("sum", "pure", "msa", "future_min")
LEAVE_ONE_OUT_CREDITS = ("pure", "future_min")  # their process baseline is their own leave-one-out mean


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdvantageConfig:
    """How rewards become advantages (SPEC 1.6): per-source coefficients, discounts, baseline.

    ``returns = process_coef * G_process + outcome_coef * G_outcome`` with each source centred by
    ``estimator`` (module docstring), discounted by its gamma, then whitened when ``whiten``.
    ``process_coef = 0`` is RLOO with the outcome verifier only (no PRM). ``credit`` is the
    process source's credit assignment: ``sum`` (PRIME), ``pure`` (PURE's step transform at
    temperature ``pure_temperature`` with its ``pure_baseline``, :func:`prime_jax.credit.pure_process_returns`),
    ``msa`` (SPRO's masked step advantage, :func:`prime_jax.credit.masked_step_process_returns`; the
    ``estimator`` then centres the outcome only) or ``future_min`` (the minimum of future process
    rewards, not PURE; :func:`prime_jax.credit.future_min_process_returns`).
    Hashable: the fused kernel takes it as one static argument.
    """

    process_coef: float = 1.0
    outcome_coef: float = 1.0
    process_gamma: float = 1.0
    outcome_gamma: float = 1.0
    estimator: str = "rloo"
    process_baseline: str = "reference"
    whiten: bool = True
    scan_method: str = DEFAULT_SCAN_METHOD
    credit: str = "sum"
    pure_temperature: float = 0.1
    pure_baseline: str = "token"

    def __post_init__(self):
        check_choice("AdvantageConfig", "estimator", self.estimator, ESTIMATORS)
        check_choice("AdvantageConfig", "credit", self.credit, CREDITS)
        check_positive("AdvantageConfig", "pure_temperature", self.pure_temperature)
        check_choice("AdvantageConfig", "pure_baseline", self.pure_baseline, credit_lib.PURE_BASELINES)
        if self.credit in LEAVE_ONE_OUT_CREDITS and self.estimator != "rloo":
            raise ValueError(f"AdvantageConfig.credit={self.credit!r} takes PURE's leave-one-out baseline: needs "
                             f"estimator='rloo', got estimator={self.estimator!r}")
        if self.credit != "sum" and self.process_gamma != 1:
            raise ValueError(f"AdvantageConfig.credit={self.credit!r} sums undiscounted process rewards: needs "
                             f"process_gamma=1, got {self.process_gamma!r}")
        check_choice("AdvantageConfig", "process_baseline", self.process_baseline, PROCESS_BASELINES)
        check_choice("AdvantageConfig", "scan_method", self.scan_method, SCAN_METHODS)
        for name in ("process_gamma", "outcome_gamma"):
            check_in_range("AdvantageConfig", name, getattr(self, name), 0, 1)

    @property
    def uses_prm(self) -> bool:
        """Whether the process source (and so an implicit PRM) takes part."""
        return self.process_coef != 0


def masked_whiten(x, mask):
    """``(x - mu) * rsqrt(var * N/(N-1) + 1e-8)`` over the valid tokens of the whole array.

    ``N = sum(mask)``, ``mu`` and ``var`` (biased) are masked means. The reference divides two
    integer tensors for the Bessel factor, which torch does in float32 even for float64 inputs:
    we reproduce that (``f32(N) / f32(N - 1)``, then promoted). Padding positions are set to 0
    (the reference leaves ``(x - mu) * rsqrt(...)`` there).
    """
    x_bt = jnp.asarray(x)
    valid_bt = jnp.asarray(mask).astype(bool)
    w_bt = valid_bt.astype(x_bt.dtype)
    n = jnp.sum(valid_bt, dtype=jnp.int32)
    n_f = n.astype(x_bt.dtype)
    mu = jnp.sum(x_bt * w_bt) / n_f
    var = jnp.sum(jnp.square(x_bt - mu) * w_bt) / n_f
    n32 = n.astype(jnp.float32)
    bessel = (n32 / (n32 - 1.0)).astype(x_bt.dtype)
    out_bt = (x_bt - mu) * jax.lax.rsqrt(var * bessel + jnp.asarray(1e-8, x_bt.dtype))
    return jnp.where(valid_bt, out_bt, jnp.zeros((), x_bt.dtype))


def source_baseline(m_b, *, num_samples: int, estimator: str = "rloo",
                    process_baseline: str = "reference"):
    """Per-row ``(scale_b, base_b)`` with ``x' = scale * (x - base)`` (module docstring table)."""
    n = num_samples
    m_gn = m_b.reshape(-1, n)
    mean_b = jnp.repeat(jnp.mean(m_gn, axis=-1), n)
    one_b = jnp.ones_like(m_b)
    if estimator == "rloo":
        if n < 2:
            raise ValueError("rloo needs num_samples >= 2")
        if process_baseline == "paper":
            return one_b, (n * mean_b - m_b) / (n - 1)
        if process_baseline != "reference":
            raise ValueError(f"process_baseline must be one of {PROCESS_BASELINES}")
        return one_b * (n / (n - 1)), mean_b
    if estimator == "grpo":
        std_b = jnp.repeat(jnp.std(m_gn, axis=-1, ddof=1 if n > 1 else 0), n)
        return 1.0 / (std_b + 1e-6), mean_b
    if estimator == "reinforce":
        return one_b, jnp.zeros_like(m_b)
    if estimator == "reinforce_mean":
        return one_b, jnp.broadcast_to(jnp.mean(m_b), m_b.shape)
    raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")


def _is_static(x):
    return isinstance(x, (int, float))


def discount_from_last(len_b, l, gamma, dtype):
    """``gamma^(len_i - 1 - t)`` for ``t < len_i``, else 0 (B, L): G of a last-token reward."""
    k_bt = (len_b - 1)[:, None] - jnp.arange(l, dtype=jnp.int32)[None, :]
    zero = jnp.zeros((), dtype)
    if _is_static(gamma) and gamma == 1:
        return (k_bt >= 0).astype(dtype)
    if _is_static(gamma) and gamma == 0:
        return (k_bt == 0).astype(dtype)
    g = jnp.asarray(gamma, dtype)
    return jnp.where(k_bt >= 0, jnp.power(g, jnp.maximum(k_bt, 0).astype(dtype)), zero)


def outcome_term(outcome, len_b, *, num_samples: int, outcome_coef, estimator: str, dtype):
    """``x'_i = outcome_coef * scale_i * (acc_i - base_i)``, the outcome source's centred reward
    on each row's last valid token (0 for an empty row)."""
    acc_b = jnp.asarray(outcome, dtype)
    scale_b, base_b = source_baseline(acc_b, num_samples=num_samples, estimator=estimator)
    return jnp.where(len_b > 0, outcome_coef * (scale_b * (acc_b - base_b)), jnp.zeros((), dtype))


def estimator_returns(process_rewards, outcome, mask, *, num_samples: int,
                      process_gamma=1.0, outcome_gamma=1.0, process_coef=1.0, outcome_coef=1.0,
                      estimator: str = "rloo", process_baseline: str = "reference",
                      scan_method: str = DEFAULT_SCAN_METHOD):
    """``returns = pc * G_process + oc * G_outcome`` (B, L) for any estimator (module docstring).

    ``process_rewards`` (B, L) may hold garbage in padding (ignored); ``outcome`` (B,) is acc.
    Either may be None (or its coefficient 0) to drop that source. The outcome's G has the closed
    form ``x'_i * gamma^(len_i - 1 - t)`` for ``t < len_i``; when both gammas are equal Python
    numbers the two sources share one scan instead.
    """
    valid_bt = jnp.asarray(mask).astype(bool)
    use_p = process_rewards is not None and not (_is_static(process_coef) and process_coef == 0)
    use_o = outcome is not None and not (_is_static(outcome_coef) and outcome_coef == 0)
    parts = [jnp.asarray(a) for a in (process_rewards, outcome) if a is not None]
    dtype = jnp.result_type(jnp.float32, *parts)
    len_b = jnp.sum(valid_bt, axis=-1, dtype=jnp.int32)
    zero = jnp.zeros((), dtype)
    xp_bt = None
    if use_p:
        x_bt = jnp.where(valid_bt, jnp.asarray(process_rewards, dtype), zero)
        m_b = jnp.sum(x_bt, axis=-1) / jnp.maximum(len_b, 1).astype(dtype)
        scale_b, base_b = source_baseline(m_b, num_samples=num_samples, estimator=estimator,
                                          process_baseline=process_baseline)
        xp_bt = jnp.where(valid_bt, scale_b[:, None] * (x_bt - base_b[:, None]), zero)
        xp_bt = process_coef * xp_bt
    if use_o:
        xo_b = outcome_term(outcome, len_b, num_samples=num_samples, outcome_coef=outcome_coef,
                            estimator=estimator, dtype=dtype)
        if use_p and _is_static(process_gamma) and process_gamma == outcome_gamma:
            last_bt = rewards_lib.last_token_onehot(valid_bt)
            xp_bt = xp_bt + jnp.where(last_bt, xo_b[:, None], zero)
            use_o = False
    g_bt = jnp.zeros(valid_bt.shape, dtype)
    if use_p:
        g_bt = discounted_reverse_cumsum(xp_bt, process_gamma, method=scan_method)
    if use_o:
        g_bt = g_bt + xo_b[:, None] * discount_from_last(len_b, valid_bt.shape[-1], outcome_gamma,
                                                         dtype)
    return g_bt


def rloo_returns(process_rewards, outcome, mask, *, num_samples: int, process_gamma=1.0,
                 outcome_gamma=1.0, process_baseline: str = "reference",
                 scan_method: str = DEFAULT_SCAN_METHOD):
    """PRIME reference returns: RLOO per source, discounted, summed (module docstring).

    ``x'[i,t] = n/(n-1) * (x[i,t] - mean_{j in group} m_j)`` on the source's masked positions,
    ``G[i,t] = x'[i,t] + gamma * G[i,t+1]``; returns = G_process + G_outcome.
    """
    return estimator_returns(process_rewards, outcome, mask, num_samples=num_samples,
                             process_gamma=process_gamma, outcome_gamma=outcome_gamma,
                             estimator="rloo", process_baseline=process_baseline,
                             scan_method=scan_method)


class PrimeAdvantages(NamedTuple):
    """Output of :func:`prime_advantages`; all (B, L), 0 on padding."""

    advantages: jax.Array
    returns: jax.Array
    process_rewards: jax.Array


@functools.partial(jax.jit, static_argnames=("num_samples", "reward", "advantage"))
def prime_advantages(logp_prm, logp_ref, mask, outcome, *, num_samples: int,
                     reward: ImplicitRewardConfig = ImplicitRewardConfig(),
                     advantage: AdvantageConfig = AdvantageConfig(),
                     step_ends=None) -> PrimeAdvantages:
    """One jitted pass from token log-probs to advantages (SPEC 1.4 + 1.6).

        q[i,t]  = logp_prm[i,t] - logp_ref[i,t]                  (valid tokens)
        r       = implicit_process_rewards(q; reward)             (float32, rewards.py)
        G_p     = discounted baseline-centred r (gamma = advantage.process_gamma)
        G_o     = discounted baseline-centred acc on the last token (gamma = advantage.outcome_gamma)
        returns = process_coef * G_p + outcome_coef * G_o
        adv     = masked_whiten(returns, mask)   (skipped if advantage.whiten is False)

    At process_gamma = 1 (the paper's setting) the returns come by linearity from the suffix
    sum that batch_norm computes anyway (:func:`_returns_from_suffix`), so the whole kernel makes
    one suffix-sum pass; masks must then be right-padded prefixes (the SPEC 1 layout). Otherwise
    it is :func:`estimator_returns` on r (one more suffix-sum pass, both sources folded into it
    when the gammas are equal).

    ``advantage.process_coef == 0`` is "RLOO with outcome verifier only": the process path is not
    traced (``logp_prm``/``logp_ref`` may be None) and ``process_rewards`` is all zeros.
    ``step_ends`` (B, L) marks step ends for ``reward.granularity == "step"``. With
    ``advantage.credit`` other than ``"sum"`` G_p is :func:`credit_returns` of r at the positions
    the granularity puts rewards on.
    """
    valid_bt = jnp.asarray(mask).astype(bool)
    a = advantage
    kw = dict(num_samples=num_samples, estimator=a.estimator, outcome_gamma=a.outcome_gamma,
              outcome_coef=a.outcome_coef)
    rkw = dict(reward.kernel_kwargs(), step_ends=step_ends)
    if not a.uses_prm:
        r_bt = jnp.zeros(valid_bt.shape, jnp.float32)
        g_bt = estimator_returns(None, outcome, valid_bt, **kw)
    elif a.credit != "sum":
        r_bt = rewards_lib.implicit_process_rewards(logp_prm, logp_ref, valid_bt, **rkw)
        positions_bt = reward_positions(valid_bt, reward.granularity, step_ends)
        g_bt = credit_returns(r_bt, positions_bt, outcome, valid_bt, num_samples=num_samples, advantage=a)
    elif a.process_gamma == 1:
        r_bt, suffix_bt = rewards_lib.rewards_and_suffix(
            logp_prm, logp_ref, valid_bt, need_suffix=True, method=a.scan_method, **rkw)
        g_bt = _returns_from_suffix(r_bt, suffix_bt, outcome, valid_bt, a.process_coef,
                                    process_baseline=a.process_baseline, **kw)
    else:
        r_bt = rewards_lib.implicit_process_rewards(logp_prm, logp_ref, valid_bt, **rkw)
        g_bt = estimator_returns(r_bt, outcome, valid_bt, process_gamma=a.process_gamma,
                                 process_coef=a.process_coef, process_baseline=a.process_baseline,
                                 scan_method=a.scan_method, **kw)
    adv_bt = masked_whiten(g_bt, valid_bt) if a.whiten else g_bt
    return PrimeAdvantages(advantages=adv_bt, returns=g_bt, process_rewards=r_bt)


@functools.partial(jax.jit, static_argnames=("num_samples", "advantage"))
def advantages_from_rewards(process_rewards, mask, outcome, *, num_samples: int,
                            advantage: AdvantageConfig = AdvantageConfig(), positions=None) -> PrimeAdvantages:
    """The same returns and advantages from process rewards given directly (e.g. an explicit
    PRM's step scores at step ends) instead of PRM / reference log-probs:

        returns = process_coef * G_p(r) + outcome_coef * G_o(acc),  adv = masked_whiten(returns)

    With ``advantage.credit`` other than ``"sum"`` G_p is :func:`credit_returns` over ``positions`` (B, L)
    (the rewards' positions, e.g. step ends; default every valid token).
    """
    valid_bt = jnp.asarray(mask).astype(bool)
    a = advantage
    r_bt = jnp.where(valid_bt, jnp.asarray(process_rewards, jnp.float32), 0.0)
    if a.credit != "sum" and a.uses_prm:
        positions_bt = valid_bt if positions is None else valid_bt & jnp.asarray(positions).astype(bool)
        g_bt = credit_returns(r_bt, positions_bt, outcome, valid_bt, num_samples=num_samples, advantage=a)
        adv_bt = masked_whiten(g_bt, valid_bt) if a.whiten else g_bt
        return PrimeAdvantages(advantages=adv_bt, returns=g_bt, process_rewards=r_bt)
    g_bt = estimator_returns(r_bt, outcome, valid_bt, num_samples=num_samples, process_gamma=a.process_gamma,
                             outcome_gamma=a.outcome_gamma, process_coef=a.process_coef,
                             outcome_coef=a.outcome_coef, estimator=a.estimator,
                             process_baseline=a.process_baseline, scan_method=a.scan_method)
    adv_bt = masked_whiten(g_bt, valid_bt) if a.whiten else g_bt
    return PrimeAdvantages(advantages=adv_bt, returns=g_bt, process_rewards=r_bt)


def _returns_from_suffix(r_bt, suffix_bt, outcome, valid_bt, process_coef, *, num_samples,
                         estimator, process_baseline, outcome_gamma, outcome_coef):
    """Process gamma = 1 returns by linearity, reusing ``S[i,t] = sum_{s>=t} r[i,s]``:

        m_i = S[i,0] / len_i,   G_p[i,t] = pc * scale_i * (S[i,t] - base_i * (len_i - t))

    for t < len_i (0 after; masks are right-padded prefixes), plus the outcome's closed form.
    """
    l = valid_bt.shape[-1]
    dtype = jnp.result_type(jnp.float32, *([] if outcome is None else [outcome]))
    len_b = jnp.sum(valid_bt, axis=-1, dtype=jnp.int32)
    m_b = (suffix_bt[:, 0] / jnp.maximum(len_b, 1)).astype(dtype)
    scale_b, base_b = source_baseline(m_b, num_samples=num_samples, estimator=estimator,
                                      process_baseline=process_baseline)
    ones_bt = jnp.maximum(len_b[:, None] - jnp.arange(l, dtype=jnp.int32)[None, :], 0)
    g_bt = (process_coef * scale_b)[:, None] * (suffix_bt - base_b[:, None] * ones_bt)
    if outcome is not None and not (_is_static(outcome_coef) and outcome_coef == 0):
        xo_b = outcome_term(outcome, len_b, num_samples=num_samples, outcome_coef=outcome_coef,
                            estimator=estimator, dtype=dtype)
        g_bt = g_bt + xo_b[:, None] * discount_from_last(len_b, l, outcome_gamma, dtype)
    return g_bt


def reward_positions(valid_bt, granularity: str, step_ends=None):
    """Bool (B, L): where ``rewards.implicit_process_rewards`` puts rewards for ``granularity``:
    every valid token (``token``), each row's last valid token (``whole``), each step end and the
    last valid token (``step``)."""
    if granularity == "token":
        return valid_bt
    last_bt = rewards_lib.last_token_onehot(valid_bt)
    if granularity == "whole":
        return last_bt
    return valid_bt & (jnp.asarray(step_ends).astype(bool) | last_bt)


def credit_returns(r_bt, positions_bt, outcome, valid_bt, *, num_samples: int, advantage: AdvantageConfig):
    """``returns = process_coef * G_p + outcome_coef * G_o(acc)`` with G_p the ``advantage.credit``
    form of :mod:`prime_jax.credit` over the reward positions ``positions_bt`` (B, L):

        pure        G_p[t] = sum_{k in P_i, k >= t} (softmax_k(-r/T) r_k - base_k)   (PURE)
        msa         G_p[t] = CPR[i,t] - mean_{j in group, len_j > t} CPR[j,t]      (SPRO; CPR = sum_{s<=t} r)
        future_min  G_p[t] = min_{s in P_i, s >= t} r_s - b_i * (len_i - start_i(t))
    """
    a = advantage
    if a.credit == "pure":
        g_bt = credit_lib.pure_process_returns(r_bt, positions_bt, valid_bt, num_samples=num_samples,
                                               temperature=a.pure_temperature, baseline=a.pure_baseline)
    elif a.credit == "msa":
        g_bt = credit_lib.masked_step_process_returns(jnp.where(positions_bt, r_bt, 0.0), valid_bt,
                                                      num_samples=num_samples)
    elif a.credit == "future_min":
        g_bt = credit_lib.future_min_process_returns(r_bt, positions_bt, valid_bt, num_samples=num_samples)
    else:
        raise ValueError(f"credit_returns takes credit 'pure', 'msa' or 'future_min', got {a.credit!r}")
    g_bt = a.process_coef * g_bt
    if outcome is None:
        return g_bt
    return g_bt + estimator_returns(None, outcome, valid_bt, num_samples=num_samples, outcome_gamma=a.outcome_gamma,
                                    outcome_coef=a.outcome_coef, estimator=a.estimator, scan_method=a.scan_method)
