"""`HFVocabulary`: a seqio Vocabulary backed by a Hugging Face tokenizer directory.

Encoding adds no special tokens (chat templates place them); `encode_tf` runs the Python
tokenizer through `tf.numpy_function`. The tokenizer is loaded lazily, so the vocabulary can be
built (and a Task registered) without reading files until data is actually produced; the tf ops
load it while the graph is built, on the caller's thread: a first load inside a tf.data worker
thread can fail in transformers' lazy imports ("cannot import name 'AutoTokenizer'").
"""

from __future__ import annotations

import numpy as np

from prime_jax.data.char_tokenizer import load_tokenizer
from prime_jax.data.tf_runtime import import_tf

tf = import_tf()  # before seqio, which imports TensorFlow itself

import seqio  # noqa: E402


class HFVocabulary(seqio.Vocabulary):
    def __init__(self, tokenizer_path: str = "char"):
        self.tokenizer_path = str(tokenizer_path)
        self._tokenizer = None
        super().__init__(extra_ids=0)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_path)
        return self._tokenizer

    @property
    def eos_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.tokenizer.eos_token_id

    @property
    def unk_id(self) -> int | None:
        return self.tokenizer.unk_token_id

    @property
    def _base_vocab_size(self) -> int:
        return len(self.tokenizer)

    def _encode(self, s: str) -> list[int]:
        return list(self.tokenizer(s, add_special_tokens=False)["input_ids"])

    def _decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def _encode_tf(self, s):
        _ = self.tokenizer  # loaded now, on the graph-building thread

        def encode(text: bytes) -> np.ndarray:
            return np.asarray(self._encode(text.decode("utf-8")), np.int32)

        ids = tf.numpy_function(encode, [s], tf.int32, stateful=False)
        ids.set_shape([None])
        return ids

    def _decode_tf(self, ids):
        _ = self.tokenizer  # loaded now, on the graph-building thread

        def decode(values: np.ndarray) -> bytes:
            return self._decode(values.tolist()).encode("utf-8")

        text = tf.numpy_function(decode, [ids], tf.string, stateful=False)
        text.set_shape([])
        return text

    def __eq__(self, other) -> bool:
        return isinstance(other, HFVocabulary) and other.tokenizer_path == self.tokenizer_path

    def __hash__(self) -> int:
        return hash(("HFVocabulary", self.tokenizer_path))
