"""Eurus-2-RL-Data rows (parquet or jsonl) -> `PromptRecord`s, skipping malformed rows.

Row schema (SPEC section 2): `data_source` (str), `prompt` (chat messages [system?, user],
each {"role", "content"}), `ability` ("math" | "code"), `reward_model` = {"style": "rule",
"ground_truth": str}, `extra_info` (anything). A row with a missing or malformed field is skipped
and counted in `DataStats` (by reason), never raising. Math prompts get the user suffix
`MATH_SUFFIX` appended to the last user message when it is not already there. Code ground truth
must be a JSON object with "inputs" and "outputs" lists (kept as the original string).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Iterator

from prime_jax.data.records import DataStats, MalformedRow, PromptRecord, parse_chat, parse_ground_truth

MATH_SUFFIX = "\n\nPresent the answer in LaTex format: \\boxed{Your answer}"
ABILITIES = ("math", "code")


def read_rows(path: str | os.PathLike) -> Iterator[Any]:
    """Raw rows of a `.parquet` or `.jsonl`/`.json` file (a directory: its files, sorted).

    A jsonl line that is not valid JSON is yielded as `None` (and later counted as malformed).
    """
    path = pathlib.Path(path)
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if child.suffix in (".parquet", ".jsonl", ".json"):
                yield from read_rows(child)
        return
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=4096):
            yield from batch.to_pylist()
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                yield None


def parse_eurus_row(row: Any) -> PromptRecord:
    """One validated, normalised record; raises `MalformedRow` with a reason otherwise."""
    if not isinstance(row, dict):
        raise MalformedRow("not_an_object")
    data_source = row.get("data_source")
    if data_source is None:
        data_source = ""
    elif not isinstance(data_source, str):
        raise MalformedRow("bad_data_source")
    ability = row.get("ability")
    if ability not in ABILITIES:
        raise MalformedRow("bad_ability")
    messages = parse_chat(row.get("prompt"))
    reward_model = row.get("reward_model")
    if not isinstance(reward_model, dict):
        raise MalformedRow("bad_reward_model")
    ground_truth = parse_ground_truth(reward_model.get("ground_truth"), ability)
    if ability == "math" and not messages[-1][1].endswith(MATH_SUFFIX):
        messages = messages[:-1] + (("user", messages[-1][1] + MATH_SUFFIX),)
    return PromptRecord(messages=messages, ground_truth=ground_truth, ability=ability,
                        data_source=data_source)


def iter_eurus_records(path: str | os.PathLike, stats: DataStats | None = None
                       ) -> Iterator[PromptRecord]:
    """Valid records of a file in file order; malformed rows only bump `stats`."""
    stats = stats if stats is not None else DataStats()
    for row in read_rows(path):
        stats.rows_read += 1
        try:
            record = parse_eurus_row(row)
        except MalformedRow as e:
            stats.skip(e.reason)
            continue
        stats.rows_kept += 1
        yield record


def load_eurus_records(path: str | os.PathLike, stats: DataStats | None = None,
                       limit: int | None = None) -> list[PromptRecord]:
    """All (or the first `limit`) valid records of a file."""
    out = []
    for record in iter_eurus_records(path, stats):
        if limit is not None and len(out) >= limit:
            break
        out.append(record)
    return out
