"""Per-token log-probabilities and entropies of a sequence under a model, aligned with tokens.

For tokens ``y`` (B, T): ``logp[b, t] = log softmax(logits[b, t - 1] / temperature)[y[b, t]]`` for
``t >= 1`` and ``0`` at ``t = 0``; ``entropy[b, t] = -sum_v p_v log p_v`` of that same predictive
distribution. Both are float32 and 0 where ``attention_mask`` is 0, so a caller slices the
response part ``[:, prompt_len:]`` directly - or asks for ``last = L`` and gets the (B, L) stats of
the last L tokens without the logits of the others ever being computed. Left-padded rows take
positions from the mask.

Memory: with ``model.config.logits_chunk = C`` the (B, T, V) logits are never built. The hidden
states ``h`` (B, T, D) are computed once; chunks of C positions then go one at a time through
``h W_out`` -> float32 log-softmax -> picked log-prob and entropy, each chunk under
``jax.checkpoint`` so the backward pass recomputes its logits instead of storing them. Peak
logits memory is (B, C, V) instead of a few (B, T, V) float32 buffers, for the same values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from prime_jax.models.transformer import Transformer


def _shift_right(x_bt: jax.Array) -> jax.Array:
    """``out[:, 0] = 0``, ``out[:, t] = x[:, t - 1]``."""
    return jnp.pad(x_bt[:, :-1], ((0, 0), (1, 0)))


def next_token_stats(logits_btv: jax.Array, next_bt: jax.Array,
                      temperature: float) -> tuple[jax.Array, jax.Array]:
    """``log softmax(logits / temperature)[next]`` and the entropy, float32 (B, T), per position."""
    logp_btv = jax.nn.log_softmax(logits_btv.astype(jnp.float32) / temperature, axis=-1)
    picked_bt = jnp.take_along_axis(logp_btv, next_bt[..., None], axis=-1)[..., 0]
    entropy_bt = -jnp.sum(jnp.exp(logp_btv) * logp_btv, axis=-1)
    return picked_bt, entropy_bt


def _chunked_stats(model: Transformer, h_btd: jax.Array, next_bt: jax.Array, chunk: int,
                   temperature: float) -> tuple[jax.Array, jax.Array]:
    """``next_token_stats(model.logits(h), next)`` over chunks of ``chunk`` positions.

    T is padded up to a multiple of C (padded positions are computed and dropped). The chunk
    axis is moved in front and mapped over sequentially; each chunk's logits are rematerialised
    in the backward pass, so only (B, C, V) of them exist at a time.
    """
    b, t, d = h_btd.shape
    c = min(chunk, t)
    n = -(-t // c)
    pad = n * c - t
    h_nbcd = jnp.pad(h_btd, ((0, 0), (0, pad), (0, 0))).reshape(b, n, c, d).transpose(1, 0, 2, 3)
    next_nbc = jnp.pad(next_bt, ((0, 0), (0, pad))).reshape(b, n, c).transpose(1, 0, 2)

    @jax.checkpoint
    def one_chunk(h_bcd, next_bc):
        return next_token_stats(model.logits(h_bcd), next_bc, temperature)

    picked_nbc, entropy_nbc = jax.lax.map(lambda xs: one_chunk(*xs), (h_nbcd, next_nbc))
    unchunk = lambda x_nbc: x_nbc.transpose(1, 0, 2).reshape(b, n * c)[:, :t]
    return unchunk(picked_nbc), unchunk(entropy_nbc)


def token_logprobs_and_entropy(model: Transformer, tokens_bt: jax.Array,
                               attention_mask_bt: jax.Array | None = None, *,
                               temperature: float = 1.0, last: int | None = None
                               ) -> tuple[jax.Array, jax.Array]:
    """(logp, entropy) float32 under ``model`` (see the module docstring): (B, T), or with
    ``last = L`` only those of the last L tokens, (B, L) - the vocabulary logits of the other
    positions (a prompt) are never computed.

    ``model.config.logits_chunk`` (None or 0: all positions at once) bounds the logits held in
    memory to that many positions per row.
    """
    t = tokens_bt.shape[1]
    first = 0 if last is None else t - last  # the first token whose stats are returned
    if not 0 <= first < t:
        raise ValueError(f"token_logprobs: last={last} must be in [1, {t}] for sequences of {t} tokens")
    h_btd, _ = model.hidden_states(tokens_bt, attention_mask_bt=attention_mask_bt)
    start = max(first - 1, 0)  # hidden state start .. t-2 predicts token start+1 .. t-1
    h_sel, next_sel = h_btd[:, start:t - 1], tokens_bt[:, start + 1:]
    chunk = model.config.logits_chunk
    if chunk:
        picked, entropy = _chunked_stats(model, h_sel, next_sel, chunk, temperature)
    else:
        picked, entropy = next_token_stats(model.logits(h_sel), next_sel, temperature)
    if first == 0:  # token 0 has no prediction
        picked, entropy = (jnp.pad(x, ((0, 0), (1, 0))) for x in (picked, entropy))
    if attention_mask_bt is not None:
        valid_bt = attention_mask_bt.astype(bool)
        # Token t is scored iff it is real and follows a real token (t-1 in the row).
        valid = (valid_bt & _shift_right(valid_bt))[:, first:]
        picked, entropy = jnp.where(valid, picked, 0.0), jnp.where(valid, entropy, 0.0)
    return picked, entropy


def token_logprobs(model: Transformer, tokens_bt: jax.Array,
                   attention_mask_bt: jax.Array | None = None, *,
                   temperature: float = 1.0, last: int | None = None) -> jax.Array:
    """``logp[b, t] = log p(tokens[b, t] | tokens[b, <t])`` float32 (B, T), or of the last ``last``
    tokens (B, last); 0 at t=0 and padding."""
    return token_logprobs_and_entropy(model, tokens_bt, attention_mask_bt,
                                      temperature=temperature, last=last)[0]
