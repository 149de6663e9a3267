"""The explicit PRM as a reward-model kind (``kinds``): a backbone from pi_base (or ``backbone``) and
a zero per-token score head, read at each step end e_k (steps end with ``step_delimiter``)::

    p_ik = sigmoid(z_i[e_k]),   loss = sum_ik w_ik BCE(p_ik, y_ik) / sum_ik w_ik

with step labels y from ``StepLabelConfig.labels``: "exact" (the synthetic task's exact labels of
each sample of the base model, ``data.synthetic.exact_step_labels``), "mc_hard" / "mc_soft"
(Math-Shepherd labels of a ``reward_models.mc_labels`` file; no sampling); w = 1, or 0 after the
first wrong step (``up_to_first_error``, Let's Verify's convention), reweighted by class on request.
Validation: step BCE, step accuracy and first-error accuracy (the first step with p < 0.5 is the
first labelled error, or neither has one). Exported as ``*ForTokenClassification``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from prime_jax import sharding
from prime_jax.config_checks import check_at_least, check_not_empty
from prime_jax.models import explicit_prm_from_backbone, save_explicit_prm
from prime_jax.models.source import ModelSource
from prime_jax.reward_models.kinds import check_type
from prime_jax.reward_models.sources import RewardDataConfig, TrainingSources, backbone_path
from prime_jax.reward_models.step_rows import (StepLabelConfig, StepRows, balance_step_weights, exact_step_rows,
                                               mc_step_rows, weight_wrong_steps)
from prime_jax.reward_models.updates import StepLabelledMiniBatch, explicit_step_loss, make_explicit_prm_update
from prime_jax.training.state import Role


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExplicitPrm:
    """An explicit step-level PRM. ``step_labels``: where its labels come from; ``step_delimiter``:
    what ends a step. ``backbone``: start from this model's weights (same vocabulary) instead of
    the sampling model's, which still samples the solutions (a verifier larger than the policy, as
    Let's Verify's and Math-Shepherd's were). ``extra_layers``: new identity-initialised blocks
    stacked on the backbone's (``models.explicit_prm_from_backbone``). ``freeze_base``: the
    backbone's embedding and blocks keep their weights (``train_new_parameters_only``), so its
    next-token features stay what the head and the new blocks read."""

    name: ClassVar[str] = "explicit_prm"
    curves: ClassVar[tuple[str, ...]] = ("val_loss", "val_step_acc", "val_first_error_acc")
    step_labels: StepLabelConfig = StepLabelConfig()
    step_delimiter: str = "\n"
    backbone: ModelSource | None = None
    extra_layers: int = 0
    freeze_base: bool = False

    def __post_init__(self):
        check_type("ExplicitPrm", "step_labels", self.step_labels, StepLabelConfig)
        check_not_empty("ExplicitPrm", "step_delimiter", self.step_delimiter)
        check_type("ExplicitPrm", "backbone", self.backbone, (ModelSource, type(None)))
        check_type("ExplicitPrm", "extra_layers", self.extra_layers, int)
        check_at_least("ExplicitPrm", "extra_layers", self.extra_layers, 0)
        check_type("ExplicitPrm", "freeze_base", self.freeze_base, bool)

    def rows_per_group(self, data: RewardDataConfig) -> int:
        """Sampled solutions come in groups of ``num_samples``; a label file's rows stand alone."""
        return 1 if self.step_labels.from_file else data.num_samples

    def labelled_rows(self, sources: TrainingSources) -> tuple[StepRows, StepRows, dict]:
        """Step rows of the label file, or of the base model's samples with the task's exact labels;
        the training rows reweighted per ``step_labels`` (validation stays unweighted)."""
        labels = self.step_labels
        options = dict(delimiter=self.step_delimiter, up_to_first_error=labels.up_to_first_error)
        if labels.from_file:
            train_rows, val_rows, mc_info = mc_step_rows(labels.mc_labels_path, labels.labels, sources.tokenizer,
                                                         val_fraction=sources.data.val_fraction, **options)
            info = {"num_samples": train_rows.num_rows + val_rows.num_rows, "mc_labels": mc_info}
            sources.log(f"{self.name}: {info['num_samples']} solutions of {mc_info['num_prompts']} prompts from "
                        f"{labels.mc_labels_path}; {mc_info['val_prompts']} prompts held out")
        else:
            sampled = sources.sample(self.name)
            step_rows = exact_step_rows(sampled.rows, sampled.records, sources.task.name, sources.tokenizer,
                                        **options)
            (train_rows, val_rows), info = sampled.split(step_rows), sampled.info
        if labels.balance_classes:
            train_rows = balance_step_weights(train_rows)
        if labels.wrong_step_weight != 1.0:
            train_rows = weight_wrong_steps(train_rows, labels.wrong_step_weight)
        return train_rows, val_rows, info

    def start(self, sources: TrainingSources, tx: optax.GradientTransformation):
        """The PRM on its backbone, and ``tx`` restricted to its new parameters if ``freeze_base``."""
        prm = explicit_prm_from_backbone(sources.backbone(self.backbone), seed=sources.seed,
                                         extra_layers=self.extra_layers)
        if self.freeze_base:
            tx = train_new_parameters_only(tx, prm.config.num_layers - self.extra_layers)
        return Role.of(prm), tx

    def make_update(self, graphdef, tx, group: int, shardings):
        return make_explicit_prm_update(graphdef, tx, group, state_shardings=shardings)

    def mini_batch(self, rows: StepRows) -> StepLabelledMiniBatch:
        return rows.mini_batch()

    def validator(self, graphdef, rows: StepRows, batch_rows: int, group: int, mesh):
        """Validation of the step scores at the response positions."""
        length = rows.step_ends_bl.shape[1]
        logits_fn = jax.jit(lambda params, seq: nnx.merge(graphdef, params)(
            seq.tokens_bs, seq.attention_mask_bs)[:, -length:])
        return lambda params: validate_steps(logits_fn, params, rows, batch_rows, mesh)

    def title(self) -> str:
        return f"offline {self.name} ({self.step_labels.labels} labels)"

    def save(self, module, path, tokenizer) -> None:
        save_explicit_prm(module, path, tokenizer=tokenizer)

    def record(self) -> dict:
        return {"backbone": backbone_path(self.backbone), "prm_loss": None,
                "step_labels": dataclasses.asdict(self.step_labels), "step_delimiter": self.step_delimiter}

    def implicit_reward(self) -> None:
        return None


