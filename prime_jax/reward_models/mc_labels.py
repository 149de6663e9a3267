"""Monte-Carlo step labels (Math-Shepherd): how often a completer policy finishes a step prefix right.

For every sampled solution y = s_1 s_2 ... s_K (steps from ``prime_jax.data.steps.split_steps``:
cut after each step delimiter, which belongs to the step it closes; blank steps dropped) and
every step k < K, N completions c_j ~ pi_completer(. | x, y_{<=k}) of the prefix y_{<=k} (y up to
the end of s_k) are verified as the full response y_{<=k} c_j:

    hard_k = 1 if any completion is correct else 0        (Math-Shepherd's HE label)
    soft_k = (number of correct completions) / N          (its SE label)

The last step's label is the solution's own verified outcome (no completion needed); a blank
response has no steps and empty label lists. A response is correct when its verifier score is > 0.5.

Work plan, one *round* = ``batch_rows // samples_per_prompt`` prompts:

1. the solver samples ``samples_per_prompt`` solutions per prompt in one call (empty prefix);
2. the round's step prefixes are de-duplicated per prompt (solutions of one prompt often share
   their first steps; an identical (prompt, prefix) is completed once and its labels shared);
3. the completer is called with ``batch_rows // completions`` prefixes at a time, each repeated
   N times inside the call (one sampler batch of ``batch_rows`` rows: the prompt and prefix are
   tokenised once per prefix, the sampler repeats the rows; it still prefills each of the N
   copies - prefilling once and copying the KV cache would need a sampler entry point that
   takes a filled cache);
4. verification runs in the pool while the next call samples; a solution's row is written and
   flushed as soon as all its prefixes are verified.

A completer is any callable ``complete(prompts, prefixes, n) -> list[list[str]]`` (for each
``PromptRecord`` / prefix pair, n continuation texts, the prefix not repeated) with an int
attribute ``sampled_tokens``; ``PolicyCompleter`` wraps ``prime_jax.rollout.sample``, tests pass
deterministic fakes.

Output: jsonl, one row per solution, rows of a prompt contiguous and prompts in index order:
``{"prompt_index", "prompt" (the prompt's single user message), "ground_truth", "ability",
"response", "steps", "hard", "soft", "completions"}``; ``<out>.summary.json`` beside it holds
the counts and speed of the last invocation that labelled anything. Resume: a rerun keeps the
prompts whose ``samples_per_prompt`` rows are all in the file and labels the rest; a truncated
last line or a prompt with missing rows is reported and rewritten away. ``PolicyCompleter`` draws each call's
key from the call's content, so a run resumed at a round boundary reproduces an uninterrupted
run; one cut inside a round relabels that round's remaining prompts with fresh samples.

CLI: ``python -m prime_jax.mc_label --model SFT_DIR --task arithmetic|countdown --num-prompts P
--samples-per-prompt S --completions N --out FILE.jsonl``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Protocol

import jax
import numpy as np
from tqdm import tqdm

from prime_jax import rollout
from prime_jax.config_checks import check_fields_at_least, check_not_empty
from prime_jax.data import encode_prompts, left_pad
from prime_jax.data.chat import encode_texts
from prime_jax.data.records import PromptRecord
from prime_jax.data.steps import split_steps
from prime_jax.experience.generate import decode_responses


CORRECT_ABOVE = 0.5  # a response is correct when its verifier score is above this


class Completer(Protocol):
    """``complete(prompts, prefixes, n)``: n continuation texts for each (prompt, prefix) pair."""

    sampled_tokens: int

    def __call__(self, prompts: Sequence[PromptRecord], prefixes: Sequence[str], n: int) -> list[list[str]]:
        ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class MCLabelConfig:
    """``samples_per_prompt`` solutions per prompt, ``completions`` (N) completions per step
    prefix, ``batch_rows`` sampled rows per solver / completer call (a multiple of both), steps
    ending in ``step_delimiter``."""

    samples_per_prompt: int = 4
    completions: int = 8
    batch_rows: int = 64
    step_delimiter: str = "\n"

    def __post_init__(self):
        check_fields_at_least(self, {"samples_per_prompt": 1, "completions": 1, "batch_rows": 1})
        for name in ("samples_per_prompt", "completions"):
            if self.batch_rows % getattr(self, name):
                raise ValueError(f"MCLabelConfig.batch_rows={self.batch_rows!r}: must be a multiple of "
                                 f"{name}={getattr(self, name)!r}")
        check_not_empty("MCLabelConfig", "step_delimiter", self.step_delimiter)

    @property
    def prompts_per_round(self) -> int:
        return self.batch_rows // self.samples_per_prompt

    @property
    def prefixes_per_call(self) -> int:
        return self.batch_rows // self.completions


def step_prefixes(text: str, steps: Sequence[str]) -> list[str]:
    """The prefixes that need completions: ``text`` up to the end of step k for k = 1 .. K - 1
    (the last step's label is the solution's own outcome). Cut from ``text`` itself, so blank
    lines that ``split_steps`` drops stay in the prefix the completer continues."""
    prefixes, end = [], 0
    for step in steps[:-1]:
        end = text.index(step, end) + len(step)
        prefixes.append(text[:end])
    return prefixes


def _user_message(record: PromptRecord) -> str:
    if len(record.messages) != 1 or record.messages[0][0] != "user":
        raise ValueError(f"MC labels store a prompt as one user message; got roles "
                         f"{[role for role, _ in record.messages]}")
    return record.messages[0][1]


def summary_path(out: str | pathlib.Path) -> pathlib.Path:
    """``FILE.summary.json`` beside ``FILE.jsonl``."""
    out = pathlib.Path(out)
    return out.with_name(out.stem + ".summary.json")


def read_finished(out: pathlib.Path, records: Sequence[PromptRecord], config: MCLabelConfig,
                  log: Callable[[str], None]) -> set[int]:
    """Prompt indices whose rows are all in ``out``; rewrites the file without a truncated last
    line or the rows of unfinished prompts (each reported through ``log``)."""
    if not out.exists():
        return set()
    lines = out.read_text().split("\n")
    tail = lines.pop()  # "" when the file ends with a newline
    rows = [json.loads(line) for line in lines if line]
    if tail:
        try:
            rows.append(json.loads(tail))
            log(f"{out}: the last line had no newline; kept it")
        except json.JSONDecodeError:
            log(f"{out}: dropped a truncated last line ({len(tail)} characters)")
    by_prompt: dict[int, list[dict]] = {}
    for row in rows:
        index = row["prompt_index"]
        if index >= len(records) or row["prompt"] != _user_message(records[index]):
            raise ValueError(f"{out}: prompt_index {index} holds a different prompt than this run's; "
                             "use another --out or the same task arguments")
        if row["completions"] != config.completions:
            raise ValueError(f"{out}: rows have completions={row['completions']}, this run "
                             f"completions={config.completions}")
        by_prompt.setdefault(index, []).append(row)
    finished = {i for i, group in by_prompt.items() if len(group) == config.samples_per_prompt}
    unfinished = sorted(set(by_prompt) - finished)
    if unfinished:
        log(f"{out}: dropped the rows of unfinished prompts {unfinished}")
    if unfinished or tail:
        kept = [row for i in sorted(finished) for row in by_prompt[i]]
        out.write_text("".join(json.dumps(row) + "\n" for row in kept))
    return finished


@dataclasses.dataclass
class LabelStats:
    """Work of one invocation: solutions labelled, steps, step prefixes (before / after
    de-duplication), completions sampled, sampler calls and tokens, wall seconds."""

    solutions: int = 0
    steps: int = 0
    prefixes: int = 0
    completed_prefixes: int = 0
    completions: int = 0
    solver_calls: int = 0
    completer_calls: int = 0
    solution_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        sampled = self.solution_tokens + self.completion_tokens
        return {**dataclasses.asdict(self), "sampled_tokens": sampled,
                "tokens_per_second": sampled / self.seconds if self.seconds > 0 else 0.0}


def _check_groups(who: str, groups: list[list[str]], count: int, n: int) -> list[list[str]]:
    if len(groups) != count or any(len(group) != n for group in groups):
        raise ValueError(f"the {who} returned {[len(g) for g in groups]} texts for {count} prefixes x n={n}")
    return groups


def _label_round(indices: Sequence[int], records: Sequence[PromptRecord], *, solver: Completer,
                 completer: Completer, pool, config: MCLabelConfig, write: Callable[[dict], None],
                 stats: LabelStats) -> None:
    """Sample, complete, verify and write the rows of one round of prompts (module docstring)."""
    prompts = [records[i] for i in indices]
    s, n = config.samples_per_prompt, config.completions
    before = solver.sampled_tokens
    texts = _check_groups("solver", solver(prompts, [""] * len(prompts), s), len(prompts), s)
    stats.solution_tokens += solver.sampled_tokens - before
    stats.solver_calls += 1
    solutions = [(index, record, text) for index, record, group in zip(indices, prompts, texts) for text in group]
    outcomes = pool.submit([(text, record.ground_truth, record.ability) for _, record, text in solutions])

    slot_of: dict[tuple[int, str], int] = {}  # unique (prompt index, prefix) -> completion slot
    plans = []  # per solution: its steps and the slot of each prefix
    for index, record, text in solutions:
        steps = split_steps(text, config.step_delimiter)
        slots = [slot_of.setdefault((index, prefix), len(slot_of)) for prefix in step_prefixes(text, steps)]
        plans.append((steps, slots))
        stats.steps += len(steps)
        stats.prefixes += len(slots)
    unique = list(slot_of)
    ready_after = np.maximum.accumulate([max(slots, default=-1) for _, slots in plans])  # rows go out in order

    correct_sn = np.zeros((len(unique), n), bool)
    pending: list[tuple[int, object]] = []  # (first slot, verification future) per call
    written, verified = 0, 0  # solutions written; slots verified
    outcome_scores = None

    def flush(upto_slot: int) -> None:
        nonlocal written, outcome_scores
        if outcome_scores is None:
            outcome_scores = outcomes.result()
        while written < len(solutions) and ready_after[written] < upto_slot:
            index, record, text = solutions[written]
            steps, slots = plans[written]
            own = float(outcome_scores[written] > CORRECT_ABOVE)
            soft = [float(correct_sn[k].mean()) for k in slots] + ([own] if steps else [])
            hard = [int(correct_sn[k].any()) for k in slots] + ([int(own)] if steps else [])
            write({"prompt_index": int(index), "prompt": _user_message(record), "ground_truth": record.ground_truth,
                   "ability": record.ability, "response": text, "steps": steps, "hard": hard, "soft": soft,
                   "completions": n})
            written += 1

    def resolve(keep_last: int) -> None:
        nonlocal verified
        while len(pending) > keep_last:
            first, future = pending.pop(0)
            scores = np.asarray(future.result(), np.float64).reshape(-1, n)
            correct_sn[first:first + len(scores)] = scores > CORRECT_ABOVE
            verified = first + len(scores)
        flush(verified)

    per_call = config.prefixes_per_call
    for first in range(0, len(unique), per_call):
        chunk = unique[first:first + per_call]
        before = completer.sampled_tokens
        continuations = completer([records[i] for i, _ in chunk], [prefix for _, prefix in chunk], n)
        stats.completion_tokens += completer.sampled_tokens - before
        stats.completer_calls += 1
        _check_groups("completer", continuations, len(chunk), n)
        pending.append((first, pool.submit([
            (prefix + text, records[i].ground_truth, records[i].ability)
            for (i, prefix), group in zip(chunk, continuations) for text in group])))
        resolve(keep_last=1)  # verify the previous call while the next one samples
    resolve(keep_last=0)
    stats.solutions += len(solutions)
    stats.completed_prefixes += len(unique)
    stats.completions += len(unique) * n


def label_prompts(records: Sequence[PromptRecord], *, solver: Completer, completer: Completer, pool,
                  config: MCLabelConfig, out: str | pathlib.Path, log: Callable[[str], None] = print) -> dict:
    """Label every prompt of ``records`` not already finished in ``out`` (module docstring);
    writes ``out`` and (when there was work) its summary json, returns the summary."""
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    finished = read_finished(out, records, config, log)
    todo = [i for i in range(len(records)) if i not in finished]
    stats = LabelStats()
    start = time.perf_counter()
    with out.open("a") as f, tqdm(total=len(todo) * config.samples_per_prompt, desc="mc labels",
                                  unit="solution") as bar:
        def write(row: dict) -> None:
            f.write(json.dumps(row) + "\n")
            f.flush()
            bar.update(1)

        per_round = config.prompts_per_round
        for first in range(0, len(todo), per_round):
            _label_round(todo[first:first + per_round], records, solver=solver, completer=completer, pool=pool,
                         config=config, write=write, stats=stats)
            stats.seconds = time.perf_counter() - start
            bar.set_postfix(prefixes=stats.completed_prefixes, tok_s=f"{stats.as_dict()['tokens_per_second']:.0f}")
    stats.seconds = time.perf_counter() - start
    summary = {**stats.as_dict(), "resumed_prompts": len(finished), "prompts": len(records),
               "config": dataclasses.asdict(config), "out": str(out)}
    if todo:  # a rerun with nothing left keeps the summary of the run that did the work
        summary_path(out).write_text(json.dumps(summary, indent=2) + "\n")
    else:
        log(f"{out}: all {len(records)} prompts were already labelled")
    return summary


class PolicyCompleter:
    """Continuations from a policy: one ``rollout.sample`` call of ``batch_rows`` rows x ``width``
    prompt columns per call, so every call runs the same compiled sampler.

    Each prompt's chat-templated ids and each prefix's ids are encoded once (the prefix alone,
    as SFT responses are) and joined; the sampler repeats the joined row n times. Calls with
    fewer prefixes than ``batch_rows // n`` are padded with their last row. The key of a call
    is ``fold_in(key(seed), crc32 of the call's prompts, prefixes and n)``.
    """

    def __init__(self, policy, tokenizer, sampling: rollout.SamplingConfig, *, batch_rows: int, width: int,
                 seed: int = 0):
        self.policy, self.tokenizer, self.sampling = policy, tokenizer, sampling
        self.batch_rows, self.width = batch_rows, width
        self.key = jax.random.key(seed)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.sampled_tokens = 0
        self._prompt_ids: dict = {}

    def _ids(self, record: PromptRecord, prefix: str) -> list[int]:
        if record.messages not in self._prompt_ids:
            self._prompt_ids[record.messages] = encode_prompts(self.tokenizer, [record.messages])[0]
        ids = self._prompt_ids[record.messages] + (encode_texts(self.tokenizer, [prefix])[0] if prefix else [])
        if len(ids) > self.width:
            raise ValueError(f"PolicyCompleter: prompt + prefix has {len(ids)} tokens, more than width="
                             f"{self.width}; raise the width (max prompt length + max new tokens)")
        return ids

    def __call__(self, prompts: Sequence[PromptRecord], prefixes: Sequence[str], n: int) -> list[list[str]]:
        per_call = self.batch_rows // n
        if self.batch_rows % n or not 0 < len(prefixes) <= per_call:
            raise ValueError(f"PolicyCompleter: {len(prefixes)} prefixes x n={n} do not fit "
                             f"batch_rows={self.batch_rows} (a multiple of n)")
        sequences = [self._ids(record, prefix) for record, prefix in zip(prompts, prefixes)]
        sequences += [sequences[-1]] * (per_call - len(sequences))
        ids_bw, mask_bw = left_pad(sequences, self.width, self.pad_id)
        content = json.dumps([[r.messages for r in prompts], list(prefixes), n]).encode()
        key = jax.random.fold_in(self.key, zlib.crc32(content) & 0x7FFFFFFF)
        out = rollout.sample(self.policy, ids_bw, mask_bw, key=key, config=self.sampling, num_samples=n)
        real = len(prefixes) * n
        tokens_bl, mask_bl = np.asarray(out.tokens)[:real], np.asarray(out.mask)[:real]
        self.sampled_tokens += int(mask_bl.sum())
        texts = decode_responses(self.tokenizer, tokens_bl, mask_bl)
        return [texts[p * n:(p + 1) * n] for p in range(len(prefixes))]
