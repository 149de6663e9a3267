"""Rollout engine: greedy parity with transformers, log-probs, sampling statistics, EOS, mesh."""

import dataclasses
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from prime_jax import sharding
from prime_jax.models import from_pretrained, token_logprobs
from prime_jax.rollout import (Rollouts, SamplingConfig, decode_segments,
                               join_prompt_and_response, repeat_prompts, sample)
from prime_jax.rollout.sampling import choose_tokens

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "models"))
from _model_helpers import VOCAB, make_hf_model  # noqa: E402

P, L = 7, 10
FAST = dict(decode_segments=1)  # one decode loop compiles faster; parity tests use the default


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{family: (hf_model, prime_jax policy)} for tiny random qwen2 (untied) and llama models."""
    out = {}
    for family in ("qwen2", "llama"):
        hf = make_hf_model(family, seed=1)
        directory = tmp_path_factory.mktemp(f"rollout_{family}")
        hf.save_pretrained(directory)
        out[family] = (hf, from_pretrained(directory))
    return out


def _prompts(batch=4, seed=0, padded=True):
    rng = np.random.RandomState(seed)
    mask = np.ones((batch, P), np.int32)
    if padded:
        for row in range(batch):
            mask[row, :row % P] = 0  # left padding of 0, 1, 2, ... tokens
    ids = np.where(mask == 1, rng.randint(3, VOCAB, (batch, P)), 0).astype(np.int32)
    return ids, mask


def _hf_greedy(hf, ids, mask, new, eos_id=None):
    hf.generation_config.eos_token_id = eos_id
    with torch.no_grad():
        out = hf.generate(torch.as_tensor(ids, dtype=torch.long),
                          attention_mask=torch.as_tensor(mask, dtype=torch.long),
                          max_new_tokens=new, do_sample=False, pad_token_id=0,
                          eos_token_id=eos_id, use_cache=True)
    tokens = out[:, ids.shape[1]:].numpy()
    return np.pad(tokens, ((0, 0), (0, new - tokens.shape[1])))  # HF stops when all rows end


def _check_layout(r: Rollouts, eos_ids, pad_id=0):
    tokens, mask = np.asarray(r.tokens), np.asarray(r.mask)
    for row in range(tokens.shape[0]):
        hits = np.flatnonzero(np.isin(tokens[row], eos_ids)) if eos_ids else []
        end = hits[0] + 1 if len(hits) else tokens.shape[1]
        assert bool(r.truncated[row]) == (len(hits) == 0)
        assert int(r.lengths[row]) == end
        np.testing.assert_array_equal(mask[row], np.arange(tokens.shape[1]) < end)
        assert (tokens[row, end:] == pad_id).all()
        assert (np.asarray(r.logprobs)[row, end:] == 0).all()


@pytest.mark.parametrize("family", ["qwen2", "llama"])
@pytest.mark.parametrize("padded", [False, True], ids=["equal", "left_padded"])
def test_greedy_matches_transformers_generate(checkpoints, family, padded):
    hf, policy = checkpoints[family]
    ids, mask = _prompts(padded=padded)
    config = SamplingConfig(max_new_tokens=L, temperature=0.0)
    r = sample(policy, jnp.asarray(ids), jnp.asarray(mask), key=jax.random.key(0), config=config)
    np.testing.assert_array_equal(np.asarray(r.tokens), _hf_greedy(hf, ids, mask, L))
    assert np.asarray(r.mask).all() and np.asarray(r.truncated).all()

    # With an EOS that greedy decoding reaches mid-way in row 0: HF and prime_jax stop alike.
    eos = int(np.asarray(r.tokens)[0, 3])
    config = SamplingConfig(max_new_tokens=L, temperature=0.0, eos_id=eos)
    r_eos = sample(policy, jnp.asarray(ids), jnp.asarray(mask), key=jax.random.key(0),
                   config=config)
    np.testing.assert_array_equal(np.asarray(r_eos.tokens), _hf_greedy(hf, ids, mask, L, eos))
    assert int(r_eos.lengths[0]) <= 4 and not bool(r_eos.truncated[0])
    _check_layout(r_eos, [eos])


@pytest.mark.parametrize("config", [
    SamplingConfig(max_new_tokens=L, temperature=1.0, **FAST),
    SamplingConfig(max_new_tokens=L, temperature=0.7, top_k=8, top_p=0.9, eos_id=[5, 6, 7],
                   **FAST),
], ids=["t1", "filtered_eos"])
def test_logprobs_equal_teacher_forced_forward(checkpoints, config):
    _, policy = checkpoints["qwen2"]
    ids, mask = _prompts(batch=6, seed=1)
    r = sample(policy, jnp.asarray(ids), jnp.asarray(mask), key=jax.random.key(3), config=config)
    tokens, full_mask = join_prompt_and_response(jnp.asarray(ids), jnp.asarray(mask), r)
    expected = np.asarray(token_logprobs(policy, tokens, full_mask))[:, P:]
    np.testing.assert_allclose(np.asarray(r.logprobs), expected, atol=1e-5, rtol=0)
    assert r.tokens.dtype == jnp.int32 and r.logprobs.dtype == jnp.float32
    assert r.mask.dtype == jnp.int32 and r.tokens.shape == (6, L)
    _check_layout(r, list(config.eos_ids))


def _expected_probs(logits, temperature, top_k, top_p):
    """NumPy reference of the filtered, renormalised next-token distribution."""
    z = logits.astype(np.float64) / temperature
    order = np.argsort(-z, kind="stable")
    keep = np.zeros(z.shape, bool)
    keep[order[:top_k or len(z)]] = True
    probs = np.exp(z - z[keep].max()) * keep
    probs /= probs.sum()
    if top_p < 1.0:
        before = np.cumsum(probs[order]) - probs[order]
        nucleus = np.zeros(z.shape, bool)
        nucleus[order[before < top_p]] = True
        probs = probs * nucleus
    return probs / probs.sum()


def _assert_frequencies(draws, probs):
    """Chi-square of token counts against ``probs`` (rare tokens pooled); no draw off-support."""
    counts = np.bincount(draws, minlength=len(probs))
    assert counts[probs == 0].sum() == 0, "a filtered-out token was sampled"
    expected = probs[probs > 0] * len(draws)
    observed = counts[probs > 0]
    big = expected >= 5
    observed = np.append(observed[big], observed[~big].sum())
    expected = np.append(expected[big], expected[~big].sum())
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    assert len(observed) >= 3, "degenerate distribution: the test would prove nothing"
    assert chisquare(observed, expected).pvalue > 1e-3


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 0, 1.0), (0.8, 12, 1.0),
                                                         (1.0, 0, 0.7)])
def test_sampled_frequencies_match_model_distribution(checkpoints, temperature, top_k, top_p):
    _, policy = checkpoints["qwen2"]
    ids, mask = _prompts(batch=1, seed=2)
    logits = np.asarray(policy(jnp.asarray(ids)))[0, -1]
    n = 3000
    # The engine's first token (prefill, n contiguous copies of one prompt) ...
    config = SamplingConfig(max_new_tokens=1, temperature=temperature, top_k=top_k, top_p=top_p)
    r = sample(policy, jnp.asarray(ids), jnp.asarray(mask), key=jax.random.key(7), config=config,
               num_samples=n)
    assert r.tokens.shape == (n, 1)
    _assert_frequencies(np.asarray(r.tokens)[:, 0],
                        _expected_probs(logits, temperature, top_k, top_p))
    # ... and the token chooser on sharper logits, where the filters' cut-offs matter more.
    sharp = logits * 2.0 / logits.std()
    draws = choose_tokens(jnp.broadcast_to(jnp.asarray(sharp), (n, VOCAB)), jax.random.key(8),
                          temperature=temperature, top_k=top_k, top_p=top_p)
    _assert_frequencies(np.asarray(draws), _expected_probs(sharp, temperature, top_k, top_p))


def test_eos_masks_truncation_and_early_exit(checkpoints):
    _, policy = checkpoints["llama"]
    ids, mask = _prompts(batch=8, seed=3)
    config = SamplingConfig(max_new_tokens=12, temperature=1.0, eos_id=list(range(3, 9)),
                            pad_id=1, **FAST)
    assert config.eos_id == tuple(range(3, 9)) and hash(config)
    r = sample(policy, jnp.asarray(ids), jnp.asarray(mask), key=jax.random.key(0), config=config)
    _check_layout(r, list(range(3, 9)), pad_id=1)
    lengths = np.asarray(r.lengths)
    assert (lengths < 12).any() and np.asarray(r.truncated).any(), lengths  # both cases occur
    # Every token is an EOS: all rows stop after one token (the loop exits at once).
    config = SamplingConfig(max_new_tokens=12, temperature=1.0, eos_id=list(range(VOCAB)),
                            **FAST)
    r = sample(policy, jnp.asarray(ids), jnp.asarray(mask), key=jax.random.key(0), config=config)
    np.testing.assert_array_equal(np.asarray(r.lengths), 1)
    assert (np.asarray(r.tokens)[:, 1:] == 0).all() and not np.asarray(r.truncated).any()


def test_reproducible_and_key_dependent(checkpoints):
    _, policy = checkpoints["qwen2"]
    ids, mask = (jnp.asarray(x) for x in _prompts(batch=4, seed=4))
    config = SamplingConfig(max_new_tokens=L, temperature=1.0, top_p=0.95, **FAST)
    a = sample(policy, ids, mask, key=jax.random.key(11), config=config)
    b = sample(policy, ids, mask, key=jax.random.key(11), config=config)
    c = sample(policy, ids, mask, key=jax.random.key(12), config=config)
    np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
    np.testing.assert_array_equal(np.asarray(a.logprobs), np.asarray(b.logprobs))
    assert (np.asarray(a.tokens) != np.asarray(c.tokens)).any()


def test_num_samples_rows_are_contiguous(checkpoints):
    _, policy = checkpoints["qwen2"]
    ids, mask = (jnp.asarray(x) for x in _prompts(batch=3, seed=5))
    rep_ids, rep_mask = repeat_prompts(ids, mask, 2)
    np.testing.assert_array_equal(np.asarray(rep_ids), np.asarray(ids)[[0, 0, 1, 1, 2, 2]])
    np.testing.assert_array_equal(np.asarray(rep_mask), np.asarray(mask)[[0, 0, 1, 1, 2, 2]])
    greedy = SamplingConfig(max_new_tokens=6, temperature=0.0, **FAST)
    single = np.asarray(sample(policy, ids, mask, key=jax.random.key(0), config=greedy).tokens)
    grouped = sample(policy, ids, mask, key=jax.random.key(0), config=greedy, num_samples=3)
    np.testing.assert_array_equal(np.asarray(grouped.tokens), np.repeat(single, 3, axis=0))
    sampled = sample(policy, ids, mask, key=jax.random.key(0), num_samples=3,
                     config=SamplingConfig(max_new_tokens=6, temperature=1.0, **FAST))
    rows = np.asarray(sampled.tokens)
    assert len({tuple(rows[k]) for k in range(3)}) > 1  # the n samples of a prompt differ


@pytest.mark.parametrize("layout", [(8, 1, 1), (2, 2, 2)], ids=["data8", "d2f2t2"])
def test_sharded_equals_unsharded(checkpoints, tmp_path, layout):
    if jax.device_count() < 8:
        pytest.skip("needs 8 (virtual) devices: tests/conftest.py sets XLA_FLAGS")
    hf, policy = checkpoints["qwen2"]
    ids, mask = _prompts(batch=8, seed=6)
    config = SamplingConfig(max_new_tokens=8, temperature=0.0, eos_id=9)
    expected = sample(policy, jnp.asarray(ids), jnp.asarray(mask), key=jax.random.key(0),
                      config=config)
    hf.save_pretrained(tmp_path)
    mesh = sharding.make_mesh(sharding.MeshConfig(data=layout[0], fsdp=layout[1],
                                                  tensor=layout[2]))
    sharded_policy = from_pretrained(tmp_path, mesh=mesh)
    batch = sharding.named_sharding(mesh, ("batch", "length"), ids.shape)
    with jax.set_mesh(mesh):
        got = sample(sharded_policy, jax.device_put(ids, batch), jax.device_put(mask, batch),
                     key=jax.random.key(0), config=config)
    assert got.tokens.sharding.shard_shape(got.tokens.shape)[0] == 8 // (layout[0] * layout[1])
    np.testing.assert_array_equal(np.asarray(got.tokens), np.asarray(expected.tokens))
    np.testing.assert_array_equal(np.asarray(got.mask), np.asarray(expected.mask))
    np.testing.assert_allclose(np.asarray(got.logprobs), np.asarray(expected.logprobs), atol=2e-5)
    pools = (dict(decode_slots=3), dict(decode_slots=3, kv_blocks=8, kv_block_size=4),  # the pool whole on each device
             dict(decode_slots=8, kv_blocks=32, kv_block_size=4))  # in groups: a shard's blocks on its device
    for pool in pools:
        with jax.set_mesh(mesh):  # continuous batching (dense or paged) on the mesh: the same greedy tokens
            pooled = sample(sharded_policy, jax.device_put(ids, batch), jax.device_put(mask, batch),
                            key=jax.random.key(0), config=dataclasses.replace(config, **pool))
        np.testing.assert_array_equal(np.asarray(pooled.tokens), np.asarray(expected.tokens), err_msg=str(pool))
    if layout == (2, 2, 2):  # the same key draws the same samples on any layout
        config = SamplingConfig(max_new_tokens=8, temperature=1.0, top_k=20, **FAST)
        expected = sample(policy, jnp.asarray(ids), jnp.asarray(mask), key=jax.random.key(1),
                          config=config)
        with jax.set_mesh(mesh):
            got = sample(sharded_policy, jax.device_put(ids, batch), jax.device_put(mask, batch),
                         key=jax.random.key(1), config=config)
        np.testing.assert_array_equal(np.asarray(got.tokens), np.asarray(expected.tokens))


def test_bfloat16_cache_and_segments(checkpoints):
    _, policy = checkpoints["llama"]
    ids, mask = (jnp.asarray(x) for x in _prompts(batch=4, seed=7))
    f32 = SamplingConfig(max_new_tokens=L, temperature=0.0, decode_segments=1)
    ref = sample(policy, ids, mask, key=jax.random.key(0), config=f32)
    seg = sample(policy, ids, mask, key=jax.random.key(0),
                 config=SamplingConfig(max_new_tokens=L, temperature=0.0, decode_segments=3))
    np.testing.assert_array_equal(np.asarray(seg.tokens), np.asarray(ref.tokens))
    bf16 = SamplingConfig(max_new_tokens=L, temperature=0.0, cache_dtype=jnp.bfloat16, **FAST)
    assert bf16.cache_dtype == "bfloat16" and hash(bf16)
    r = sample(policy, ids, mask, key=jax.random.key(0), config=bf16)
    # bf16-rounded keys/values: the first greedy token still agrees, log-probs stay close.
    assert (np.asarray(r.tokens)[:, 0] == np.asarray(ref.tokens)[:, 0]).all()
    tokens, full_mask = join_prompt_and_response(ids, mask, r)
    teacher = np.asarray(token_logprobs(policy, tokens, full_mask))[:, P:]
    np.testing.assert_allclose(np.asarray(r.logprobs), teacher, atol=0.05)


def test_bfloat16_cache_is_exact_for_a_bfloat16_model(tmp_path, checkpoints):
    """A bf16 model computes keys/values in bf16 and attention reads the cache in the compute
    dtype, so a bf16 cache holds exactly what a float32 cache holds: same tokens, same log-probs
    (benchmarks/bf16_cache.py: the float32 model's 68.5% comes from rounding f32 keys/values)."""
    hf, _ = checkpoints["qwen2"]
    hf.save_pretrained(tmp_path)
    policy = from_pretrained(tmp_path, dtype=jnp.bfloat16, param_dtype=jnp.float32)
    ids, mask = (jnp.asarray(x) for x in _prompts(batch=4, seed=8))
    runs = [sample(policy, ids, mask, key=jax.random.key(0), config=SamplingConfig(
        max_new_tokens=L, temperature=0.0, cache_dtype=dtype, **FAST)) for dtype in ("float32", "bfloat16")]
    np.testing.assert_array_equal(np.asarray(runs[0].tokens), np.asarray(runs[1].tokens))
    np.testing.assert_array_equal(np.asarray(runs[0].logprobs), np.asarray(runs[1].logprobs))


def test_config_validation_and_segments():
    assert decode_segments(96, 4) == [(1, 24), (24, 48), (48, 72), (72, 96)]
    assert decode_segments(1, 4) == [] and decode_segments(3, 8) == [(1, 2), (2, 3)]
    assert SamplingConfig(max_new_tokens=4, eos_id=np.int64(3)).eos_ids == (3,)
    assert SamplingConfig(max_new_tokens=4).eos_ids == ()
    for bad in (dict(max_new_tokens=0), dict(max_new_tokens=4, top_p=0.0),
                dict(max_new_tokens=4, temperature=-1.0), dict(max_new_tokens=4, top_k=-1),
                dict(max_new_tokens=4, decode_segments=0)):
        with pytest.raises(ValueError, match="SamplingConfig"):
            SamplingConfig(**bad)


def test_right_padded_prompts_are_rejected(checkpoints):
    _, policy = checkpoints["qwen2"]
    ids, mask = _prompts(batch=2)
    mask[1, -1] = 0
    with pytest.raises(ValueError, match="left-padded"):
        sample(policy, jnp.asarray(ids), jnp.asarray(mask), key=jax.random.key(0),
               config=SamplingConfig(max_new_tokens=2))
