"""Transformer: token embedding, pre-norm decoder blocks, final RMSNorm, tied or untied head.

Call contract (logits are always float32, shape (B, T, V)):

* ``model(input_ids_bt)`` - no padding: positions 0..T-1, causal mask.
* ``model(input_ids_bt, positions_bt=..., attention_mask_bt=...)`` - left-padded batches.
  ``attention_mask_bt`` is 1 on real tokens; keys at padded slots are never read.
  ``positions_bt`` defaults to ``max(cumsum(mask) - 1, 0)``.
* KV-cache decoding (prefill and step are the same call, usable under jit / while_loop)::

      cache = model.init_cache(batch_size, max_len)        # KVCache: index 0, nothing valid
      logits_btv, cache = model(prompt_bt, attention_mask_bt=prompt_mask_bt, cache=cache,
                                cache_index=0)            # prefill (static 0: O(T^2) attention)
      logits_b1v, cache = model(next_b1, cache=cache)       # decode step; mask defaults to ones

  The call writes the T new tokens' keys/values at cache slots ``[i, i + T)`` where
  ``i = cache_index`` if given else ``cache.index``, marks those slots with
  ``attention_mask_bt``, lets token t read the marked slots ``s <= i + t``, and returns the cache
  with ``index = i + T``. Attention spans all ``max_len`` slots unless ``cache_index`` is a
  Python int: then only slots ``[0, i + T)`` are read (and overflow raises). A
  traced index past ``max_len - T`` is clamped by ``dynamic_update_slice``: size ``max_len``
  for prompt plus new tokens. Default positions continue each row's count of real tokens,
  ``positions = cache.num_valid_bs()[:, None] + max(cumsum(mask) - 1, 0)``, so prefill + steps
  reproduce the full forward's positions on left-padded rows; pass ``positions_bt`` to override.
* Paged decoding (``cache.PagedKVCache``, a block pool shared by the rows): one token per row,
  ``model(next_b1, positions_bt=..., attention_mask_bt=..., cache=paged, cache_index=write_b)``
  writes row b's key/value at its logical slot ``write_b[b]`` and reads its slots ``<= write_b[b]``.

The model never looks at the cache's layout: ``cache.begin(mask, cache_index)`` opens the call,
each layer's attention goes through ``step.layer(l).attend(...)`` and ``step.finish(...)`` returns
the updated cache (``models.cache``). The attention kernel is ``config.attention``.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
from flax import nnx
from flax.linen import get_logical_axis_rules  # public accessor of the rules nnx.logical_axis_rules sets

from prime_jax import sharding
from prime_jax.models.cache import KVCache, KVLayer, NoCache
from prime_jax.models.config import ModelConfig
from prime_jax.models.layers import MLP, Attention, RMSNorm, make_param


class Block(nnx.Module):
    """Pre-norm block: ``x += attn(norm(x)); x += mlp(norm(x))``."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        norm = dict(eps=config.rms_norm_eps, dtype=config.compute_dtype,
                    param_dtype=config.weight_dtype)
        self.input_norm = RMSNorm(config.hidden_size, **norm)
        self.attn = Attention(config, rngs=rngs)
        self.post_attn_norm = RMSNorm(config.hidden_size, **norm)
        self.mlp = MLP(config, rngs=rngs)

    def __call__(self, x_btd, positions_bt, kv: KVLayer):
        h_btd, written = self.attn(self.input_norm(x_btd), positions_bt, kv)
        x_btd = x_btd + h_btd
        x_btd = x_btd + self.mlp(self.post_attn_norm(x_btd))
        return sharding.constrain(x_btd, ("batch", "length", "embed")), written


def _call_block(block: Block, *args):
    return block(*args)


def _remat_block(block: Block, x_btd, positions_bt, kv, *, barriers: bool = True):
    """``block(...)`` whose activations are recomputed in the backward pass (``jax.checkpoint``
    over the block's split state, so it also works inside ``lax.map`` / ``scan`` bodies, where
    flax's lifted ``nnx.remat`` refuses a module merged at another trace level). ``kv`` is a
    pytree (the cache-free ``FreshKV``). ``prevent_cse = barriers``."""
    graphdef, state = nnx.split(block)

    def pure(state, x_btd, positions_bt, kv):
        return nnx.merge(graphdef, state)(x_btd, positions_bt, kv)

    return jax.checkpoint(pure, prevent_cse=barriers)(state, x_btd, positions_bt, kv)


