"""Offline reward models: sample, label and train one reward-model kind, then write its directory.

    kind     ``kinds.ImplicitPrm`` or ``kinds.Orm`` (outcome labels of the sampling model's own
             samples), ``explicit_prm.ExplicitPrm`` (step labels); each owns its model, update,
             mini-batches, validation and export, ``train_reward`` only runs them
    data     ``sources.TrainingSources``: the base model's verified samples (a prompt-disjoint
             train / validation split of whole groups; the same samples for a given seed and base
             model) and the backbone a head goes on
    loop     validation, then ``epochs`` passes over the training rows in shuffled whole groups,
             ``mini_batch`` rows an update, validation after each

``workdir`` gets ``model/`` (a Hugging Face directory: a causal LM for the implicit PRM,
``*ForSequenceClassification`` for the ORM, ``*ForTokenClassification`` for the explicit PRM),
``reward.json`` (kind, reference, implicit reward config, metrics), ``samples.jsonl`` (the
sampled, outcome-labelled data), ``metrics.jsonl`` and ``curves.png``. One process (any number of
its devices in the mesh). The implicit PRM is what ``rl.trainer.train(prm_init=...)`` and
``evaluate --prm-workdir`` take; the ORM is ``evaluate --orm``.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable

import jax
import numpy as np
import optax
from tqdm import tqdm

from prime_jax import run_dir, sharding
from prime_jax.data.task_config import TaskConfig, load_task
from prime_jax.metrics import MetricsWriter, plot_curves
from prime_jax.models import save_pretrained
from prime_jax.models.source import ModelSource, build_model
from prime_jax.reward_models.explicit_prm import ExplicitPrm
from prime_jax.reward_models.kinds import ImplicitPrm, Orm, RewardKind
from prime_jax.reward_models.sources import RewardDataConfig, TrainingSources
from prime_jax.reward_models.step_rows import StepLabelConfig  # noqa: F401  (gin binds offline.StepLabelConfig)
from prime_jax.rollout import SamplingConfig
from prime_jax.training.run_config import RunConfig
from prime_jax.training.state import Role, init_optimizer
from prime_jax.training.updates import shardings_of

KIND_CLASSES = {cls.name: cls for cls in (ImplicitPrm, Orm, ExplicitPrm)}


def kind_of(kind: RewardKind | str) -> RewardKind:
    """``kind`` itself, or for a name (``run_dir.REWARD_KINDS``) that kind with its default settings."""
    if isinstance(kind, tuple(KIND_CLASSES.values())):
        return kind
    if isinstance(kind, str) and kind in KIND_CLASSES:
        return KIND_CLASSES[kind]()
    raise ValueError(f"train_reward kind={kind!r}: expected one of {tuple(KIND_CLASSES)} or an ImplicitPrm, "
                     "Orm or ExplicitPrm")


def fit_epoch(kind: RewardKind, update_fn: Callable, params, opt_state, rows, mini_batch: int, micro_batches: int,
              mesh, desc: str):
    """One pass over ``rows`` in order, ``mini_batch`` rows an update (a last partial batch is
    dropped); returns the new weights, optimiser state and the mean ``train_*`` metrics."""
    parts = []
    for start in tqdm(range(0, rows.num_rows - mini_batch + 1, mini_batch), desc=desc):
        mb = sharding.place(kind.mini_batch(rows.rows(np.arange(start, start + mini_batch))), mesh,
                            micro=micro_batches)
        params, opt_state, metrics, *_ = update_fn(params, opt_state, mb)
        parts.append({k: float(v) for k, v in metrics.items()})
    return params, opt_state, {f"train_{k}": float(np.mean([p[k] for p in parts])) for k in parts[0]} if parts else {}


def train_reward(*, workdir: str, kind: RewardKind | str = ImplicitPrm(), task: TaskConfig = TaskConfig(),
                 model: ModelSource = ModelSource(), data: RewardDataConfig = RewardDataConfig(),
                 sampling: SamplingConfig = SamplingConfig(max_new_tokens=3072),
                 optimizer: optax.GradientTransformation | None = None, epochs: int = 1, mini_batch: int = 64,
                 micro_batches: int = 1, run: RunConfig = RunConfig(), log: Callable[[str], None] = print) -> dict:
    """Sample, label and train one reward model of ``kind`` (see the module docstring); returns
    reward.json. ``kind``: an ``ImplicitPrm``, ``Orm`` or ``ExplicitPrm``, or its name for its
    defaults. ``model`` samples the data (and is the implicit PRM's reference); ``optimizer``
    defaults to AdamW at 1e-6. ``run``: seed, mesh and verifier workers (validation runs once per
    epoch; the model is written at the end)."""
    kind = kind_of(kind)
    group = kind.rows_per_group(data)  # a mini-batch holds whole groups
    if mini_batch % group:
        raise ValueError(f"mini_batch={mini_batch} must hold whole groups of {group} rows (num_samples="
                         f"{data.num_samples})")
    if jax.process_count() > 1:
        raise ValueError("train_reward runs in a single process (its devices may form any mesh)")
    workdir_path = pathlib.Path(workdir)
    workdir_path.mkdir(parents=True, exist_ok=True)
    mesh, seed, task_data = sharding.make_mesh(run.mesh), run.seed, load_task(task)
    base = Role.of(build_model(model, mesh, seed=seed))
    reference_dir = _base_dir(model, workdir_path, task_data.tokenizer, base)  # before training donates buffers
    sources = TrainingSources(base=base, task=task, task_data=task_data, data=data, sampling=sampling, mesh=mesh,
                              seed=seed, verifier_workers=run.verifier_workers, workdir=workdir_path, log=log)
    train_rows, val_rows, data_info = kind.labelled_rows(sources)
    role, optimizer = kind.start(sources, optimizer or optax.adamw(1e-6, weight_decay=0.0))
    params = role.params
    opt_state = sharding.replicate_unsharded(init_optimizer(optimizer, params), mesh)
    update_fn = kind.make_update(role.graphdef, optimizer, group, (shardings_of(params), shardings_of(opt_state)))
    evaluate = kind.validator(role.graphdef, val_rows, mini_batch, group, mesh)
    writer = MetricsWriter(workdir_path)
    rng = np.random.default_rng(seed)
    step, history = 0, []
    with jax.set_mesh(mesh):
        history.append(writer.write(0, evaluate(params)))
        log(json.dumps(history[-1]))
        for epoch in range(1, epochs + 1):
            order = (rng.permutation(train_rows.num_rows // group)[:, None] * group
                     + np.arange(group)).ravel()  # whole groups, shuffled
            params, opt_state, train_means = fit_epoch(kind, update_fn, params, opt_state, train_rows.rows(order),
                                                       mini_batch, micro_batches, mesh, f"{kind.name} epoch {epoch}")
            step += train_rows.num_rows // mini_batch
            history.append(writer.write(step, {"epoch": epoch, **train_means, **evaluate(params)}))
            log(json.dumps(history[-1]))
    writer.close()
    plot_curves(writer.jsonl_path, workdir_path / "curves.png", keys=kind.curves,
                title=f"{kind.title()} on {task.name}")
    out = workdir_path / "model"
    kind.save(role.module(params), out, task_data.tokenizer)
    summary = {"kind": kind.name, "model": str(out.absolute()), "reference": reference_dir, **kind.record(),
               "task": task.name, **data_info, "steps": step, "initial": history[0], "final": history[-1]}
    run_dir.write_reward_model_info(workdir_path, summary, kind.implicit_reward())
    log(f"{kind.name}: {step} updates; saved {out}")
    return summary


def _base_dir(model: ModelSource, workdir: pathlib.Path, tokenizer, base: Role) -> str:
    """The reference model's HF directory (a fresh init is saved beside the reward model)."""
    if model.hf_path:
        return str(pathlib.Path(model.hf_path).absolute())
    path = workdir / "base_model"
    save_pretrained(base.module(), path, tokenizer=tokenizer)
    return str(path.absolute())
