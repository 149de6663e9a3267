"""The loader decides the kind from a directory's record, once, and names path and field on errors."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prime_jax import sharding
from prime_jax.step_verifiers import (ExplicitPRMVerifier, ImplicitPRMVerifier, ORMStepVerifier, PavVerifier,
                                      load_pav_verifier, load_step_verifier, verifier_kind)


@pytest.mark.parametrize("key, kind, cls", [("run", "implicit_prm", ImplicitPRMVerifier),
                                            ("offline", "implicit_prm", ImplicitPRMVerifier),
                                            ("explicit_dir", "explicit_prm", ExplicitPRMVerifier),
                                            ("orm_dir", "orm", ORMStepVerifier)])
def test_each_record_gives_its_kind(models, key, kind, cls):
    assert verifier_kind(models[key]) == kind
    verifier = load_step_verifier(models[key], kind=kind)
    assert isinstance(verifier, cls) and verifier.kind == kind and verifier.delimiter_ids == (8,)


def test_an_implicit_prm_takes_beta_and_reference_from_its_record(models):
    online = load_step_verifier(models["run"])
    assert online.reward.beta == 0.1 and "beta 0.1" in online.name and str(models["hf"]) in online.name
    offline = load_step_verifier(models["offline"])
    assert offline.reward.beta == 0.2 and offline.reading == "step"


def test_bare_hf_directories_are_told_apart_by_architecture(models):
    explicit = load_step_verifier(models["explicit_dir"] / "model")
    orm = load_step_verifier(models["orm_dir"] / "model")
    assert (explicit.kind, orm.kind) == ("explicit_prm", "orm")
    assert explicit.step_delimiter == orm.step_delimiter == "\n"
    assert load_step_verifier(models["explicit_dir"], step_delimiter="\n\n").delimiter_ids == (8, 8)


def test_loaded_weights_score_like_the_saved_model(models, rows):
    tokens_bs, attn_bs, mask_bl = rows
    out = load_step_verifier(models["explicit_dir"]).score_steps(*rows)
    z_bl = np.asarray(models["explicit"](jnp.asarray(tokens_bs), jnp.asarray(attn_bs)))[:, -mask_bl.shape[1]:]
    ends_bl = np.asarray(out.step_end_bl)
    np.testing.assert_allclose(np.asarray(out.scores_bl)[ends_bl], z_bl[ends_bl], rtol=1e-5, atol=1e-6)


def test_pav_loader_reads_an_implicit_q_model_cumulatively(models):
    pav = load_pav_verifier(models["offline"], prover_path=models["explicit_dir"], alpha=1.0, best_of_k=2)
    assert isinstance(pav, PavVerifier) and pav.q.reading == "cumulative" and pav.prover.kind == "explicit_prm"


def test_errors_name_the_path_and_the_field(models, tmp_path):
    with pytest.raises(ValueError, match=r"--orm .*explicit.*holds a verifier of kind 'explicit_prm' .*expected kind 'orm'"):
        load_step_verifier(models["explicit_dir"], kind="orm", field="--orm")
    with pytest.raises(FileNotFoundError, match=r"--explicit-prm .*nope: not a directory"):
        load_step_verifier(tmp_path / "nope", field="--explicit-prm")
    with pytest.raises(FileNotFoundError, match="no run.json .* reward.json .* config.json"):
        load_step_verifier(tmp_path)
    with pytest.raises(ValueError, match=r"config.json: field 'architectures' is \['Qwen2ForCausalLM'\]"):
        (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"]}))
        load_step_verifier(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(models["orm_dir"], bad)
    (bad / "reward.json").write_text(json.dumps({"kind": "value_model"}))
    with pytest.raises(ValueError, match=r"PrimeConfig.explicit_prm .*reward.json: field 'kind' is 'value_model'"):
        load_step_verifier(bad, field="PrimeConfig.explicit_prm")
    with pytest.raises(ValueError, match="a checkpoint step and a reference apply to an implicit PRM"):
        load_step_verifier(models["explicit_dir"], step=3)


def test_a_runs_prm_is_placed_on_the_mesh_and_scores_the_same(models, rows):
    expected = np.asarray(load_step_verifier(models["run"]).score_steps(*rows).scores_bl)
    mesh = sharding.make_mesh(sharding.MeshConfig(data=1, fsdp=2), jax.devices()[:2])
    verifier = load_step_verifier(models["run"], mesh=mesh)
    for params in (verifier.prm_params, verifier.reference_params):
        embed = params["embed"].get_value()
        assert embed.sharding.mesh == mesh and not embed.sharding.is_fully_replicated
    with jax.set_mesh(mesh):
        out = verifier.score_steps(*sharding.place(tuple(np.concatenate([x, x[:1]]) for x in rows), mesh))
    np.testing.assert_allclose(np.asarray(sharding.fetch(out.scores_bl, mesh))[:3], expected, atol=1e-5)
