"""Any registered seqio Task or Mixture as an RL prompt source: its records, read once.

A source is named by its seqio registry name (``TaskConfig(name="seqio", seqio_task=NAME)``,
``evaluate --task seqio:NAME``); ``modules`` are imported first, so a module that registers the
Task at import time (the usual seqio idiom) makes the name resolvable. Each example the Task
yields (``get_dataset(split, shuffle=False, num_epochs=1, sequence_length=None)``, its
preprocessors included) becomes one `PromptRecord`:

  prompt | messages   the chat: "messages" is a JSON list of {"role", "content"}; "prompt" is
                      that same JSON list, or else plain text taken as one user message
  ground_truth        string (or number) handed to the verifier; JSON tests for "code"
  ability             picks the verifier: one of `SCORED_ABILITIES` (the math and code
                      verifiers, then `synthetic.OUTCOME_SCORERS`)
  data_source         optional; defaults to "seqio/<task name>"

A string field that a preprocessor tokenised is read from its ``<field>_pretokenized`` copy. The
prompt text is used as the Task wrote it (no Eurus math suffix: the Task's preprocessors own the
text). An example with a missing or malformed field is skipped and counted in `DataStats` by
reason; it never raises. A Mixture contributes the union of its Tasks' examples, in Task order
(its mixing rates are not applied: every record is drawn once per epoch of the sampler).

Why materialise: the records go into the same numpy `PromptPipeline` as every other source, whose
whole state is one global position of a seeded sampler over a fixed list. A resumed run therefore
continues at exactly the prompt an uninterrupted run would have drawn, on any process count,
without checkpointing a tf.data iterator (which seqio cannot restore exactly once shuffled or
mixed). The cost is one ordered pass over the split at start-up and its records in host memory,
the same as reading a parquet file. The pipeline's state carries a digest of its prompts, so a
Task whose data changed between the runs refuses to resume instead of silently drifting.
"""

from __future__ import annotations

import importlib
import json
from typing import Any, Mapping, Sequence

import numpy as np

from prime_jax.data.records import (DataStats, MalformedRow, PromptRecord, as_messages, parse_chat,
                                    parse_ground_truth)
from prime_jax.data.synthetic import OUTCOME_SCORERS
from prime_jax.data.tf_runtime import import_tf

import_tf()  # before seqio, which imports TensorFlow itself

import seqio  # noqa: E402

SCORED_ABILITIES = ("math", "code", *OUTCOME_SCORERS)  # what the trainer's and evaluate's verifier pools score


def _text(example: Mapping[str, Any], key: str) -> str | None:
    """The field as text: the raw value when it is a string or a number, else the
    ``<key>_pretokenized`` copy a tokenising preprocessor keeps; None when neither is there."""
    for name in (key, f"{key}_pretokenized"):
        value = example.get(name)
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedRow(f"bad_encoding_{key}") from None
        if isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return str(value)
    return None


def _chat(example: Mapping[str, Any]):
    """The record's messages: "messages" (a JSON chat) or "prompt" (a JSON chat or plain text)."""
    messages = _text(example, "messages")
    if messages is not None:
        return parse_chat(messages)
    prompt = _text(example, "prompt")
    if prompt is None:
        raise MalformedRow("no_prompt")
    try:
        chat = json.loads(prompt)
    except json.JSONDecodeError:
        chat = None
    if isinstance(chat, list) and chat and all(isinstance(m, dict) for m in chat):
        return parse_chat(chat)
    if not prompt.strip():
        raise MalformedRow("no_user_message")
    return as_messages([("user", prompt)])


def parse_seqio_example(example: Mapping[str, Any], default_source: str = "") -> PromptRecord:
    """One validated record from a seqio example; raises `MalformedRow` with a reason otherwise."""
    ability = _text(example, "ability")
    if ability not in SCORED_ABILITIES:
        raise MalformedRow("bad_ability")
    messages = _chat(example)
    ground_truth = parse_ground_truth(_text(example, "ground_truth"), ability)
    data_source = _text(example, "data_source") or default_source
    return PromptRecord(messages=messages, ground_truth=ground_truth, ability=ability,
                        data_source=data_source)


def resolve_seqio_source(name: str, modules: Sequence[str] = (),
                         field: str = "TaskConfig.seqio_task"):
    """The registered Task or Mixture ``name`` (after importing ``modules``); the error names
    ``field`` and how to register it."""
    for module in modules:
        importlib.import_module(module)
    try:
        return seqio.get_mixture_or_task(name)
    except ValueError:
        raise ValueError(
            f"{field}={name!r}: no seqio Task or Mixture of that name is registered (imported "
            f"modules: {list(modules)}); register it with seqio.TaskRegistry.add / "
            "seqio.MixtureRegistry.add in a module and name that module in TaskConfig.seqio_modules "
            "(evaluate: --seqio-module)") from None


def seqio_records(name: str, split: str, *, modules: Sequence[str] = (),
                  stats: DataStats | None = None, field: str = "TaskConfig.seqio_task",
                  split_field: str = "TaskConfig.seqio_train_split") -> list[PromptRecord]:
    """The valid records of split ``split`` of Task or Mixture ``name``, in the order seqio yields
    them unshuffled; malformed examples only bump ``stats``. A Task without the split is an error
    naming its splits; the Tasks of a Mixture that lack it are left out (as seqio does). Errors
    name the settings ``field`` (the source's name) and ``split_field``."""
    stats = stats if stats is not None else DataStats()
    source = resolve_seqio_source(name, modules, field)
    tasks = list(source.tasks) if isinstance(source, seqio.Mixture) else [source]
    with_split = [task for task in tasks if split in task.splits]
    if not with_split:
        splits = sorted({s for task in tasks for s in task.splits})
        raise ValueError(f"{split_field}={split!r}: {field}={name!r} has no such split (its splits: {splits})")
    records = []
    for task in with_split:
        dataset = task.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1)
        for example in dataset.as_numpy_iterator():
            stats.rows_read += 1
            try:
                record = parse_seqio_example(example, default_source=f"seqio/{task.name}")
            except MalformedRow as e:
                stats.skip(e.reason)
                continue
            stats.rows_kept += 1
            records.append(record)
    return records
