"""ProcessBench evaluation of a step verifier: find the earliest wrong step of each solution.

Records (one JSON object a line, the Hugging Face ProcessBench jsonl export unchanged)::

    {"id": str | int, "problem": str, "steps": [str, ...], "label": int,
     "final_answer_correct": bool (optional), "generator": str (optional),
     "kind" or "error_kind": str (optional; the synthetic sets name each row's error kind)}

``label`` is the index of the earliest wrong step, -1 if every step is right. Malformed rows are
skipped and listed by reason with their ``file:line``.

Metric (ProcessBench, per split = per data file). A verifier gives each step ``k`` a score
``p_k`` in [0, 1]; with threshold ``tau`` the predicted first error is

    pred = min {k : p_k < tau}    (-1 when no step scores below tau)

    acc_erroneous = mean over rows with label >= 0 of [pred == label]
    acc_correct   = mean over rows with label == -1 of [pred == -1]
    F1            = 2 * acc_erroneous * acc_correct / (acc_erroneous + acc_correct)   (0 if both 0)

An accuracy over no rows is undefined (None), and so is F1 then. Rows that name their error kind
are also reported per kind (``kind_metrics``): for kind ``c``, ``acc_c`` = the share of its rows
whose first error is located exactly and ``F1_c`` = the harmonic mean of ``acc_c`` and the split's
``acc_correct`` (the split's F1 as if it held only that kind of error). Step scores come from a
``step_verifiers.StepVerifier`` whose scores are logits: ``p_k = sigmoid(score_k)`` - an
explicit PRM's ``sigmoid(z)`` at the step's last token, an ORM's ``sigmoid(r_t)`` read at every step
end, an implicit PRM's ``sigmoid(beta * sum_{t in step} q_t)`` with
``q_t = log pi_phi(y_t|y<t) - log pi_ref(y_t|y<t)`` and the beta it was trained with. The
threshold is the verifier's fixed one (0.5 for explicit PRMs and ORMs); an implicit PRM's score has
no calibrated 0.5, so its threshold is the one that maximises F1 on a separate threshold split
(``choose_threshold``), reused on the others. The F1 of the split a threshold was chosen on is
in-sample: it is marked so and left out of the mean F1.

Each row is scored as the chat-templated problem (one user message) followed by the steps joined
by the verifier's step delimiter and EOS (``data.steps.encode_steps`` gives the step-end
positions, handed to the verifier; the last step ends at EOS, as in a sampled response).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
from collections.abc import Callable, Sequence

import numpy as np

from prime_jax.data import encode_prompts, left_pad
from prime_jax.data.steps import encode_steps
from prime_jax.step_verifiers import StepVerifier


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProcessBenchRecord:
    """One solution: its problem, its steps and the index of the earliest wrong step (-1: none)."""

    id: str
    problem: str
    steps: tuple[str, ...]
    label: int
    final_answer_correct: bool | None = None
    generator: str | None = None
    kind: str | None = None

    def __post_init__(self):
        if not self.steps:
            raise ValueError("ProcessBenchRecord.steps is empty")
        if not -1 <= self.label < len(self.steps):
            raise ValueError(f"ProcessBenchRecord.label={self.label}: must be -1 or a step index "
                             f"in [0, {len(self.steps) - 1}]")


def parse_record(row) -> ProcessBenchRecord:
    """A ``ProcessBenchRecord`` of one parsed JSON row; raises ValueError naming what is wrong."""
    if not isinstance(row, dict):
        raise ValueError("not an object")  # noqa: TRY004 - a malformed row, counted by reason
    for field in ("id", "problem", "steps", "label"):
        if field not in row:
            raise ValueError(f"no '{field}'")
    if isinstance(row["id"], bool) or not isinstance(row["id"], (str, int)):
        raise ValueError("'id' is not a string or integer")
    if not isinstance(row["problem"], str) or not row["problem"].strip():
        raise ValueError("'problem' is not a non-empty string")
    steps = row["steps"]
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise ValueError("'steps' is not a non-empty list of strings")
    if not all(s.strip() for s in steps):
        raise ValueError("'steps' holds a blank step")
    label = row["label"]
    if isinstance(label, bool) or not isinstance(label, int):
        raise ValueError("'label' is not an integer")
    if not -1 <= label < len(steps):
        raise ValueError("'label' is not -1 or a step index")
    final = row.get("final_answer_correct")
    if final is not None and not isinstance(final, bool):
        raise ValueError("'final_answer_correct' is not a boolean")
    generator = row.get("generator")
    kind = row.get("kind", row.get("error_kind"))
    if kind is not None and (not isinstance(kind, str) or not kind.strip()):
        raise ValueError("'kind' is not a non-empty string")
    return ProcessBenchRecord(id=str(row["id"]), problem=row["problem"], steps=tuple(steps), label=label,
                              final_answer_correct=final, generator=None if generator is None else str(generator),
                              kind=kind)


def load_processbench(path) -> tuple[list[ProcessBenchRecord], dict[str, list[str]]]:
    """Records of a ProcessBench jsonl file and ``{reason: ["file:line", ...]}`` of skipped rows."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ProcessBench file not found: {path}")
    records, skipped = [], collections.defaultdict(list)
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(parse_record(json.loads(line)))
        except json.JSONDecodeError:
            skipped["invalid json"].append(f"{path}:{number}")
        except ValueError as error:
            skipped[str(error)].append(f"{path}:{number}")
    return records, dict(skipped)


