"""SFT batches: right padding, loss on response tokens incl. EOS, resume, overflow."""

import json

import numpy as np
import pytest

from prime_jax.data import SFTBatcher, load_tokenizer, make_synthetic_sft_examples
from prime_jax.data.chat import encode_prompts, encode_responses
from prime_jax.data.records import SFTExample


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("char")


@pytest.fixture(scope="module")
def examples():
    return make_synthetic_sft_examples("arithmetic", 0, 50)


def test_layout_and_loss_mask(examples, tokenizer):
    batcher = SFTBatcher(examples, tokenizer, batch_size=16, seq_len=56, seed=0)
    batch = next(batcher)
    for field in (batch.tokens, batch.loss_mask, batch.attention_mask):
        assert field.shape == (16, 56) and field.dtype == np.int32
    for row, index in enumerate(batch.example_index):
        example = batcher.examples[index]
        prompt = encode_prompts(tokenizer, [example.messages])[0]
        response = encode_responses(tokenizer, [example.response])[0]
        total = len(prompt) + len(response)
        assert batch.tokens[row, :total].tolist() == prompt + response
        assert response[-1] == tokenizer.eos_token_id
        assert batch.loss_mask[row].tolist() == [0] * len(prompt) + [1] * len(response) + \
            [0] * (56 - total)
        assert batch.attention_mask[row].tolist() == [1] * total + [0] * (56 - total)
        assert (batch.tokens[row, total:] == tokenizer.pad_token_id).all()


def test_resume(examples, tokenizer):
    a = SFTBatcher(examples, tokenizer, batch_size=7, seq_len=56, seed=3)
    for _ in range(9):
        next(a)
    state = json.loads(json.dumps(a.state()))
    want = next(a)
    b = SFTBatcher(examples, tokenizer, batch_size=7, seq_len=56, seed=3)
    b.restore(state)
    got = next(b)
    np.testing.assert_array_equal(got.tokens, want.tokens)
    np.testing.assert_array_equal(got.example_index, want.example_index)


def test_shards_cover_the_global_batch(examples, tokenizer):
    whole = SFTBatcher(examples, tokenizer, batch_size=8, seq_len=56)
    parts = [SFTBatcher(examples, tokenizer, batch_size=4, seq_len=56, process_index=p,
                        process_count=2) for p in range(2)]
    np.testing.assert_array_equal(np.concatenate([next(p).tokens for p in parts]),
                                  next(whole).tokens)


def test_overflow_drop_and_truncate(tokenizer):
    examples = [SFTExample(messages=(("user", "1+1="),), response="1+1=2\n\\boxed{2}"),
                SFTExample(messages=(("user", "1+1="),), response="9" * 40)]
    dropped = SFTBatcher(examples, tokenizer, batch_size=2, seq_len=20)
    assert len(dropped) == 1 and dropped.stats.dropped_too_long == 1
    cut = SFTBatcher(examples, tokenizer, batch_size=2, seq_len=20, overflow="truncate",
                     shuffle=False)
    batch = next(cut)
    assert len(cut) == 2 and batch.attention_mask[1].all()
    assert batch.loss_mask[1].sum() == 20 - 6 and tokenizer.eos_token_id not in batch.tokens[1]
