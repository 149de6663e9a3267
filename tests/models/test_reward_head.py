"""Outcome reward model: parity with transformers' *ForSequenceClassification, export, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from _model_helpers import make_hf_head_model, padded_head_batch
from flax import nnx

from prime_jax.models import from_pretrained, load_orm, orm_from_backbone, save_orm

TOL = 2e-5


def _hf_orm(family: str, seed: int = 0):
    return make_hf_head_model(family, transformers.AutoModelForSequenceClassification, seed=seed)


def _hf_scores(model, ids, mask) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.as_tensor(ids), attention_mask=torch.as_tensor(mask))
    return out.logits[:, 0].float().numpy()


@pytest.mark.parametrize("family", ["qwen2", "llama", "qwen3"])
def test_scores_match_transformers(tmp_path, family):
    hf_model = _hf_orm(family)
    hf_model.save_pretrained(tmp_path / "hf")
    orm = load_orm(tmp_path / "hf")
    ids, mask = padded_head_batch()
    ours = np.asarray(orm(jnp.asarray(ids), jnp.asarray(mask)))
    np.testing.assert_allclose(ours, _hf_scores(hf_model, ids, mask), atol=TOL)
    assert np.ptp(ours) > 1e-3  # the rows really differ

    save_orm(orm, tmp_path / "ours")
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ours", dtype=torch.float32)
    np.testing.assert_allclose(_hf_scores(reloaded.eval(), ids, mask), ours, atol=TOL)
    np.testing.assert_array_equal(np.asarray(load_orm(tmp_path / "ours")(jnp.asarray(ids), jnp.asarray(mask))), ours)


def test_orm_from_untied_language_model(hf_checkpoints):
    _, directory = hf_checkpoints[("llama", False)]
    lm = from_pretrained(directory)
    orm = orm_from_backbone(lm)
    assert orm.config.tie_word_embeddings and not hasattr(orm.backbone, "lm_head")
    np.testing.assert_array_equal(np.asarray(orm.backbone.embed[...]), np.asarray(lm.embed[...]))
    ids, mask = padded_head_batch()
    np.testing.assert_array_equal(np.asarray(orm(jnp.asarray(ids), jnp.asarray(mask))), 0.0)  # zero head

    # The head's gradient is the last real token's hidden state: training moves the score.
    graphdef, params = nnx.split(orm, nnx.Param)
    grads = jax.grad(lambda p: nnx.merge(graphdef, p)(jnp.asarray(ids), jnp.asarray(mask)).sum())(params)
    assert float(jnp.abs(grads["score"][...]).sum()) > 0


def test_load_orm_refuses_a_language_model(hf_checkpoints):
    _, directory = hf_checkpoints[("qwen2", True)]
    with pytest.raises(ValueError, match="ForSequenceClassification"):
        load_orm(directory)


def test_position_scores_end_in_the_last_token_score(tmp_path):
    """The head read at every position equals the ORM's score at each row's last real token."""
    _hf_orm("qwen2", seed=1).save_pretrained(tmp_path / "hf")
    orm = load_orm(tmp_path / "hf")
    ids, mask = padded_head_batch()
    scores_bt = np.asarray(orm.position_scores(jnp.asarray(ids), jnp.asarray(mask)))
    assert scores_bt.shape == ids.shape
    last_b = np.array([np.flatnonzero(row).max() for row in mask])
    np.testing.assert_allclose(scores_bt[np.arange(len(ids)), last_b],
                               np.asarray(orm(jnp.asarray(ids), jnp.asarray(mask))), rtol=1e-6, atol=1e-6)
    assert np.ptp(scores_bt[0]) > 1e-3  # prefixes score differently
