"""The shipped char tokenizer: deterministic build, exact round trips, working chat template."""

import filecmp

import pytest
from transformers import AutoTokenizer

from prime_jax.data import char_tokenizer as ct
from prime_jax.data import synthetic
from prime_jax.data.chat import encode_prompts, encode_responses


@pytest.fixture(scope="module")
def tokenizer():
    return ct.load_tokenizer("char")


def test_rebuild_is_byte_identical(tmp_path):
    ct.build_char_tokenizer(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert filecmp.cmp(tmp_path / name, ct.SHIPPED_DIR / name, shallow=False), name


def test_vocab_and_special_ids(tokenizer):
    assert len(tokenizer) == len(ct.VOCAB) < 64
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id,
            tokenizer.unk_token_id) == (ct.PAD_ID, ct.BOS_ID, ct.EOS_ID, ct.UNK_ID) == (0, 1, 2, 3)
    assert tokenizer.convert_tokens_to_ids(["<|system|>", "<|user|>", "<|assistant|>"]) == [4, 5, 6]
    assert tokenizer.convert_tokens_to_ids(ct.BOXED_TOKEN) == ct.BOXED_ID == 7


def _all_task_text():
    for task in synthetic.TASKS:
        config = synthetic.default_config(task)
        if task == "countdown":
            config = synthetic.CountdownConfig(dead_end_fraction=0.5, min_numbers=3)
        for e in synthetic.make_synthetic_sft_examples(task, 0, 300, "train", config):
            yield e.messages[0][1]
            yield e.response
            yield e.ground_truth


def test_round_trips_all_task_text(tokenizer):
    texts = list(_all_task_text())
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ct.UNK_ID not in ids, text
        assert tokenizer.decode(ids) == text
    boxed = tokenizer("\\boxed{12}", add_special_tokens=False)["input_ids"]
    assert boxed[0] == ct.BOXED_ID and len(boxed) == 4


def test_chat_template_through_auto_tokenizer(tokenizer):
    direct = AutoTokenizer.from_pretrained(str(ct.SHIPPED_DIR), local_files_only=True)
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "1+2="}]
    text = direct.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert text == "<|system|>be brief<|user|>1+2=<|assistant|>"
    full = chat + [{"role": "assistant", "content": "1+2=3\n\\boxed{3}"}]
    assert direct.apply_chat_template(full, tokenize=False).endswith("\\boxed{3}</s>")
    ids = encode_prompts(tokenizer, [(("user", "1+2="),)])[0]
    assert ids[0] == ct.USER_ID and ids[-1] == ct.ASSISTANT_ID and len(ids) == 6
    response = encode_responses(tokenizer, ["\\boxed{3}"])[0]
    assert response == [ct.BOXED_ID, tokenizer.convert_tokens_to_ids("3"),
                        tokenizer.convert_tokens_to_ids("}"), ct.EOS_ID]
    assert tokenizer.decode(ids + response, skip_special_tokens=True) == "1+2=\\boxed{3}"


def test_default_arithmetic_fits_a_small_context(tokenizer):
    examples = synthetic.make_synthetic_sft_examples("arithmetic", 0, 2000)
    prompts = encode_prompts(tokenizer, [e.messages for e in examples])
    responses = encode_responses(tokenizer, [e.response for e in examples])
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses)]
    assert max(lengths) <= 56 and sum(lengths) / len(lengths) < 48


def test_unknown_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        ct.load_tokenizer(tmp_path / "missing")


def test_a_re_saved_char_tokenizer_keeps_newlines_and_spaces(tokenizer, tmp_path):
    """Saved beside a qwen2 model (config.json model_type qwen2), the char tokenizer must reload
    as itself: AutoTokenizer alone returns a Qwen2Tokenizer that drops "\\n" and " "."""
    from flax import nnx

    from prime_jax.models import ModelConfig, Transformer, save_pretrained

    config = ModelConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_layers=1,
                         num_heads=2, num_kv_heads=1, head_dim=8)
    save_pretrained(Transformer(config, rngs=nnx.Rngs(0)), tmp_path, tokenizer=tokenizer)
    reloaded = ct.load_tokenizer(tmp_path)
    text = "2*4=8\n8 x"
    assert reloaded.encode(text, add_special_tokens=False) == tokenizer.encode(text, add_special_tokens=False)
    chat = [{"role": "user", "content": "1 + 1"}]
    assert reloaded.apply_chat_template(chat, add_generation_prompt=True) == \
        tokenizer.apply_chat_template(chat, add_generation_prompt=True)
