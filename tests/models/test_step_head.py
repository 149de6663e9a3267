"""Explicit PRM: per-token logits equal transformers' *ForTokenClassification, export, errors."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from _model_helpers import hf_config, make_hf_head_model, padded_head_batch
from flax import nnx

from prime_jax.models import (ExplicitPRM, explicit_prm_from_backbone, from_pretrained, load_explicit_prm,
                              save_explicit_prm)

TOL = 2e-5


def _hf_prm(family: str, seed: int = 0):
    return make_hf_head_model(family, transformers.AutoModelForTokenClassification, seed=seed)


def _hf_logits(model, ids, mask) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.as_tensor(ids), attention_mask=torch.as_tensor(mask))
    return out.logits[:, :, 0].float().numpy()


@pytest.mark.parametrize("family", ["qwen2", "llama", "qwen3"])
def test_logits_match_transformers(tmp_path, family):
    hf_model = _hf_prm(family)
    hf_model.save_pretrained(tmp_path / "hf")
    prm = load_explicit_prm(tmp_path / "hf")
    ids, mask = padded_head_batch()
    ours = np.asarray(prm(jnp.asarray(ids), jnp.asarray(mask)))
    assert ours.shape == ids.shape
    real = mask == 1  # HF's logits at padded positions read a fully masked row: compare real tokens
    np.testing.assert_allclose(ours[real], _hf_logits(hf_model, ids, mask)[real], atol=TOL)
    assert np.ptp(ours[real]) > 1e-3

    save_explicit_prm(prm, tmp_path / "ours")
    hf_json = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert hf_json["architectures"][0].endswith("ForTokenClassification") and hf_json["id2label"] == {"0": "LABEL_0"}
    reloaded = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path / "ours", dtype=torch.float32)
    assert type(reloaded).__name__ == hf_json["architectures"][0]
    np.testing.assert_allclose(_hf_logits(reloaded.eval(), ids, mask)[real], ours[real], atol=TOL)
    np.testing.assert_array_equal(np.asarray(load_explicit_prm(tmp_path / "ours")(jnp.asarray(ids), jnp.asarray(mask))),
                                  ours)


def test_explicit_prm_from_untied_language_model(hf_checkpoints):
    _, directory = hf_checkpoints[("llama", False)]
    lm = from_pretrained(directory)
    prm = explicit_prm_from_backbone(lm)
    assert isinstance(prm, ExplicitPRM) and prm.config.tie_word_embeddings and not hasattr(prm.backbone, "lm_head")
    np.testing.assert_array_equal(np.asarray(prm.backbone.embed[...]), np.asarray(lm.embed[...]))
    ids, mask = padded_head_batch()
    np.testing.assert_array_equal(np.asarray(prm(jnp.asarray(ids), jnp.asarray(mask))), 0.0)  # zero head

    graphdef, params = nnx.split(prm, nnx.Param)
    grads = jax.grad(lambda p: nnx.merge(graphdef, p)(jnp.asarray(ids), jnp.asarray(mask))[:, 5].sum())(params)
    assert float(jnp.abs(grads["score"][...]).sum()) > 0 and float(grads["score_bias"][...][0]) == 4.0


def test_load_explicit_prm_refuses_other_models(hf_checkpoints, tmp_path):
    _, directory = hf_checkpoints[("qwen2", True)]
    with pytest.raises(ValueError, match="ForTokenClassification"):
        load_explicit_prm(directory)
    config = hf_config("qwen2")
    config.num_labels = 1
    config.token_classification_bias = False
    transformers.AutoModelForTokenClassification.from_config(config).save_pretrained(tmp_path / "nobias")
    with pytest.raises(ValueError, match="token_classification_bias"):
        load_explicit_prm(tmp_path / "nobias")


def test_extra_layers_start_as_identity_and_round_trip_through_transformers(hf_checkpoints, tmp_path):
    _, directory = hf_checkpoints[("qwen2", True)]
    lm = from_pretrained(directory)
    plain, deeper = explicit_prm_from_backbone(lm), explicit_prm_from_backbone(lm, extra_layers=2)
    assert deeper.config.num_layers == lm.config.num_layers + 2
    for prm in (plain, deeper):  # the same non-zero head on both
        prm.score[...] = jnp.linspace(-1.0, 1.0, lm.config.hidden_size)[:, None]
    ids, mask = padded_head_batch()
    ours = np.asarray(deeper(jnp.asarray(ids), jnp.asarray(mask)))
    np.testing.assert_allclose(ours, np.asarray(plain(jnp.asarray(ids), jnp.asarray(mask))), atol=1e-5)
    new = deeper.backbone.layers[lm.config.num_layers]
    assert float(jnp.abs(new.attn.q_proj[...]).sum()) > 0 and float(jnp.abs(new.attn.o_proj[...]).sum()) == 0

    save_explicit_prm(deeper, tmp_path / "deeper")
    reloaded = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path / "deeper", dtype=torch.float32)
    real = mask == 1
    np.testing.assert_allclose(_hf_logits(reloaded.eval(), ids, mask)[real], ours[real], atol=TOL)
    with pytest.raises(ValueError, match="extra_layers=-1"):
        explicit_prm_from_backbone(lm, extra_layers=-1)
