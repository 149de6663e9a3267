"""ModelConfig: the one description of a decoder-only transformer, and its HF config.json twin.

Supported families (``architecture``): ``qwen2`` (q/k/v biases), ``llama`` (optionally llama3
RoPE scaling) and ``qwen3`` (RMSNorm on q and k per head). ``from_hf`` reads both config.json
layouts that transformers has used:

* current (transformers 5.x): ``"rope_parameters": {"rope_type": ..., "rope_theta": ...}``;
* legacy: top-level ``"rope_theta"`` plus ``"rope_scaling": null | {"rope_type"|"type": ...}``.

``to_hf`` writes both spellings so that old and new transformers read the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax.numpy as jnp

from prime_jax.config_checks import check_at_least, check_choice, check_fields_at_least

ARCHITECTURES = {  # architecture -> (model_type, HF class name)
    "qwen2": ("qwen2", "Qwen2ForCausalLM"),
    "llama": ("llama", "LlamaForCausalLM"),
    "qwen3": ("qwen3", "Qwen3ForCausalLM"),
}
ROPE_TYPES = ("default", "llama3")
LLAMA3_ROPE_KEYS = ("factor", "low_freq_factor", "high_freq_factor",
                    "original_max_position_embeddings")
ATTENTION_BACKENDS = ("auto", "xla", "dot_product_attention", "cudnn", "pallas_gpu", "splash")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def _dtype_name(dtype: Any) -> str:
    name = jnp.dtype(dtype).name
    if name not in _DTYPES:
        raise ValueError(f"ModelConfig: unsupported dtype {name!r}; use one of {sorted(_DTYPES)}")
    return name


@dataclasses.dataclass(frozen=True, kw_only=True)
class RopeScaling:
    """llama3 RoPE frequency scaling (see ``layers.rope_inv_freq``)."""

    rope_type: str = "llama3"
    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Hyper-parameters of a Qwen2 / Llama / Qwen3 style decoder.

    ``dtype`` is the compute dtype of activations, ``param_dtype`` the storage dtype of weights
    (both given as names, e.g. "bfloat16"). ``rope_scaling`` is None or a ``RopeScaling`` (a dict
    with ``rope_type="llama3"`` and the four keys of ``LLAMA3_ROPE_KEYS`` is converted).
    ``remat`` and ``logits_chunk`` are compute settings, not written to config.json: ``remat``
    recomputes each block's activations in the backward pass; ``logits_chunk = C`` makes the
    log-prob functions (``models.logprobs``) build the vocabulary logits C positions at a time
    (None or 0: all T at once). ``attention`` (compute setting too) picks the attention kernel
    (``models.attention``): ``xla`` (the einsum reference), ``dot_product_attention``, ``cudnn``,
    ``pallas_gpu``, ``splash``, or ``auto`` (the best for the platform; the einsum on CPU).
    ``remat_barriers`` (compute setting) keeps (True) or drops (False) JAX's CSE barriers around
    each rematerialised block (``jax.checkpoint(prevent_cse=...)``). Kept by default for every
    attention backend: without them XLA merges the recomputation of the einsum away, and at full
    depth the 0.5B splash update is smaller with them too (7.19 vs 7.55 GiB per v5e chip at 4k
    tokens, 15.31 vs 16.48 at 16k; ``python -m prime_jax.memory_plan``, docs/results.md section 6).
    """

    architecture: str = "qwen2"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int | None = None  # None -> hidden_size // num_heads
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    qkv_bias: bool | None = None  # None -> architecture == "qwen2"
    qk_norm: bool | None = None  # None -> architecture == "qwen3"
    max_position_embeddings: int = 4096
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: bool = False
    remat_barriers: bool = True
    logits_chunk: int | None = None
    attention: str = "auto"
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None

    def __post_init__(self):
        check_choice("ModelConfig", "architecture", self.architecture, sorted(ARCHITECTURES))
        check_fields_at_least(self, dict.fromkeys(
            ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads"), 1))
        for field, arch in (("qkv_bias", "qwen2"), ("qk_norm", "qwen3")):
            value = getattr(self, field)
            if value is None:
                object.__setattr__(self, field, self.architecture == arch)
            elif bool(value) != (self.architecture == arch):
                raise ValueError(f"ModelConfig.{field}={value!r} does not match architecture="
                                 f"{self.architecture!r} (the HF layout has it iff {arch})")
        object.__setattr__(self, "dtype", _dtype_name(self.dtype))
        object.__setattr__(self, "param_dtype", _dtype_name(self.param_dtype))
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        if isinstance(self.eos_token_id, list):
            object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"ModelConfig: num_heads={self.num_heads} is not a multiple of "
                             f"num_kv_heads={self.num_kv_heads}")
        if self.logits_chunk is not None:  # 0: no chunking
            check_at_least("ModelConfig", "logits_chunk", self.logits_chunk, 0)
        check_choice("ModelConfig", "attention", self.attention, ATTENTION_BACKENDS)
        if self.remat_barriers not in (True, False):
            raise ValueError(f"ModelConfig.remat_barriers={self.remat_barriers!r}: give True or False")
        if isinstance(self.rope_scaling, dict):
            scaling = dict(self.rope_scaling)
            _check_rope_scaling(scaling, "ModelConfig.rope_scaling")
            if scaling.get("rope_type", scaling.get("type")) == "default":
                object.__setattr__(self, "rope_scaling", None)
            else:
                object.__setattr__(self, "rope_scaling", RopeScaling(
                    **{k: scaling[k] for k in LLAMA3_ROPE_KEYS}))

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(_DTYPES[self.dtype])

    @property
    def weight_dtype(self) -> jnp.dtype:
        return jnp.dtype(_DTYPES[self.param_dtype])

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ HF config.json
    @classmethod
    def from_hf(cls, hf: dict[str, Any], *, source: str = "config.json", **overrides: Any
                ) -> ModelConfig:
        """Build from a HF config dict (either rope layout); ``overrides`` win (e.g. dtype)."""
        model_type = hf.get("model_type")
        arch = next((a for a, (mt, _) in ARCHITECTURES.items() if mt == model_type), None)
        if arch is None:
            names = hf.get("architectures") or []
            arch = next((a for a, (_, cls) in ARCHITECTURES.items() if cls in names), None)
        if arch is None:
            raise ValueError(
                f"{source}: unknown architecture (model_type={model_type!r}, architectures="
                f"{hf.get('architectures')!r}); supported model_type values: "
                f"{sorted(mt for mt, _ in ARCHITECTURES.values())}")
        for flag in ("attention_bias", "mlp_bias"):
            if hf.get(flag) and not (arch == "qwen2" and flag == "attention_bias"):
                raise ValueError(f"{source}: {flag}={hf[flag]!r} is not supported for {arch}")
        if hf.get("use_sliding_window"):
            raise ValueError(f"{source}: use_sliding_window=true is not supported")
        rope_theta, rope_scaling = _read_rope(hf, source)
        kwargs = dict(
            architecture=arch,
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=hf["num_attention_heads"],
            num_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            head_dim=hf.get("head_dim"),
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            max_position_embeddings=hf.get("max_position_embeddings", 4096),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=hf.get("eos_token_id"),
            pad_token_id=hf.get("pad_token_id"),
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    @classmethod
    def from_hf_file(cls, path: str | os.PathLike, **overrides: Any) -> ModelConfig:
        """Read ``path`` (a config.json, or a directory holding one)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        with open(path) as f:
            return cls.from_hf(json.load(f), source=path, **overrides)

    def to_hf(self) -> dict[str, Any]:
        """A config.json dict for transformers (current and legacy rope keys both written)."""
        model_type, class_name = ARCHITECTURES[self.architecture]
        scaling = None if self.rope_scaling is None else self.rope_scaling.to_dict()
        rope = {"rope_type": "default"} if scaling is None else dict(scaling)
        rope["rope_theta"] = self.rope_theta
        out = {
            "architectures": [class_name],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "rope_parameters": rope,
            "rope_theta": self.rope_theta,
            "rope_scaling": scaling,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": (list(self.eos_token_id) if isinstance(self.eos_token_id, tuple)
                             else self.eos_token_id),
            "pad_token_id": self.pad_token_id,
            "dtype": self.param_dtype,
            "torch_dtype": self.param_dtype,
            "use_cache": True,
        }
        if self.architecture in ("qwen2", "qwen3"):
            out["use_sliding_window"] = False
        if self.architecture in ("llama", "qwen3"):
            out["attention_bias"] = False
        if self.architecture == "llama":
            out["mlp_bias"] = False
        return out


def _check_rope_scaling(scaling: dict, where: str) -> None:
    rope_type = scaling.get("rope_type", scaling.get("type"))
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"{where}: unsupported rope scaling type rope_type={rope_type!r}; "
                         f"supported: {list(ROPE_TYPES)}")
    if rope_type == "llama3":
        missing = [k for k in LLAMA3_ROPE_KEYS if k not in scaling]
        if missing:
            raise ValueError(f"{where}: llama3 rope scaling is missing {missing}")


def _read_rope(hf: dict[str, Any], source: str) -> tuple[float, RopeScaling | None]:
    """(rope_theta, rope_scaling or None) from either config.json layout."""
    params = hf.get("rope_parameters")
    if isinstance(params, dict) and params:
        scaling = dict(params)
        theta = scaling.pop("rope_theta", hf.get("rope_theta", 10000.0))
        field = "rope_parameters"
    else:
        scaling = dict(hf.get("rope_scaling") or {})
        theta = hf.get("rope_theta", 10000.0)
        field = "rope_scaling"
    if not scaling:
        return float(theta), None
    if "type" in scaling and "rope_type" not in scaling:
        scaling["rope_type"] = scaling.pop("type")
    scaling.pop("type", None)
    _check_rope_scaling(scaling, f"{source}: {field}")
    if scaling["rope_type"] == "default":
        return float(theta), None
    return float(theta), RopeScaling(**{k: scaling[k] for k in LLAMA3_ROPE_KEYS})


_QWEN_IDS = dict(bos_token_id=151643, eos_token_id=151643)
PRESETS: dict[str, ModelConfig] = {
    "qwen2.5-0.5b": ModelConfig(
        architecture="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
        num_layers=24, num_heads=14, num_kv_heads=2, head_dim=64, rope_theta=1e6,
        rms_norm_eps=1e-6, tie_word_embeddings=True, qkv_bias=True,
        max_position_embeddings=32768, **_QWEN_IDS),
    "qwen2.5-math-7b": ModelConfig(
        architecture="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
        num_layers=28, num_heads=28, num_kv_heads=4, head_dim=128, rope_theta=1e4,
        rms_norm_eps=1e-6, tie_word_embeddings=False, qkv_bias=True,
        max_position_embeddings=4096, **_QWEN_IDS),
    "llama-3.1-8b": ModelConfig(
        architecture="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
        num_layers=32, num_heads=32, num_kv_heads=8, head_dim=128, rope_theta=5e5,
        rope_scaling=RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                 original_max_position_embeddings=8192),
        rms_norm_eps=1e-5, tie_word_embeddings=False, max_position_embeddings=131072,
        bos_token_id=128000, eos_token_id=128001),
    "qwen3-8b": ModelConfig(
        architecture="qwen3", vocab_size=151936, hidden_size=4096, intermediate_size=12288,
        num_layers=36, num_heads=32, num_kv_heads=8, head_dim=128, rope_theta=1e6,
        rms_norm_eps=1e-6, tie_word_embeddings=False, qk_norm=True,
        max_position_embeddings=40960, bos_token_id=151643, eos_token_id=151645),
    # For tests and CPU experiments: GQA (4 heads over 2 kv heads), a few thousand parameters.
    "tiny": ModelConfig(
        architecture="qwen2", vocab_size=128, hidden_size=32, intermediate_size=64,
        num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, rope_theta=1e4,
        tie_word_embeddings=False, qkv_bias=True, max_position_embeddings=256,
        bos_token_id=1, eos_token_id=2, pad_token_id=0),
}
