"""A seqio Task or Mixture registered here, by name, as the training and evaluation source: its
records (malformed examples skipped and counted), two RL steps through the training CLI, exact
resume, and `evaluate --task seqio:NAME`."""

import json

import gin
import numpy as np
import pytest

from prime_jax.data.tf_runtime import import_tf

tf = import_tf()
import seqio  # noqa: E402

from prime_jax.data import DataStats, PromptPipeline, load_tokenizer, make_synthetic_rl_prompts  # noqa: E402
from prime_jax.data.seqio_source import parse_seqio_example, seqio_records  # noqa: E402
from prime_jax.data.records import MalformedRow  # noqa: E402
from prime_jax.data.task_config import TaskConfig, load_task, task_config_from_dict  # noqa: E402
from prime_jax.data.vocabulary import HFVocabulary  # noqa: E402

OWN_TASK = "test_own_arithmetic"
TOKENIZED_TASK = "test_own_tokenized"
COUNTDOWN_TASK = "test_own_countdown"
MIXTURE = "test_own_mixture"
CHAT = json.dumps([{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2="}])
MALFORMED = [  # (prompt, ground_truth, ability): each is skipped and counted by reason
    ("1+1=", "2", "chemistry"), ("   ", "2", "math"), ("1+1=", "", "math"), ("print", "not json", "code"),
    (json.dumps([{"role": "user", "content": 5}]), "2", "math"),
]


def _rows(records):
    return [(r.messages[-1][1], r.ground_truth, r.ability) for r in records]


TRAIN_ROWS = _rows(make_synthetic_rl_prompts("arithmetic", 3, 24, "train")) + MALFORMED + [(CHAT, "4", "math")]
VALIDATION_ROWS = _rows(make_synthetic_rl_prompts("arithmetic", 3, 6, "eval"))
COUNTDOWN_ROWS = _rows(make_synthetic_rl_prompts("countdown", 3, 5, "train"))


def _source(splits: dict) -> seqio.FunctionDataSource:
    """An in-memory source: one example {"prompt", "ground_truth", "ability"} per row."""

    def dataset_fn(split, shuffle_files, seed=None):
        del shuffle_files, seed
        prompt, ground_truth, ability = zip(*splits[split])
        return tf.data.Dataset.from_tensor_slices(
            {"prompt": list(prompt), "ground_truth": list(ground_truth), "ability": list(ability)})

    return seqio.FunctionDataSource(dataset_fn, splits=tuple(splits))


def _register_once(name, **kwargs):
    if name not in seqio.TaskRegistry.names():
        seqio.TaskRegistry.add(name, **kwargs)


_register_once(OWN_TASK, source=_source({"train": TRAIN_ROWS, "validation": VALIDATION_ROWS}), output_features={})
_register_once(COUNTDOWN_TASK, source=_source({"train": COUNTDOWN_ROWS}), output_features={})
_register_once(TOKENIZED_TASK, source=_source({"train": VALIDATION_ROWS}),  # "prompt" becomes int32 ids
               output_features={"prompt": seqio.Feature(HFVocabulary("char"), add_eos=False, dtype=tf.int32)},
               preprocessors=[seqio.preprocessors.tokenize])
if MIXTURE not in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.add(MIXTURE, [OWN_TASK, COUNTDOWN_TASK], default_rate=1.0)


def test_task_records_skip_and_count_malformed_examples():
    stats = DataStats()
    records = seqio_records(OWN_TASK, "train", stats=stats)
    assert len(records) == 25 and stats.rows_read == 30 and stats.skipped_malformed == 5
    assert dict(stats.skip_reasons) == {"bad_ability": 1, "no_user_message": 1, "bad_ground_truth": 1,
                                        "bad_code_tests": 1, "bad_message": 1}
    assert records[:24] == [r.__class__(**{**r.__dict__, "data_source": f"seqio/{OWN_TASK}"})
                            for r in make_synthetic_rl_prompts("arithmetic", 3, 24, "train")]
    assert records[-1].messages == (("system", "be brief"), ("user", "2+2=")) and records[-1].ground_truth == "4"


def test_mixture_is_the_union_of_its_tasks_and_tokenised_fields_read_their_text():
    mixed = seqio_records(MIXTURE, "train")
    assert len(mixed) == 25 + 5 and {r.ability for r in mixed[25:]} == {"countdown"}
    tokenized = seqio_records(TOKENIZED_TASK, "train")
    assert [r.messages[-1][1] for r in tokenized] == [row[0] for row in VALIDATION_ROWS]
    with pytest.raises(ValueError, match=r"TaskConfig.seqio_eval_split='test': TaskConfig.seqio_task="
                                         r"'test_own_mixture' has no such split \(its splits: \['train', 'validation'\]\)"):
        seqio_records(MIXTURE, "test", split_field="TaskConfig.seqio_eval_split")


def test_example_fields():
    record = parse_seqio_example({"prompt": b"3+4=", "ground_truth": np.int64(7), "ability": b"math",
                                  "data_source": b"mine"})
    assert record.messages == (("user", "3+4="),) and record.ground_truth == "7" and record.data_source == "mine"
    assert parse_seqio_example({"messages": CHAT.encode(), "ground_truth": b"4", "ability": b"math"}).messages[0] == (
        "system", "be brief")
    for bad, reason in [({"ground_truth": b"4", "ability": b"math"}, "no_prompt"),
                        ({"prompt": b"\xff", "ground_truth": b"4", "ability": b"math"}, "bad_encoding_prompt"),
                        ({"prompt": b"1=", "ground_truth": b"1"}, "bad_ability")]:
        with pytest.raises(MalformedRow) as error:
            parse_seqio_example(bad)
        assert error.value.reason == reason


def test_task_config_names_a_seqio_source():
    config = TaskConfig(name="seqio", seqio_task=OWN_TASK, seqio_eval_split="validation",
                        seqio_modules=("prime_jax.data.synthetic",))
    assert task_config_from_dict(json.loads(json.dumps(config.__dict__))) == config
    task_data = load_task(config)
    assert len(task_data.train_prompts) == 25 and len(task_data.eval_prompts) == 6
    assert task_data.stats["skipped_malformed"] == 5 and task_data.sft_examples == []
    for bad, message in [(dict(name="seqio"), "name 'seqio' and seqio_task"),
                         (dict(seqio_task=OWN_TASK), "name 'seqio' and seqio_task"),
                         (dict(seqio_eval_split="validation"), "is not 'seqio'"),
                         (dict(name="squad"), r"TaskConfig.name='squad': expected one of")]:
        with pytest.raises(ValueError, match=message):
            TaskConfig(**bad)
    with pytest.raises(ValueError, match=r"TaskConfig.seqio_task='not_registered': no seqio Task or Mixture"):
        load_task(TaskConfig(name="seqio", seqio_task="not_registered"))


def test_pipeline_over_seqio_records_resumes_exactly():
    tokenizer = load_tokenizer("char")
    records = load_task(TaskConfig(name="seqio", seqio_task=OWN_TASK)).train_prompts

    def make():
        return PromptPipeline(records, tokenizer, num_samples=2, max_prompt_length=16, seed=5)

    straight = make()
    straight.next_prompts(7)
    saved = json.loads(json.dumps(straight.state()))
    want = [straight.next_prompts(k).prompt_index.tolist() for k in (4, 30)]
    resumed = make()
    resumed.restore(saved)
    assert [resumed.next_prompts(k).prompt_index.tolist() for k in (4, 30)] == want


SEQIO_RUN = [
    "prime_jax.data.task_config.TaskConfig.name = 'seqio'",
    f"prime_jax.data.task_config.TaskConfig.seqio_task = '{OWN_TASK}'",
    "prime_jax.data.task_config.TaskConfig.seqio_eval_split = 'validation'",
    "prime_jax.rl.trainer.train.sft = None",  # a seqio task has no SFT examples: start from the fresh init
]


def _train(workdir, steps):
    from prime_jax import train
    from tiny_run import TINY

    gin.clear_config()
    try:
        return train.main([a for g in TINY + SEQIO_RUN for a in ("--gin", g)]
                          + ["--workdir", str(workdir), "--steps", str(steps)])
    finally:
        gin.clear_config()


@pytest.fixture(scope="module")
def seqio_run(tmp_path_factory):
    """Two RL steps on the registered task, through the training CLI."""
    workdir = tmp_path_factory.mktemp("seqio_run") / "straight"
    assert _train(workdir, 2) == 0
    return workdir


def test_two_rl_steps_on_a_registered_task(seqio_run):
    from prime_jax.metrics import read_metrics
    from prime_jax.run_dir import RunInfo

    rows = read_metrics(seqio_run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2] and "eval_accuracy" in rows[2]
    assert all(np.isfinite(rows[i][k]) for i in (1, 2) for k in ("accuracy", "policy_loss", "prm_loss"))
    assert RunInfo.read(seqio_run).task["seqio_task"] == OWN_TASK


@pytest.mark.slow
def test_a_seqio_run_resumes_exactly_and_evaluates_by_name(seqio_run, tmp_path):
    from prime_jax import evaluate
    from prime_jax.metrics import read_metrics

    assert _train(tmp_path / "resumed", 1) == 0 and _train(tmp_path / "resumed", 2) == 0
    straight = read_metrics(seqio_run / "metrics.jsonl")
    resumed = read_metrics(tmp_path / "resumed" / "metrics.jsonl")
    for key in ("accuracy", "response_length", "prm_loss", "policy_loss", "eval_accuracy"):
        np.testing.assert_allclose(resumed[2][key], straight[2][key], rtol=1e-5, atol=1e-7, err_msg=key)

    out = tmp_path / "eval"
    assert evaluate.main(["--workdir", str(seqio_run), "--task", f"seqio:{OWN_TASK}:validation",
                          "--num", "4", "--k", "2", "--max-new-tokens", "8", "--max-prompt-length", "16",
                          "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["num_problems"] == 4
