"""Monte-Carlo ``Q^pi`` of every step a response took: roll the policy out from each prefix.

    Q^pi(s_l, a_l) ~= (1 / n) sum_{k=1}^n r(a_{<=l} + c_k),   c_k ~ pi(. | prompt, a_{<=l})

for a response ``a`` (B, L) after a one-token prompt. The B * L prefixes (prompt + ``a_{<=l}``,
left-padded to L + 1 columns) go through one ``rollout.sample`` call with ``n`` samples each and
``L - 1`` new tokens; a continuation is cut so that prefix + continuation is L tokens, the
response length the reward is defined on. Steps after an EOS get whatever ``reward_fn`` gives the
finished prefix (callers mask them).

Only distinct prefixes are rolled out: rows that share a prefix share its n continuations (each
row's estimate keeps its expectation; a concentrated policy repeats most prefixes), and their
count is padded to a power of two so that the sampler compiles for a few shapes only. A prefix
whose value cannot depend on its continuation - the full response, or one the caller marks in
``determined_bl`` (the didactic target already found, an EOS already emitted) - is not rolled out:
its n "completions" are the row itself, so ``Q`` there is exactly ``reward_fn`` of the row.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from prime_jax.models.transformer import Transformer
from prime_jax.rollout import SamplingConfig, sample


def prefix_prompts(prompt_id: int, tokens_bl: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded prompts (B * L, L + 1) and masks: row ``b * L + l`` = prompt + ``a_b[:l + 1]``."""
    b, length = tokens_bl.shape
    full_bt = np.concatenate([np.full((b, 1), prompt_id, np.int32), tokens_bl.astype(np.int32)], axis=1)
    cols_t = np.arange(length + 1)
    shift_l1 = (length - 1 - np.arange(length))[:, None]  # prefix l keeps its first l + 2 columns
    src_lt = cols_t[None, :] - shift_l1
    mask_lt = (src_lt >= 0).astype(np.int32)
    prompts_blt = np.where(mask_lt[None] > 0, full_bt[:, np.clip(src_lt, 0, length)], pad_id)
    return (prompts_blt.reshape(b * length, length + 1),
            np.broadcast_to(mask_lt[None], prompts_blt.shape).reshape(b * length, length + 1))


def completed_responses(tokens_bl: np.ndarray, continuations_rc: np.ndarray, num_rollouts: int) -> np.ndarray:
    """(B * L * n, L): for row ``(b * L + l) * n + k``, ``a_b[:l + 1]`` then continuation k."""
    b, length = tokens_bl.shape
    rows = continuations_rc.reshape(b, length, num_rollouts, -1)
    l_l1, cols_j = np.arange(length)[:, None], np.arange(length)[None, :]
    from_cont_lj = cols_j > l_l1
    cont_idx_lj = np.clip(cols_j - l_l1 - 1, 0, rows.shape[-1] - 1)
    cont_blnj = np.take_along_axis(rows, np.broadcast_to(cont_idx_lj[None, :, None, :], (b, length, num_rollouts, length)),
                                   axis=-1)
    prefix_blnj = np.broadcast_to(tokens_bl[:, None, None, :], cont_blnj.shape)
    return np.where(from_cont_lj[None, :, None, :], cont_blnj, prefix_blnj).reshape(-1, length)


def own_continuations(tokens_bl: np.ndarray, pad_id: int) -> np.ndarray:
    """(B * L, L - 1): for prefix row ``b * L + l``, the row's own tokens after position l, padded
    with ``pad_id`` (so prefix + continuation is the row itself)."""
    b, length = tokens_bl.shape
    padded_bt = np.concatenate([tokens_bl, np.full((b, length), pad_id, tokens_bl.dtype)], axis=1)
    cols_lj = np.arange(length)[:, None] + 1 + np.arange(max(length - 1, 1))[None, :]
    return padded_bt[:, cols_lj].reshape(b * length, -1)


def mc_step_q(policy: Transformer, tokens_bl: np.ndarray, *, prompt_id: int,
              reward_fn: Callable[[np.ndarray], np.ndarray], num_rollouts: int, key: jax.Array,
              eos_id: int, determined_bl: np.ndarray | None = None) -> np.ndarray:
    """Monte-Carlo ``Q^pi(s_l, a_l)`` float32 (B, L) from ``num_rollouts`` continuations of each
    distinct prefix (see the module docstring); ``reward_fn`` maps (N, L) responses to (N,)
    rewards; ``determined_bl`` (bool, optional) marks prefixes scored on the row itself."""
    tokens_bl = np.asarray(tokens_bl).astype(np.int32)
    b, length = tokens_bl.shape
    prompts, masks = prefix_prompts(prompt_id, tokens_bl, pad_id=eos_id)
    skip_bl = np.zeros((b, length), bool)
    skip_bl[:, -1] = True
    if determined_bl is not None:
        skip_bl |= np.asarray(determined_bl, bool)
    conts_pnj = np.repeat(own_continuations(tokens_bl, eos_id)[:, None], num_rollouts, axis=1)
    rows = np.flatnonzero(~skip_bl.reshape(-1))
    if rows.size:
        _, first, inverse = np.unique(np.concatenate([prompts[rows], masks[rows]], axis=1), axis=0,
                                      return_index=True, return_inverse=True)
        bucket = 1 << (len(first) - 1).bit_length()
        picked = rows[np.concatenate([first, np.full(bucket - len(first), first[0])])]
        config = SamplingConfig(max_new_tokens=max(length - 1, 1), eos_id=eos_id, pad_id=eos_id,
                                decode_segments=1)
        rollouts = sample(policy, jnp.asarray(prompts[picked]), jnp.asarray(masks[picked]), key=key,
                          config=config, num_samples=num_rollouts)
        distinct_unj = np.asarray(rollouts.tokens).reshape(bucket, num_rollouts, -1)
        conts_pnj[rows] = distinct_unj[inverse.reshape(-1)]
    responses = completed_responses(tokens_bl, conts_pnj.reshape(b * length * num_rollouts, -1), num_rollouts)
    return reward_fn(responses).reshape(b, length, num_rollouts).mean(axis=-1).astype(np.float32)
