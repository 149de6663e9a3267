"""HF parity: load transformers checkpoints, compare logits, export back, bad-input errors."""

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from _model_helpers import FAMILIES, VOCAB, hf_logits, to_legacy_layout

from prime_jax.models import ModelConfig, from_pretrained, save_pretrained

TOL = 1e-4


def _batch(seed=0, batch=3, length=11):
    rng = np.random.RandomState(seed)
    ids = rng.randint(3, VOCAB, (batch, length))
    mask = np.ones((batch, length), np.int32)
    mask[0, :4] = 0  # left padding
    mask[2, :1] = 0
    ids = np.where(mask == 1, ids, 0)
    positions = np.maximum(mask.cumsum(-1) - 1, 0)
    return ids, mask, positions


@pytest.mark.parametrize("family,tie", FAMILIES)
def test_logits_match_transformers(hf_checkpoints, family, tie):
    hf_model, directory = hf_checkpoints[(family, tie)]
    model = from_pretrained(directory)
    assert model.config.architecture == family and model.config.tie_word_embeddings == tie
    ids, mask, positions = _batch()
    full = np.asarray(model(jnp.asarray(ids)))
    assert full.dtype == np.float32 and full.shape == (3, 11, VOCAB)
    err = np.abs(full - hf_logits(hf_model, ids)).max()
    assert err <= TOL, f"{family} tie={tie}: max |logits diff| = {err}"

    padded = np.asarray(model(jnp.asarray(ids), positions_bt=jnp.asarray(positions),
                              attention_mask_bt=jnp.asarray(mask)))
    # default positions come from the mask
    implicit = np.asarray(model(jnp.asarray(ids), attention_mask_bt=jnp.asarray(mask)))
    np.testing.assert_array_equal(padded, implicit)
    real = mask.astype(bool)
    err = np.abs(padded - hf_logits(hf_model, ids, mask, positions))[real].max()
    assert err <= TOL, f"{family} tie={tie} left-padded: max |logits diff| = {err}"


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_legacy_config_layout(hf_checkpoints, tmp_path, family):
    hf_model, directory = hf_checkpoints[(family, False)]
    shutil.copytree(directory, tmp_path, dirs_exist_ok=True)
    legacy = to_legacy_layout(tmp_path / "config.json")
    assert "rope_parameters" not in legacy and "rope_theta" in legacy
    current = ModelConfig.from_hf_file(directory)
    assert ModelConfig.from_hf_file(tmp_path) == current
    model = from_pretrained(tmp_path)
    ids, _, _ = _batch(seed=1)
    err = np.abs(np.asarray(model(jnp.asarray(ids))) - hf_logits(hf_model, ids)).max()
    assert err <= TOL


@pytest.mark.parametrize("family,tie", [("qwen2", True), ("llama", False), ("qwen3", False)])
def test_export_reloads_in_transformers(hf_checkpoints, tmp_path, family, tie):
    hf_model, directory = hf_checkpoints[(family, tie)]
    model = from_pretrained(directory)
    tokenizer = _toy_tokenizer()
    save_pretrained(model, tmp_path, tokenizer=tokenizer)
    assert (tmp_path / "tokenizer.json").exists() or (tmp_path / "tokenizer_config.json").exists()
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    ids, mask, positions = _batch(seed=2)
    ours = np.asarray(model(jnp.asarray(ids)))
    err = np.abs(hf_logits(reloaded.eval(), ids) - ours).max()
    assert err <= TOL, f"{family}: exported model differs by {err}"
    # and our loader round-trips our own export exactly
    again = from_pretrained(tmp_path)
    np.testing.assert_array_equal(np.asarray(again(jnp.asarray(ids))), ours)


