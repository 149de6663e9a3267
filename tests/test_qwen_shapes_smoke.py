"""The real Qwen2.5-0.5B vocabulary and width through one full PRIME RL step, on CPU.

The offline Qwen2-style tokenizer (``prime_jax.data.qwen_style_tokenizer``) must put the special
tokens at Qwen2's ids and round-trip chat text; ``benchmarks/smoke_qwen2.5_0.5b.py`` (the same code
path as the 24-layer smoke run: ``configs/prime_qwen2.5_0.5b.gin`` through ``python -m
prime_jax.train``) then runs one RL step at vocabulary 151936, width 896, 14/2 heads, MLP 4864 and
1 layer, in a subprocess on one CPU device (the test session has 8 virtual ones). To stay within
6 GiB the weights are stored in bfloat16 (the config stores float32: 3 models and 2 Adam states of
151M parameters then take 5.3 GiB before the updates' scratch, peak 7.5 GiB) and the PPO
mini-batch is one micro-batch (a second adds about two float32 copies of the weights to the
update's XLA:CPU scratch, peak 6.5 GiB); the float32, 2-micro-batch variant is the benchmark's.
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

from prime_jax.data import load_tokenizer
from prime_jax.data import qwen_style_tokenizer as qwen

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = REPO / "benchmarks" / "smoke_qwen2.5_0.5b.py"
QWEN_SPECIAL_IDS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return qwen.build_qwen_style_tokenizer(tmp_path_factory.mktemp("qwen_style"))


def test_tokenizer_has_qwen2_special_ids(tokenizer_dir):
    from transformers import AutoTokenizer

    for tokenizer in (load_tokenizer(str(tokenizer_dir)),
                      AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)):
        assert {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_IDS} == QWEN_SPECIAL_IDS
        assert tokenizer.eos_token_id == 151645 and tokenizer.pad_token_id == 151643
        assert len(tokenizer) == 151665 < qwen.QWEN2_5_VOCAB_SIZE
        # the fillers that pad the BPE vocabulary are never produced by encoding
        assert 5000 not in tokenizer.encode(tokenizer.convert_ids_to_tokens(5000), add_special_tokens=False)


def test_tokenizer_round_trips_chat_text(tokenizer_dir):
    tokenizer = load_tokenizer(str(tokenizer_dir))
    messages = [{"role": "system", "content": "Solve it step by step."},
                {"role": "user", "content": "17-11+7+2= ?  Héllo wörld, naïve café 数学\n\tdef f(x): return x"},
                {"role": "assistant", "content": "17-11=6\n6+7=13\n13+2=15\n\\boxed{15}"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text.startswith("<|im_start|>system\nSolve it step by step.<|im_end|>\n<|im_start|>user\n")
    assert text.endswith("<|im_start|>assistant\n17-11=6\n6+7=13\n13+2=15\n\\boxed{15}<|im_end|>\n")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert ids.count(151644) == 3 and ids.count(151645) == 3 and max(ids) == 151645
    prompt = tokenizer.apply_chat_template(messages[1:2], add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>system\nYou are Qwen") and prompt.endswith("<|im_start|>assistant\n")
    # the ids a 151936-row model can sample past the tokenizer decode to nothing, not an error
    assert tokenizer.decode([151700, 151935]) == ""


def test_tokenizer_matches_transformers_qwen2_pipeline(tokenizer_dir):
    """transformers' own Qwen2Tokenizer rebuilds Qwen2's normaliser/pre-tokenizer from the vocabulary
    and merges: it must tokenise exactly as the directory's tokenizer.json does."""
    from transformers import Qwen2Tokenizer

    ours = load_tokenizer(str(tokenizer_dir))
    theirs = Qwen2Tokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    text = (REPO / "prime_jax" / "rl" / "trainer.py").read_text() + " I'M  don't\r\n\n 12345 Ünïcode\u0301 x  "
    assert ours(text)["input_ids"] == theirs(text)["input_ids"]


@pytest.mark.slow
def test_one_rl_step_at_qwen2_5_0_5b_width_and_vocabulary(tmp_path):
    out = tmp_path / "smoke.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, str(SMOKE), "--layers", "1", "--param-dtype", "bfloat16", "--policy-micro-batches", "1",
         "--workdir",
         str(tmp_path / "work"), "--json", str(out), "--max-rss-gib", "12"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    config = result["model_config"]
    assert (config["vocab_size"], config["hidden_size"], config["intermediate_size"]) == (151936, 896, 4864)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["num_hidden_layers"]) == (14, 2, 1)
    assert config["tie_word_embeddings"] and result["params"] == 151_047_936
    (row,) = result["rows"]
    # every metric finite but the ones undefined by construction (all responses have one length)
    assert result["finite"] and set(result["nonfinite"]) <= {"prm_q_length_corr"}, row
    assert row["response_length"] > 0 and row["seconds_rollout"] > 0 and row["seconds_logprobs"] > 0
    # every update really ran: nonzero PRM and policy gradients, nonzero process rewards
    assert row["prm_grad_norm"] > 0 and row["policy_grad_norm"] > 0, row
    assert row["process_reward_mean"] != 0 and math.isfinite(row["policy_loss"]), row
