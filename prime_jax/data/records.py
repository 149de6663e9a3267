"""Plain record types shared by every data source (no TF, no seqio, no JAX).

A *record* is one source prompt before tokenisation. Sources (Eurus-2-RL parquet/jsonl, the
synthetic tasks, any registered seqio Task or Mixture) produce records; the pipelines in
`pipeline.py` and `sft.py` turn them into numpy batches; `tasks.py` exposes the same records as
seqio Tasks. The field checks every source shares (`parse_chat`, `parse_ground_truth`) raise
`MalformedRow` with a short reason, which loaders count in `DataStats` and skip.

Chat messages are stored as a tuple of `(role, content)` pairs so that records stay immutable;
`chat()` gives the list-of-dicts form Hugging Face chat templates expect.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from typing import Any

Messages = tuple[tuple[str, str], ...]
ROLES = ("system", "user", "assistant")


class MalformedRow(ValueError):
    """A row that cannot become a record; `reason` is a short stable counter key."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def as_messages(chat: Any) -> Messages:
    """Converts a list of {"role", "content"} dicts (or pairs) to the immutable form."""
    out = []
    for message in chat:
        if isinstance(message, dict):
            out.append((str(message["role"]), str(message["content"])))
        else:
            role, content = message
            out.append((str(role), str(content)))
    return tuple(out)


def as_chat(messages: Messages) -> list[dict[str, str]]:
    """The list-of-dicts form used by `tokenizer.apply_chat_template`."""
    return [{"role": role, "content": content} for role, content in messages]


def parse_chat(prompt: Any) -> Messages:
    """Validated chat messages: a list (or its JSON text) of {"role", "content"} objects with
    known roles and string contents, the last one a non-empty user message."""
    if isinstance(prompt, str):  # some exports store the message list as a JSON string
        try:
            prompt = json.loads(prompt)
        except json.JSONDecodeError:
            raise MalformedRow("bad_prompt") from None
    if not isinstance(prompt, (list, tuple)) or not prompt:
        raise MalformedRow("bad_prompt")
    for message in prompt:
        if not isinstance(message, dict) or message.get("role") not in ROLES \
                or not isinstance(message.get("content"), str):
            raise MalformedRow("bad_message")
    messages = as_messages(prompt)
    if messages[-1][0] != "user" or not messages[-1][1].strip():
        raise MalformedRow("no_user_message")
    return messages


def parse_ground_truth(value: Any, ability: str) -> str:
    """The ground truth as a non-empty string (numbers are written out); for ability "code" it
    must be a JSON object with "inputs" and "outputs" lists (kept as the original string)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise MalformedRow("bad_ground_truth")
    if ability == "code":
        try:
            tests = json.loads(value)
        except json.JSONDecodeError:
            raise MalformedRow("bad_code_tests") from None
        if not isinstance(tests, dict) or not isinstance(tests.get("inputs"), list) \
                or not isinstance(tests.get("outputs"), list):
            raise MalformedRow("bad_code_tests")
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class PromptRecord:
    """One RL prompt: chat messages to condition on and what the verifier needs.

    `ability` selects the verifier: "math" (`prime_jax.verifiers.math.verify(response,
    ground_truth)`), "code" (ground truth = JSON tests), "countdown"
    (`prime_jax.data.synthetic.countdown_reward(response, ground_truth)`).
    """

    messages: Messages
    ground_truth: str
    ability: str
    data_source: str = ""

    def chat(self) -> list[dict[str, str]]:
        return as_chat(self.messages)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SFTExample:
    """One supervised example: prompt messages plus the assistant response to imitate.

    `step_labels[i]` (synthetic tasks only) says whether line i of `response` keeps the solution
    on track (see the task modules for the exact definition); empty when unknown.
    """

    messages: Messages
    response: str
    ground_truth: str = ""
    ability: str = ""
    data_source: str = ""
    step_labels: tuple[bool, ...] = ()

    def chat(self) -> list[dict[str, str]]:
        return as_chat(self.messages)


@dataclasses.dataclass
class DataStats:
    """Counters of rows read, skipped (malformed, by reason) and dropped (too long).

    Mutable on purpose: loaders and pipelines add to it; `as_dict()` gives a JSON-able view.
    """

    rows_read: int = 0
    rows_kept: int = 0
    skipped_malformed: int = 0
    dropped_too_long: int = 0
    skip_reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def skip(self, reason: str) -> None:
        self.skipped_malformed += 1
        self.skip_reasons[reason] += 1

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["skip_reasons"] = dict(self.skip_reasons)
        return out
