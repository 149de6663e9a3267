"""Step-labelled rows for the explicit PRM: responses split into steps, each step end carrying its
target and weight.

    rows      tokens_bs = [left-padded prompt | response], response = encode_steps(steps) (+ EOS)
    targets   y at each step end e_k: the step's label (hard 0/1 or a soft value in [0, 1])
    weights   w at each step end: 1, or 0 after the first wrong step (``up_to_first_error``),
              optionally reweighted by class (``balance_step_weights``, ``weight_wrong_steps``)

Labels come from the synthetic task's exact solver (``exact_step_rows``) or a Monte-Carlo label
file (``mc_step_rows``), as ``StepLabelConfig`` says; ``explicit_prm.ExplicitPrm`` trains on them.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax.numpy as jnp
import numpy as np

from prime_jax.config_checks import check_choice, check_positive
from prime_jax.data import encode_prompts, left_pad
from prime_jax.data.steps import delimiter_ids, encode_steps, split_steps
from prime_jax.data.synthetic import TASKS as EXACT_LABEL_TASKS
from prime_jax.data.synthetic import exact_step_labels
from prime_jax.experience.batch import ScoredRollouts
from prime_jax.reward_models.updates import StepLabelledMiniBatch, step_weights
from prime_jax.rewards import step_ends_from_tokens
from prime_jax.training.forward import SequenceBatch

STEP_LABELS = ("exact", "mc_hard", "mc_soft")


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepLabelConfig:
    """Where the explicit PRM's step labels come from (``kinds.ExplicitPrm.step_labels``).

    ``labels``: "exact" (the task's exact labels of the base model's samples; arithmetic or
    countdown, newline steps), "mc_hard" / "mc_soft" (the ``hard`` / ``soft`` labels of the
    Monte-Carlo label file ``mc_labels_path``). ``up_to_first_error``: weight steps only up to and
    including the first wrong one (``updates.step_weights``; wrong = hard label 0): with Monte-Carlo
    labels that is Rewarding Progress's "first pit" strategy - train a Q model on a solution's
    steps up to the first one from which no completion succeeds (its Q^pi estimate is 0; later
    steps are 0 too and carry no more information).
    ``balance_classes``: reweight the training steps so that right and wrong steps carry equal total
    weight (``balance_step_weights``); ``wrong_step_weight``: each wrong training step weighs this
    many right ones (``weight_wrong_steps``), so the PRM's 0.5 threshold sits where the odds of a
    right step are ``wrong_step_weight`` : 1 instead of 1 : 1. Validation stays unweighted.
    """

    labels: str = "exact"
    mc_labels_path: str | None = None
    up_to_first_error: bool = False
    balance_classes: bool = False
    wrong_step_weight: float = 1.0

    def __post_init__(self):
        check_choice("StepLabelConfig", "labels", self.labels, STEP_LABELS)
        check_positive("StepLabelConfig", "wrong_step_weight", self.wrong_step_weight)
        if self.balance_classes and self.wrong_step_weight != 1.0:
            raise ValueError(f"StepLabelConfig: balance_classes=True and wrong_step_weight="
                             f"{self.wrong_step_weight} both set the class weights; choose one")
        if self.labels != "exact" and not self.mc_labels_path:
            raise ValueError(f"StepLabelConfig.mc_labels_path={self.mc_labels_path!r}: labels={self.labels!r} "
                             "reads a Monte-Carlo label file (reward_models.mc_labels)")

    @property
    def from_file(self) -> bool:
        """Whether the labels are read from a Monte-Carlo label file (else the samples' exact labels)."""
        return self.labels != "exact"


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepRows:
    """Host arrays (rows first) of step-labelled responses, ``tokens_bs = [prompt | response]``; the
    step arrays are (B, L) over the response columns, targets and weights set at step ends only."""

    tokens_bs: np.ndarray
    attention_mask_bs: np.ndarray
    response_mask_bl: np.ndarray
    step_ends_bl: np.ndarray
    step_targets_bl: np.ndarray
    step_weights_bl: np.ndarray

    @property
    def num_rows(self) -> int:
        return self.tokens_bs.shape[0]

    def sequences(self) -> SequenceBatch:
        return SequenceBatch(tokens_bs=self.tokens_bs, attention_mask_bs=self.attention_mask_bs,
                             response_mask_bl=self.response_mask_bl)

    def rows(self, index: np.ndarray) -> "StepRows":
        """The given rows, in order."""
        index = np.asarray(index, np.int64)
        return StepRows(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    def mini_batch(self) -> StepLabelledMiniBatch:
        return StepLabelledMiniBatch(sequences=self.sequences(), step_ends_bl=self.step_ends_bl,
                                     step_targets_bl=self.step_targets_bl, step_weights_bl=self.step_weights_bl)


def balance_step_weights(rows: StepRows) -> StepRows:
    """``rows`` with class-balanced step weights: with ``w`` the weights at step ends and
    ``p = sum w [y >= 0.5] / sum w`` the weighted share of right steps,

        w'_bt = w_bt * 0.5 / p  (y >= 0.5),    w_bt * 0.5 / (1 - p)  (y < 0.5)

    so both classes weigh half and the loss's fixed 0.5 threshold is not pulled to the majority."""
    m_bl = rows.step_ends_bl * rows.step_weights_bl
    right_bl = rows.step_targets_bl >= 0.5
    p = float(np.sum(m_bl * right_bl) / max(float(np.sum(m_bl)), 1e-12))
    if not 0 < p < 1:
        return rows
    scale_bl = np.where(right_bl, 0.5 / p, 0.5 / (1 - p)).astype(np.float32)
    return dataclasses.replace(rows, step_weights_bl=rows.step_weights_bl * scale_bl)


def weight_wrong_steps(rows: StepRows, weight: float) -> StepRows:
    """``rows`` with ``w'_bt = w_bt * weight`` at the wrong steps (``y < 0.5``), right ones unchanged.

    Minimising ``sum w' BCE`` divides the fitted odds of a right step by ``weight``:
    ``p'/(1 - p') = (p/(1 - p)) / weight``, so p' = 0.5 where the unweighted fit's odds are ``weight`` : 1."""
    scale_bl = np.where(rows.step_targets_bl >= 0.5, 1.0, weight).astype(np.float32)
    return dataclasses.replace(rows, step_weights_bl=rows.step_weights_bl * scale_bl)


def build_step_rows(tokenizer, prompt_ids_bp: np.ndarray, prompt_mask_bp: np.ndarray, steps: list[list[str]],
                    targets: list[list[float]], hard: list[list[float]], finished: list[bool], *,
                    delimiter: str, up_to_first_error: bool) -> StepRows:
    """Step-labelled rows from left-padded prompts and each response's steps and per-step labels.

    A response is ``encode_steps(steps)`` (+ EOS when ``finished``), right-padded to the longest.
    Its step ends are ``rewards.step_ends_from_tokens`` of those ids, the positions best-of-N reads
    on sampled responses (every delimiter and the last token). A token step end ``e`` takes the
    target and weight (``step_weights(hard, up_to_first_error)``) of the last text step ending at or
    before ``e``: a step holding only the EOS repeats the last step's label ("prefix still correct").
    """
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id or 0
    encoded = [encode_steps(tokenizer, row_steps, delimiter) for row_steps in steps]
    ids = [row_ids + [eos] if done else row_ids for (row_ids, _), done in zip(encoded, finished)]
    length = max(1, max(len(row_ids) for row_ids in ids))
    tokens_bl = np.full((len(ids), length), pad, np.int32)
    mask_bl = np.zeros((len(ids), length), np.int32)
    for b, row_ids in enumerate(ids):
        tokens_bl[b, :len(row_ids)] = row_ids
        mask_bl[b, :len(row_ids)] = 1
    ends_bl = np.asarray(step_ends_from_tokens(jnp.asarray(tokens_bl), jnp.asarray(mask_bl),
                                               delimiter_ids(tokenizer, delimiter)))
    targets_bl = np.zeros((len(ids), length), np.float32)
    weights_bl = np.zeros((len(ids), length), np.float32)
    for b, (_, text_ends) in enumerate(encoded):
        if len(targets[b]) != len(text_ends) or len(hard[b]) != len(text_ends):
            raise ValueError(f"row {b}: {len(text_ends)} steps but {len(targets[b])} targets and "
                             f"{len(hard[b])} hard labels")
        token_ends = np.flatnonzero(ends_bl[b])
        step_k = np.searchsorted(np.asarray(text_ends, np.int64), token_ends, side="right") - 1
        labelled = step_k >= 0
        targets_bl[b, token_ends[labelled]] = np.asarray(targets[b], np.float32)[step_k[labelled]]
        weights_bl[b, token_ends[labelled]] = step_weights(hard[b], up_to_first_error)[step_k[labelled]]
    return StepRows(tokens_bs=np.concatenate([prompt_ids_bp, tokens_bl], axis=1).astype(np.int32),
                    attention_mask_bs=np.concatenate([prompt_mask_bp, mask_bl], axis=1).astype(np.int32),
                    response_mask_bl=mask_bl, step_ends_bl=ends_bl, step_targets_bl=targets_bl,
                    step_weights_bl=weights_bl)


def exact_step_rows(rows: ScoredRollouts, records, task: str, tokenizer, *, delimiter: str,
                    up_to_first_error: bool) -> StepRows:
    """The sampled ``rows`` with the task's exact step labels (``records[prompt_index]`` holds each
    row's problem); finished responses end with EOS, truncated ones in an unclosed step."""
    if task not in EXACT_LABEL_TASKS:
        raise ValueError(f"StepLabelConfig.labels='exact' needs a task with exact step labels "
                         f"{EXACT_LABEL_TASKS}, got TaskConfig.name={task!r}")
    if delimiter != "\n":
        raise ValueError(f"StepLabelConfig.labels='exact' labels lines: ExplicitPrm.step_delimiter="
                         f"{delimiter!r} must be '\\n'")
    steps, labels = [], []
    for response, truth, index in zip(rows.responses, rows.ground_truth, rows.prompt_index_b):
        problem = [content for role, content in records[int(index)].messages if role == "user"][-1]
        steps.append(split_steps(response, delimiter))
        labels.append([float(ok) for ok in exact_step_labels(task, response, truth, problem)])
    width = rows.tokens_bs.shape[1] - rows.response_mask_bl.shape[1]
    return build_step_rows(tokenizer, rows.tokens_bs[:, :width], rows.attention_mask_bs[:, :width], steps, labels,
                           labels, list(~rows.truncated_b), delimiter=delimiter, up_to_first_error=up_to_first_error)


def mc_step_rows(path: str, labels: str, tokenizer, *, delimiter: str, up_to_first_error: bool,
                 val_fraction: float) -> tuple[StepRows, StepRows, dict]:
    """(train, validation, info) rows of a Monte-Carlo label file (``reward_models.mc_labels``).

    Each row's prompt is its user message, chat-templated; its response the listed ``steps``,
    closed by EOS (the file keeps no truncation flag); targets ``hard`` or ``soft`` per ``labels``,
    weights from ``hard``. The last ``val_fraction`` of the prompts (by first appearance) is held out.
    """
    rows = [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()]
    prompts = list(dict.fromkeys(row["prompt_index"] for row in rows))
    if len(prompts) < 2:
        raise ValueError(f"StepLabelConfig.mc_labels_path={path!r}: {len(prompts)} prompts, need 2 or more "
                         "for a train / validation split")
    for row in rows:
        if len(row["steps"]) != len(row["hard"]) or len(row["steps"]) != len(row["soft"]):
            raise ValueError(f"{path}: prompt {row['prompt_index']} has {len(row['steps'])} steps, "
                             f"{len(row['hard'])} hard and {len(row['soft'])} soft labels")
    prompt_ids = encode_prompts(tokenizer, [(("user", row["prompt"]),) for row in rows])
    prompt_ids_bp, prompt_mask_bp = left_pad([np.asarray(ids) for ids in prompt_ids], max(map(len, prompt_ids)),
                                             tokenizer.pad_token_id or 0)
    hard = [[float(x) for x in row["hard"]] for row in rows]
    targets = hard if labels == "mc_hard" else [[float(x) for x in row["soft"]] for row in rows]
    all_rows = build_step_rows(tokenizer, prompt_ids_bp, prompt_mask_bp, [row["steps"] for row in rows], targets,
                               hard, [True] * len(rows), delimiter=delimiter, up_to_first_error=up_to_first_error)
    held_out = set(prompts[len(prompts) - max(1, round(len(prompts) * val_fraction)):])
    is_val = np.asarray([row["prompt_index"] in held_out for row in rows])
    info = {"num_prompts": len(prompts), "val_prompts": len(held_out),
            "completions": sum(int(row.get("completions", 0)) for row in rows)}
    return all_rows.rows(np.flatnonzero(~is_val)), all_rows.rows(np.flatnonzero(is_val)), info
