"""Monte-Carlo ``Q^pi`` of every step a response took: roll the policy out from each prefix.

    Q^pi(s_l, a_l) ~= (1 / n) sum_{k=1}^n r(a_{<=l} + c_k),   c_k ~ pi(. | prompt, a_{<=l})

for a response ``a`` (B, L) after a one-token prompt. All B * L prefixes (prompt + ``a_{<=l}``,
left-padded to L + 1 columns) go through one ``rollout.sample`` call with ``n`` samples each and
``L - 1`` new tokens; a continuation is cut so that prefix + continuation is L tokens, the
response length the reward is defined on. Steps after an EOS get whatever ``reward_fn`` gives the
finished prefix (callers mask them).
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


def mc_step_q(policy: Transformer, tokens_bl: np.ndarray, *, prompt_id: int,
              reward_fn: Callable[[np.ndarray], np.ndarray], num_rollouts: int, key: jax.Array,
              eos_id: int) -> np.ndarray:
    """Monte-Carlo ``Q^pi(s_l, a_l)`` float32 (B, L) from ``num_rollouts`` continuations of each
    prefix (see the module docstring); ``reward_fn`` maps (N, L) responses to (N,) rewards."""
    b, length = tokens_bl.shape
    prompts, masks = prefix_prompts(prompt_id, np.asarray(tokens_bl), pad_id=eos_id)
    config = SamplingConfig(max_new_tokens=max(length - 1, 1), eos_id=eos_id, pad_id=eos_id, decode_segments=1)
    rollouts = sample(policy, jnp.asarray(prompts), jnp.asarray(masks), key=key, config=config,
                      num_samples=num_rollouts)
    responses = completed_responses(np.asarray(tokens_bl), np.asarray(rollouts.tokens), num_rollouts)
    return reward_fn(responses).reshape(b, length, num_rollouts).mean(axis=-1).astype(np.float32)
