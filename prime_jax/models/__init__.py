"""Decoder-only language models (Qwen2, Llama, Qwen3) with HF import/export and a KV cache."""

from prime_jax.models.cache import KVCache, cache_bytes
from prime_jax.models.config import PRESETS, ModelConfig, RopeScaling
from prime_jax.models.hf import (from_pretrained, load_explicit_prm, load_orm, save_explicit_prm, save_orm,
                                 save_pretrained)
from prime_jax.models.layers import param_shardings
from prime_jax.models.logprobs import token_logprobs, token_logprobs_and_entropy
from prime_jax.models.reward_head import OutcomeRewardModel, orm_from_backbone
from prime_jax.models.step_head import ExplicitPRM, explicit_prm_from_backbone
from prime_jax.models.transformer import Transformer

__all__ = [
    "ExplicitPRM", "KVCache", "ModelConfig", "OutcomeRewardModel", "PRESETS", "RopeScaling", "Transformer", "cache_bytes",
    "explicit_prm_from_backbone", "from_pretrained", "load_explicit_prm", "load_orm", "orm_from_backbone",
    "param_shardings", "save_explicit_prm", "save_orm", "save_pretrained",
    "token_logprobs", "token_logprobs_and_entropy",
]
