"""A Qwen2-style byte-level BPE tokenizer built offline, with the real Qwen2 special-token ids.

For runs at the real Qwen2.5 shapes without a downloaded checkpoint (CPU smoke runs, memory
plans, benchmarks): the pipeline is Qwen2's - NFC normaliser, Qwen2's pre-tokenizer regex then
byte-level mapping, byte-level BPE (no unk, no byte fallback), byte-level decoder, the Qwen2.5
chat template (its no-tools branch) - but the merges are trained here, on this package's own
source text plus synthetic-task text, to ``num_merges`` merges. The BPE vocabulary is then padded
with unreachable filler entries (``<|filler_N|>``: no merge produces them) to exactly
``FIRST_SPECIAL_ID`` entries, so that the added tokens sit at Qwen2's ids::

    <|endoftext|> 151643 (pad)   <|im_start|> 151644   <|im_end|> 151645 (eos)   ...   <|file_sep|> 151664

``len(tokenizer)`` is 151665 as for Qwen2.5; the model's embedding table (151936 rows) is wider,
as Qwen's is. Nothing is downloaded. ``build_qwen_style_tokenizer(out_dir)`` writes a
``PreTrainedTokenizerFast`` directory (tokenizer.json, tokenizer_config.json,
special_tokens_map.json) that ``transformers.AutoTokenizer.from_pretrained`` and
``prime_jax.data.load_tokenizer`` load; ``python -m prime_jax.data.qwen_style_tokenizer OUT_DIR``.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from collections.abc import Iterator

# Qwen2's tokenizer.json pre-tokenizer split pattern (Isolated, then ByteLevel without regex).
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
FIRST_SPECIAL_ID = 151643
# Qwen2.5's added tokens, in id order from FIRST_SPECIAL_ID; the flag says "special".
ADDED_TOKENS = (
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False),
    ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)
ENDOFTEXT_ID, IM_START_ID, IM_END_ID = FIRST_SPECIAL_ID, FIRST_SPECIAL_ID + 1, FIRST_SPECIAL_ID + 2
QWEN2_5_VOCAB_SIZE = 151936  # rows of Qwen2.5-0.5B's embedding table (> len(tokenizer))

# Qwen2.5-Instruct's chat template without its tool-calling branches.
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) "
    "or (message.role == 'assistant') %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def training_texts() -> Iterator[str]:
    """The training corpus, in a fixed order: this package's .py/.md/.gin files, then synthetic
    arithmetic and countdown solutions (the text RL runs on)."""
    root = pathlib.Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".md", ".gin") and path.is_file():
            yield path.read_text(encoding="utf-8", errors="replace")
    from prime_jax.data.synthetic import make_synthetic_sft_examples

    for task in ("arithmetic", "countdown"):
        for example in make_synthetic_sft_examples(task, 0, 500):
            yield "\n".join([content for _, content in example.messages] + [example.response])


def make_backend(num_merges: int = 4000):
    """The ``tokenizers.Tokenizer``: Qwen2's pipeline with merges trained on ``training_texts``."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers import processors, trainers

    def pipeline(model):
        tokenizer = Tokenizer(model)
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
        tokenizer.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
        tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                                        use_regex=False)
        return tokenizer

    trained = pipeline(models.BPE())
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + num_merges, min_frequency=2,
                                  initial_alphabet=alphabet, special_tokens=[], show_progress=False)
    trained.train_from_iterator(training_texts(), trainer=trainer)
    model = json.loads(trained.to_str())["model"]
    vocab, merges = dict(model["vocab"]), model["merges"]
    if len(vocab) > FIRST_SPECIAL_ID:
        raise ValueError(f"num_merges={num_merges}: the vocabulary would overlap the special ids")
    for i in range(len(vocab), FIRST_SPECIAL_ID):  # unreachable: no merge yields these strings
        filler = f"<|filler_{i}|>"
        assert filler not in vocab
        vocab[filler] = i
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]
    tokenizer = pipeline(models.BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None,
                                    fuse_unk=False, byte_fallback=False, ignore_merges=False))
    for content, special in ADDED_TOKENS:  # ids assigned in order from len(vocab)
        token = AddedToken(content, special=special, normalized=False, single_word=False,
                           lstrip=False, rstrip=False)
        (tokenizer.add_special_tokens if special else tokenizer.add_tokens)([token])
    for offset, (content, _) in enumerate(ADDED_TOKENS):
        if tokenizer.token_to_id(content) != FIRST_SPECIAL_ID + offset:
            raise AssertionError(f"{content} got id {tokenizer.token_to_id(content)}")
    return tokenizer


def build_qwen_style_tokenizer(out_dir: str | os.PathLike, *, num_merges: int = 4000) -> pathlib.Path:
    """Writes the tokenizer directory into ``out_dir`` (deterministic for a given package source
    tree and ``num_merges``); returns its path."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    make_backend(num_merges).save(str(out / "tokenizer.json"))
    extra = [content for content, special in ADDED_TOKENS[1:] if special]
    special = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
               "additional_special_tokens": extra}
    added = {str(FIRST_SPECIAL_ID + i): {"content": content, "lstrip": False, "normalized": False,
                                         "rstrip": False, "single_word": False, "special": flag}
             for i, (content, flag) in enumerate(ADDED_TOKENS)}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 131072,
              "add_bos_token": False, "add_prefix_space": False, "bos_token": None, "unk_token": None,
              "clean_up_tokenization_spaces": False, "errors": "replace", "split_special_tokens": False,
              "chat_template": CHAT_TEMPLATE, "added_tokens_decoder": added, **special}
    for name, obj in (("tokenizer_config.json", config), ("special_tokens_map.json", special)):
        (out / name).write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m prime_jax.data.qwen_style_tokenizer OUT_DIR")
    print(build_qwen_style_tokenizer(sys.argv[1]))
