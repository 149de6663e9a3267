"""token_logprobs / entropy equal a manual log_softmax gather, aligned with the tokens."""

import jax
import jax.numpy as jnp
import numpy as np

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