def first_flagged(scores_k: Sequence[float], threshold: float) -> int:
    """The index of the first step scoring below ``threshold``; -1 if none does."""
    below = np.flatnonzero(np.asarray(scores_k, np.float64) < threshold)
    return int(below[0]) if below.size else -1


def split_metrics(labels: Sequence[int], predictions: Sequence[int]) -> dict:
    """ProcessBench's accuracies and F1 of one split (module docstring), plus how the erroneous
    cases fail: flagged too early (a right step), too late, or missed (nothing flagged)."""
    labels_n, pred_n = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    if labels_n.shape != pred_n.shape:
        raise ValueError(f"{labels_n.shape[0]} labels but {pred_n.shape[0]} predictions")
    erroneous_n, correct_n = labels_n >= 0, labels_n == -1
    acc_erroneous = float(np.mean(pred_n[erroneous_n] == labels_n[erroneous_n])) if erroneous_n.any() else None
    acc_correct = float(np.mean(pred_n[correct_n] == -1)) if correct_n.any() else None
    if acc_erroneous is None or acc_correct is None:
        f1 = None
    else:
        total = acc_erroneous + acc_correct
        f1 = 2 * acc_erroneous * acc_correct / total if total else 0.0
    wrong_n = erroneous_n & (pred_n != labels_n)
    return {"n": int(labels_n.size), "n_erroneous": int(erroneous_n.sum()), "n_correct": int(correct_n.sum()),
            "acc_erroneous": acc_erroneous, "acc_correct": acc_correct, "f1": f1,
            "erroneous_flagged_early": int((wrong_n & (pred_n >= 0) & (pred_n < labels_n)).sum()),
            "erroneous_flagged_late": int((wrong_n & (pred_n > labels_n)).sum()),
            "erroneous_missed": int((wrong_n & (pred_n == -1)).sum())}


def kind_metrics(records: Sequence[ProcessBenchRecord], predictions: Sequence[int]) -> dict[str, dict] | None:
    """Per error kind of the erroneous rows that name one: ``{kind: {"n", "acc", "f1", "flagged_early",
    "flagged_late", "missed"}}`` with ``f1`` = harmonic mean of ``acc`` and the split's ``acc_correct``
    (module docstring). None when no erroneous row names a kind."""
    if len(records) != len(predictions):
        raise ValueError(f"{len(records)} records but {len(predictions)} predictions")
    kinds = sorted({r.kind for r in records if r.label >= 0 and r.kind is not None})
    if not kinds:
        return None
    acc_correct = split_metrics([r.label for r in records], predictions)["acc_correct"]
    out = {}
    labels_n, pred_n = np.asarray([r.label for r in records]), np.asarray(predictions)
    for kind in kinds:
        rows_n = np.asarray([r.label >= 0 and r.kind == kind for r in records])
        label_n, guess_n = labels_n[rows_n], pred_n[rows_n]
        acc = float(np.mean(guess_n == label_n))
        total = acc + (acc_correct or 0.0)
        f1 = None if acc_correct is None else (2 * acc * acc_correct / total if total else 0.0)
        out[kind] = {"n": int(rows_n.sum()), "acc": acc, "f1": f1,
                     "flagged_early": int(((guess_n >= 0) & (guess_n < label_n)).sum()),
                     "flagged_late": int((guess_n > label_n).sum()), "missed": int((guess_n == -1).sum())}
    return out


