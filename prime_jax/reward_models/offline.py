"""Offline reward models: an implicit PRM or an ORM from outcome labels, an explicit PRM from step labels.

    data  for prompts x of the task's train split: y_1..y_n ~ pi_base(. | x), acc_i = verify(y_i)
          (the rollout, verifier pool and log-prob code of a PRIME step, no accuracy filter)
    implicit_prm  pi_phi starts as pi_base = pi_ref and is trained with the PRIME PRM loss
          (CE: BCE(sigmoid(beta * sum_t q_it), acc_i), or DPO), q_t = log pi_phi / pi_ref;
          its process rewards are beta * q_t, its outcome score beta * sum_t q_t
    orm   a backbone from pi_base (or from another model, ``backbone``) and a zero score head:
          r_i = w . h_last(x, y_i), loss = BCE(sigmoid(r_i), acc_i)
    explicit_prm  a backbone from pi_base (or ``backbone``) and a zero per-token score head, read
          at each step end e_k (``data.steps``, delimiter ``ImplicitRewardConfig.step_delimiter``):
          p_ik = sigmoid(z_i[e_k]), loss = sum_ik w_ik BCE(p_ik, y_ik) / sum_ik w_ik with step
          labels y from ``StepLabelConfig.labels``: "exact" (the synthetic task's exact labels of
          each sample, ``data.synthetic.exact_step_labels``), "mc_hard" / "mc_soft" (Math-Shepherd
          labels of a ``reward_models.mc_labels`` file; no sampling here); w = 1, or 0 after the
          first wrong step (``up_to_first_error``, Let's Verify's convention), times
          ``wrong_step_weight`` on wrong steps

All kinds see mini-batches of whole groups with a prompt-disjoint train / validation split (the
same samples for a given seed and base model; Monte-Carlo rows are split by their prompt index).
Each epoch logs validation loss, accuracy (score > 0 vs label) and within-group pairwise accuracy,
or for the explicit PRM step BCE, step accuracy and first-error accuracy (the first step with
p < 0.5 is the first labelled error, or neither has one). ``workdir`` gets ``model/`` (a Hugging
Face directory: a causal LM for the implicit PRM, ``*ForSequenceClassification`` for the ORM,
``*ForTokenClassification`` for the explicit PRM), ``reward.json`` (kind, reference, implicit
reward config, metrics), ``samples.jsonl`` (the sampled, outcome-labelled data), ``metrics.jsonl``
and ``curves.png``. One process (any number of its devices in the mesh). The implicit PRM is what
``rl.trainer.train(prm_init=...)`` and ``evaluate --prm-workdir`` take; the ORM is ``evaluate --orm``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from prime_jax import losses, run_dir, sharding
from prime_jax.config_checks import check_choice, check_positive
from prime_jax.data import OUTCOME_SCORERS, PromptPipeline
from prime_jax.data.task_config import TaskConfig, load_task
from prime_jax.experience.batch import ScoredRollouts, concat
from prime_jax.experience.collect import CollectConfig, collect
from prime_jax.metrics import MetricsWriter, plot_curves
from prime_jax.models import (ExplicitPRM, OutcomeRewardModel, explicit_prm_from_backbone, orm_from_backbone,
                              save_explicit_prm, save_orm, save_pretrained)
from prime_jax.models.source import ModelSource, build_model
from prime_jax.reward_models.step_rows import (StepRows, balance_step_weights, exact_step_rows, mc_step_rows,
                                               weight_wrong_steps)
from prime_jax.reward_models.updates import (LabelledMiniBatch, PrmLossConfig, explicit_step_loss,
                                             make_explicit_prm_update, make_orm_update, make_prm_update)
from prime_jax.rewards import ImplicitRewardConfig
from prime_jax.rollout import SamplingConfig
from prime_jax.training.forward import make_logprob_fn, response_logprobs
from prime_jax.training.run_config import RunConfig
from prime_jax.training.state import Role, init_optimizer
from prime_jax.training.updates import shardings_of
from prime_jax.verifiers import VerifierPool

KINDS = run_dir.REWARD_KINDS
STEP_LABELS = ("exact", "mc_hard", "mc_soft")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RewardDataConfig:
    """``num_prompts`` train prompts x ``num_samples`` samples, drawn ``rollout_prompts`` prompts
    at a time; the last ``val_fraction`` of the prompts (whole groups) is held out."""

    num_prompts: int = 4096
    num_samples: int = 4
    rollout_prompts: int = 256
    val_fraction: float = 0.1


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepLabelConfig:
    """Where the explicit PRM's step labels come from (read only by kind ``explicit_prm``).

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