def test_sharded_index_checkpoint(hf_checkpoints, tmp_path):
    hf_model, directory = hf_checkpoints[("qwen2", False)]
    model = from_pretrained(directory)
    save_pretrained(model, tmp_path, max_shard_bytes=20_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert not (tmp_path / "model.safetensors").exists()
    ids, _, _ = _batch(seed=3)
    ours = np.asarray(from_pretrained(tmp_path)(jnp.asarray(ids)))
    assert np.abs(ours - hf_logits(hf_model, ids)).max() <= TOL
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    assert np.abs(hf_logits(reloaded.eval(), ids) - ours).max() <= TOL


def test_bfloat16_load_and_export(hf_checkpoints, tmp_path):
    hf_model, directory = hf_checkpoints[("qwen3", False)]
    model = from_pretrained(directory, dtype=jnp.bfloat16)
    assert model.embed[...].dtype == jnp.bfloat16
    ids, _, _ = _batch(seed=4)
    logits = np.asarray(model(jnp.asarray(ids)))
    assert logits.dtype == np.float32
    assert np.abs(logits - hf_logits(hf_model, ids)).max() < 0.1
    save_pretrained(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    assert from_pretrained(tmp_path, dtype=jnp.bfloat16).embed[...].dtype == jnp.bfloat16


def _toy_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    vocab = {f"t{i}": i for i in range(VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0")


# ----------------------------------------------------------------------------- errors
def _copy(hf_checkpoints, tmp_path, key=("qwen2", False)):
    shutil.copytree(hf_checkpoints[key][1], tmp_path, dirs_exist_ok=True)
    return tmp_path


def _rewrite_tensors(directory, edit):
    from safetensors.numpy import load_file, save_file
    tensors = load_file(directory / "model.safetensors")
    edit(tensors)
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})


def test_missing_tensor_error(hf_checkpoints, tmp_path):
    d = _copy(hf_checkpoints, tmp_path)
    _rewrite_tensors(d, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(ValueError, match=r"missing tensor 'model\.layers\.1\.mlp\.up_proj"):
        from_pretrained(d)


def test_shape_mismatch_error(hf_checkpoints, tmp_path):
    d = _copy(hf_checkpoints, tmp_path)
    hf = json.loads((d / "config.json").read_text())
    hf["intermediate_size"] = 64
    (d / "config.json").write_text(json.dumps(hf))
    pattern = (r"tensor .model\.layers\.0\.mlp\.\w+_proj\.weight. has shape "
               r"\((48, 32|32, 48)\), but config\.json implies \((64, 32|32, 64)\)")
    with pytest.raises(ValueError, match=pattern):
        from_pretrained(d)


def test_unexpected_tensor_error(hf_checkpoints, tmp_path):
    d = _copy(hf_checkpoints, tmp_path)
    hf = json.loads((d / "config.json").read_text())
    hf["num_hidden_layers"] = 1
    (d / "config.json").write_text(json.dumps(hf))
    with pytest.raises(ValueError, match=r"not used.*model\.layers\.1\."):
        from_pretrained(d)


def test_unknown_architecture_error(hf_checkpoints, tmp_path):
    d = _copy(hf_checkpoints, tmp_path)
    hf = json.loads((d / "config.json").read_text())
    hf["model_type"], hf["architectures"] = "gpt_neox", ["GPTNeoXForCausalLM"]
    (d / "config.json").write_text(json.dumps(hf))
    with pytest.raises(ValueError, match=r"config\.json.*unknown architecture.*gpt_neox"):
        from_pretrained(d)


@pytest.mark.parametrize("legacy", [False, True])
def test_unsupported_rope_error(hf_checkpoints, tmp_path, legacy):
    d = _copy(hf_checkpoints, tmp_path, ("llama", False))
    if legacy:
        hf = to_legacy_layout(d / "config.json")
        hf["rope_scaling"] = {"type": "yarn", "factor": 4.0}
    else:
        hf = json.loads((d / "config.json").read_text())
        hf["rope_parameters"] = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}
    (d / "config.json").write_text(json.dumps(hf))
    field = "rope_scaling" if legacy else "rope_parameters"
    with pytest.raises(ValueError, match=rf"config\.json: {field}: unsupported rope.*'yarn'"):
        from_pretrained(d)


def test_missing_weights_file_error(hf_checkpoints, tmp_path):
    d = _copy(hf_checkpoints, tmp_path)
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        from_pretrained(d)