def length_metrics(records: Sequence[ProcessBenchRecord], predictions: Sequence[int]) -> dict[int, dict]:
    """``split_metrics`` of the rows of each solution length (number of steps): ``{num_steps: metrics}``."""
    lengths_n = np.asarray([len(r.steps) for r in records])
    labels_n, pred_n = np.asarray([r.label for r in records]), np.asarray(predictions)
    return {int(k): split_metrics(labels_n[lengths_n == k], pred_n[lengths_n == k]) for k in np.unique(lengths_n)}


def choose_threshold(scores: Sequence[Sequence[float]], labels: Sequence[int]) -> float:
    """The threshold maximising a split's F1 (ties: the smallest); exact, in O(n log n).

    Row n is predicted right exactly for ``tau`` in a half-open interval ``(lo_n, hi_n]``: a
    correct row for ``tau <= min_k p_k`` (``lo = -inf``), an erroneous row with label ``l`` for
    ``p_l < tau <= min_{k<l} p_k`` (``hi = +inf`` for ``l = 0``). Both accuracies are step
    functions of ``tau`` changing only at these ends, so every piece between consecutive ends is
    tried at its midpoint (the lowest piece at its top end, the highest just above its bottom).
    """
    labels_n = np.asarray(labels, np.int64)
    if not (labels_n >= 0).any() or not (labels_n == -1).any():
        raise ValueError("choosing a threshold needs both erroneous (label >= 0) and correct (label -1) rows")
    lo_n, hi_n = np.full(labels_n.size, -np.inf), np.full(labels_n.size, np.inf)
    for n, (scores_k, label) in enumerate(zip(scores, labels_n)):
        scores_k = np.asarray(scores_k, np.float64)
        if label == -1:
            hi_n[n] = scores_k.min()
        else:
            lo_n[n] = scores_k[label]
            hi_n[n] = scores_k[:label].min(initial=np.inf)
    ends = np.unique(np.concatenate([lo_n, hi_n]))
    ends = ends[np.isfinite(ends)]
    candidates = np.concatenate([ends[:1], (ends[:-1] + ends[1:]) / 2, np.nextafter(ends[-1:], np.inf)])
    erroneous_n = labels_n >= 0
    accuracy = {}
    for name, rows in (("erroneous", erroneous_n), ("correct", ~erroneous_n)):
        lo, hi = lo_n[rows], hi_n[rows]
        lo, hi = np.sort(lo[lo < hi]), np.sort(hi[lo < hi])  # drop rows right for no threshold
        right = np.searchsorted(lo, candidates, "left") - np.searchsorted(hi, candidates, "left")
        accuracy[name] = right / rows.sum()
    total = accuracy["erroneous"] + accuracy["correct"]
    f1 = np.where(total > 0, 2 * accuracy["erroneous"] * accuracy["correct"] / np.maximum(total, 1e-300), 0.0)
    return float(candidates[int(np.argmax(f1))])


@dataclasses.dataclass(frozen=True, kw_only=True)
class EncodedRecord:
    """Token ids of a record's prompt and response, and each step's last position in the response."""

    prompt_ids: list[int]
    response_ids: list[int]
    step_ends: list[int]


