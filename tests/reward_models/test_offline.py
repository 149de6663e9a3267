"""Offline reward models: the ORM update learns, the CLI writes usable PRM / ORM directories,
evaluate ranks samples with them, and a PRIME run starts (frozen) from the offline PRM."""

import json

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from prime_jax import evaluate, train, train_reward
from prime_jax.reward_models import offline as reward_trainer
from prime_jax.reward_models.explicit_prm import ExplicitPrm
from prime_jax.reward_models.kinds import ImplicitPrm, Orm
from prime_jax.reward_models.updates import LabelledMiniBatch, PrmLossConfig, make_orm_update
from prime_jax.training.forward import SequenceBatch
from prime_jax.training.updates import split_micro
from prime_jax.data import load_tokenizer
from prime_jax.run_dir import REWARD_KINDS, load_role
from prime_jax.models import (OutcomeRewardModel, Transformer, from_pretrained, load_orm,
                              save_pretrained)
from prime_jax.training.state import Role

from tiny_run import TINY, tiny_config, tiny_reward_bindings

TINY_REWARD = tiny_reward_bindings("configs/reward_arithmetic.gin", num_train=64, num_prompts=24)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    tokenizer = load_tokenizer("char")
    path = tmp_path_factory.mktemp("base")
    save_pretrained(Transformer(tiny_config(tokenizer), rngs=nnx.Rngs(0)), path, tokenizer=tokenizer)
    return path


@pytest.fixture(scope="module")
def offline(base_model, tmp_path_factory):
    """{kind: output directory} of one tiny offline run per kind, from the same base model."""
    root = tmp_path_factory.mktemp("offline")
    out = {}
    kinds = {"implicit_prm": [],  # the config's kind, an ImplicitPrm with its bound reward and loss
             "orm": ['prime_jax.reward_models.offline.train_reward.kind = "orm"']}  # a name: Orm()
    for kind, kind_bindings in kinds.items():
        gin.clear_config()
        bindings = TINY_REWARD + [f'prime_jax.models.source.ModelSource.hf_path = "{base_model}"', *kind_bindings]
        assert train_reward.main([a for b in bindings for a in ("--gin", b)] + ["--workdir", str(root / kind)]) == 0
        out[kind] = root / kind
    gin.clear_config()
    return out


def test_orm_update_learns_a_label_of_the_last_token():
    """r must pick out the last real token: label = (last token is 5), with right padding."""
    tokenizer = load_tokenizer("char")
    orm = OutcomeRewardModel(tiny_config(tokenizer), rngs=nnx.Rngs(0))
    role = Role.of(orm)
    tx = optax.adam(3e-3)
    update = make_orm_update(role.graphdef, tx, num_samples=4)
    rng = np.random.default_rng(0)

    def batch(rows):
        tokens = rng.integers(6, 20, size=(rows, 10))
        length = rng.integers(4, 11, size=rows)
        mask = (np.arange(10)[None, :] < length[:, None]).astype(np.int32)
        last = rng.random(rows) < 0.5
        tokens[np.arange(rows), length - 1] = np.where(last, 5, tokens[np.arange(rows), length - 1])
        tokens = np.where(mask == 1, tokens, 0)
        seq = SequenceBatch(tokens_bs=jnp.asarray(tokens), attention_mask_bs=jnp.asarray(mask),
                                       response_mask_bl=jnp.asarray(mask))
        return seq, jnp.asarray(last, jnp.float32)

    params, opt = role.params, tx.init(role.params)
    for _ in range(150):
        seq, acc = batch(32)
        mb = LabelledMiniBatch(sequences=seq, ref_logp_bl=jnp.zeros(seq.tokens_bs.shape), acc_b=acc)
        params, opt, _ = update(params, opt, split_micro(mb, 1))
    seq, acc = batch(256)
    score = role.module(params)(seq.tokens_bs, seq.attention_mask_bs)
    assert float(jnp.mean((score > 0) == (acc > 0.5))) > 0.95


def test_cli_writes_loadable_reward_models(offline, base_model):
    for kind, workdir in offline.items():
        info = json.loads((workdir / "reward.json").read_text())
        assert info["kind"] == kind and info["reference"] == str(base_model.absolute())
        assert info["reward"] == (None if kind == "orm" else {"beta": 0.05, "granularity": "token",
                                                              "norm": "batch_norm", "num_chunks": 1,
                                                              "step_delimiter": "\n"})
        samples = [json.loads(line) for line in (workdir / "samples.jsonl").read_text().splitlines()]
        assert len(samples) == 24 * 4 and info["num_samples"] == 96
        train_prompts = {s["prompt_index"] for s in samples if s["split"] == "train"}
        val_prompts = {s["prompt_index"] for s in samples if s["split"] == "val"}
        assert len(val_prompts) == 6 and not train_prompts & val_prompts
        rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
        assert rows[0]["step"] == 0 and rows[-1]["epoch"] == 1 and {"val_loss", "val_pairwise_acc"} <= set(rows[-1])
        assert (workdir / "curves.png").exists()
    assert isinstance(from_pretrained(offline["implicit_prm"] / "model"), Transformer)
    assert isinstance(load_orm(offline["orm"] / "model"), OutcomeRewardModel)
    # Same seed and base model: both kinds trained on the very same samples.
    assert (offline["orm"] / "samples.jsonl").read_text() == (offline["implicit_prm"] / "samples.jsonl").read_text()


def test_bad_kind_is_named(base_model, tmp_path, capsys):
    bindings = TINY_REWARD + [f'prime_jax.models.source.ModelSource.hf_path = "{base_model}"',
                              'prime_jax.reward_models.offline.train_reward.kind = "value"']
    assert train_reward.main([a for b in bindings for a in ("--gin", b)] + ["--workdir", str(tmp_path)]) == 2
    assert "kind='value'" in capsys.readouterr().err


