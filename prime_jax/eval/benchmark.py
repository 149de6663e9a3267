"""Evaluation problems: a synthetic task's held-out split, a benchmark jsonl or a registered seqio
Task or Mixture (``seqio:NAME[:SPLIT]``, records as `prime_jax.data.seqio_source` reads them).

Benchmark jsonl rows (one JSON object a line; malformed rows are skipped and counted):
MATH-500 / AIME / AMC ``{"problem": str, "answer": str | number}``; GSM8K ``{"question": str,
"answer": "... #### N"}`` (the text after ``####`` is the answer).
"""

from __future__ import annotations

import collections
import json
import pathlib

from prime_jax.data import MATH_SUFFIX, PromptRecord, make_synthetic_rl_prompts

SYNTHETIC_TASKS = ("arithmetic", "countdown")


def parse_benchmark_row(row) -> tuple[str, str]:
    """(problem, answer) of one benchmark row; raises ValueError naming what is wrong."""
    if not isinstance(row, dict):
        raise ValueError("not an object")  # noqa: TRY004 - a malformed row, counted by reason
    problem = row.get("problem", row.get("question"))
    answer = row.get("answer")
    if not isinstance(problem, str) or not problem.strip():
        raise ValueError("no problem/question text")
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise ValueError("no answer")  # noqa: TRY004 - a malformed row, counted by reason
    answer = str(answer)
    if "question" in row and "problem" not in row:  # GSM8K: the final answer follows '####'
        if "####" not in answer:
            raise ValueError("GSM8K answer without '####'")
        answer = answer.rsplit("####", 1)[1].strip().replace(",", "")
    if not answer.strip():
        raise ValueError("empty answer")
    return problem.strip(), answer.strip()


def load_benchmark(path: str | pathlib.Path, *, suffix: str = MATH_SUFFIX
                   ) -> tuple[list[PromptRecord], dict[str, int]]:
    """Math prompts of a benchmark jsonl, plus ``{reason: count}`` of skipped malformed rows."""
    records, skipped = [], collections.Counter()
    for line in pathlib.Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            problem, answer = parse_benchmark_row(json.loads(line))
        except json.JSONDecodeError:
            skipped["invalid json"] += 1
            continue
        except ValueError as error:
            skipped[str(error)] += 1
            continue
        records.append(PromptRecord(messages=(("user", problem + suffix),), ground_truth=answer,
                                    ability="math", data_source=pathlib.Path(path).stem))
    return records, dict(skipped)


def make_records(task: str, num: int, *, seed: int, suffix: str, synthetic=None, seqio_modules=()):
    """(records, skipped) for ``arithmetic`` / ``countdown`` (eval split; ``synthetic``: its
    ``ArithmeticConfig`` / ``CountdownConfig``, None for the task's defaults), ``jsonl:PATH`` or
    ``seqio:NAME[:SPLIT]`` (split "validation" by default; ``seqio_modules`` register NAME)."""
    if task in SYNTHETIC_TASKS:
        return make_synthetic_rl_prompts(task, seed, num, split="eval", config=synthetic), {}
    if task.startswith("jsonl:"):
        records, skipped = load_benchmark(task[len("jsonl:"):], suffix=suffix)
        return records[:num], skipped
    if task.startswith("seqio:"):
        from prime_jax.data import DataStats, seqio_records  # imports seqio / TensorFlow

        name, _, split = task[len("seqio:"):].partition(":")
        stats = DataStats()
        records = seqio_records(name, split or "validation", modules=seqio_modules, stats=stats,
                                field="--task seqio:NAME", split_field="--task seqio:NAME:SPLIT")
        return records[:num], dict(stats.skip_reasons)
    raise ValueError(f"--task {task!r}: expected one of {SYNTHETIC_TASKS}, jsonl:PATH or seqio:NAME[:SPLIT]")
