"""Plain record types shared by every data source (no TF, no seqio, no JAX).

A *record* is one source prompt before tokenisation. Sources (Eurus-2-RL parquet/jsonl, the
synthetic tasks) produce records; the pipelines in `pipeline.py` and `sft.py` turn them into
numpy batches; `tasks.py` exposes the same records as seqio Tasks.

Chat messages are stored as a tuple of `(role, content)` pairs so that records stay immutable;
`chat()` gives the list-of-dicts form Hugging Face chat templates expect.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

Messages = tuple[tuple[str, str], ...]


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
