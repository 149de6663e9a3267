"""seqio Tasks over the same records the numpy pipelines use (the seqio/TF-facing registry).

Registration is idempotent: re-registering a name with the same arguments returns the existing
Task; different arguments replace it. Each task reads its rows through a Python loader (shared
with `records_from_task`, so the pipelines and seqio see identical, identically validated rows)
wrapped in a `seqio.FunctionDataSource`, then runs this preprocessor chain:

  render_chat_template   "messages" (JSON chat) -> "inputs" (templated prompt text)
  seqio tokenize         HF tokenizer via `HFVocabulary`; keeps "*_pretokenized" copies
  filter_long_prompts    drops prompts longer than the limit, counting them

Output features of RL tasks (Eurus-2-RL and synthetic "rl"):
  inputs               int32 [P]   chat-templated prompt incl. the generation marker
  inputs_pretokenized  string      the templated prompt text
  messages             string      JSON list of {"role", "content"} (math suffix applied)
  ground_truth, ability, data_source   strings
SFT tasks (synthetic "sft") add:
  targets              int32 [T]   response tokens + EOS;  targets_pretokenized: string
  step_labels          int32 [S]   1/0 per solution line (see the synthetic task modules)

Counts of the most recent pass over a task (rows read, malformed rows skipped by reason,
prompts dropped as too long) are in `get_task_stats(name)`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Callable, Sequence

from prime_jax.data.tf_runtime import import_tf

tf = import_tf()  # before seqio, which imports TensorFlow itself

import seqio  # noqa: E402

from prime_jax.data import eurus, synthetic  # noqa: E402
from prime_jax.data.records import DataStats, PromptRecord, SFTExample  # noqa: E402
from prime_jax.data.vocabulary import HFVocabulary  # noqa: E402

_LOADERS: dict[str, Callable[[str, DataStats], list]] = {}
_STATS: dict[str, DataStats] = {}
_SPECS: dict[str, tuple] = {}


def get_task_stats(name: str) -> DataStats:
    """Counters of the latest pass over the task's data (shared object, updated in place)."""
    return _STATS[name]


def records_from_task(name: str, split: str = "train") -> list[PromptRecord | SFTExample]:
    """The validated records behind a registered task (what `PromptPipeline` consumes)."""
    stats = _STATS[name]
    _reset(stats)
    return _LOADERS[name](split, stats)


def _reset(stats: DataStats) -> None:
    fresh = DataStats()
    for field in dataclasses.fields(DataStats):
        setattr(stats, field.name, getattr(fresh, field.name))


def _as_example(record: PromptRecord | SFTExample) -> dict:
    out = {"messages": json.dumps(record.chat()), "ground_truth": record.ground_truth,
           "ability": record.ability, "data_source": record.data_source}
    if isinstance(record, SFTExample):
        out["targets"] = record.response
        out["step_labels"] = [int(x) for x in record.step_labels]
    return out


def _make_source(name: str, splits: Sequence[str], sft: bool) -> seqio.FunctionDataSource:
    signature = {key: tf.TensorSpec([], tf.string)
                 for key in ("messages", "ground_truth", "ability", "data_source")}
    if sft:
        signature["targets"] = tf.TensorSpec([], tf.string)
        signature["step_labels"] = tf.TensorSpec([None], tf.int32)

    def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None):
        del shuffle_files, seed  # one ordered pass; the Task shuffles if asked

        def generate():
            stats = _STATS[name]
            _reset(stats)
            for record in _LOADERS[name](split, stats):
                yield _as_example(record)

        return tf.data.Dataset.from_generator(generate, output_signature=signature)

    return seqio.FunctionDataSource(dataset_fn, splits=tuple(splits))


def render_chat_template(dataset, output_features):
    """Maps "messages" (JSON) to "inputs": the prompt rendered by the HF chat template."""
    tokenizer = output_features["inputs"].vocabulary.tokenizer

    def render(messages_json: bytes) -> bytes:
        chat = json.loads(messages_json.decode("utf-8"))
        text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        return text.encode("utf-8")

    def fn(ex):
        text = tf.numpy_function(render, [ex["messages"]], tf.string, stateful=False)
        text.set_shape([])
        return {**ex, "inputs": text}

    return dataset.map(fn, num_parallel_calls=1, deterministic=True)


