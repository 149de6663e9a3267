"""The character-level tokenizer for the synthetic tasks, in Hugging Face format.

Shipped at `prime_jax/assets/tokenizers/char/` (tokenizer.json, tokenizer_config.json with the
Jinja chat template, special_tokens_map.json); `build_char_tokenizer(out_dir)` rebuilds those
files byte-for-byte (`python -m prime_jax.data.char_tokenizer [OUT_DIR]`).

Vocabulary (60 ids, fixed order): the special tokens below, `\\boxed{` as ONE token (it appears
in every solution and would otherwise cost 7 characters of a ~48-token context), then newline,
space, digits, `+-*/=()`, `{}\\`, `,.:;` and `a`-`z`. Any other character maps to `<unk>`.

Chat template (no BOS; role markers are single tokens):
    <|system|>S<|user|>U<|assistant|>A</s>      add_generation_prompt appends <|assistant|>
"""

from __future__ import annotations

import json
import os
import pathlib
import string
import sys

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>")
PAD_ID, BOS_ID, EOS_ID, UNK_ID, SYSTEM_ID, USER_ID, ASSISTANT_ID = range(len(SPECIAL_TOKENS))
BOXED_TOKEN = "\\boxed{"
BOXED_ID = len(SPECIAL_TOKENS)
CHARACTERS = ("\n", " ") + tuple(string.digits) + tuple("+-*/=()") + tuple("{}\\") + \
    tuple(",.:;") + tuple(string.ascii_lowercase)
VOCAB = SPECIAL_TOKENS + (BOXED_TOKEN,) + CHARACTERS

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}<|system|>{{ message['content'] }}"
    "{%- elif message['role'] == 'user' -%}<|user|>{{ message['content'] }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "<|assistant|>{{ message['content'] }}{{ eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)

SHIPPED_DIR = pathlib.Path(__file__).resolve().parents[1] / "assets" / "tokenizers" / "char"


def make_backend():
    """The `tokenizers.Tokenizer`: word-level over single characters, `\\boxed{` added."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({tok: i for i, tok in enumerate(VOCAB)},
                                           unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                  for t in SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(BOXED_TOKEN, special=False, normalized=False)])
    return tokenizer


def build_char_tokenizer(out_dir: str | os.PathLike = SHIPPED_DIR) -> pathlib.Path:
    """Writes the three tokenizer files into `out_dir` deterministically; returns the path."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    make_backend().save(str(out / "tokenizer.json"), pretty=True)
    special = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>",
               "unk_token": "<unk>",
               "additional_special_tokens": ["<|system|>", "<|user|>", "<|assistant|>"]}
    added = {str(i): {"content": tok, "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False, "special": tok != BOXED_TOKEN}
             for i, tok in enumerate(SPECIAL_TOKENS + (BOXED_TOKEN,))}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 4096,
              "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
              "padding_side": "left", "chat_template": CHAT_TEMPLATE,
              "added_tokens_decoder": added, **special}
    _write_json(out / "tokenizer_config.json", config)
    _write_json(out / "special_tokens_map.json", special)
    return out


def _write_json(path: pathlib.Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def load_tokenizer(path_or_name: str | os.PathLike = "char"):
    """A Hugging Face tokenizer: "char" = the shipped one, otherwise a local HF directory.

    Never touches the network (`local_files_only=True`).
    """
    from transformers import AutoTokenizer

    path = SHIPPED_DIR if str(path_or_name) == "char" else pathlib.Path(path_or_name)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {path}")
    if _saved_class(path) in PLAIN_BACKENDS:
        # A plain `tokenizers` tokenizer (e.g. the char tokenizer re-saved beside a model): load
        # it as such. AutoTokenizer would pick the class of config.json's model_type (qwen2 ->
        # Qwen2Tokenizer), whose pre-tokenizer silently drops newlines and spaces.
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


PLAIN_BACKENDS = ("TokenizersBackend", "PreTrainedTokenizerFast")


def _saved_class(path: pathlib.Path) -> str | None:
    """The ``tokenizer_class`` recorded in ``path/tokenizer_config.json`` (None if absent)."""
    config = path / "tokenizer_config.json"
    return json.loads(config.read_text()).get("tokenizer_class") if config.is_file() else None


if __name__ == "__main__":
    print(build_char_tokenizer(sys.argv[1] if len(sys.argv) > 1 else SHIPPED_DIR))
