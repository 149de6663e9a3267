"""The training CLI end to end on a tiny setting: gin, a short run, resume, export, non-finite stop."""

import json
import pathlib

import gin
import numpy as np
import pytest

from prime_jax import gin_cli, train
from prime_jax.metrics import read_metrics

from tiny_run import TINY



@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def run_cli(workdir, steps, *extra):
    args = [a for g in TINY + list(extra) for a in ("--gin", g)]
    return train.main(args + ["--workdir", str(workdir), "--steps", str(steps)])


def test_split_gin_args_and_precedence(tmp_path):
    assert gin_cli.split_gin_args(["--gin.a.b=1", "--steps", "2"]) == ["--gin", "a.b=1", "--steps", "2"]
    config = tmp_path / "x.gin"
    config.write_text("from __gin__ import dynamic_registration\nimport prime_jax.rewards\nprime_jax.rewards.ImplicitRewardConfig.beta = 0.1\n")
    gin_cli.parse([str(config), "prime_jax.rewards.ImplicitRewardConfig.beta = 0.2"])
    assert gin.query_parameter("prime_jax.rewards.ImplicitRewardConfig.beta") == 0.2


@pytest.mark.parametrize("value, message", [
    ("missing.gin", "not found"),
    ("prime_jax.rl.config.PrimeConfig.no_such_field = 1", "no_such_field"),
])
def test_gin_errors_name_the_file_or_binding(value, message, capsys):
    assert train.main(["--gin", "configs/quickstart.gin", "--gin", value, "--workdir", "/tmp/x"]) == 2
    assert message in capsys.readouterr().err


def test_help_explains_the_flags(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    assert "--gin" in out and "--workdir" in out and "--steps" in out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """Three steps uninterrupted, and the same run stopped after two and continued."""
    root = tmp_path_factory.mktemp("runs")
    gin.clear_config()
    assert run_cli(root / "straight", 3) == 0
    gin.clear_config()
    assert run_cli(root / "resumed", 2) == 0
    gin.clear_config()
    assert run_cli(root / "resumed", 3) == 0
    gin.clear_config()
    return root


def test_run_writes_config_metrics_curves_and_checkpoints(finished_run):
    workdir = finished_run / "straight"
    for name in ("config.gin", "operative_config.gin", "metrics.jsonl", "curves.png", "run.json"):
        assert (workdir / name).is_file(), name
    assert any((workdir / "tensorboard").iterdir())
    rows = read_metrics(workdir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    for key in ("accuracy", "kept_fraction", "prm_loss", "prm_pairwise_acc", "prm_q_length_corr", "policy_loss", "clip_frac",
                "approx_kl", "entropy", "response_length", "seconds_rollout", "rollout_tokens_per_s"):
        assert np.isfinite(rows[1][key]), key
    assert "eval_accuracy" in rows[2]
    assert "CollectConfig.batch_prompts = 4" in (workdir / "operative_config.gin").read_text()


def test_run_json_records_the_implicit_reward_config(finished_run):
    from prime_jax.rewards import ImplicitRewardConfig
    from prime_jax.run_dir import RunInfo

    info = RunInfo.read(finished_run / "straight")
    assert info.reward == ImplicitRewardConfig(beta=0.05) and info.uses_prm
    assert pathlib.Path(info.base_model).name == "sft_model"


def test_console_shows_one_line_per_step_and_a_summary(tmp_path, capsys):
    assert run_cli(tmp_path, 2) == 0
    out = capsys.readouterr().out
    step_lines = [line for line in out.splitlines() if line.startswith("step ")]
    assert [line.split(" | ")[0] for line in step_lines] == ["step 0", "step 1", "step 2"]
    assert all(" | acc " in line and " | s " in line for line in step_lines[1:])
    assert "prm_pair" in step_lines[1] and "training accuracy" in out
    assert f"python -m prime_jax.export --workdir {tmp_path.absolute()}" in out


def test_resume_repeats_the_uninterrupted_run(finished_run):
    straight = read_metrics(finished_run / "straight" / "metrics.jsonl")
    resumed = read_metrics(finished_run / "resumed" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [0, 1, 2, 3]
    for key in ("accuracy", "response_length", "prm_loss", "policy_loss", "approx_kl", "eval_accuracy"):
        np.testing.assert_allclose(resumed[3][key], straight[3][key], rtol=1e-5, atol=1e-7, err_msg=key)


def test_export_loads_in_transformers(finished_run, tmp_path):
    import torch
    import transformers

    from prime_jax import export
    from prime_jax.checkpoint import Checkpointer

    out = tmp_path / "hf"
    assert export.main(["--workdir", str(finished_run / "straight"), "--out", str(out)]) == 0
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "3+4*2="}], add_generation_prompt=True,
                                         tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        hf_logits = hf_model(torch.tensor([ids])).logits.numpy()
    from prime_jax.models import from_pretrained
    ours = from_pretrained(out)
    np.testing.assert_allclose(np.asarray(ours(np.array([ids], np.int32))), hf_logits, atol=1e-4)
    with Checkpointer(finished_run / "straight" / "checkpoints") as checkpointer:
        state, _ = checkpointer.restore_raw()
    embed = next(iter(v for k, v in _flat(state["policy_params"]).items() if "embed" in k))
    np.testing.assert_allclose(hf_model.get_input_embeddings().weight.detach().numpy(), embed, atol=1e-6)
    generated = hf_model.generate(torch.tensor([ids]), max_new_tokens=5, do_sample=False)
    assert generated.shape[1] == len(ids) + 5 or int(generated[0, -1]) == tokenizer.eos_token_id


def _flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = np.asarray(value)
    return out


def test_export_refuses_a_missing_run(tmp_path, capsys):
    from prime_jax import export
    assert export.main(["--workdir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "run.json" in capsys.readouterr().err


def test_non_finite_losses_stop_with_a_usable_checkpoint(tmp_path):
    from prime_jax.rl.trainer import NonFiniteError

    with pytest.raises(NonFiniteError, match="usable checkpoint"):
        run_cli(tmp_path, 5, "prime_jax.rl.policy_update.PolicyLossConfig.entropy_coef = 1e400",  # inf: a non-finite loss
                "prime_jax.rl.config.PrimeConfig.max_nonfinite_steps = 2")
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["policy_skipped"] for r in rows[1:]] == [1.0, 1.0]
    meta = json.loads((pathlib.Path(tmp_path) / "run.json").read_text())
    assert meta["uses_prm"] is True
    assert (tmp_path / "checkpoints" / "2").is_dir()
