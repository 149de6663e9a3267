"""Paged KV cache: continuous batching over a shared block pool gives the dense pool's rollouts,
also when the pool is so small that requests are preempted and restarted."""

import re

import jax
import numpy as np
import pytest
from flax import nnx

from prime_jax import sharding
from prime_jax.models import ModelConfig, Transformer
from prime_jax.rollout import SamplingConfig, paged, sample, sample_continuous
from prime_jax.rollout.paged import sample_paged

R, P, L, VOCAB, BLOCK = 7, 6, 12, 97, 4
EOS = (27, 77)
WHOLE = -(-(P + L - 1) // BLOCK)  # blocks of one whole request


@pytest.fixture(scope="module")
def policy():
    config = ModelConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_layers=1,
                         num_heads=4, num_kv_heads=2, head_dim=8)
    return Transformer(config, rngs=nnx.Rngs(0))


def _prompts():
    rng = np.random.RandomState(0)
    mask = np.ones((R, P), np.int32)
    for row in range(R):
        mask[row, :row % 4] = 0  # left padding of 0..3 tokens
    return np.where(mask == 1, rng.randint(8, VOCAB, (R, P)), 0).astype(np.int32), mask


def _assert_same(a, b):
    for name in ("tokens", "mask", "truncated", "lengths"):
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)), err_msg=name)
    np.testing.assert_allclose(np.asarray(a.logprobs), np.asarray(b.logprobs), rtol=0, atol=1e-5)


@pytest.mark.parametrize("config", [
    SamplingConfig(max_new_tokens=L, temperature=0.0, eos_id=EOS, decode_segments=1),
    SamplingConfig(max_new_tokens=L, temperature=1.0, top_k=20, eos_id=EOS),
], ids=["greedy", "sampled"])
def test_equals_the_dense_slot_pool_with_and_without_preemption(policy, config):
    ids, mask = _prompts()
    key = jax.random.key(3)
    dense = sample_continuous(policy, ids, mask, key=key, config=config, num_slots=3)
    lengths = np.asarray(dense.lengths)
    assert len(set(lengths.tolist())) > 1 and (lengths == L).any(), "want EOS endings and cut-offs"
    preempted = []
    for blocks in (WHOLE, 3 * WHOLE):
        paged, stats = sample_paged(policy, ids, mask, key=key, config=config, num_slots=3,
                                    num_blocks=blocks, block_size=BLOCK, with_stats=True)
        _assert_same(paged, dense)
        assert int(stats.peak_blocks) <= blocks
        preempted.append(int(stats.preemptions))
    assert preempted[0] > 0 and preempted[-1] == 0  # a one-request pool restarts requests; a roomy one never


def test_a_pool_in_groups_gives_the_same_rollouts_and_preempts_within_a_group(policy):
    """Slots 0-1 draw on blocks [0, n/2), slots 2-3 on [n/2, n): the dense pool's rollouts, also
    when each group holds one whole request only (its youngest request is restarted)."""
    ids, mask = _prompts()
    key = jax.random.key(5)
    config = SamplingConfig(max_new_tokens=L, temperature=1.0, top_k=20, eos_id=EOS)
    dense = sample_continuous(policy, ids, mask, key=key, config=config, num_slots=4)
    preempted = []
    for blocks in (2 * WHOLE, 6 * WHOLE):
        paged, stats = sample_paged(policy, ids, mask, key=key, config=config, num_slots=4, num_blocks=blocks,
                                    block_size=BLOCK, groups=2, with_stats=True)
        _assert_same(paged, dense)
        preempted.append(int(stats.preemptions))
    assert preempted[0] > 0 and preempted[-1] == 0


