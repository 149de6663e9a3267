"""Implicit process rewards (PRIME SPEC 1.4): ``r_t = beta * log(pi_phi / pi_ref)`` per token,
summed per response or per reasoning step, and normalised.

Layout: ``B`` rows = prompts x n with the n samples of a prompt in contiguous rows; ``L`` padded
response length; ``mask_bt`` is 1 on every response token up to and including EOS, 0 on right
padding. Everything here is jit-safe and shape-static. (The accuracy-band prompt filter, SPEC 1.3,
lives with the collection it serves: `prime_jax.experience.accuracy_filter`.)
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp

from prime_jax.config_checks import check_at_least, check_choice, check_not_empty, check_positive
from prime_jax.scans import DEFAULT_SCAN_METHOD, discounted_reverse_cumsum

GRANULARITIES = ("token", "whole", "step")
NORMS = ("batch_norm", "none")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImplicitRewardConfig:
    """The implicit PRM's reward definition, one home for every reader.

    ``r_t = beta * log(pi_phi(y_t|y<t) / pi_ref(y_t|y<t))`` aggregated per ``granularity``
    (token / whole response / reasoning step ending in ``step_delimiter``) and normalised per
    ``norm`` over ``num_chunks`` row chunks. The PRM loss, the advantage kernel, best-of-N and
    ``evaluate`` all read it; a run writes it to its ``run.json``.
    """

    beta: float = 0.05
    granularity: str = "token"
    norm: str = "batch_norm"
    num_chunks: int = 1
    step_delimiter: str = "\n"

    def __post_init__(self):
        owner = "ImplicitRewardConfig"
        check_choice(owner, "granularity", self.granularity, GRANULARITIES)
        check_choice(owner, "norm", self.norm, NORMS)
        check_positive(owner, "beta", self.beta)
        check_at_least(owner, "num_chunks", self.num_chunks, 1)
        check_not_empty(owner, "step_delimiter", self.step_delimiter)

    def kernel_kwargs(self) -> dict:
        """The keyword arguments of :func:`implicit_process_rewards` this config sets."""
        return dict(granularity=self.granularity, norm=self.norm, num_chunks=self.num_chunks,
                    beta=self.beta)


def log_ratio(logp_prm, logp_ref, mask):
    """Token log-ratio ``q[i,t] = (log pi_phi(y_t|y<t) - log pi_ref(y_t|y<t)) * mask[i,t]``.

    Computed in the inputs' dtype (float32 at least); 0 on padding whatever the inputs hold there.
    """
    logp_prm_bt, logp_ref_bt = jnp.asarray(logp_prm), jnp.asarray(logp_ref)
    dtype = jnp.promote_types(jnp.result_type(logp_prm_bt, logp_ref_bt), jnp.float32)
    q_bt = logp_prm_bt.astype(dtype) - logp_ref_bt.astype(dtype)
    return jnp.where(jnp.asarray(mask).astype(bool), q_bt, jnp.zeros((), dtype))


def last_token_onehot(mask_bt):
    """Bool (B, L): True at ``t = len_i - 1`` (``len_i = sum_t mask[i,t]``); none if len_i = 0."""
    len_b = jnp.sum(mask_bt.astype(jnp.int32), axis=-1)
    t_l = jnp.arange(mask_bt.shape[-1], dtype=jnp.int32)
    return t_l[None, :] == (len_b - 1)[:, None]


def step_ends_from_tokens(tokens_bt, mask_bt, delimiter: Sequence[int]):
    """Bool (B, L) marking the last token of every reasoning step.

    A step ends at position t when ``tokens[i, t-k+1 : t+1] == delimiter`` (k = len(delimiter),
    e.g. the token ids of a blank line; the delimiter belongs to the step it closes), and at the
    last valid token of each row. Only valid positions can be step ends. ``delimiter`` must be a
    static Python sequence, so this traces to k shifted comparisons.
    """
    delimiter = tuple(int(d) for d in delimiter)
    valid_bt = mask_bt.astype(bool)
    ends_bt = jnp.zeros(tokens_bt.shape, bool)
    if delimiter:
        k = len(delimiter)
        ends_bt = jnp.ones(tokens_bt.shape, bool)
        for j, tok in enumerate(delimiter):
            shift = k - 1 - j  # token j of the delimiter sits `shift` positions before t
            hit_bt = tokens_bt == tok
            if shift:
                hit_bt = jnp.pad(hit_bt[:, :-shift], ((0, 0), (shift, 0)), constant_values=False)
            ends_bt = ends_bt & hit_bt
    return (ends_bt & valid_bt) | last_token_onehot(mask_bt)


def segment_sums_at_ends(x_bt, ends_bt):
    """``out[i,t]`` = sum of x over the step ending at t if ``ends[i,t]``, else 0 (segmented)."""
    start_bt = jnp.pad(ends_bt[:, :-1], ((0, 0), (1, 0)), constant_values=True)

    def combine(a, b):
        a_x, a_s = a
        b_x, b_s = b
        return jnp.where(b_s, b_x, a_x + b_x), a_s | b_s

    seg_bt, _ = jax.lax.associative_scan(combine, (x_bt, start_bt), axis=1)
    return jnp.where(ends_bt, seg_bt, jnp.zeros((), x_bt.dtype))


def batch_norm(r_bt, *, num_chunks: int = 1, method: str = DEFAULT_SCAN_METHOD):
    """``r / (max_{i,t} |sum_{s>=t} r[i,s]| + 1e-6)``, the max over each chunk of B/num_chunks rows.

    The reference ran ``num_chunks`` data-parallel shards, each normalised on its own.
    """
    return _batch_norm_with_suffix(r_bt, num_chunks, method)[0]


def _batch_norm_with_suffix(r_bt, num_chunks, method):
    """(normalised r, its reverse cumsum ``sum_{s>=t} r[i,s]``), sharing one suffix-sum pass."""
    b, l = r_bt.shape
    if b % num_chunks:
        raise ValueError(f"B={b} is not divisible by num_chunks={num_chunks}")
    rev_cbt = discounted_reverse_cumsum(r_bt, 1.0, method=method).reshape(num_chunks, -1, l)
    scale_c = jnp.max(jnp.abs(rev_cbt), axis=(1, 2), keepdims=True) + jnp.asarray(1e-6, r_bt.dtype)
    r_cbt = r_bt.reshape(num_chunks, -1, l) / scale_c
    return r_cbt.reshape(b, l), (rev_cbt / scale_c).reshape(b, l)


def implicit_process_rewards(logp_prm, logp_ref, mask, *, granularity: str = "token",
                             norm: str = "batch_norm", num_chunks: int = 1, beta: float = 0.05,
                             step_ends=None):
    """Implicit process reward ``r`` (float32, (B, L)) from PRM and reference token log-probs.

    With ``q[i,t] = log pi_phi(y_t|y<t) - log pi_ref(y_t|y<t)`` on valid tokens (EOS included):

    * ``token``: ``r[i,t] = q[i,t]`` on valid tokens, 0 on padding;
    * ``whole``: ``r[i, len_i-1] = sum_t q[i,t]``, 0 elsewhere;
    * ``step``:  ``r[i,e] = sum_{t in step} q[i,t]`` at each step end e (``step_ends``, see
      :func:`step_ends_from_tokens`; the last valid token always ends a step), 0 elsewhere.

    Then, in float32 like the reference (it stores r as float32 before normalising):

    * ``batch_norm``: ``r / (max_{i,t} |sum_{s>=t} r[i,s]| + 1e-6)`` per chunk of B/num_chunks rows
      (beta cancels);
    * ``none``: ``beta * r`` (the paper's Eq. 3).
    """
    return rewards_and_suffix(logp_prm, logp_ref, mask, granularity=granularity, norm=norm,
                              num_chunks=num_chunks, beta=beta, step_ends=step_ends)[0]


def rewards_and_suffix(logp_prm, logp_ref, mask, *, granularity: str = "token",
                       norm: str = "batch_norm", num_chunks: int = 1, beta: float = 0.05,
                       step_ends=None, need_suffix: bool = False,
                       method: str = DEFAULT_SCAN_METHOD):
    """``(r, S)``: :func:`implicit_process_rewards` and ``S[i,t] = sum_{s>=t} r[i,s]``.

    ``S`` comes free with batch_norm (which computes it anyway); with ``norm="none"`` it costs a
    suffix-sum pass if ``need_suffix`` and is None otherwise. Used by the fused kernel.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    mask_bt = jnp.asarray(mask)
    q_bt = log_ratio(logp_prm, logp_ref, mask_bt)
    if granularity == "whole":
        last_bt = last_token_onehot(mask_bt)
        r_bt = jnp.where(last_bt, jnp.sum(q_bt, axis=-1, keepdims=True), jnp.zeros((), q_bt.dtype))
    elif granularity == "step":
        if step_ends is None:
            raise ValueError("granularity='step' needs step_ends (see step_ends_from_tokens)")
        ends_bt = jnp.asarray(step_ends).astype(bool) & mask_bt.astype(bool)
        r_bt = segment_sums_at_ends(q_bt, ends_bt | last_token_onehot(mask_bt))
    else:
        r_bt = q_bt
    r_bt = r_bt.astype(jnp.float32)
    if norm == "batch_norm":
        return _batch_norm_with_suffix(r_bt, num_chunks, method)
    r_bt = jnp.float32(beta) * r_bt
    return r_bt, (discounted_reverse_cumsum(r_bt, 1.0, method=method) if need_suffix else None)
