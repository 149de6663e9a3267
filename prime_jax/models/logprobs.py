"""Per-token log-probabilities and entropies of a sequence under a model, aligned with tokens.

For tokens ``y`` (B, T): ``logp[b, t] = log softmax(logits[b, t - 1] / temperature)[y[b, t]]`` for
``t >= 1`` and ``0`` at ``t = 0``; ``entropy[b, t] = -sum_v p_v log p_v`` of that same predictive
distribution. Both are float32 and 0 where ``attention_mask`` is 0, so a caller slices the
response part ``[:, prompt_len:]`` directly. Left-padded rows take positions from the mask.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from prime_jax.models.transformer import Transformer


def _shift_right(x_bt: jax.Array) -> jax.Array:
    """``out[:, 0] = 0``, ``out[:, t] = x[:, t - 1]``."""
    return jnp.pad(x_bt[:, :-1], ((0, 0), (1, 0)))


def logprobs_from_logits(logits_btv: jax.Array, tokens_bt: jax.Array,
                         attention_mask_bt: jax.Array | None = None, *,
                         temperature: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """(logp_bt, entropy_bt) aligned with ``tokens_bt`` from the logits of the same sequence.

    ``logits[b, t]`` predicts ``tokens[b, t + 1]``. log-softmax in float32.
    """
    logp_btv = jax.nn.log_softmax(logits_btv.astype(jnp.float32) / temperature, axis=-1)
    next_bt = tokens_bt[:, 1:]
    picked_bt = jnp.take_along_axis(logp_btv[:, :-1], next_bt[..., None], axis=-1)[..., 0]
    entropy_bt = -jnp.sum(jnp.exp(logp_btv[:, :-1]) * logp_btv[:, :-1], axis=-1)
    logp_bt = jnp.pad(picked_bt, ((0, 0), (1, 0)))
    entropy_bt = jnp.pad(entropy_bt, ((0, 0), (1, 0)))
    if attention_mask_bt is not None:
        valid_bt = attention_mask_bt.astype(bool)
        # Position t is scored iff token t is real and follows a real token (t-1 in the row).
        valid_bt = valid_bt & _shift_right(valid_bt)
        logp_bt = jnp.where(valid_bt, logp_bt, 0.0)
        entropy_bt = jnp.where(valid_bt, entropy_bt, 0.0)
    return logp_bt, entropy_bt


def token_logprobs_and_entropy(model: Transformer, tokens_bt: jax.Array,
                               attention_mask_bt: jax.Array | None = None, *,
                               temperature: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """(logp_bt, entropy_bt), float32 (B, T), under ``model`` (see the module docstring)."""
    logits_btv = model(tokens_bt, attention_mask_bt=attention_mask_bt)
    return logprobs_from_logits(logits_btv, tokens_bt, attention_mask_bt,
                                temperature=temperature)


def token_logprobs(model: Transformer, tokens_bt: jax.Array,
                   attention_mask_bt: jax.Array | None = None, *,
                   temperature: float = 1.0) -> jax.Array:
    """``logp[b, t] = log p(tokens[b, t] | tokens[b, <t])`` float32 (B, T); 0 at t=0 and padding."""
    return token_logprobs_and_entropy(model, tokens_bt, attention_mask_bt,
                                      temperature=temperature)[0]
