"""Reward-model kinds trained from outcome labels: each owns its model, update, mini-batches,
validation, export and the ``reward.json`` fields it writes (``offline.train_reward`` runs them).

    ImplicitPrm  pi_phi starts as pi_base = pi_ref and is trained with the PRIME PRM loss
                 (CE: BCE(sigmoid(beta * sum_t q_it), acc_i), or DPO), q_t = log pi_phi / pi_ref;
                 its process rewards are beta * q_t, its outcome score beta * sum_t q_t
    Orm          a backbone from pi_base (or ``backbone``) and a zero score head:
                 r_i = w . h_last(x, y_i), loss = BCE(sigmoid(r_i), acc_i)

Both validate on held-out whole groups: BCE of the score, accuracy (score > 0 vs label) and
within-group pairwise accuracy. The explicit PRM, trained from step labels, is ``explicit_prm``.
A kind is a frozen settings object with these members (``RewardKind``)::

    name, curves                              reward.json's ``kind``; the validation curves plotted
    rows_per_group(data)                      a mini-batch holds whole groups of this many rows
    labelled_rows(sources)                    (train rows, validation rows, reward.json data fields)
    start(sources, tx)                        (Role of the model to train, its optimiser)
    make_update(graphdef, tx, group, shardings)   jitted (params, opt, mini-batch) -> (params, opt, metrics, ...)
    mini_batch(rows)                          the update's input for some rows
    validator(graphdef, rows, batch_rows, group, mesh)   params -> validation metrics
    title(), save(module, path, tokenizer), record(), implicit_reward()
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import jax
import numpy as np
import optax
from flax import nnx

from prime_jax import losses, sharding
from prime_jax.experience.batch import ScoredRollouts
from prime_jax.models import orm_from_backbone, save_orm, save_pretrained
from prime_jax.models.source import ModelSource
from prime_jax.reward_models.sources import RewardDataConfig, TrainingSources, backbone_path
from prime_jax.reward_models.updates import LabelledMiniBatch, PrmLossConfig, make_orm_update, make_prm_update
from prime_jax.rewards import ImplicitRewardConfig
from prime_jax.training.forward import response_logprobs
from prime_jax.training.state import Role

OUTCOME_CURVES = ("val_loss", "val_accuracy", "val_pairwise_acc")


class RewardKind(Protocol):
    """What ``offline.train_reward`` asks of a reward-model kind (see the module docstring)."""

    name: ClassVar[str]
    curves: ClassVar[tuple[str, ...]]

    def rows_per_group(self, data: RewardDataConfig) -> int: ...
    def labelled_rows(self, sources: TrainingSources) -> tuple[Any, Any, dict]: ...
    def start(self, sources: TrainingSources, tx: optax.GradientTransformation) -> tuple[Role, Any]: ...
    def make_update(self, graphdef, tx, group: int, shardings) -> Callable: ...
    def mini_batch(self, rows) -> Any: ...
    def validator(self, graphdef, rows, batch_rows: int, group: int, mesh) -> Callable[[Any], dict]: ...
    def title(self) -> str: ...
    def save(self, module, path, tokenizer) -> None: ...
    def record(self) -> dict: ...
    def implicit_reward(self) -> ImplicitRewardConfig | None: ...


def check_type(owner: str, field: str, value, types) -> None:
    """A setting of the wrong type is an error naming ``owner.field``."""
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise ValueError(f"{owner}.{field}={value!r}: expected {names}")


def outcome_rows(kind: str, sources: TrainingSources) -> tuple[ScoredRollouts, ScoredRollouts, dict]:
    """(train, validation, data fields) of the base model's outcome-labelled samples."""
    sampled = sources.sample(kind)
    return (*sampled.split(), sampled.info)


