"""``sample``: the one entry point of rollouts, static or continuous batching by ``SamplingConfig``.

``config.decode_slots == 0`` runs ``engine.sample_static`` (one batch, one prefill per distinct
prompt); ``decode_slots = S > 0`` runs ``continuous.sample_continuous`` with S recycled slots over
the prompts repeated ``num_samples`` times (request ``prompt * n + k``), or, with ``kv_blocks``,
``paged.sample_paged`` (the slots share a pool of KV blocks). All return ``Rollouts`` (B * n, L)
in that row order.
"""

from __future__ import annotations

import jax

from prime_jax.models.transformer import Transformer
from prime_jax.rollout.config import Rollouts, SamplingConfig, repeat_prompts
from prime_jax.rollout.continuous import sample_continuous
from prime_jax.rollout.engine import sample_static
from prime_jax.rollout.paged import sample_paged


def sample(policy: Transformer, prompt_ids: jax.Array, prompt_mask: jax.Array, *,
           key: jax.Array, config: SamplingConfig, num_samples: int = 1) -> Rollouts:
    """``num_samples`` responses of ``config.max_new_tokens`` tokens after each left-padded prompt.

    ``prompt_ids``, ``prompt_mask``: (B, P) ints, mask 1 on real tokens, each row's last column
    real. Returns ``Rollouts`` (B * n, L), row ``prompt * n + k`` = sample k of that prompt.
    """
    if not config.decode_slots:
        return sample_static(policy, prompt_ids, prompt_mask, key=key, config=config,
                             num_samples=num_samples)
    if num_samples < 1:
        raise ValueError(f"sample: num_samples must be >= 1, got {num_samples}")
    if num_samples > 1:
        prompt_ids, prompt_mask = repeat_prompts(prompt_ids, prompt_mask, num_samples)
    if config.kv_blocks:
        return sample_paged(policy, prompt_ids, prompt_mask, key=key, config=config, num_slots=config.decode_slots,
                            num_blocks=config.kv_blocks, block_size=config.kv_block_size)
    return sample_continuous(policy, prompt_ids, prompt_mask, key=key, config=config,
                             num_slots=config.decode_slots)
