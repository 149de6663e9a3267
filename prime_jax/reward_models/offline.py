"""Offline reward models from outcome labels: an implicit PRM or an ORM on the base policy's samples.

    data  for prompts x of the task's train split: y_1..y_n ~ pi_base(. | x), acc_i = verify(y_i)
          (the rollout, verifier pool and log-prob code of a PRIME step, no accuracy filter)
    implicit_prm  pi_phi starts as pi_base = pi_ref and is trained with the PRIME PRM loss
          (CE: BCE(sigmoid(beta * sum_t q_it), acc_i), or DPO), q_t = log pi_phi / pi_ref;
          its process rewards are beta * q_t, its outcome score beta * sum_t q_t
    orm   a backbone from pi_base and a zero score head: r_i = w . h_last(x, y_i),
          loss = BCE(sigmoid(r_i), acc_i)

Both see the same groups (prompt-disjoint train / validation split) and mini-batches of whole
groups. Each epoch logs validation loss, accuracy (score > 0 vs label) and within-group pairwise
accuracy. ``workdir`` gets ``model/`` (a Hugging Face directory: a causal LM for the implicit PRM,
``*ForSequenceClassification`` for the ORM), ``reward.json`` (kind, reference, implicit reward config, metrics),
``samples.jsonl`` (the labelled data), ``metrics.jsonl`` and ``curves.png``. One process (any
number of its devices in the mesh). The implicit PRM is
what ``rl.trainer.train(prm_init=...)`` and ``evaluate --prm-workdir`` take; the ORM is ``evaluate --orm``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Callable

import jax
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from prime_jax import losses, run_dir, sharding
from prime_jax.data import PromptPipeline, countdown_reward
from prime_jax.data.task_config import TaskConfig, load_task
from prime_jax.experience.batch import ScoredRollouts, concat
from prime_jax.experience.collect import CollectConfig, collect
from prime_jax.metrics import MetricsWriter, plot_curves
from prime_jax.models import OutcomeRewardModel, orm_from_backbone, save_orm, save_pretrained
from prime_jax.models.source import ModelSource, build_model
from prime_jax.reward_models.updates import LabelledMiniBatch, PrmLossConfig, make_orm_update, make_prm_update
from prime_jax.rewards import ImplicitRewardConfig
from prime_jax.rollout import SamplingConfig
from prime_jax.training.forward import make_logprob_fn, response_logprobs
from prime_jax.training.state import Role
from prime_jax.training.updates import shardings_of
from prime_jax.verifiers import VerifierPool

KINDS = run_dir.REWARD_KINDS


@dataclasses.dataclass(frozen=True, kw_only=True)
class RewardDataConfig:
    """``num_prompts`` train prompts x ``num_samples`` samples, drawn ``rollout_prompts`` prompts
    at a time; the last ``val_fraction`` of the prompts (whole groups) is held out."""

    num_prompts: int = 4096
    num_samples: int = 4
    rollout_prompts: int = 256
    val_fraction: float = 0.1


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


def fit_epoch(kind: str, update_fn: Callable, params, opt_state, rows: ScoredRollouts, mini_batch: int,
              micro_batches: int, mesh, desc: str):
    """One pass over ``rows`` in order, ``mini_batch`` rows an update (a last partial batch is
    dropped); returns the new weights, optimiser state and the mean ``train_*`` metrics."""
    parts = []
    for start in tqdm(range(0, rows.num_rows - mini_batch + 1, mini_batch), desc=desc):
        rows_mb = rows.rows(np.arange(start, start + mini_batch))
        mb = sharding.place(LabelledMiniBatch.of(rows_mb), mesh, micro=micro_batches)
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
                 prm_loss: PrmLossConfig = PrmLossConfig(),
                 optimizer: optax.GradientTransformation | None = None, epochs: int = 1,
                 mini_batch: int = 64, micro_batches: int = 1, mesh: sharding.MeshConfig = sharding.MeshConfig(),
                 seed: int = 0, verifier_workers: int = 2, log: Callable[[str], None] = print) -> dict:
    """Sample, label and train one reward model (see the module docstring); returns reward.json."""
    if kind not in KINDS:
        raise ValueError(f"train_reward kind={kind!r}: expected one of {KINDS}")
    if jax.process_count() > 1:
        raise ValueError("train_reward runs in a single process (its devices may form any mesh)")
    if mini_batch % data.num_samples:
        raise ValueError(f"mini_batch={mini_batch} must hold whole groups of num_samples={data.num_samples}")
    workdir_path = pathlib.Path(workdir)
    workdir_path.mkdir(parents=True, exist_ok=True)
    device_mesh = sharding.make_mesh(mesh)
    optimizer = optimizer or optax.adamw(1e-6, weight_decay=0.0)
    task_data = load_task(task)
    tokenizer = task_data.tokenizer
    base = Role.of(build_model(model, device_mesh, seed=seed))
    reference_dir = _base_dir(model, workdir_path, tokenizer, base)  # before training donates its buffers
    pipeline = PromptPipeline(task_data.train_prompts[:data.num_prompts], tokenizer, num_samples=data.num_samples,
                              max_prompt_length=task.max_prompt_length, seed=seed)
    t0 = time.time()
    abilities = {r.ability for r in pipeline.records}
    with VerifierPool(verifier_workers, scorers={"countdown": countdown_reward}, abilities=abilities) as pool, \
            jax.set_mesh(device_mesh):
        rows = collect_labelled(base, pipeline, pool, tokenizer, sampling, data, device_mesh, jax.random.key(seed))
    groups = rows.num_rows // data.num_samples
    val_groups = max(1, round(groups * data.val_fraction))
    val_from = (groups - val_groups) * data.num_samples
    train_rows, val_rows = rows.rows(np.arange(val_from)), rows.rows(np.arange(val_from, rows.num_rows))
    _write_samples(workdir_path / "samples.jsonl", rows, val_from)
    log(f"{kind}: {rows.num_rows} samples of {groups} prompts in {time.time() - t0:.1f}s, label mean "
        f"{rows.acc_b.mean():.3f}; {val_groups} prompts held out")

    role = Role.of(orm_from_backbone(base.module(), seed=seed)) if kind == "orm" else base
    params = role.params
    opt_state = sharding.replicate_unsharded(jax.jit(optimizer.init)(params), device_mesh)
    shardings = (shardings_of(params), shardings_of(opt_state))
    if kind == "orm":
        update_fn = make_orm_update(role.graphdef, optimizer, data.num_samples, state_shardings=shardings)
    else:
        update_fn = make_prm_update(role.graphdef, optimizer, prm_loss, reward, data.num_samples, shardings)
    score_fn = _score_fn(kind, role.graphdef, reward.beta)
    writer = MetricsWriter(workdir_path)
    rng = np.random.default_rng(seed)
    step, history = 0, []
    with jax.set_mesh(device_mesh):
        history.append(writer.write(0, validate(score_fn, params, val_rows, mini_batch, data.num_samples, device_mesh)))
        log(json.dumps(history[-1]))
        for epoch in range(1, epochs + 1):
            order = (rng.permutation(train_rows.num_rows // data.num_samples)[:, None] * data.num_samples
                     + np.arange(data.num_samples)).ravel()  # whole groups, shuffled
            params, opt_state, train_means = fit_epoch(kind, update_fn, params, opt_state, train_rows.rows(order),
                                                       mini_batch, micro_batches, device_mesh, f"{kind} epoch {epoch}")
            step += train_rows.num_rows // mini_batch
            row = {"epoch": epoch, **train_means,
                   **validate(score_fn, params, val_rows, mini_batch, data.num_samples, device_mesh)}
            history.append(writer.write(step, row))
            log(json.dumps(history[-1]))
    writer.close()
    plot_curves(writer.jsonl_path, workdir_path / "curves.png",
                keys=("val_loss", "val_accuracy", "val_pairwise_acc"), title=f"offline {kind} on {task.name}")
    trained = role.module(params)
    out = workdir_path / "model"
    (save_orm if isinstance(trained, OutcomeRewardModel) else save_pretrained)(trained, out, tokenizer=tokenizer)
    summary = {"kind": kind, "model": str(out.absolute()), "reference": reference_dir,
               "prm_loss": prm_loss.loss if kind == "implicit_prm" else None,
               "task": task.name, "num_samples": rows.num_rows, "label_mean": float(rows.acc_b.mean()),
               "steps": step, "initial": history[0], "final": history[-1]}
    run_dir.write_reward_model_info(workdir_path, summary, reward if kind == "implicit_prm" else None)
    log(f"{kind}: {step} updates; saved {out}")
    return summary


def _base_dir(model: ModelSource, workdir: pathlib.Path, tokenizer, base: Role) -> str:
    """The reference model's HF directory (a fresh init is saved beside the reward model)."""
    if model.hf_path:
        return str(pathlib.Path(model.hf_path).absolute())
    path = workdir / "base_model"
    save_pretrained(base.module(), path, tokenizer=tokenizer)
    return str(path.absolute())