def validate_outcomes(score_fn: Callable, params, *, rows: ScoredRollouts, batch_rows: int, num_samples: int,
                      mesh) -> dict[str, float]:
    """Validation BCE, accuracy ``(score > 0) == label`` and within-group pairwise accuracy of the
    scores ``score_fn(params, LabelledMiniBatch) -> score_b`` of ``rows``."""
    scores = []
    for start in range(0, rows.num_rows, batch_rows):
        index = np.minimum(np.arange(start, start + batch_rows), rows.num_rows - 1)  # pad the last batch
        part = rows.rows(index)
        scores.append(sharding.fetch(score_fn(params, sharding.place(LabelledMiniBatch.of(part), mesh)), mesh))
    score_b = np.concatenate(scores)[:rows.num_rows]
    acc_b = rows.acc_b
    return {"val_loss": float(np.mean(losses.bce_with_clamp(score_b, acc_b))),
            "val_accuracy": float(np.mean((score_b > 0) == (acc_b > 0.5))),
            "val_pairwise_acc": float(losses.pairwise_accuracy(score_b, acc_b, num_samples=num_samples)),
            "val_label_mean": float(np.mean(acc_b))}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImplicitPrm:
    """The implicit PRM: the sampling model trained as ``pi_phi`` against itself as reference with
    ``loss`` (``PrmLossConfig``) on ``r = beta * log(pi_phi / pi_ref)`` (``reward``). Exported as a
    causal LM; ``rl.trainer.train(prm_init=...)`` and ``evaluate --prm-workdir`` take it."""

    name: ClassVar[str] = "implicit_prm"
    curves: ClassVar[tuple[str, ...]] = OUTCOME_CURVES
    reward: ImplicitRewardConfig = ImplicitRewardConfig()
    loss: PrmLossConfig = PrmLossConfig()

    def __post_init__(self):
        check_type("ImplicitPrm", "reward", self.reward, ImplicitRewardConfig)
        check_type("ImplicitPrm", "loss", self.loss, PrmLossConfig)

    def rows_per_group(self, data: RewardDataConfig) -> int:
        return data.num_samples

    def labelled_rows(self, sources: TrainingSources):
        return outcome_rows(self.name, sources)

    def start(self, sources: TrainingSources, tx):
        return sources.base, tx

    def make_update(self, graphdef, tx, group: int, shardings):
        return make_prm_update(graphdef, tx, self.loss, self.reward, group, shardings)

    def mini_batch(self, rows: ScoredRollouts) -> LabelledMiniBatch:
        return LabelledMiniBatch.of(rows)

    def validator(self, graphdef, rows: ScoredRollouts, batch_rows: int, group: int, mesh):
        """Validation of the outcome score ``beta * sum_t q_t``."""
        beta = self.reward.beta
        score_fn = jax.jit(lambda params, mb: beta * losses.sequence_scores(
            response_logprobs(graphdef, params, mb.sequences), mb.ref_logp_bl, mb.sequences.response_mask_bl))
        return functools.partial(validate_outcomes, score_fn, rows=rows, batch_rows=batch_rows,
                                 num_samples=group, mesh=mesh)

    def title(self) -> str:
        return f"offline {self.name}"

    def save(self, module, path, tokenizer) -> None:
        save_pretrained(module, path, tokenizer=tokenizer)

    def record(self) -> dict:
        return {"backbone": None, "prm_loss": self.loss.loss}

    def implicit_reward(self) -> ImplicitRewardConfig:
        return self.reward


@dataclasses.dataclass(frozen=True, kw_only=True)
class Orm:
    """An outcome reward model: a zero score head read at the last real token, on the sampling
    model's weights or ``backbone``'s (same vocabulary; the sampling model still draws the data).
    Exported as ``*ForSequenceClassification``; ``evaluate --orm`` takes it."""

    name: ClassVar[str] = "orm"
    curves: ClassVar[tuple[str, ...]] = OUTCOME_CURVES
    backbone: ModelSource | None = None

    def __post_init__(self):
        check_type("Orm", "backbone", self.backbone, (ModelSource, type(None)))

    def rows_per_group(self, data: RewardDataConfig) -> int:
        return data.num_samples

    def labelled_rows(self, sources: TrainingSources):
        return outcome_rows(self.name, sources)

    def start(self, sources: TrainingSources, tx):
        return Role.of(orm_from_backbone(sources.backbone(self.backbone), seed=sources.seed)), tx

    def make_update(self, graphdef, tx, group: int, shardings):
        return make_orm_update(graphdef, tx, group, state_shardings=shardings)

    def mini_batch(self, rows: ScoredRollouts) -> LabelledMiniBatch:
        return LabelledMiniBatch.of(rows)

    def validator(self, graphdef, rows: ScoredRollouts, batch_rows: int, group: int, mesh):
        """Validation of the last-token score ``r``."""
        score_fn = jax.jit(lambda params, mb: nnx.merge(graphdef, params)(
            mb.sequences.tokens_bs, mb.sequences.attention_mask_bs))
        return functools.partial(validate_outcomes, score_fn, rows=rows, batch_rows=batch_rows,
                                 num_samples=group, mesh=mesh)

    def title(self) -> str:
        return f"offline {self.name}"

    def save(self, module, path, tokenizer) -> None:
        save_orm(module, path, tokenizer=tokenizer)

    def record(self) -> dict:
        return {"backbone": backbone_path(self.backbone), "prm_loss": None}

    def implicit_reward(self) -> None:
        return None
