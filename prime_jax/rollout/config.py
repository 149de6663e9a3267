"""What every sampler shares: ``SamplingConfig`` (how to sample), ``Rollouts`` (what comes back)
and the prompt conventions (left padding, n samples of a prompt in contiguous rows)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from prime_jax.config_checks import check_fields_at_least, check_in_range


@dataclasses.dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    """How to sample (hashable: it is a static argument of the compiled sampler).

    ``temperature`` 0 means greedy; ``top_k`` 0 and ``top_p`` 1 disable those filters.
    ``eos_id``: an id, a list/tuple of ids (stored as a tuple), or None (never stop early).
    ``pad_id`` fills tokens after EOS. ``cache_dtype``: KV-cache dtype name (None = compute dtype).
    ``decode_segments``: the decode loop runs as this many while_loops over caches that grow
    between them (see ``decode_segments``); 1 = one loop over the full cache.
    ``decode_slots``: 0 = static batching (every row decodes until the longest one ends);
    S > 0 = continuous batching through S recycled decode slots (``rollout.continuous``), which
    pays when response lengths spread widely. The two draw different (equally valid) samples
    for one key; greedy tokens agree. ``kv_blocks = N > 0`` (with ``decode_slots``) gives the slots
    a shared pool of N KV blocks of ``kv_block_size`` slots instead of a dense cache row each
    (``rollout.paged``: same rollouts, memory sized to the tokens in flight). On a mesh, make
    ``decode_slots`` and ``kv_blocks`` multiples of the batch shards (data x fsdp) so each shard
    holds its own slots' blocks (``rollout.paged.pool_groups``); else the pool is whole on every
    device.
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    eos_id: int | tuple[int, ...] | None = None
    pad_id: int = 0
    cache_dtype: str | None = None
    decode_segments: int = 4
    decode_slots: int = 0
    kv_blocks: int = 0
    kv_block_size: int = 16

    def __post_init__(self):
        check_fields_at_least(self, {"max_new_tokens": 1, "temperature": 0, "top_k": 0, "decode_segments": 1,
                                     "decode_slots": 0, "kv_blocks": 0, "kv_block_size": 1})
        check_in_range("SamplingConfig", "top_p", self.top_p, 0.0, 1.0, include_low=False)
        if self.kv_blocks and not self.decode_slots:
            raise ValueError(f"SamplingConfig: kv_blocks needs decode_slots > 0 (a paged cache serves the "
                             f"continuous slot pool), got kv_blocks={self.kv_blocks}")
        eos = self.eos_id
        if eos is not None and not isinstance(eos, (int, np.integer)):
            eos = tuple(int(e) for e in eos)
        elif eos is not None:
            eos = int(eos)
        object.__setattr__(self, "eos_id", eos)
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_p", float(self.top_p))
        if self.cache_dtype is not None:
            object.__setattr__(self, "cache_dtype", jnp.dtype(self.cache_dtype).name)

    @property
    def eos_ids(self) -> tuple[int, ...]:
        """EOS ids as a tuple (empty: no early stop)."""
        if self.eos_id is None:
            return ()
        return self.eos_id if isinstance(self.eos_id, tuple) else (self.eos_id,)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Rollouts:
    """Sampled responses, (B, L) with L = max_new_tokens.

    * ``tokens``: int32, ``pad_id`` after EOS;
    * ``logprobs``: float32, ``log softmax(logits)[token]`` of the unmodified model (no
      temperature or filter), 0 where ``mask`` is 0;
    * ``mask``: int32, 1 on every generated token up to and including EOS (all ones if truncated);
    * ``truncated``: bool (B,), no EOS within L tokens;
    * ``lengths``: int32 (B,), ``sum(mask, -1)``.
    """

    tokens: jax.Array
    logprobs: jax.Array
    mask: jax.Array
    truncated: jax.Array
    lengths: jax.Array


def check_left_padded(prompt_mask, caller: str) -> None:
    """Raise unless every prompt ends in its last column (``prompt_mask[:, -1] == 1``), when the
    mask can be read on this host (not a tracer, fully addressable)."""
    readable = not isinstance(prompt_mask, jax.core.Tracer) and getattr(prompt_mask, "is_fully_addressable", True)
    if readable and not np.all(np.asarray(prompt_mask)[:, -1]):
        raise ValueError(f"{caller}: prompts must be left-padded (prompt_mask[:, -1] == 1)")


def repeat_prompts(prompt_ids: jax.Array, prompt_mask: jax.Array, n: int):
    """Each prompt row repeated ``n`` times contiguously: out row ``p * n + k`` = prompt ``p``."""
    return jnp.repeat(prompt_ids, n, axis=0), jnp.repeat(prompt_mask, n, axis=0)


def join_prompt_and_response(prompt_ids: jax.Array, prompt_mask: jax.Array,
                             rollouts: Rollouts) -> tuple[jax.Array, jax.Array]:
    """(tokens, mask) of shape (B, P + L): prompt then response, for a teacher-forced pass."""
    tokens_bt = jnp.concatenate([prompt_ids.astype(jnp.int32), rollouts.tokens], axis=1)
    mask_bt = jnp.concatenate([prompt_mask.astype(jnp.int32), rollouts.mask], axis=1)
    return tokens_bt, mask_bt


def is_eos(tokens_b: jax.Array, eos_ids: tuple[int, ...]) -> jax.Array:
    """``tokens_b`` in ``eos_ids`` (all False when there are none)."""
    if not eos_ids:
        return jnp.zeros(tokens_b.shape, bool)
    return jnp.isin(tokens_b, jnp.asarray(eos_ids, jnp.int32))
