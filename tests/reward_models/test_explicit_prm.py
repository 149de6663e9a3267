"""Explicit PRM: step weights, the update learns a planted per-step label, step rows align labels
with the step ends best-of-N reads, and a tiny train_reward run with exact labels writes a usable model."""

import dataclasses
import json

import gin
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from prime_jax import train_reward
from prime_jax.data import load_tokenizer
from prime_jax.models import (ExplicitPRM, Transformer, explicit_prm_from_backbone, load_explicit_prm,
                              save_pretrained)
from prime_jax.reward_models.explicit_prm import ExplicitPrm, train_new_parameters_only
from prime_jax.reward_models.step_rows import (StepLabelConfig, StepRows, balance_step_weights, build_step_rows,
                                               mc_step_rows, weight_wrong_steps)
from prime_jax.reward_models.updates import (StepLabelledMiniBatch, explicit_step_loss, make_explicit_prm_update,
                                             step_weights)
from prime_jax.rewards import step_ends_from_tokens
from prime_jax.step_verifiers import ExplicitPRMVerifier
from prime_jax.training.forward import SequenceBatch
from prime_jax.training.state import Role
from prime_jax.training.updates import split_micro
from tiny_run import tiny_config, tiny_reward_bindings

TINY_EXPLICIT = tiny_reward_bindings("configs/reward_explicit_prm_arithmetic.gin", num_train=32, num_prompts=16)


def test_step_weights():
    np.testing.assert_array_equal(step_weights([1, 0, 1, 0], up_to_first_error=False), [1, 1, 1, 1])
    np.testing.assert_array_equal(step_weights([1, 0, 1, 0], up_to_first_error=True), [1, 1, 0, 0])
    np.testing.assert_array_equal(step_weights([1, 1], up_to_first_error=True), [1, 1])
    np.testing.assert_array_equal(step_weights([0.75, 0.25, 1.0], up_to_first_error=True), [1, 1, 0])


def test_balanced_step_weights_give_each_class_half():
    rows = StepRows(tokens_bs=np.zeros((2, 5), np.int32), attention_mask_bs=np.ones((2, 5), np.int32),
                    response_mask_bl=np.ones((2, 4), np.int32),
                    step_ends_bl=np.array([[1, 0, 1, 1], [1, 1, 0, 0]], bool),
                    step_targets_bl=np.array([[1, 0, 1, 0], [0.8, 0.0, 0, 0]], np.float32),
                    step_weights_bl=np.array([[1, 0, 1, 1], [1, 1, 0, 0]], np.float32))
    balanced = balance_step_weights(rows)  # right: 3 weighted steps, wrong: 2 -> 0.5/0.6 and 0.5/0.4
    np.testing.assert_allclose(balanced.step_weights_bl, [[5 / 6, 0, 5 / 6, 1.25], [5 / 6, 1.25, 0, 0]], rtol=1e-6)
    m_bl = rows.step_ends_bl * balanced.step_weights_bl
    right = rows.step_targets_bl >= 0.5
    assert np.isclose((m_bl * right).sum(), (m_bl * ~right).sum())
    one_class = dataclasses.replace(rows, step_targets_bl=np.ones((2, 4), np.float32))
    np.testing.assert_array_equal(balance_step_weights(one_class).step_weights_bl, rows.step_weights_bl)


def test_wrong_step_weight_scales_only_wrong_steps():
    rows = StepRows(tokens_bs=np.zeros((1, 5), np.int32), attention_mask_bs=np.ones((1, 5), np.int32),
                    response_mask_bl=np.ones((1, 4), np.int32), step_ends_bl=np.array([[1, 0, 1, 1]], bool),
                    step_targets_bl=np.array([[1, 0, 0.25, 0.5]], np.float32),
                    step_weights_bl=np.array([[1, 0, 1, 0]], np.float32))
    np.testing.assert_array_equal(weight_wrong_steps(rows, 4.0).step_weights_bl, [[1, 0, 4, 0]])
    with pytest.raises(ValueError, match="wrong_step_weight=0.0"):
        StepLabelConfig(wrong_step_weight=0.0)
    with pytest.raises(ValueError, match="balance_classes=True and wrong_step_weight=4"):
        StepLabelConfig(balance_classes=True, wrong_step_weight=4.0)


