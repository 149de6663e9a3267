"""ModelConfig: presets (parameter counts without allocating), HF config round trips, errors."""

import jax
import numpy as np
import pytest
from flax import nnx

from prime_jax.models import PRESETS, ModelConfig, RopeScaling, Transformer

PUBLISHED = {
    "qwen2.5-0.5b": 494_032_768,
    "qwen2.5-math-7b": 7_615_616_512,
    "llama-3.1-8b": 8_030_261_248,
    "qwen3-8b": 8_190_735_360,
}


def _arithmetic(c: ModelConfig) -> int:
    """Parameter count from the config alone."""
    d, f, n, k, h = c.hidden_size, c.intermediate_size, c.num_heads, c.num_kv_heads, c.head_dim
    attention = 2 * d * n * h + 2 * d * k * h
    attention += (n * h + 2 * k * h) if c.qkv_bias else 0
    attention += 2 * h if c.qk_norm else 0
    per_layer = attention + 3 * d * f + 2 * d
    head = 0 if c.tie_word_embeddings else d * c.vocab_size
    return c.num_layers * per_layer + d + c.vocab_size * d + head


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_parameter_counts(name):
    config = PRESETS[name]
    abstract = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
    leaves = jax.tree.leaves(nnx.state(abstract, nnx.Param))
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)  # nothing allocated
    count = sum(int(np.prod(x.shape)) for x in leaves)
    assert count == _arithmetic(config) == PUBLISHED[name]


def test_tiny_preset_and_derived_fields():
    tiny = PRESETS["tiny"]
    assert tiny.head_dim == 8 and tiny.qkv_bias and not tiny.qk_norm
    assert ModelConfig(architecture="qwen3", vocab_size=8, hidden_size=16, intermediate_size=8,
                       num_layers=1, num_heads=2, num_kv_heads=1).head_dim == 8
    assert PRESETS["qwen3-8b"].qk_norm and not PRESETS["llama-3.1-8b"].qkv_bias
    hash(PRESETS["llama-3.1-8b"])  # static under jit: must be hashable


@pytest.mark.parametrize("name", ["qwen2.5-0.5b", "llama-3.1-8b", "qwen3-8b"])
def test_to_hf_round_trip(name):
    config = PRESETS[name]
    hf = config.to_hf()
    assert hf["rope_parameters"]["rope_theta"] == config.rope_theta
    assert ModelConfig.from_hf(hf) == config
    legacy = {k: v for k, v in hf.items() if k != "rope_parameters"}
    assert ModelConfig.from_hf(legacy) == config


def test_from_hf_legacy_and_current_llama3():
    base = dict(model_type="llama", vocab_size=16, hidden_size=16, intermediate_size=32,
                num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    scaling = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    current = ModelConfig.from_hf({**base, "rope_parameters": {
        "rope_type": "llama3", "rope_theta": 5e5, **scaling}})
    legacy = ModelConfig.from_hf({**base, "rope_theta": 5e5,
                                  "rope_scaling": {"type": "llama3", **scaling}})
    assert current == legacy
    assert current.rope_scaling == RopeScaling(**scaling) and current.rope_theta == 5e5
    dict_form = current.replace(rope_scaling={"rope_type": "llama3", **scaling})
    assert dict_form == current


def test_errors_name_the_problem():
    base = dict(vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2)
    with pytest.raises(ValueError, match=r"my/config\.json: unknown architecture.*'mistral'"):
        ModelConfig.from_hf({**base, "model_type": "mistral"}, source="my/config.json")
    with pytest.raises(ValueError, match=r"rope_scaling: unsupported rope.*rope_type='dynamic'"):
        ModelConfig.from_hf({**base, "model_type": "llama",
                             "rope_scaling": {"type": "dynamic", "factor": 2.0}})
    with pytest.raises(ValueError, match=r"llama3 rope scaling is missing \['low_freq_factor'"):
        ModelConfig.from_hf({**base, "model_type": "llama", "rope_parameters": {
            "rope_type": "llama3", "factor": 8.0, "rope_theta": 1e4}})
    with pytest.raises(ValueError, match=r"ModelConfig.architecture='gpt2'"):
        PRESETS["tiny"].replace(architecture="gpt2")
    with pytest.raises(ValueError, match=r"ModelConfig.qk_norm=True does not match"):
        PRESETS["tiny"].replace(qk_norm=True)
    with pytest.raises(ValueError, match=r"unsupported dtype 'int8'"):
        PRESETS["tiny"].replace(dtype="int8")
    with pytest.raises(ValueError, match=r"attention_bias=True is not supported for llama"):
        ModelConfig.from_hf({**base, "model_type": "llama", "attention_bias": True})
