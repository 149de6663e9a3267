"""RL prompt pipeline: layout, left padding, determinism, exact resume, process shards."""

import dataclasses
import json

import numpy as np
import pytest

from prime_jax.data import PromptPipeline, load_tokenizer, make_synthetic_rl_prompts
from prime_jax.data.chat import encode_prompts
from prime_jax.data.records import PromptRecord

N_SAMPLES = 4


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("char")


@pytest.fixture(scope="module")
def records():
    return make_synthetic_rl_prompts("arithmetic", 0, 60) + \
        make_synthetic_rl_prompts("countdown", 0, 40)


def make(records, tokenizer, **kw):
    kw = {"num_samples": N_SAMPLES, "max_prompt_length": 24, "seed": 7, **kw}
    return PromptPipeline(records, tokenizer, **kw)


def assert_same(a, b):
    np.testing.assert_array_equal(a.prompt_ids, b.prompt_ids)
    np.testing.assert_array_equal(a.prompt_mask, b.prompt_mask)
    np.testing.assert_array_equal(a.prompt_index, b.prompt_index)
    assert a.ground_truth == b.ground_truth and a.ability == b.ability


def test_contiguous_rows_and_left_padding(records, tokenizer):
    pipe = make(records, tokenizer)
    batch = pipe.next_prompts(8)
    assert batch.prompt_ids.shape == (8 * N_SAMPLES, 24) and batch.prompt_ids.dtype == np.int32
    assert batch.prompt_mask.dtype == np.int32 and batch.prompt_index.dtype == np.int64
    assert len(batch.ground_truth) == len(batch.ability) == batch.num_rows
    groups = batch.prompt_index.reshape(8, N_SAMPLES)
    assert (groups == groups[:, :1]).all() and len(set(groups[:, 0])) == 8
    for row in range(batch.num_rows):
        record = pipe.records[batch.prompt_index[row]]
        expected = encode_prompts(tokenizer, [record.messages])[0]
        mask = batch.prompt_mask[row]
        width = len(expected)
        assert mask.tolist() == [0] * (24 - width) + [1] * width  # flush right
        assert batch.prompt_ids[row, 24 - width:].tolist() == expected
        assert (batch.prompt_ids[row, :24 - width] == tokenizer.pad_token_id).all()
        assert batch.ground_truth[row] == record.ground_truth
        assert batch.ability[row] == record.ability
        first_of_group = row - row % N_SAMPLES
        np.testing.assert_array_equal(batch.prompt_ids[row], batch.prompt_ids[first_of_group])


def test_deterministic_and_each_epoch_is_a_permutation(records, tokenizer):
    a, b = make(records, tokenizer), make(records, tokenizer)
    seen = []
    for _ in range(10):  # 10 x 10 = one epoch of 100 prompts
        x, y = a.next_prompts(10), b.next_prompts(10)
        assert_same(x, y)
        seen.extend(x.prompt_index[::N_SAMPLES].tolist())
    assert sorted(seen) == list(range(100)) and a.epoch == 1
    second = [i for _ in range(10) for i in a.next_prompts(10).prompt_index[::N_SAMPLES]]
    assert sorted(second) == list(range(100)) and second != seen
    other_seed = make(records, tokenizer, seed=8).next_prompts(10)
    same_seed = make(records, tokenizer).next_prompts(10)
    assert other_seed.prompt_index.tolist() != same_seed.prompt_index.tolist()


@pytest.mark.parametrize("sizes", [[8, 8, 8], [7, 13, 30, 50, 3]])  # the latter crosses epochs
def test_resume_yields_the_same_next_batch(records, tokenizer, sizes):
    uninterrupted = make(records, tokenizer)
    for k in sizes:
        uninterrupted.next_prompts(k)
    saved = json.loads(json.dumps(uninterrupted.state()))
    expected = [uninterrupted.next_prompts(k) for k in (5, 11, 40)]
    resumed = make(records, tokenizer)
    resumed.restore(saved)
    for k, want in zip((5, 11, 40), expected):
        assert_same(resumed.next_prompts(k), want)


def test_restore_rejects_another_dataset(records, tokenizer):
    state = make(records, tokenizer).state()
    with pytest.raises(ValueError):
        make(records, tokenizer, seed=1).restore(state)
    with pytest.raises(ValueError):
        make(records[:50], tokenizer).restore(state)
    changed = [dataclasses.replace(records[0], ground_truth=records[0].ground_truth + "0")] + list(records[1:])
    with pytest.raises(ValueError, match="the prompts differ from the saved run's"):
        make(changed, tokenizer).restore(state)
    older = {k: v for k, v in state.items() if k != "prompts_sha256"}  # saved before the digest existed
    make(records, tokenizer).restore(older)


@pytest.mark.parametrize("process_count", [2, 3])
def test_process_shards_are_disjoint_and_cover(records, tokenizer, process_count):
    single = make(records, tokenizer)
    shards = [make(records, tokenizer, process_index=p, process_count=process_count)
              for p in range(process_count)]
    for step in range(6):
        k = 4 + step  # the trainer may ask for a different count each call
        parts = [s.next_prompts(k) for s in shards]
        whole = single.next_prompts(k * process_count)
        joined = np.concatenate([p.prompt_index for p in parts])
        np.testing.assert_array_equal(joined, whole.prompt_index)
        joined_ids = np.concatenate([p.prompt_ids for p in parts])
        np.testing.assert_array_equal(joined_ids, whole.prompt_ids)
        firsts = [set(p.prompt_index.tolist()) for p in parts]
        if step < 2:  # within the first epoch prompts never repeat
            assert all(not (a & b) for i, a in enumerate(firsts) for b in firsts[i + 1:])
    assert all(s.state() == single.state() for s in shards)
    resumed = make(records, tokenizer, process_index=0, process_count=1)
    resumed.restore(shards[1].state())  # positions are global: any process count resumes
    assert_same(resumed.next_prompts(5), single.next_prompts(5))


def test_too_long_prompts_are_dropped_and_counted(tokenizer):
    records = [PromptRecord(messages=(("user", "1" * n),), ground_truth="1", ability="math")
               for n in (3, 30, 5, 40)]
    pipe = PromptPipeline(records, tokenizer, num_samples=2, max_prompt_length=10)
    assert len(pipe) == 2 and pipe.stats.dropped_too_long == 2
    assert {r.messages[0][1] for r in pipe.records} == {"111", "11111"}


def test_pad_multiple_and_iteration(records, tokenizer):
    pipe = make(records, tokenizer, pad_multiple=8, max_prompt_length=64, prompts_per_batch=3)
    batch = next(iter(pipe))
    assert batch.prompt_ids.shape[1] % 8 == 0 and batch.prompt_ids.shape[1] <= 16
    assert batch.prompt_mask[:, -1].all()
    with pytest.raises(ValueError):
        next(make(records, tokenizer))


def test_epoch_batches_in_order_and_sharded(records, tokenizer):
    pipe = make(records, tokenizer)
    order = [i for b in pipe.epoch_batches(30) for i in b.prompt_index[::N_SAMPLES]]
    assert order == list(range(100)) and pipe.state()["position"] == 0
    shards = [make(records, tokenizer, process_index=p, process_count=3) for p in range(3)]
    covered = sorted(i for s in shards for b in s.epoch_batches(7)
                     for i in b.prompt_index[::N_SAMPLES])
    assert covered == list(range(100))