def test_explicit_step_loss_on_a_hand_computed_batch():
    """Row 0 finds its first error, row 1 flags a right step, row 2 has no weighted step."""
    z_bl = jnp.asarray([[0.0, 2.0, 0.0, -1.0], [0.0, 1.0, 0.0, -1.0], [0.0, 0.0, 0.0, 5.0]])
    ends_bl = jnp.asarray([[0, 1, 0, 1], [0, 1, 0, 1], [0, 0, 0, 1]], bool)
    mb = StepLabelledMiniBatch(sequences=None, step_ends_bl=ends_bl,
                               step_targets_bl=jnp.asarray([[0, 1, 0, 0], [0, 1, 0, 1], [0, 0, 0, 1]], jnp.float32),
                               step_weights_bl=jnp.asarray([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]], jnp.float32))
    loss, metrics = explicit_step_loss(z_bl, mb)
    sp = lambda x: np.log1p(np.exp(x))  # noqa: E731  BCE(sigmoid(z), 1) = softplus(-z), BCE(sigmoid(z), 0) = softplus(z)
    np.testing.assert_allclose(float(loss), (sp(-2.0) + sp(-1.0) + sp(-1.0) + sp(1.0)) / 4, rtol=1e-6)
    assert float(metrics["step_acc"]) == 0.75 and float(metrics["first_error_acc"]) == 0.5


def test_step_label_config_names_bad_values():
    with pytest.raises(ValueError, match="StepLabelConfig.labels='human'"):
        StepLabelConfig(labels="human")
    with pytest.raises(ValueError, match="StepLabelConfig.mc_labels_path=None"):
        StepLabelConfig(labels="mc_soft")


def test_update_learns_a_planted_step_label():
    """Step target = (the token before the step's delimiter is 5); the head must read each step end."""
    tokenizer = load_tokenizer("char")
    prm = ExplicitPRM(tiny_config(tokenizer), rngs=nnx.Rngs(0))
    role = Role.of(prm)
    tx = optax.adam(3e-3)
    update = make_explicit_prm_update(role.graphdef, tx, num_samples=2)
    rng = np.random.default_rng(0)
    delimiter = 7  # the delimiter token of this synthetic vocabulary

    def batch(rows):
        tokens = rng.integers(8, 20, size=(rows, 12))
        ends = np.zeros((rows, 12), bool)
        ends[:, 3::4] = True
        tokens[ends] = delimiter
        before = np.roll(ends, -1, axis=1)
        planted = rng.random((rows, 12)) < 0.5
        tokens[before] = np.where(planted[before], 5, tokens[before])
        targets = np.roll(planted & before, 1, axis=1).astype(np.float32)
        mask = np.ones((rows, 12), np.int32)
        seq = SequenceBatch(tokens_bs=jnp.asarray(tokens), attention_mask_bs=jnp.asarray(mask),
                            response_mask_bl=jnp.asarray(mask))
        return StepLabelledMiniBatch(sequences=seq, step_ends_bl=jnp.asarray(ends), step_targets_bl=jnp.asarray(targets),
                                     step_weights_bl=jnp.ones((rows, 12), jnp.float32))

    params, opt = role.params, tx.init(role.params)
    for _ in range(60):
        params, opt, metrics = update(params, opt, split_micro(batch(32), 2))
    assert {"eprm_loss", "eprm_step_acc", "eprm_first_error_acc", "eprm_grad_norm"} <= set(metrics)
    mb = batch(256)
    verifier = ExplicitPRMVerifier(role.module(params), name="trained", tokenizer=None, step_delimiter="\n",
                                   delimiter_ids=(8,))
    scores = verifier.score_steps(mb.sequences.tokens_bs, mb.sequences.attention_mask_bs, mb.sequences.response_mask_bl,
                                  step_end_bl=mb.step_ends_bl)
    ends_bl = np.asarray(scores.step_end_bl)
    assert (ends_bl.sum(1) == 3).all()
    probs_bk = np.asarray(verifier.step_probabilities(scores.scores_bl))[ends_bl].reshape(256, 3)
    labels_bk = np.asarray(mb.step_targets_bl)[np.asarray(mb.step_ends_bl)].reshape(256, 3)
    assert np.mean((probs_bk > 0.5) == (labels_bk > 0.5)) > 0.95


