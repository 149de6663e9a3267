"""Decoder-only language models (Qwen2, Llama, Qwen3) with HF import/export and a KV cache."""

from prime_jax.models.cache import KVCache, cache_bytes
from prime_jax.models.config import PRESETS, ModelConfig, RopeScaling
from prime_jax.models.hf import from_pretrained, save_pretrained
from prime_jax.models.layers import param_shardings
from prime_jax.models.logprobs import (logprobs_from_logits, token_logprobs,
                                       token_logprobs_and_entropy)
from prime_jax.models.transformer import Transformer

__all__ = [
    "KVCache", "ModelConfig", "PRESETS", "RopeScaling", "Transformer", "cache_bytes",
    "from_pretrained", "logprobs_from_logits", "param_shardings", "save_pretrained",
    "token_logprobs", "token_logprobs_and_entropy",
]