def encode_record(tokenizer, record: ProcessBenchRecord, step_delimiter: str) -> EncodedRecord:
    """Prompt ids (chat template), response ids (steps joined by the delimiter, then EOS) and
    step-end positions in the response; the last step ends at EOS, as in a sampled response.
    A record holding characters the tokenizer maps to its unknown token is refused (a verifier
    cannot judge text it cannot read: say a character-vocabulary model on natural-language rows)."""
    prompt_ids = encode_prompts(tokenizer, [(("user", record.problem),)])[0]
    response_ids, step_ends = encode_steps(tokenizer, record.steps, step_delimiter)
    unknown_id = getattr(tokenizer, "unk_token_id", None)
    if unknown_id is not None and unknown_id in (*prompt_ids, *response_ids):
        unread = sorted({c for c in record.problem + "".join(record.steps)
                         if tokenizer.encode(c, add_special_tokens=False) == [unknown_id]})
        raise ValueError(f"record {record.id!r}: the verifier's tokenizer has no token for {''.join(unread)!r}; "
                         "score this split with a verifier whose vocabulary covers its text")
    response_ids = [*response_ids, tokenizer.eos_token_id]
    return EncodedRecord(prompt_ids=list(prompt_ids), response_ids=response_ids,
                         step_ends=[*step_ends[:-1], len(response_ids) - 1])


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def score_records(verifier: StepVerifier, records: Sequence[ProcessBenchRecord], *, batch_size: int = 16,
                  progress: Callable = lambda batches: batches) -> list[np.ndarray]:
    """Each record's step probabilities ``sigmoid(score)`` (float64, one per step). Rows are
    batched by length (widths rounded up to 64 tokens, the last batch padded to ``batch_size``
    rows: few compiles)."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    if not verifier.logit_scores:
        raise ValueError(f"ProcessBench needs step probabilities; a {verifier.kind} verifier's scores are not logits")
    tokenizer = verifier.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [encode_record(tokenizer, r, verifier.step_delimiter) for r in records]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].prompt_ids) + len(rows[i].response_ids))
    out: list[np.ndarray | None] = [None] * len(rows)
    for start in progress(range(0, len(order), batch_size)):
        chosen = order[start:start + batch_size]
        batch = [rows[i] for i in chosen] + [rows[chosen[-1]]] * (batch_size - len(chosen))
        width_p = _round_up(max(len(r.prompt_ids) for r in batch), 64)
        width_l = _round_up(max(len(r.response_ids) for r in batch), 64)
        ids_bp, prompt_mask_bp = left_pad([r.prompt_ids for r in batch], width_p, pad_id)
        ids_bl = np.full((batch_size, width_l), pad_id, np.int32)
        mask_bl = np.zeros((batch_size, width_l), np.int32)
        ends_bl = np.zeros((batch_size, width_l), bool)
        for b, row in enumerate(batch):
            ids_bl[b, :len(row.response_ids)] = row.response_ids
            mask_bl[b, :len(row.response_ids)] = 1
            ends_bl[b, row.step_ends] = True
        scores = verifier.score_steps(np.concatenate([ids_bp, ids_bl], 1), np.concatenate([prompt_mask_bp, mask_bl], 1),
                                      mask_bl, step_end_bl=ends_bl)
        probs_bl = np.asarray(verifier.step_probabilities(scores.scores_bl), np.float64)
        step_end_bl = np.asarray(scores.step_end_bl)
        for b, i in enumerate(chosen):
            if step_end_bl[b].sum() != len(records[i].steps):
                raise RuntimeError(f"record {records[i].id!r}: {len(records[i].steps)} steps but the verifier "
                                   f"found {step_end_bl[b].sum()} step ends")
            out[i] = probs_bl[b, step_end_bl[b]]
    return out


def evaluate_splits(verifier: StepVerifier, splits: dict[str, list[ProcessBenchRecord]], *,
                    threshold_split: str | None = None, batch_size: int = 16,
                    progress: Callable = lambda batches: batches) -> dict:
    """ProcessBench metrics of every split: ``{"threshold": {...}, "splits": {name: metrics}}``.

    The threshold is the verifier's fixed one unless ``threshold_split`` names a split to choose
    it on (``choose_threshold``); a verifier without a fixed threshold (an implicit PRM) needs one.
    That split's metrics are marked ``in_sample``; per-kind metrics (``kinds``) join a split whose
    erroneous rows name their kinds.
    """
    if not splits:
        raise ValueError("no splits to evaluate")
    if threshold_split is None and verifier.threshold is None:
        raise ValueError(f"a {verifier.kind} verifier has no fixed threshold: name the split to choose it on "
                         "(--threshold-split, a dev split other than the ones reported; its F1 is in-sample)")
    if threshold_split is not None and threshold_split not in splits:
        raise ValueError(f"threshold split {threshold_split!r} is not one of the splits {sorted(splits)}")
    scores = {name: score_records(verifier, records, batch_size=batch_size, progress=progress)
              for name, records in splits.items()}
    if threshold_split is None:
        threshold, rule = verifier.threshold, f"fixed {verifier.threshold}"
    else:
        labels = [r.label for r in splits[threshold_split]]
        threshold = choose_threshold(scores[threshold_split], labels)
        rule = f"maximises F1 on split {threshold_split!r}, reused on the others"
    results = {}
    for name, records in splits.items():
        predictions = [first_flagged(s, threshold) for s in scores[name]]
        results[name] = {**split_metrics([r.label for r in records], predictions), "threshold": threshold,
                         "threshold_chosen_here": name == threshold_split, "in_sample": name == threshold_split,
                         "kinds": kind_metrics(records, predictions), "lengths": length_metrics(records, predictions)}
    return {"threshold": {"value": threshold, "chosen_on": threshold_split, "rule": rule}, "splits": results}


def mean_f1(split_results: dict) -> float | None:
    """ProcessBench's average: the mean F1 over the splits where it is defined and that are not
    in-sample (the threshold's own split); None if none."""
    values = [m["f1"] for m in split_results.values() if m["f1"] is not None and not m.get("in_sample")]
    return float(np.mean(values)) if values else None


def markdown_table(results: dict) -> str:
    """The per-split table (accuracies and F1 in percent, as ProcessBench reports them)."""

    def pct(value):
        return "-" if value is None else f"{100 * value:.1f}"

    lines = ["| split | n erroneous | n correct | acc erroneous (%) | acc correct (%) | F1 (%) | threshold |",
             "|---|---|---|---|---|---|---|"]
    for name, m in results["splits"].items():
        chosen = " (chosen here)" if m["threshold_chosen_here"] else ""
        f1 = f"{pct(m['f1'])} (in-sample)" if m.get("in_sample") else pct(m["f1"])
        lines.append(f"| {name} | {m['n_erroneous']} | {m['n_correct']} | {pct(m['acc_erroneous'])} | "
                     f"{pct(m['acc_correct'])} | {f1} | {m['threshold']:.4g}{chosen} |")
    lines.append(f"| mean F1 (not in-sample) | | | | | {pct(mean_f1(results['splits']))} | |")
    for name, m in results["splits"].items():
        if m.get("kinds"):
            lines += ["", kinds_table(name, m)]
        if m.get("lengths") and len(m["lengths"]) > 1:
            lines += ["", f"Split {name}{' (in-sample)' if m.get('in_sample') else ''}, per solution length:", "",
                      "| steps | n erroneous | n correct | acc erroneous (%) | acc correct (%) | F1 (%) |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {k} | {v['n_erroneous']} | {v['n_correct']} | {pct(v['acc_erroneous'])} | "
                      f"{pct(v['acc_correct'])} | {pct(v['f1'])} |" for k, v in m["lengths"].items()]
    return "\n".join(lines)


def kinds_table(name: str, metrics: dict) -> str:
    """One split's per-error-kind table: first error located (%), how the others fail, F1 vs correct rows."""

    def pct(value):
        return "-" if value is None else f"{100 * value:.1f}"

    mark = " (in-sample)" if metrics.get("in_sample") else ""
    lines = [f"Split {name}{mark}, per error kind (correct rows: {metrics['n_correct']}, "
             f"{pct(metrics['acc_correct'])}% unflagged):", "",
             "| error kind | n | first error located (%) | flagged early | flagged late | missed | F1 (%) |",
             "|---|---|---|---|---|---|---|"]
    for kind, k in metrics["kinds"].items():
        lines.append(f"| {kind} | {k['n']} | {pct(k['acc'])} | {k['flagged_early']} | {k['flagged_late']} | "
                     f"{k['missed']} | {pct(k['f1'])} |")
    return "\n".join(lines)