def test_step_rows_put_labels_on_the_step_ends_scoring_reads():
    tokenizer = load_tokenizer("char")
    prompts = np.array([[0, 5, 9], [5, 9, 9]], np.int32)
    prompt_mask = (prompts != 0).astype(np.int32)
    steps = [["1+2=3\n", "\\boxed{4}"], ["1+2=3\n", "3+"]]  # a finished row and a truncated one
    rows = build_step_rows(tokenizer, prompts, prompt_mask, steps, [[1.0, 0.0], [1.0, 0.25]], [[1, 0], [1, 0]],
                           [True, False], delimiter="\n", up_to_first_error=False)
    assert rows.tokens_bs.shape == (2, 3 + 10) and rows.response_mask_bl.sum(1).tolist() == [10, 8]
    ends = np.asarray(step_ends_from_tokens(jnp.asarray(rows.tokens_bs[:, 3:]), jnp.asarray(rows.response_mask_bl),
                                            tokenizer.encode("\n", add_special_tokens=False)))
    np.testing.assert_array_equal(rows.step_ends_bl, ends)
    assert np.flatnonzero(rows.step_ends_bl[0]).tolist() == [5, 9]  # the newline, then the EOS after "}"
    assert rows.step_targets_bl[0, [5, 9]].tolist() == [1.0, 0.0] and rows.step_weights_bl[0].sum() == 2
    assert np.flatnonzero(rows.step_ends_bl[1]).tolist() == [5, 7]
    assert rows.step_targets_bl[1, [5, 7]].tolist() == [1.0, 0.25]
    # A response closed by its delimiter and then EOS: the EOS-only step repeats the last label.
    rows = build_step_rows(tokenizer, prompts[:1], prompt_mask[:1], [["5\n"]], [[0.0]], [[0.0]], [True],
                           delimiter="\n", up_to_first_error=True)
    assert np.flatnonzero(rows.step_ends_bl[0]).tolist() == [1, 2] and rows.step_weights_bl[0, [1, 2]].tolist() == [1, 1]
    assert rows.step_targets_bl[0, [1, 2]].tolist() == [0.0, 0.0]


