"""Shared prefixes: ``sample(num_samples=n)`` prefills each prompt once and gives the rollouts of
``sample`` on the prompts repeated n times."""

import jax
import numpy as np
import pytest
from flax import nnx

from prime_jax.models import ModelConfig, Transformer
from prime_jax.rollout import SamplingConfig, repeat_prompts, sample

G, P, L, N, VOCAB = 3, 9, 10, 4, 97
EOS = (5, 7)


@pytest.fixture(scope="module")
def policy():
    config = ModelConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_layers=1,
                         num_heads=4, num_kv_heads=2, head_dim=8)
    return Transformer(config, rngs=nnx.Rngs(1))


def _prompts():
    rng = np.random.RandomState(2)
    mask = np.ones((G, P), np.int32)
    for row in range(G):
        mask[row, :2 * row] = 0  # left padding of 0, 2, 4 tokens
    return np.where(mask == 1, rng.randint(8, VOCAB, (G, P)), 0).astype(np.int32), mask


def _assert_same(a, b):
    for name in ("tokens", "mask", "truncated", "lengths"):
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)),
                                      err_msg=name)
    # Prefill over G rows instead of G * n may move the prompt's keys by an ulp.
    np.testing.assert_allclose(np.asarray(a.logprobs), np.asarray(b.logprobs), rtol=0, atol=1e-5)


@pytest.mark.parametrize("config", [
    SamplingConfig(max_new_tokens=L, temperature=0.0, eos_id=EOS, decode_segments=2),
    SamplingConfig(max_new_tokens=L, temperature=0.8, top_k=30, top_p=0.9, eos_id=EOS,
                   decode_segments=2),
], ids=["greedy", "temperature_top_k_top_p"])
def test_equals_sample_on_repeated_prompts(policy, config):
    ids, mask = _prompts()
    key = jax.random.key(5)
    plain = sample(policy, *repeat_prompts(ids, mask, N), key=key, config=config)
    shared = sample(policy, ids, mask, num_samples=N, key=key, config=config)
    _assert_same(shared, plain)
    tokens = np.asarray(shared.tokens).reshape(G, N, L)
    if config.temperature > 0:  # the n copies of a prompt really draw different samples
        assert any(len({t.tobytes() for t in tokens[g]}) > 1 for g in range(G))
    else:
        assert (tokens == tokens[:, :1]).all()


def test_bad_arguments_raise(policy):
    ids, mask = _prompts()
    config = SamplingConfig(max_new_tokens=L, temperature=0.0, eos_id=EOS)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="left-padded"):
        sample(policy, ids, mask[:, ::-1], num_samples=2, key=key, config=config)
    with pytest.raises(ValueError, match="num_samples must be"):
        sample(policy, ids, mask, num_samples=0, key=key, config=config)
