"""What every offline reward model is built from: the sampling model's outcome-labelled samples and
the weights a reward model starts from.

    data      for prompts x of the task's train split: y_1..y_n ~ pi_base(. | x), acc_i = verify(y_i)
              (the rollout, verifier pool and log-prob code of a PRIME step, no accuracy filter);
              the last ``val_fraction`` of the prompts (whole groups) is held out
    backbone  pi_base itself, or another model of the same vocabulary (``ModelSource``)

``TrainingSources`` hands both to a reward-model kind (``kinds``), which turns them into its
labelled rows and its model.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Callable

import jax
import numpy as np
from tqdm import tqdm

from prime_jax.data import OUTCOME_SCORERS, PromptPipeline
from prime_jax.data.task_config import TaskConfig
from prime_jax.experience.batch import ScoredRollouts, concat
from prime_jax.experience.collect import CollectConfig, collect
from prime_jax.models.source import ModelSource, build_model
from prime_jax.rollout import SamplingConfig
from prime_jax.training.forward import make_logprob_fn
from prime_jax.training.state import Role
from prime_jax.verifiers import VerifierPool


@dataclasses.dataclass(frozen=True, kw_only=True)
class RewardDataConfig:
    """``num_prompts`` train prompts x ``num_samples`` samples, drawn ``rollout_prompts`` prompts
    at a time; the last ``val_fraction`` of the prompts (whole groups) is held out."""

    num_prompts: int = 4096
    num_samples: int = 4
    rollout_prompts: int = 256
    val_fraction: float = 0.1


@dataclasses.dataclass(frozen=True)
class SampledRows:
    """Outcome-labelled samples, ``rows`` in prompt order (``records[prompt_index]`` is each row's
    prompt record); rows ``val_from ..`` are the held-out prompts' groups. ``info``: reward.json's
    data fields."""

    rows: ScoredRollouts
    records: list
    val_from: int
    info: dict

    def split(self, rows=None) -> tuple:
        """(train, validation) rows of ``rows`` (default: the samples; any rows aligned with them)."""
        rows = self.rows if rows is None else rows
        return rows.rows(np.arange(self.val_from)), rows.rows(np.arange(self.val_from, self.rows.num_rows))


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingSources:
    """The sampling model (``base``, also the implicit PRM's reference) and its task, ready to sample
    from; ``sample`` and ``backbone`` are what a reward-model kind builds on."""

    base: Role
    task: TaskConfig
    task_data: object
    data: RewardDataConfig
    sampling: SamplingConfig
    mesh: jax.sharding.Mesh
    seed: int
    verifier_workers: int
    workdir: pathlib.Path
    log: Callable[[str], None]

    @property
    def tokenizer(self):
        return self.task_data.tokenizer

    def sample(self, kind: str) -> SampledRows:
        """The base model's verified samples of the first ``data.num_prompts`` train prompts (key
        ``seed``), written to ``samples.jsonl`` with their split."""
        data, t0 = self.data, time.time()
        pipeline = PromptPipeline(self.task_data.train_prompts[:data.num_prompts], self.tokenizer,
                                  num_samples=data.num_samples, max_prompt_length=self.task.max_prompt_length,
                                  seed=self.seed)
        abilities = {r.ability for r in pipeline.records}
        with VerifierPool(self.verifier_workers, scorers=OUTCOME_SCORERS, abilities=abilities) as pool, \
                jax.set_mesh(self.mesh):
            rows = collect_labelled(self.base, pipeline, pool, self.tokenizer, self.sampling, data, self.mesh,
                                    jax.random.key(self.seed))
        groups = rows.num_rows // data.num_samples
        val_groups = max(1, round(groups * data.val_fraction))
        val_from = (groups - val_groups) * data.num_samples
        write_samples(self.workdir / "samples.jsonl", rows, val_from)
        self.log(f"{kind}: {rows.num_rows} samples of {groups} prompts in {time.time() - t0:.1f}s, label mean "
                 f"{rows.acc_b.mean():.3f}; {val_groups} prompts held out")
        return SampledRows(rows, pipeline.records, val_from,
                           {"num_samples": rows.num_rows, "label_mean": float(rows.acc_b.mean())})

    def backbone(self, source: ModelSource | None):
        """The weights a scoring head goes on: the base model's, or ``source``'s (same vocabulary)."""
        sampler = self.base.module()
        if source is None:
            return sampler
        module = build_model(source, self.mesh, seed=self.seed)
        if module.config.vocab_size != sampler.config.vocab_size:
            raise ValueError(f"train_reward backbone {source.hf_path or 'config'}: vocab_size "
                             f"{module.config.vocab_size} differs from the sampling model's "
                             f"{sampler.config.vocab_size}")
        return module


def backbone_path(source: ModelSource | None) -> str | None:
    """reward.json's ``backbone``: the absolute path of another starting model, if it has one."""
    return str(pathlib.Path(source.hf_path).absolute()) if source and source.hf_path else None


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


def write_samples(path: pathlib.Path, rows: ScoredRollouts, val_from: int) -> None:
    """One JSON line per sample: prompt index, response, ground truth, label and split."""
    with path.open("w") as f:
        for i in range(rows.num_rows):
            f.write(json.dumps({"prompt_index": int(rows.prompt_index_b[i]), "response": rows.responses[i],
                                "ground_truth": rows.ground_truth[i], "label": float(rows.acc_b[i]),
                                "split": "val" if i >= val_from else "train"}) + "\n")
