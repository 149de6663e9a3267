"""The evaluate CLI on a tiny random HF model: synthetic task, benchmark jsonl, best-of-N."""

import dataclasses
import json
import pathlib
import shutil

import pytest

from prime_jax import evaluate
from prime_jax.eval.benchmark import load_benchmark, make_records
from prime_jax.data import ArithmeticConfig, load_tokenizer
from prime_jax.data.task_config import TaskConfig
from verifier_dirs import save_base, write_explicit_prm, write_prime_run

BENCHMARKS = pathlib.Path(evaluate.__file__).parent / "assets" / "benchmarks"
FAST = ["--num", "4", "--k", "2", "--max-new-tokens", "6", "--batch-prompts", "4"]


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    """A random 1-layer model with the char tokenizer, saved in Hugging Face format."""
    path = tmp_path_factory.mktemp("tiny_hf")
    model = save_base(path, load_tokenizer("char"))
    return path, model


@pytest.fixture(scope="module")
def prm_run(tiny_hf, tmp_path_factory):
    """A run directory whose PRM is the base model plus noise (so log-ratios are non-zero)."""
    path, model = tiny_hf
    workdir = write_prime_run(tmp_path_factory.mktemp("prm_run"), path, model, beta=0.1)
    return workdir


def test_help_explains_the_flags(capsys):
    with pytest.raises(SystemExit):
        evaluate.main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--workdir", "--hf", "--task", "--k", "--temperature", "--top-p", "--prm-workdir",
                 "jsonl:PATH", "GSM8K", "####"):
        assert flag in text


def test_benchmark_formats_parse_and_malformed_rows_are_counted():
    for name, count in (("math500", 5), ("gsm8k", 4), ("aime", 3), ("amc", 3)):
        records, skipped = load_benchmark(BENCHMARKS / f"{name}_sample.jsonl")
        assert len(records) == count and not skipped
    gsm, _ = load_benchmark(BENCHMARKS / "gsm8k_sample.jsonl")
    assert [r.ground_truth for r in gsm] == ["24", "13", "15", "125"]
    records, skipped = load_benchmark(BENCHMARKS / "malformed_sample.jsonl")
    assert [r.ground_truth for r in records] == ["4", "9"]
    assert sum(skipped.values()) == 4 and skipped["invalid json"] == 1


def test_arithmetic_with_best_of_n(tiny_hf, prm_run, tmp_path):
    out = tmp_path / "arith"
    assert evaluate.main(["--hf", str(tiny_hf[0]), "--task", "arithmetic", *FAST, "--out", str(out),
                          "--prm-workdir", str(prm_run), "--resamples", "4"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {"model", "task", "num_problems", "k", "metrics", "data", "best_of_n"} <= set(results)
    assert results["num_problems"] == 4
    assert {"greedy_pass@1", "avg@2", "maj@2", "pass@1", "pass@2"} <= set(results["metrics"])
    curves = results["best_of_n"]["curves"]
    assert {"prm_min", "prm_sum", "prm_last", "prm_prod", "implicit_orm", "majority", "prm_weighted_majority"} == set(curves)
    assert all(len(c["mean"]) == len(results["best_of_n"]["ns"]) for c in curves.values())
    assert results["best_of_n"]["beta"] == 0.1  # the beta recorded in the PRM run's run.json
    assert (out / "best_of_n.png").stat().st_size > 0 and (out / "results.md").exists()


def test_a_run_is_evaluated_on_its_own_synthetic_settings(prm_run, tmp_path, capsys):
    """--workdir on the task the run trained: the problems use run.json's settings (6-7 operations
    here, the default is 3); another task, or a run.json without them, gets the defaults."""
    long = ArithmeticConfig(num_ops=7, min_ops=6)
    run = tmp_path / "run"
    shutil.copytree(prm_run, run)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "task": dataclasses.asdict(TaskConfig(synthetic=long))}))
    assert evaluate.main(["--workdir", str(run), "--task", "arithmetic", *FAST, "--out", str(tmp_path / "o")]) == 0
    recorded = json.loads((tmp_path / "o" / "results.json").read_text())["synthetic"]
    assert recorded == json.loads(json.dumps(dataclasses.asdict(long)))
    assert "the settings" in capsys.readouterr().err
    assert evaluate.run_synthetic_settings(str(run), "arithmetic") == long
    assert evaluate.run_synthetic_settings(str(run), "countdown") is None
    assert evaluate.run_synthetic_settings(str(prm_run), "arithmetic") is None
    records, _ = make_records("arithmetic", 8, seed=0, suffix="", synthetic=long)
    assert all(sum(r.messages[-1][1].count(op) for op in "+-*") >= 6 for r in records)


def test_jsonl_benchmark_counts_malformed_rows(tiny_hf, tmp_path):
    out = tmp_path / "jsonl"
    task = f"jsonl:{BENCHMARKS / 'malformed_sample.jsonl'}"
    assert evaluate.main(["--hf", str(tiny_hf[0]), "--task", task, *FAST, "--no-suffix", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["num_problems"] == 2 and results["best_of_n"] is None
    assert results["data"]["skipped_malformed"] == 4
    assert 0.0 <= results["metrics"]["avg@2"] <= 1.0
    assert "skipped (malformed): 4" in (out / "results.md").read_text()


def test_refuses_two_model_sources(tiny_hf, tmp_path, capsys):
    assert evaluate.main(["--hf", str(tiny_hf[0]), "--workdir", str(tmp_path), "--task", "arithmetic"]) == 2
    assert "exactly one" in capsys.readouterr().err


def test_refuses_a_prm_run_without_a_recorded_reward_config(tiny_hf, prm_run, tmp_path, capsys):
    old = tmp_path / "old_run"
    old.mkdir()
    info = json.loads((prm_run / "run.json").read_text())
    del info["reward"]
    (old / "run.json").write_text(json.dumps(info))
    assert evaluate.main(["--hf", str(tiny_hf[0]), "--task", "arithmetic", *FAST, "--out", str(tmp_path / "o"),
                          "--prm-workdir", str(old)]) == 2
    assert "no 'reward' field" in capsys.readouterr().err


def test_best_of_n_with_an_explicit_prm(tiny_hf, tmp_path):
    path, model = tiny_hf
    prm_dir = tmp_path / "explicit"
    write_explicit_prm(prm_dir, model, load_tokenizer("char"))
    out = tmp_path / "eval"
    assert evaluate.main(["--hf", str(path), "--task", "arithmetic", *FAST, "--out", str(out),
                          "--explicit-prm", str(prm_dir), "--resamples", "4"]) == 0
    best_of_n = json.loads((out / "results.json").read_text())["best_of_n"]
    assert {"explicit_prod", "explicit_min", "explicit_last", "explicit_weighted_majority",
            "majority"} == set(best_of_n["curves"])
    assert evaluate.main(["--hf", str(path), "--task", "arithmetic", *FAST, "--out", str(out),
                          "--explicit-prm", str(tmp_path)]) == 2