def validate_steps(logits_fn, params, rows: StepRows, batch_rows: int, mesh) -> dict[str, float]:
    """Validation step BCE, step accuracy and first-error accuracy (``updates.explicit_step_loss``
    over all held-out rows at once) and the weighted mean step target."""
    logits = []
    for start in range(0, rows.num_rows, batch_rows):
        index = np.minimum(np.arange(start, start + batch_rows), rows.num_rows - 1)  # pad the last batch
        logits.append(sharding.fetch(logits_fn(params, sharding.place(rows.rows(index).sequences(), mesh)), mesh))
    z_bl = np.concatenate(logits)[:rows.num_rows]
    _, metrics = explicit_step_loss(jnp.asarray(z_bl), rows.mini_batch())
    m_bl = rows.step_ends_bl * rows.step_weights_bl
    return {"val_loss": float(metrics["loss"]), "val_step_acc": float(metrics["step_acc"]),
            "val_first_error_acc": float(metrics["first_error_acc"]),
            "val_label_mean": float(np.sum(m_bl * rows.step_targets_bl) / max(float(np.sum(m_bl)), 1e-6))}


def train_new_parameters_only(tx: optax.GradientTransformation, base_layers: int) -> optax.GradientTransformation:
    """``tx`` on an explicit PRM's parameters except the base model's: the updates of the embedding
    and of blocks ``0 .. base_layers - 1`` are set to zero after ``tx`` (so they keep their
    weights); the blocks above them, the final norm and the score head are trained by ``tx``."""
    def is_base(params):
        def base(path, _):
            keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
            return keys[:2] == ["backbone", "embed"] or (keys[:2] == ["backbone", "layers"] and keys[2] < base_layers)
        return jax.tree_util.tree_map_with_path(base, params)
    return optax.chain(tx, optax.masked(optax.set_to_zero(), is_base))