def default_positions(attention_mask_bt: jax.Array) -> jax.Array:
    """``positions[b, t] = max(sum_{u <= t} mask[b, u] - 1, 0)`` (int32)."""
    return jnp.maximum(jnp.cumsum(attention_mask_bt.astype(jnp.int32), axis=-1) - 1, 0)


class Transformer(nnx.Module):
    """Qwen2 / Llama / Qwen3 decoder-only language model (see the module docstring)."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        # Logical names need rules to become mesh axes; default to PARAM_RULES if none are set.
        rules = (contextlib.nullcontext() if get_logical_axis_rules()
                 else nnx.logical_axis_rules(sharding.PARAM_RULES))
        with rules:
            pdt = config.weight_dtype
            self.embed = make_param(rngs, (config.vocab_size, config.hidden_size),
                                    ("vocab", "embed"), pdt)
            self.layers = nnx.List([Block(config, rngs=rngs) for _ in range(config.num_layers)])
            self.final_norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps,
                                      dtype=config.compute_dtype, param_dtype=pdt)
            if not config.tie_word_embeddings:
                self.lm_head = make_param(rngs, (config.hidden_size, config.vocab_size),
                                          ("embed", "vocab"), pdt)

    def init_cache(self, batch_size: int, max_len: int, dtype=None) -> KVCache:
        """Empty KVCache for ``batch_size`` rows of ``max_len`` slots (default: compute dtype).

        Bytes: ``2 * num_layers * batch_size * max_len * num_kv_heads * head_dim * itemsize``.
        """
        c = self.config
        return KVCache.init(num_layers=c.num_layers, batch_size=batch_size, max_len=max_len,
                            num_kv_heads=c.num_kv_heads, head_dim=c.head_dim,
                            dtype=dtype or c.compute_dtype)

    def hidden_states(self, input_ids_bt, *, positions_bt=None, attention_mask_bt=None,
                      cache: KVCache | None = None, cache_index=None):
        """Final-norm hidden states (B, T, D) in compute dtype, and the updated cache (or None).

        With a cache, query t reads slot s iff ``s <= i + t`` and ``cache.mask_bs[b, s]``, over
        the first ``span`` slots: ``i + T`` for a static index, else ``max_len`` (see the module
        docstring).
        """
        b, t = input_ids_bt.shape
        mask_bt = (jnp.ones((b, t), bool) if attention_mask_bt is None
                   else attention_mask_bt.astype(bool))
        step = (NoCache() if cache is None else cache).begin(mask_bt, cache_index)
        if positions_bt is None:
            positions_bt = default_positions(mask_bt)
            if step.valid_b is not None:
                positions_bt = positions_bt + step.valid_b[:, None]
        positions_bt = positions_bt.astype(jnp.int32)

        # Gather the table's fsdp shards first (activation layout: vocab on tensor), then look up.
        embed_vd = sharding.constrain(self.embed[...], ("vocab", "embed"))
        x_btd = jnp.take(embed_vd, input_ids_bt, axis=0).astype(self.config.compute_dtype)
        x_btd = sharding.constrain(x_btd, ("batch", "length", "embed"))
        call = (functools.partial(_remat_block, barriers=self.config.remat_barriers)
                if self.config.remat and cache is None else _call_block)
        written = []
        for i, block in enumerate(self.layers):
            x_btd, layer_written = call(block, x_btd, positions_bt, step.layer(i))
            written.append(layer_written)
        return self.final_norm(x_btd), step.finish(written)

    def logits(self, h_btd: jax.Array) -> jax.Array:
        """``logits = h W_out`` in float32, ``W_out = embed^T`` when tied."""
        dtype = self.config.compute_dtype
        if self.config.tie_word_embeddings:
            logits_btv = jnp.einsum("btd,vd->btv", h_btd, self.embed[...].astype(dtype),
                                    preferred_element_type=jnp.float32)
        else:
            logits_btv = jnp.einsum("btd,dv->btv", h_btd, self.lm_head[...].astype(dtype),
                                    preferred_element_type=jnp.float32)
        return sharding.constrain(logits_btv, ("batch", "length", "vocab"))

    def __call__(self, input_ids_bt, *, positions_bt=None, attention_mask_bt=None,
                 cache: KVCache | None = None, cache_index=None):
        """Logits (B, T, V) float32; with ``cache``, ``(logits, updated_cache)``."""
        h_btd, new_cache = self.hidden_states(
            input_ids_bt, positions_bt=positions_bt, attention_mask_bt=attention_mask_bt,
            cache=cache, cache_index=cache_index)
        logits_btv = self.logits(h_btd)
        return logits_btv if cache is None else (logits_btv, new_cache)
