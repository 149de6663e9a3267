"""Helpers for tests/models: tiny random-weight HF models and HF reference logits."""

import json
import pathlib

import numpy as np
import torch
import transformers

VOCAB = 96


def hf_config(family: str, *, tie: bool = False, layers: int = 2) -> transformers.PretrainedConfig:
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                  max_position_embeddings=256, tie_word_embeddings=tie,
                  bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if family == "qwen2":
        return transformers.Qwen2Config(rope_theta=10000.0, **common)
    if family == "llama":
        # theta 1e4, head_dim 16: wavelengths 6.3 (kept), 20 and 63 (smoothed), >= 199 (scaled).
        common.update(head_dim=16, rms_norm_eps=1e-5)
        return transformers.LlamaConfig(
            rope_theta=10000.0, rope_scaling={
                "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}, **common)
    if family == "qwen3":
        common.update(head_dim=16)  # != hidden / heads
        return transformers.Qwen3Config(rope_theta=1e6, **common)
    raise ValueError(family)


def make_hf_model(family: str, *, tie: bool = False, seed: int = 0, layers: int = 2):
    """Random HF model with non-trivial norms and biases (float32, eager attention)."""
    torch.manual_seed(seed)
    config = hf_config(family, tie=tie, layers=layers)
    config._attn_implementation = "eager"
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
    return model.eval()


def hf_logits(model, ids, mask=None, positions=None) -> np.ndarray:
    ids_t = torch.as_tensor(np.asarray(ids), dtype=torch.long)
    kwargs = {}
    if mask is not None:
        kwargs["attention_mask"] = torch.as_tensor(np.asarray(mask), dtype=torch.long)
    if positions is not None:
        kwargs["position_ids"] = torch.as_tensor(np.asarray(positions), dtype=torch.long)
    with torch.no_grad():
        return model(ids_t, **kwargs).logits.float().numpy()


def to_legacy_layout(config_path: pathlib.Path) -> dict:
    """Rewrite config.json with top-level rope_theta + rope_scaling (pre-5.x layout)."""
    hf = json.loads(config_path.read_text())
    rope = dict(hf.pop("rope_parameters"))
    hf["rope_theta"] = rope.pop("rope_theta")
    hf["rope_scaling"] = None if rope.get("rope_type") == "default" else rope
    if hf["rope_scaling"]:
        hf["rope_scaling"]["type"] = hf["rope_scaling"].pop("rope_type")
    config_path.write_text(json.dumps(hf))
    return hf


FAMILIES = [("qwen2", False), ("qwen2", True), ("llama", False), ("qwen3", False),
            ("qwen3", True)]


def make_hf_head_model(family: str, auto_class, *, seed: int = 0):
    """A random one-label HF head model (``AutoModelFor{Sequence,Token}Classification``) with the
    same weight recipe as ``make_hf_model``: norms near 1, everything else small."""
    torch.manual_seed(seed)
    config = hf_config(family)
    config.num_labels = 1
    config._attn_implementation = "eager"
    model = auto_class.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_((1.0 + 0.2 * torch.randn_like(p)) if name.endswith("norm.weight") else 0.08 * torch.randn_like(p))
    return model.eval()


def padded_head_batch():
    """Rows with left padding, right padding and both; padding is token 0 (pad_token_id)."""
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 90, size=(4, 12))
    mask = np.ones_like(ids)
    mask[1, :3] = 0  # left padding
    mask[2, 9:] = 0  # right padding
    mask[3, :2] = 0
    mask[3, 10:] = 0  # both
    return np.where(mask == 1, ids, 0), mask