def test_a_setting_the_kind_lacks_is_named(base_model, tmp_path, capsys):
    """extra_layers belongs to the explicit PRM: on the ORM (or on train_reward) it is refused by name."""
    bindings = TINY_REWARD + [f'prime_jax.models.source.ModelSource.hf_path = "{base_model}"',
                              'prime_jax.reward_models.offline.train_reward.kind = @prime_jax.reward_models.kinds.Orm()',
                              'prime_jax.reward_models.kinds.Orm.extra_layers = 1']
    assert train_reward.main([a for b in bindings for a in ("--gin", b)] + ["--workdir", str(tmp_path)]) == 2
    assert "'prime_jax.reward_models.kinds.Orm' doesn't have a parameter named 'extra_layers'" in capsys.readouterr().err


def test_kinds_by_name_and_their_settings_checked():
    assert tuple(reward_trainer.KIND_CLASSES) == REWARD_KINDS  # the kinds reward.json records
    assert reward_trainer.kind_of("orm") == Orm() and reward_trainer.kind_of("explicit_prm") == ExplicitPrm()
    prm = ImplicitPrm(loss=PrmLossConfig(loss="dpo"))
    assert reward_trainer.kind_of(prm) is prm and prm.record() == {"backbone": None, "prm_loss": "dpo"}
    with pytest.raises(ValueError, match="kind=PrmLossConfig"):
        reward_trainer.kind_of(PrmLossConfig())
    with pytest.raises(ValueError, match=r"ImplicitPrm.reward=PrmLossConfig\(.*\): expected ImplicitRewardConfig"):
        ImplicitPrm(reward=PrmLossConfig())
    with pytest.raises(ValueError, match="Orm.backbone='runs/x': expected ModelSource or NoneType"):
        Orm(backbone="runs/x")


def test_evaluate_ranks_with_offline_prm_and_orm(offline, base_model, tmp_path):
    out = tmp_path / "eval"
    assert evaluate.main(["--hf", str(base_model), "--task", "arithmetic", "--num", "4", "--k", "2",
                          "--max-new-tokens", "6", "--batch-prompts", "4", "--resamples", "4", "--out", str(out),
                          "--prm-workdir", str(offline["implicit_prm"]), "--orm", str(offline["orm"])]) == 0
    best_of_n = json.loads((out / "results.json").read_text())["best_of_n"]
    assert best_of_n["beta"] == 0.05  # read back from the PRM's reward.json
    assert {"prm_min", "implicit_orm", "orm", "majority", "prm_weighted_majority"} <= set(best_of_n["curves"])
    assert set(best_of_n["diagnostics"]) == {"prm_min", "prm_sum", "prm_last", "prm_prod", "implicit_orm", "orm"}
    assert "r with length" in (out / "results.md").read_text()



def test_evaluate_refuses_an_orm_as_prm(offline, base_model, tmp_path, capsys):
    assert evaluate.main(["--hf", str(base_model), "--task", "arithmetic", "--num", "4", "--k", "2",
                          "--prm-workdir", str(offline["orm"]), "--out", str(tmp_path)]) == 2
    assert "holds a verifier of kind 'orm' (from its record), expected kind 'implicit_prm'" in capsys.readouterr().err


def test_prime_run_with_a_frozen_offline_prm(offline, tmp_path):
    """prm_init + prm_mode none: the run's PRM stays exactly the offline PRM's weights."""
    prm_dir = offline["implicit_prm"] / "model"
    reference_dir = json.loads((offline["implicit_prm"] / "reward.json").read_text())["reference"]
    workdir = tmp_path / "run"
    bindings = TINY + ["prime_jax.rl.sft.SFTConfig.steps = 0", f'prime_jax.models.source.ModelSource.hf_path = "{reference_dir}"',
                       f'prime_jax.rl.config.PrimeConfig.prm_init = "{prm_dir}"',
                       'prime_jax.rl.config.PrimeConfig.prm_mode = "none"']
    assert train.main([a for b in bindings for a in ("--gin", b)] + ["--workdir", str(workdir), "--steps", "1"]) == 0
    info = json.loads((workdir / "run.json").read_text())
    assert info["prm_init"] == str(prm_dir)
    assert info["task"]["name"] == "arithmetic" and info["task"]["synthetic"] is None  # the run's TaskConfig
    prm, _ = load_role(workdir, "prm")
    for got, want in zip(jax.tree.leaves(nnx.state(prm, nnx.Param)),
                         jax.tree.leaves(nnx.state(from_pretrained(prm_dir), nnx.Param)), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    policy, _ = load_role(workdir, "policy")  # the policy did move
    assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
        jax.tree.leaves(nnx.state(policy, nnx.Param)), jax.tree.leaves(nnx.state(from_pretrained(reference_dir), nnx.Param))))


def test_prm_init_of_another_architecture_is_refused(offline, tmp_path, capsys):
    reference_dir = json.loads((offline["implicit_prm"] / "reward.json").read_text())["reference"]
    other = tmp_path / "other"
    tokenizer = load_tokenizer("char")
    save_pretrained(Transformer(tiny_config(tokenizer).replace(num_layers=2), rngs=nnx.Rngs(0)), other)
    bindings = TINY + ["prime_jax.rl.sft.SFTConfig.steps = 0", f'prime_jax.models.source.ModelSource.hf_path = "{reference_dir}"',
                       f'prime_jax.rl.config.PrimeConfig.prm_init = "{other}"']
    with pytest.raises(ValueError, match="differs from the policy"):
        train.main([a for b in bindings for a in ("--gin", b)] + ["--workdir", str(tmp_path / "run"), "--steps", "1"])