def test_on_a_mesh_each_device_holds_its_slots_blocks_only(policy):
    """8 batch shards: the pool splits in 8 groups, one per device, with the same rollouts;
    compiled, the sampler's scratch per device is less than the whole pool it held before
    (whole pool 2 MiB: 2 x 1024 blocks x 16 slots x 2 kv heads x 8 x f32), and no step copies
    a device's share of the pool."""
    if jax.device_count() < 8:
        pytest.skip("needs 8 (virtual) devices: tests/conftest.py sets XLA_FLAGS")
    ids, mask = _prompts()
    ids, mask = np.concatenate([ids, ids[:1]]), np.concatenate([mask, mask[:1]])  # 8 requests
    key = jax.random.key(6)
    config = SamplingConfig(max_new_tokens=L, temperature=1.0, top_k=20, eos_id=EOS)
    dense = sample_continuous(policy, ids, mask, key=key, config=config, num_slots=8)
    mesh = sharding.make_mesh(sharding.MeshConfig(data=8, fsdp=1, tensor=1))
    with jax.set_mesh(mesh):
        _assert_same(sample_paged(policy, ids, mask, key=key, config=config, num_slots=8, num_blocks=8 * WHOLE,
                                  block_size=BLOCK), dense)
        graphdef, state = nnx.split(policy)
        compiled = {groups: paged._paged_jit.lower(graphdef, state, ids, mask, key, num_slots=8, num_blocks=1024,
                                                   block_size=16, config=config, groups=groups).compile()
                    for groups in (1, None)}
    scratch = {groups: c.memory_analysis().temp_size_in_bytes for groups, c in compiled.items()}
    pool = 2 * 1024 * 16 * 2 * 8 * 4
    assert scratch[1] > pool > scratch[None], scratch
    # The steps write each device's pool in place: no more copies of its share than of the whole pool.
    copies = {groups: len(re.findall(rf"= f32\[2,{blocks},16,8\]\S* copy\(", compiled[groups].as_text()))
              for groups, blocks in ((1, 1024), (None, 128))}
    assert copies[None] <= copies[1], copies


def test_the_sampler_runs_the_pool_when_config_sets_kv_blocks(policy):
    ids, mask = _prompts()
    key = jax.random.key(4)
    config = SamplingConfig(max_new_tokens=L, temperature=1.0, eos_id=EOS, decode_slots=2,
                            kv_blocks=WHOLE + 1, kv_block_size=BLOCK)
    direct = sample_paged(policy, np.repeat(ids, 2, 0), np.repeat(mask, 2, 0), key=key, config=config,
                          num_slots=2, num_blocks=WHOLE + 1, block_size=BLOCK)
    _assert_same(sample(policy, ids, mask, key=key, config=config, num_samples=2), direct)


def test_bad_pools_are_refused(policy):
    ids, mask = _prompts()
    config = SamplingConfig(max_new_tokens=L, temperature=0.0)
    with pytest.raises(ValueError, match=f"cannot hold one request of {P} prompt"):
        sample_paged(policy, ids, mask, key=jax.random.key(0), config=config, num_slots=2,
                     num_blocks=WHOLE - 1, block_size=BLOCK)
    with pytest.raises(ValueError, match="left-padded"):
        sample_paged(policy, ids, mask[:, ::-1], key=jax.random.key(0), config=config, num_slots=2,
                     num_blocks=WHOLE, block_size=BLOCK)
    with pytest.raises(ValueError, match="groups=2 must divide num_slots=3"):
        sample_paged(policy, ids, mask, key=jax.random.key(0), config=config, num_slots=3,
                     num_blocks=2 * WHOLE, block_size=BLOCK, groups=2)
    with pytest.raises(ValueError, match=f"each group holding one whole request \\({WHOLE} blocks"):
        sample_paged(policy, ids, mask, key=jax.random.key(0), config=config, num_slots=4,
                     num_blocks=2 * WHOLE - 2, block_size=BLOCK, groups=2)
    with pytest.raises(ValueError, match="kv_blocks needs decode_slots"):
        SamplingConfig(max_new_tokens=L, kv_blocks=8)