def test_mc_label_file_rows(tmp_path):
    tokenizer = load_tokenizer("char")
    path = tmp_path / "mc.jsonl"
    lines = [{"prompt_index": i, "prompt": "1+2=", "ground_truth": "3", "response": "1+2=3\n\\boxed{3}",
              "steps": ["1+2=3\n", "\\boxed{3}"], "hard": [1, 0], "soft": [0.5, 0.0], "completions": 4}
             for i in (0, 0, 1, 2)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    train, val, info = mc_step_rows(str(path), "mc_soft", tokenizer, delimiter="\n", up_to_first_error=False,
                                    val_fraction=0.25)
    assert (train.num_rows, val.num_rows) == (3, 1) and info == {"num_prompts": 3, "val_prompts": 1, "completions": 16}
    m_bl = train.step_ends_bl * train.step_weights_bl
    assert sorted(train.step_targets_bl[m_bl > 0].tolist()) == [0.0] * 3 + [0.5] * 3


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    tokenizer = load_tokenizer("char")
    path = tmp_path_factory.mktemp("base")
    save_pretrained(Transformer(tiny_config(tokenizer), rngs=nnx.Rngs(0)), path, tokenizer=tokenizer)
    return path


def test_frozen_base_trains_only_the_new_blocks_and_head():
    """train_new_parameters_only: after updates the embedding and the base model's blocks are bit-equal to
    the backbone's, while the new block, the final norm and the score head moved."""
    tokenizer = load_tokenizer("char")
    backbone = Transformer(tiny_config(tokenizer), rngs=nnx.Rngs(0))
    depth = backbone.config.num_layers
    role = Role.of(explicit_prm_from_backbone(backbone, extra_layers=1))
    tx = train_new_parameters_only(optax.adam(1e-2), depth)
    update = make_explicit_prm_update(role.graphdef, tx, num_samples=1)
    rng = np.random.default_rng(0)
    tokens = rng.integers(8, 20, size=(8, 12))
    ends = np.zeros((8, 12), bool)
    ends[:, 5::6] = True
    seq = SequenceBatch(tokens_bs=jnp.asarray(tokens), attention_mask_bs=jnp.ones((8, 12), jnp.int32),
                        response_mask_bl=jnp.ones((8, 12), jnp.int32))
    mb = StepLabelledMiniBatch(sequences=seq, step_ends_bl=jnp.asarray(ends),
                               step_targets_bl=jnp.asarray(rng.random((8, 12)) < 0.5, jnp.float32),
                               step_weights_bl=jnp.ones((8, 12), jnp.float32))
    before = {k: np.asarray(v.get_value()) for k, v in role.params.flat_state()}
    params, opt = role.params, tx.init(role.params)
    for _ in range(3):
        params, opt, _ = update(params, opt, split_micro(mb, 1))
    after = {k: np.asarray(v.get_value()) for k, v in params.flat_state()}
    base = [k for k in before if k[:2] == ("backbone", "embed") or (k[1:2] == ("layers",) and k[2] < depth)]
    assert base and all(np.array_equal(before[k], after[k]) for k in base)
    moved = lambda k: not np.array_equal(before[k], after[k])  # noqa: E731
    assert moved(("score",)) and moved(("backbone", "final_norm", "weight"))
    assert any(moved(k) for k in before if k[1:3] == ("layers", depth))
    assert len(base) < len(before) - 3


def test_explicit_prm_settings_are_checked(base_model, tmp_path, capsys):
    with pytest.raises(ValueError, match="ExplicitPrm.step_delimiter=''"):
        ExplicitPrm(step_delimiter="")
    with pytest.raises(ValueError, match="ExplicitPrm.step_labels=.*: expected StepLabelConfig"):
        ExplicitPrm(step_labels="exact")
    assert ExplicitPrm(step_labels=StepLabelConfig(labels="mc_soft", mc_labels_path="f")).step_labels.from_file
    bindings = TINY_EXPLICIT + [f'prime_jax.models.source.ModelSource.hf_path = "{base_model}"',
                                'prime_jax.reward_models.explicit_prm.ExplicitPrm.extra_layers = -1']
    assert train_reward.main([a for b in bindings for a in ("--gin", b)] + ["--workdir", str(tmp_path)]) == 2
    assert "ExplicitPrm.extra_layers=-1" in capsys.readouterr().err


def test_train_reward_explicit_prm_with_exact_labels(base_model, tmp_path):
    workdir = tmp_path / "eprm"
    bindings = TINY_EXPLICIT + [f'prime_jax.models.source.ModelSource.hf_path = "{base_model}"',
                                'prime_jax.reward_models.offline.StepLabelConfig.wrong_step_weight = 2.0']
    assert train_reward.main([a for b in bindings for a in ("--gin", b)] + ["--workdir", str(workdir)]) == 0
    info = json.loads((workdir / "reward.json").read_text())
    assert info["kind"] == "explicit_prm" and info["reward"] is None and info["step_delimiter"] == "\n"
    assert info["step_labels"] == {"labels": "exact", "mc_labels_path": None, "up_to_first_error": False,
                                   "balance_classes": False, "wrong_step_weight": 2.0}
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and rows[-1]["epoch"] == 1
    assert {"val_loss", "val_step_acc", "val_first_error_acc", "train_eprm_loss"} <= set(rows[-1])
    assert abs(rows[0]["val_loss"] - np.log(2)) < 1e-4  # zero head: p = 1/2 at every step
    assert (workdir / "curves.png").exists() and len((workdir / "samples.jsonl").read_text().splitlines()) == 64
    assert isinstance(load_explicit_prm(workdir / "model"), ExplicitPRM)


def test_train_reward_explicit_prm_from_another_backbone(base_model, tmp_path, capsys):
    """Solutions sampled from the base model, the PRM started from a deeper model: the saved PRM has its
    depth, reward.json names it; a model of another vocabulary is refused."""
    tokenizer = load_tokenizer("char")
    deeper = tmp_path / "deeper"
    config = tiny_config(tokenizer)
    save_pretrained(Transformer(config.replace(num_layers=config.num_layers + 1), rngs=nnx.Rngs(1)), deeper,
                    tokenizer=tokenizer)
    backbone = ['prime_jax.reward_models.explicit_prm.ExplicitPrm.backbone = @backbone/prime_jax.models.source.ModelSource()',
                f'backbone/prime_jax.models.source.ModelSource.hf_path = "{deeper}"']
    bindings = TINY_EXPLICIT + [f'prime_jax.models.source.ModelSource.hf_path = "{base_model}"', *backbone]
    workdir = tmp_path / "eprm"
    assert train_reward.main([a for b in bindings for a in ("--gin", b)] + ["--workdir", str(workdir)]) == 0
    info = json.loads((workdir / "reward.json").read_text())
    assert info["backbone"] == str(deeper.absolute()) and info["reference"] == str(base_model.absolute())
    assert load_explicit_prm(workdir / "model").config.num_layers == config.num_layers + 1
    other_vocab = tmp_path / "other_vocab"
    save_pretrained(Transformer(config.replace(vocab_size=config.vocab_size + 8), rngs=nnx.Rngs(1)), other_vocab,
                    tokenizer=tokenizer)
    gin.clear_config()
    bad = TINY_EXPLICIT + [f'prime_jax.models.source.ModelSource.hf_path = "{base_model}"', backbone[0],
                           f'backbone/prime_jax.models.source.ModelSource.hf_path = "{other_vocab}"']
    assert train_reward.main([a for b in bad for a in ("--gin", b)] + ["--workdir", str(tmp_path / "v")]) == 2
    assert f"vocab_size {config.vocab_size + 8} differs" in capsys.readouterr().err


def test_train_reward_explicit_prm_with_mc_labels(base_model, tmp_path):
    """Monte-Carlo labels: no sampling, rows split by prompt, Let's Verify's weighting recorded."""
    path = tmp_path / "mc.jsonl"
    with path.open("w") as f:
        for i in range(8):
            steps = [f"{i}+1={i + 1}\n", f"{i + 1}*2={2 * i + 3}\n", f"\\boxed{{{2 * i + 3}}}"]
            f.write(json.dumps({"prompt_index": i, "prompt": f"{i}+1*2=", "ground_truth": str(2 * i + 2),
                                "response": "".join(steps), "steps": steps, "hard": [1, 0, 0],
                                "soft": [0.75, 0.0, 0.0], "completions": 4}) + "\n")
    workdir = tmp_path / "eprm_mc"
    bindings = TINY_EXPLICIT + [f'prime_jax.models.source.ModelSource.hf_path = "{base_model}"',
                                'prime_jax.reward_models.offline.StepLabelConfig.labels = "mc_hard"',
                                f'prime_jax.reward_models.offline.StepLabelConfig.mc_labels_path = "{path}"',
                                "prime_jax.reward_models.offline.StepLabelConfig.up_to_first_error = True",
                                "prime_jax.reward_models.offline.train_reward.mini_batch = 2"]
    assert train_reward.main([a for b in bindings for a in ("--gin", b)] + ["--workdir", str(workdir)]) == 0
    info = json.loads((workdir / "reward.json").read_text())
    assert info["num_samples"] == 8 and info["mc_labels"] == {"num_prompts": 8, "val_prompts": 2, "completions": 32}
    assert info["step_labels"]["up_to_first_error"] and info["steps"] == 3  # 6 train rows
    assert info["final"]["val_label_mean"] == 0.5  # steps 1 (label 1) and 2 (label 0) weighted, step 3 not
    assert isinstance(load_explicit_prm(workdir / "model"), ExplicitPRM)