def collect_labelled(base: Role, pipeline: PromptPipeline, pool, tokenizer, sampling: SamplingConfig,
                     data: RewardDataConfig, mesh, key: jax.Array) -> ScoredRollouts:
    """Every sampled group, verified, with ``old_logp`` = ``ref_logp`` = the base model's log-probs
    (the base model samples the data and is the implicit PRM's reference)."""
    rounds = -(-data.num_prompts // data.rollout_prompts)
    config = CollectConfig(num_samples=data.num_samples, batch_prompts=data.rollout_prompts,
                           filter_accuracy=False, max_rollout_rounds=1)
    logprob_fn = make_logprob_fn(base.graphdef)
    parts = []
    for r in tqdm(range(rounds), desc="sample"):
        batch, _, _ = collect(
            policy=base, policy_params=base.params, reference_params=None, logprob_fn=logprob_fn,
            pipeline=pipeline, surplus=[], pool=pool, tokenizer=tokenizer, sampling=sampling, config=config,
            mesh=mesh, key=jax.random.fold_in(key, r))
        parts.append(dataclasses.replace(batch, ref_logp_bl=batch.old_logp_bl))
    return concat(parts)


def _score_fn(kind: str, graphdef, beta: float) -> Callable:
    """Jitted ``(params, LabelledMiniBatch) -> score_b``: ``beta * sum_t q_t`` or the ORM's ``r``."""
    if kind == "orm":
        return jax.jit(lambda params, mb: nnx.merge(graphdef, params)(
            mb.sequences.tokens_bs, mb.sequences.attention_mask_bs))
    return jax.jit(lambda params, mb: beta * losses.sequence_scores(
        response_logprobs(graphdef, params, mb.sequences), mb.ref_logp_bl, mb.sequences.response_mask_bl))


def validate(score_fn: Callable, params, rows: ScoredRollouts, batch_rows: int, num_samples: int,
             mesh) -> dict[str, float]:
    """Validation BCE, accuracy ``(score > 0) == label`` and within-group pairwise accuracy."""
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


def validate_steps(logits_fn: Callable, params, rows: StepRows, batch_rows: int, mesh) -> dict[str, float]:
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


def fit_epoch(kind: str, update_fn: Callable, params, opt_state, rows: ScoredRollouts | StepRows, mini_batch: int,
              micro_batches: int, mesh, desc: str):
    """One pass over ``rows`` in order, ``mini_batch`` rows an update (a last partial batch is
    dropped); returns the new weights, optimiser state and the mean ``train_*`` metrics."""
    parts = []
    for start in tqdm(range(0, rows.num_rows - mini_batch + 1, mini_batch), desc=desc):
        rows_mb = rows.rows(np.arange(start, start + mini_batch))
        batch = rows_mb.mini_batch() if kind == "explicit_prm" else LabelledMiniBatch.of(rows_mb)
        mb = sharding.place(batch, mesh, micro=micro_batches)
        params, opt_state, metrics, *_ = update_fn(params, opt_state, mb)
        parts.append({k: float(v) for k, v in metrics.items()})
    return params, opt_state, {f"train_{k}": float(np.mean([p[k] for p in parts])) for k in parts[0]} if parts else {}


def _write_samples(path: pathlib.Path, rows: ScoredRollouts, val_from: int) -> None:
    with path.open("w") as f:
        for i in range(rows.num_rows):
            f.write(json.dumps({"prompt_index": int(rows.prompt_index_b[i]), "response": rows.responses[i],
                                "ground_truth": rows.ground_truth[i], "label": float(rows.acc_b[i]),
                                "split": "val" if i >= val_from else "train"}) + "\n")


def train_reward(*, workdir: str, kind: str = "implicit_prm", task: TaskConfig = TaskConfig(),
                 model: ModelSource = ModelSource(), data: RewardDataConfig = RewardDataConfig(),
                 sampling: SamplingConfig = SamplingConfig(max_new_tokens=3072),
                 reward: ImplicitRewardConfig = ImplicitRewardConfig(),
                 prm_loss: PrmLossConfig = PrmLossConfig(), step_labels: StepLabelConfig = StepLabelConfig(),
                 optimizer: optax.GradientTransformation | None = None, epochs: int = 1,
                 mini_batch: int = 64, micro_batches: int = 1, backbone: ModelSource | None = None,
                 extra_layers: int = 0, freeze_base: bool = False, run: RunConfig = RunConfig(),
                 log: Callable[[str], None] = print) -> dict:
    """Sample, label and train one reward model (see the module docstring); returns reward.json.

    ``backbone`` (explicit PRM and ORM only): the reward model starts from this model's weights
    (same vocabulary) instead of ``model``'s; ``model`` still samples the solutions it learns from
    (a verifier larger than the policy, as Let's Verify's and Math-Shepherd's were).
    ``extra_layers`` (explicit PRM only): new identity-initialised blocks stacked on the base
    model's (``models.explicit_prm_from_backbone``). ``freeze_base`` (explicit PRM only): the base
    model's embedding and blocks keep their weights (``train_new_parameters_only``), so its
    next-token features stay what the head and the new blocks read. ``run``: seed, mesh and
    verifier workers (validation runs once per epoch; the model is written at the end).
    """
    if kind not in KINDS:
        raise ValueError(f"train_reward kind={kind!r}: expected one of {KINDS}")
    if extra_layers and kind != "explicit_prm":
        raise ValueError(f"train_reward extra_layers={extra_layers}: only kind 'explicit_prm' grows its backbone, "
                         f"not {kind!r}")
    if backbone is not None and kind == "implicit_prm":
        raise ValueError("train_reward backbone: the implicit PRM starts from the sampling model itself (its "
                         "reference); only kinds 'explicit_prm' and 'orm' take another backbone")
    if freeze_base and kind != "explicit_prm":
        raise ValueError(f"train_reward freeze_base=True: only kind 'explicit_prm' has new parameters to train, "
                         f"not {kind!r}")
    if jax.process_count() > 1:
        raise ValueError("train_reward runs in a single process (its devices may form any mesh)")
    from_mc = kind == "explicit_prm" and step_labels.labels != "exact"
    group = 1 if from_mc else data.num_samples  # rows per group: a mini-batch holds whole groups
    if mini_batch % group:
        raise ValueError(f"mini_batch={mini_batch} must hold whole groups of num_samples={data.num_samples}")
    workdir_path = pathlib.Path(workdir)
    workdir_path.mkdir(parents=True, exist_ok=True)
    device_mesh = sharding.make_mesh(run.mesh)
    seed = run.seed
    optimizer = optimizer or optax.adamw(1e-6, weight_decay=0.0)
    task_data = load_task(task)
    tokenizer = task_data.tokenizer
    base = Role.of(build_model(model, device_mesh, seed=seed))
    reference_dir = _base_dir(model, workdir_path, tokenizer, base)  # before training donates its buffers
    step_options = dict(delimiter=reward.step_delimiter, up_to_first_error=step_labels.up_to_first_error)
    t0 = time.time()
    if from_mc:
        train_rows, val_rows, mc_info = mc_step_rows(step_labels.mc_labels_path, step_labels.labels, tokenizer,
                                                     val_fraction=data.val_fraction, **step_options)
        data_info = {"num_samples": train_rows.num_rows + val_rows.num_rows, "mc_labels": mc_info}
        log(f"{kind}: {data_info['num_samples']} solutions of {mc_info['num_prompts']} prompts from "
            f"{step_labels.mc_labels_path}; {mc_info['val_prompts']} prompts held out")
    else:
        pipeline = PromptPipeline(task_data.train_prompts[:data.num_prompts], tokenizer, num_samples=data.num_samples,
                                  max_prompt_length=task.max_prompt_length, seed=seed)
        abilities = {r.ability for r in pipeline.records}
        with VerifierPool(run.verifier_workers, scorers=OUTCOME_SCORERS, abilities=abilities) as pool, \
                jax.set_mesh(device_mesh):
            rows = collect_labelled(base, pipeline, pool, tokenizer, sampling, data, device_mesh, jax.random.key(seed))
        groups = rows.num_rows // data.num_samples
        val_groups = max(1, round(groups * data.val_fraction))
        val_from = (groups - val_groups) * data.num_samples
        if kind == "explicit_prm":
            rows_all = exact_step_rows(rows, pipeline.records, task.name, tokenizer, **step_options)
        else:
            rows_all = rows
        train_rows, val_rows = rows_all.rows(np.arange(val_from)), rows_all.rows(np.arange(val_from, rows.num_rows))
        _write_samples(workdir_path / "samples.jsonl", rows, val_from)
        data_info = {"num_samples": rows.num_rows, "label_mean": float(rows.acc_b.mean())}
        log(f"{kind}: {rows.num_rows} samples of {groups} prompts in {time.time() - t0:.1f}s, label mean "
            f"{rows.acc_b.mean():.3f}; {val_groups} prompts held out")
    if kind == "explicit_prm" and step_labels.balance_classes:
        train_rows = balance_step_weights(train_rows)
    if kind == "explicit_prm" and step_labels.wrong_step_weight != 1.0:
        train_rows = weight_wrong_steps(train_rows, step_labels.wrong_step_weight)

    start = base.module() if backbone is None else _other_backbone(backbone, base.module(), device_mesh, seed)
    if kind == "orm":
        role = Role.of(orm_from_backbone(start, seed=seed))
    elif kind == "explicit_prm":
        role = Role.of(explicit_prm_from_backbone(start, seed=seed, extra_layers=extra_layers))
    else:
        role = base
    params = role.params
    if freeze_base:
        optimizer = train_new_parameters_only(optimizer, role.module().config.num_layers - extra_layers)
    opt_state = sharding.replicate_unsharded(init_optimizer(optimizer, params), device_mesh)
    shardings = (shardings_of(params), shardings_of(opt_state))
    if kind == "orm":
        update_fn = make_orm_update(role.graphdef, optimizer, data.num_samples, state_shardings=shardings)
    elif kind == "explicit_prm":
        update_fn = make_explicit_prm_update(role.graphdef, optimizer, group, state_shardings=shardings)
    else:
        update_fn = make_prm_update(role.graphdef, optimizer, prm_loss, reward, data.num_samples, shardings)
    if kind == "explicit_prm":
        length = train_rows.step_ends_bl.shape[1]
        logits_fn = jax.jit(lambda p, seq: nnx.merge(role.graphdef, p)(
            seq.tokens_bs, seq.attention_mask_bs)[:, -length:])
        evaluate = lambda p: validate_steps(logits_fn, p, val_rows, mini_batch, device_mesh)  # noqa: E731
        curves = ("val_loss", "val_step_acc", "val_first_error_acc")
    else:
        score_fn = _score_fn(kind, role.graphdef, reward.beta)
        evaluate = lambda p: validate(score_fn, p, val_rows, mini_batch, data.num_samples, device_mesh)  # noqa: E731
        curves = ("val_loss", "val_accuracy", "val_pairwise_acc")
    writer = MetricsWriter(workdir_path)
    rng = np.random.default_rng(seed)
    step, history = 0, []
    with jax.set_mesh(device_mesh):
        history.append(writer.write(0, evaluate(params)))
        log(json.dumps(history[-1]))
        for epoch in range(1, epochs + 1):
            order = (rng.permutation(train_rows.num_rows // group)[:, None] * group
                     + np.arange(group)).ravel()  # whole groups, shuffled
            params, opt_state, train_means = fit_epoch(kind, update_fn, params, opt_state, train_rows.rows(order),
                                                       mini_batch, micro_batches, device_mesh, f"{kind} epoch {epoch}")
            step += train_rows.num_rows // mini_batch
            history.append(writer.write(step, {"epoch": epoch, **train_means, **evaluate(params)}))
            log(json.dumps(history[-1]))
    writer.close()
    title = f"offline {kind}" + (f" ({step_labels.labels} labels)" if kind == "explicit_prm" else "")
    plot_curves(writer.jsonl_path, workdir_path / "curves.png", keys=curves, title=f"{title} on {task.name}")
    trained = role.module(params)
    out = workdir_path / "model"
    if isinstance(trained, ExplicitPRM):
        save_explicit_prm(trained, out, tokenizer=tokenizer)
    else:
        (save_orm if isinstance(trained, OutcomeRewardModel) else save_pretrained)(trained, out, tokenizer=tokenizer)
    summary = {"kind": kind, "model": str(out.absolute()), "reference": reference_dir,
               "backbone": str(pathlib.Path(backbone.hf_path).absolute()) if backbone and backbone.hf_path else None,
               "prm_loss": prm_loss.loss if kind == "implicit_prm" else None,
               "task": task.name, **data_info, "steps": step, "initial": history[0], "final": history[-1]}
    if kind == "explicit_prm":
        summary.update(step_labels=dataclasses.asdict(step_labels), step_delimiter=reward.step_delimiter)
    run_dir.write_reward_model_info(workdir_path, summary, reward if kind == "implicit_prm" else None)
    log(f"{kind}: {step} updates; saved {out}")
    return summary


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


def _other_backbone(source: ModelSource, sampler, mesh, seed: int):
    """The reward model's starting weights from ``source``; its vocabulary must be the sampler's."""
    module = build_model(source, mesh, seed=seed)
    if module.config.vocab_size != sampler.config.vocab_size:
        raise ValueError(f"train_reward backbone {source.hf_path or 'config'}: vocab_size "
                         f"{module.config.vocab_size} differs from the sampling model's {sampler.config.vocab_size}")
    return module


def _base_dir(model: ModelSource, workdir: pathlib.Path, tokenizer, base: Role) -> str:
    """The reference model's HF directory (a fresh init is saved beside the reward model)."""
    if model.hf_path:
        return str(pathlib.Path(model.hf_path).absolute())
    path = workdir / "base_model"
    save_pretrained(base.module(), path, tokenizer=tokenizer)
    return str(path.absolute())