def make_length_filter(name: str, max_prompt_length: int):
    """Preprocessor dropping examples whose "inputs" exceed the limit (min of
    `max_prompt_length` and `sequence_length["inputs"]`), counted in the task's stats."""

    def filter_long_prompts(dataset, sequence_length=None):
        limit = max_prompt_length
        if sequence_length and sequence_length.get("inputs"):
            limit = min(limit, int(sequence_length["inputs"]))

        def count(keep: bool) -> bool:
            if not keep:
                _STATS[name].dropped_too_long += 1
            return keep

        def predicate(ex):
            ok = tf.numpy_function(count, [tf.size(ex["inputs"]) <= limit], tf.bool,
                                   stateful=True)
            ok.set_shape([])
            return ok

        return dataset.filter(predicate)

    return filter_long_prompts


def _register(name: str, spec: tuple, loader, *, splits: Sequence[str], tokenizer: str,
              max_prompt_length: int, sft: bool) -> seqio.Task:
    if name in seqio.TaskRegistry.names():
        if _SPECS.get(name) == spec:
            return seqio.get_mixture_or_task(name)
        seqio.TaskRegistry.remove(name)
    _LOADERS[name], _SPECS[name] = loader, spec
    _STATS.setdefault(name, DataStats())
    vocab = HFVocabulary(tokenizer)
    features = {"inputs": seqio.Feature(vocab, add_eos=False, dtype=tf.int32)}
    if sft:
        features["targets"] = seqio.Feature(vocab, add_eos=True, dtype=tf.int32)
    task = seqio.Task(
        name,
        source=_make_source(name, splits, sft),
        output_features=features,
        preprocessors=[render_chat_template,
                       functools.partial(seqio.preprocessors.tokenize, with_eos=True),
                       make_length_filter(name, max_prompt_length)],
    )
    seqio.TaskRegistry.add_provider(name, task)
    return task


def register_eurus_task(name: str, path: str, *, tokenizer: str,
                        validation_path: str | None = None,
                        max_prompt_length: int = 1024) -> seqio.Task:
    """A Task over Eurus-2-RL rows (parquet/jsonl file or directory); split "train" reads
    `path`, split "validation" (if given) `validation_path`. `tokenizer`: "char" or a local
    Hugging Face directory (the policy's)."""
    paths = {"train": str(path)}
    if validation_path:
        paths["validation"] = str(validation_path)

    def loader(split: str, stats: DataStats) -> list[PromptRecord]:
        return eurus.load_eurus_records(paths[split], stats)

    spec = ("eurus", tuple(sorted(paths.items())), str(tokenizer), max_prompt_length)
    return _register(name, spec, loader, splits=tuple(paths), tokenizer=str(tokenizer),
                     max_prompt_length=max_prompt_length, sft=False)


def synthetic_task_name(task: str, kind: str, seed: int) -> str:
    return f"prime_synthetic_{task}_{kind}_seed{seed}"


def register_synthetic_task(task: str = "arithmetic", kind: str = "rl", *, seed: int = 0,
                            num_train: int = 10_000, num_eval: int = 500, config=None,
                            tokenizer: str = "char", max_prompt_length: int = 64,
                            name: str | None = None) -> seqio.Task:
    """A Task over a synthetic task's generated "train" and "eval" splits (disjoint problems).

    kind "rl" yields prompts + ground truth, kind "sft" step-by-step solutions + step labels.
    """
    if kind not in ("rl", "sft"):
        raise ValueError("kind must be 'rl' or 'sft'")
    config = config or synthetic.default_config(task)
    name = name or synthetic_task_name(task, kind, seed)
    sizes = {"train": num_train, "eval": num_eval}
    make = synthetic.make_synthetic_rl_prompts if kind == "rl" \
        else synthetic.make_synthetic_sft_examples

    def loader(split: str, stats: DataStats) -> list:
        records = make(task, seed, sizes[split], split, config)
        stats.rows_read += len(records)
        stats.rows_kept += len(records)
        return records

    spec = ("synthetic", task, kind, seed, num_train, num_eval, config, str(tokenizer),
            max_prompt_length)
    return _register(name, spec, loader, splits=("train", "eval"), tokenizer=str(tokenizer),
                     max_prompt_length=max_prompt_length, sft=kind == "sft")
