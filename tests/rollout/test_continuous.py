"""Continuous batching: request-order results equal to static batching, slots recycled."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from prime_jax.models import ModelConfig, Transformer
from prime_jax.rollout import SamplingConfig, sample, sample_continuous

R, P, L, VOCAB = 7, 6, 12, 97
EOS = (27, 77)


@pytest.fixture(scope="module")
def policy():
    config = ModelConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_layers=1,
                         num_heads=4, num_kv_heads=2, head_dim=8)
    return Transformer(config, rngs=nnx.Rngs(0))


def _prompts(rows=R, seed=0):
    rng = np.random.RandomState(seed)
    mask = np.ones((rows, P), np.int32)
    for row in range(rows):
        mask[row, :row % 4] = 0  # left padding of 0..3 tokens
    return np.where(mask == 1, rng.randint(8, VOCAB, (rows, P)), 0).astype(np.int32), mask


def _assert_same(a, b, logp_atol=0.0):
    for name in ("tokens", "mask", "truncated", "lengths"):
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)),
                                      err_msg=name)
    np.testing.assert_allclose(np.asarray(a.logprobs), np.asarray(b.logprobs), rtol=0,
                               atol=logp_atol)


def test_greedy_equals_static_sample_with_fewer_slots_than_requests(policy):
    ids, mask = _prompts()
    # One decode segment: the same cache length as the slot pool, so log-probs match bit for bit.
    config = SamplingConfig(max_new_tokens=L, temperature=0.0, eos_id=EOS, decode_segments=1)
    key = jax.random.key(0)
    static = sample(policy, ids, mask, key=key, config=config)
    pooled = sample_continuous(policy, ids, mask, key=key, config=config, num_slots=3)
    _assert_same(pooled, static, logp_atol=1e-6)
    truncated = np.asarray(pooled.truncated)
    assert truncated.any() and not truncated.all(), "want rows ending by EOS and by length"
    lengths, tokens = np.asarray(pooled.lengths), np.asarray(pooled.tokens)
    for row in np.flatnonzero(~truncated):  # EOS is the last masked token, pad after it
        assert tokens[row, lengths[row] - 1] in EOS
        assert (tokens[row, lengths[row]:] == config.pad_id).all()
    logp = np.asarray(pooled.logprobs)
    assert (logp[np.asarray(pooled.mask) == 0] == 0).all() and (logp <= 0).all()


def test_fixed_key_sampling_does_not_depend_on_slots_or_other_requests(policy):
    ids, mask = _prompts()
    config = SamplingConfig(max_new_tokens=L, temperature=1.0, top_k=20, eos_id=EOS)
    key = jax.random.key(3)
    one_slot = sample_continuous(policy, ids, mask, key=key, config=config, num_slots=1)
    static = sample_continuous(policy, ids, mask, key=key, config=config, num_slots=R)
    _assert_same(one_slot, static, logp_atol=1e-6)  # other batch width: an ulp at most
    # The first 3 requests alone (other queue, other compilation) draw the same tokens.
    head = sample_continuous(policy, ids[:3], mask[:3], key=key, config=config, num_slots=R)
    np.testing.assert_array_equal(np.asarray(head.tokens), np.asarray(static.tokens)[:3])
    other = sample_continuous(policy, ids, mask, key=jax.random.key(4), config=config,
                              num_slots=1)
    assert not np.array_equal(np.asarray(other.tokens), np.asarray(static.tokens))
    lengths = np.asarray(static.lengths)
    assert len(set(lengths.tolist())) > 1, "want a spread of lengths so slots free at different steps"


def test_rejects_right_padding_and_empty_pool(policy):
    ids, mask = _prompts(rows=2)
    config = SamplingConfig(max_new_tokens=2, temperature=0.0)
    with pytest.raises(ValueError, match="left-padded"):
        sample_continuous(policy, ids, mask[:, ::-1], key=jax.random.key(0), config=config,
                          num_slots=1)
    with pytest.raises(ValueError, match="num_slots"):
        sample_continuous(policy, ids, mask, key=jax.random.key(0), config=config, num_slots=0)


def test_sample_runs_the_slot_pool_when_config_sets_decode_slots(policy):
    """``SamplingConfig.decode_slots`` switches ``sample`` to the pool: its n samples of a prompt
    are the pool's requests ``prompt * n + k``; greedy tokens equal the static batch's."""
    ids, mask = _prompts(rows=3)
    key = jax.random.key(6)
    sampled = SamplingConfig(max_new_tokens=L, temperature=1.0, eos_id=EOS, decode_slots=2)
    via_sample = sample(policy, ids, mask, key=key, config=sampled, num_samples=2)
    direct = sample_continuous(policy, np.repeat(ids, 2, 0), np.repeat(mask, 2, 0), key=key,
                               config=sampled, num_slots=2)
    _assert_same(via_sample, direct)
    greedy = SamplingConfig(max_new_tokens=L, temperature=0.0, eos_id=EOS, decode_segments=1)
    pooled = sample(policy, ids, mask, key=key, num_samples=2,
                    config=dataclasses.replace(greedy, decode_slots=4))
    _assert_same(pooled, sample(policy, ids, mask, key=key, config=greedy, num_samples=2),
                 logp_atol=1e-5)
    with pytest.raises(ValueError, match="decode_slots"):
        SamplingConfig(max_new_tokens=L, decode_slots=-1)
