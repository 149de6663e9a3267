"""seqio tasks: Eurus rows from jsonl and parquet, synthetic SFT/RL tasks, documented fields."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import seqio  # noqa: E402  (a hard dependency: a missing install fails here)

from prime_jax.data import (  # noqa: E402
    MATH_SUFFIX, PromptPipeline, load_tokenizer, make_synthetic_rl_prompts, tasks)

RL_FIELDS = {"inputs", "inputs_pretokenized", "messages", "ground_truth", "ability", "data_source"}
CODE_TESTS = json.dumps({"inputs": ["1\n"], "outputs": ["2\n"]})


def row(user="what is 6*7?", ability="math", gt="42", **over):
    out = {"data_source": "src", "prompt": [{"role": "system", "content": "be brief"},
                                            {"role": "user", "content": user}],
           "ability": ability, "reward_model": {"style": "rule", "ground_truth": gt},
           "extra_info": {"index": 0}}
    out.update(over)
    return out


ROWS = [row(), row(user="x" * 300), row(user="print n+1", ability="code", gt=CODE_TESTS),
        row(ability="chemistry"), row(gt=None), row(prompt=[]), row(gt="2")]


def examples(task_name, split="train", sequence_length=None):
    task = seqio.get_mixture_or_task(task_name)
    ds = task.get_dataset(sequence_length=sequence_length, split=split, shuffle=False)
    return list(ds.as_numpy_iterator())


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_eurus_task_fields_and_counts(tmp_path, fmt):
    path = tmp_path / f"rl.{fmt}"
    if fmt == "jsonl":
        path.write_text("\n".join([json.dumps(r) for r in ROWS] + ["{oops", "7"]) + "\n")
    else:
        pq.write_table(pa.Table.from_pylist(ROWS), path)
    name = f"test_eurus_{fmt}"
    tasks.register_eurus_task(name, str(path), tokenizer="char", max_prompt_length=200)
    got = examples(name)
    stats = tasks.get_task_stats(name)
    assert len(got) == 3
    assert stats.dropped_too_long == 1  # the 300-character prompt
    assert stats.skipped_malformed == (5 if fmt == "jsonl" else 3)
    tokenizer = load_tokenizer("char")
    for ex in got:
        assert RL_FIELDS <= set(ex)
        assert ex["inputs"].dtype == np.int32 and len(ex["inputs"]) <= 200
        text = ex["inputs_pretokenized"].decode()
        assert text.startswith("<|system|>be brief<|user|>") and text.endswith("<|assistant|>")
        assert ex["inputs"].tolist() == tokenizer(text, add_special_tokens=False)["input_ids"]
        chat = json.loads(ex["messages"])
        assert chat[-1]["role"] == "user"
        if ex["ability"] == b"math":
            assert chat[-1]["content"].endswith(MATH_SUFFIX)
    assert [ex["ground_truth"].decode() for ex in got] == ["42", CODE_TESTS, "2"]
    # the sequence length can tighten the limit further
    assert len(examples(name, sequence_length={"inputs": 40})) == 1  # only the code row
    assert tasks.get_task_stats(name).dropped_too_long == 3
    # the same validated records feed the numpy pipeline
    records = tasks.records_from_task(name)
    assert len(records) == 4
    assert tasks.get_task_stats(name).skipped_malformed == stats.skipped_malformed
    pipe = PromptPipeline(records, tokenizer, num_samples=2, max_prompt_length=200)
    assert len(pipe) == 3 and pipe.stats.dropped_too_long == 1


def test_registration_is_idempotent(tmp_path):
    path = tmp_path / "rl.jsonl"
    path.write_text(json.dumps(row()) + "\n")
    a = tasks.register_eurus_task("test_eurus_idem", str(path), tokenizer="char")
    assert tasks.register_eurus_task("test_eurus_idem", str(path), tokenizer="char") is a
    b = tasks.register_eurus_task("test_eurus_idem", str(path), tokenizer="char",
                                  max_prompt_length=50)
    assert b is not a and seqio.get_mixture_or_task("test_eurus_idem") is b


def test_synthetic_sft_task():
    task = tasks.register_synthetic_task("arithmetic", "sft", seed=0, num_train=20, num_eval=5)
    got = examples(task.name)
    assert len(got) == 20 and len(examples(task.name, "eval")) == 5
    eos = load_tokenizer("char").eos_token_id
    for ex in got:
        assert RL_FIELDS | {"targets", "targets_pretokenized", "step_labels"} <= set(ex)
        assert ex["targets"][-1] == eos
        assert len(ex["step_labels"]) == ex["targets_pretokenized"].decode().count("\n") + 1


def test_synthetic_rl_task_matches_generator():
    task = tasks.register_synthetic_task("countdown", "rl", seed=1, num_train=10, num_eval=4)
    got = examples(task.name, "eval")
    want = make_synthetic_rl_prompts("countdown", 1, 4, "eval")
    assert [ex["ground_truth"].decode() for ex in got] == [r.ground_truth for r in want]
    assert all(ex["ability"] == b"countdown" for ex in got)
    assert tasks.records_from_task(task.name, "eval") == want


def test_task_config_sets_the_synthetic_difficulty():
    from prime_jax.data import ArithmeticConfig, CountdownConfig
    from prime_jax.data.task_config import TaskConfig, load_task

    long = load_task(TaskConfig(num_train=8, num_eval=4, num_sft=4, synthetic=ArithmeticConfig(num_ops=7, min_ops=6)))
    for record in long.train_prompts + long.eval_prompts:
        problem = record.messages[-1][1]
        assert 6 <= sum(problem.count(op) for op in "+-*") <= 7, problem  # operands are non-negative
    assert all(6 <= len(example.response.splitlines()) - 1 <= 7 for example in long.sft_examples)
    with pytest.raises(ValueError, match=r"does not configure task 'arithmetic': expected a ArithmeticConfig"):
        TaskConfig(synthetic=CountdownConfig())


def test_task_config_round_trips_through_a_dict():
    """run.json keeps a run's TaskConfig as dataclasses.asdict; task_config_from_dict rebuilds it."""
    import dataclasses

    from prime_jax.data import ArithmeticConfig, CountdownConfig
    from prime_jax.data.task_config import TaskConfig, task_config_from_dict

    for config in (TaskConfig(), TaskConfig(synthetic=ArithmeticConfig(num_ops=7, min_ops=6), max_prompt_length=32),
                   TaskConfig(name="countdown", synthetic=CountdownConfig())):
        assert task_config_from_dict(json.loads(json.dumps(dataclasses.asdict(config)))) == config
    bad = {**dataclasses.asdict(TaskConfig(name="eurus")), "synthetic": {"num_ops": 3}}
    with pytest.raises(ValueError, match="task 'eurus' has synthetic settings"):
        task_config_from_dict(bad)
