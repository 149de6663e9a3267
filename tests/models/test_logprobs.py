"""token_logprobs / entropy equal a manual log_softmax gather, aligned with the tokens."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prime_jax.models import from_pretrained, token_logprobs, token_logprobs_and_entropy


def _manual(logits, tokens, temperature=1.0):
    logits = np.asarray(logits, np.float64) / temperature
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    b, t = tokens.shape
    out = np.zeros((b, t))
    ent = np.zeros((b, t))
    for i in range(b):
        for j in range(1, t):
            out[i, j] = logp[i, j - 1, tokens[i, j]]
            ent[i, j] = -(np.exp(logp[i, j - 1]) * logp[i, j - 1]).sum()
    return out, ent


def test_token_logprobs_match_manual_gather(hf_checkpoints):
    model = from_pretrained(hf_checkpoints[("qwen2", False)][1])
    rng = np.random.RandomState(0)
    tokens = rng.randint(3, model.config.vocab_size, (2, 7)).astype(np.int32)
    logp = np.asarray(token_logprobs(model, jnp.asarray(tokens)))
    assert logp.dtype == np.float32 and logp.shape == (2, 7)
    expected, _ = _manual(model(jnp.asarray(tokens)), tokens)
    np.testing.assert_allclose(logp, expected, atol=1e-5)
    assert (logp[:, 0] == 0).all() and (logp[:, 1:] < 0).all()

    logp_t, ent_t = token_logprobs_and_entropy(model, jnp.asarray(tokens), temperature=0.7)
    exp_logp, exp_ent = _manual(model(jnp.asarray(tokens)), tokens, temperature=0.7)
    np.testing.assert_allclose(np.asarray(logp_t), exp_logp, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ent_t), exp_ent, atol=1e-5)


def test_left_padded_rows_score_like_unpadded(hf_checkpoints):
    model = from_pretrained(hf_checkpoints[("llama", False)][1])
    rng = np.random.RandomState(1)
    row = rng.randint(3, model.config.vocab_size, (1, 5)).astype(np.int32)
    padded = np.concatenate([np.zeros((1, 3), np.int32), row], axis=1)
    mask = np.array([[0, 0, 0, 1, 1, 1, 1, 1]], np.int32)

    @jax.jit
    def score(tokens, mask):
        return token_logprobs_and_entropy(model, tokens, mask)

    logp_pad, ent_pad = map(np.asarray, score(jnp.asarray(padded), jnp.asarray(mask)))
    logp, ent = map(np.asarray, token_logprobs_and_entropy(model, jnp.asarray(row)))
    assert (logp_pad[:, :4] == 0).all() and (ent_pad[:, :4] == 0).all()
    np.testing.assert_allclose(logp_pad[:, 3:], logp, atol=1e-5)
    np.testing.assert_allclose(ent_pad[:, 3:], ent, atol=1e-5)


def test_last_scores_only_the_tail_and_matches_the_full_sequence(hf_checkpoints):
    """``last = L`` returns the full call's last L columns (padded rows, chunked or not) and
    computes logits for L positions only."""
    model = from_pretrained(hf_checkpoints[("qwen2", False)][1])
    rng = np.random.RandomState(2)
    tokens = jnp.asarray(rng.randint(3, model.config.vocab_size, (3, 9)).astype(np.int32))
    mask = jnp.asarray((np.arange(9)[None] >= np.array([[0], [2], [5]])).astype(np.int32))
    full_logp, full_ent = token_logprobs_and_entropy(model, tokens, mask, temperature=0.8)
    for chunk in (None, 2):
        chunked = from_pretrained(hf_checkpoints[("qwen2", False)][1], logits_chunk=chunk)
        for last in (1, 4, 9):
            logp, ent = token_logprobs_and_entropy(chunked, tokens, mask, temperature=0.8, last=last)
            assert logp.shape == (3, last)
            np.testing.assert_allclose(np.asarray(logp), np.asarray(full_logp)[:, -last:], atol=1e-5)
            np.testing.assert_allclose(np.asarray(ent), np.asarray(full_ent)[:, -last:], atol=1e-5)
    vocab_rows = jax.make_jaxpr(lambda t, m: token_logprobs(model, t, m, last=4))(tokens, mask)
    assert f"3,4,{model.config.vocab_size}" in str(vocab_rows).replace(" ", "")
    assert f"3,9,{model.config.vocab_size}" not in str(vocab_rows).replace(" ", "")
    with pytest.raises(ValueError, match="last=10"):
        token_logprobs(model, tokens, mask, last=10)
