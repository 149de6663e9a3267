"""``train(...)``: the RL loop (SPEC 1); it only sequences the stages.

    for step:  collect (rollout -> verify in the pool, overlapped -> accuracy filter, + buffer)
               -> rl.step.rl_step (process-reward source -> advantages -> PPO mini-batches)
               -> metrics / eval / checkpoint

The process-reward source is a row of ``rl.step.SOURCES``: the online implicit PRM (PRIME), the
policy as its own implicit PRM (``PrimeConfig.self_prm``: SPRO), a frozen step verifier
(``PrimeConfig.explicit_prm``: step-by-step PPO, PAV-RL) or none (RLOO with the outcome only).
Policy, reference and PRM are independent copies of the SFT weights (a local HF directory, or the
SFT warm-up's output); ``PrimeConfig.prm_init`` starts the PRM from other weights instead. Loop
settings (seed, mesh, cadence, verifier workers) are ``RunConfig``'s. Everything a step needs to be
reproduced - weights, optimiser states, RNG, data position, surplus prompts -
is checkpointed, so a resumed run repeats exactly what an uninterrupted run
would have done.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from prime_jax import run_dir, sharding
from prime_jax.checkpoint import Checkpointer
from prime_jax.data import OUTCOME_SCORERS, PromptPipeline
from prime_jax.data.steps import delimiter_ids
from prime_jax.data.task_config import TaskConfig, load_task
from prime_jax.experience.collect import collect
from prime_jax.experience.greedy import evaluate_accuracy, greedy
from prime_jax.metrics import MetricsWriter, as_row, plot_curves
from prime_jax.models.source import ModelSource, build_model, save_model
from prime_jax.rl import online_prm, step
from prime_jax.rl.config import PrimeConfig
from prime_jax.rl.policy_update import make_policy_update
from prime_jax.rl.report import closing_summary, step_line
from prime_jax.rl.reward_source import SourceSettings
from prime_jax.rl.sft import SFTConfig, run_sft
from prime_jax.rollout import SamplingConfig
from prime_jax.training.forward import make_logprob_fn
from prime_jax.training.run_config import RunConfig
from prime_jax.training.state import Role, TrainState, make_train_state
from prime_jax.training.updates import shardings_of
from prime_jax.verifiers import VerifierPool


class NonFiniteError(RuntimeError):
    """Too many consecutive steps whose updates were skipped for non-finite gradients."""


def _copy(params):
    """An independent copy (updates donate their inputs; roles must not share buffers)."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True), params)


def _gather_lists(values: list[int]) -> list[list[int]]:
    """Every process's list (of any length), in process order."""
    lengths = sharding.all_processes(np.array([len(values)]))[:, 0]
    padded = np.full(int(lengths.max(initial=0)) or 1, -1, np.int64)
    padded[:len(values)] = values
    table = sharding.all_processes(padded)
    return [table[i, :n].tolist() for i, n in enumerate(lengths)]


def batch_rows(prime: PrimeConfig, sft: SFTConfig | None, run: RunConfig) -> dict[str, int]:
    """The global rows of each batch the run lays over the mesh's batch shards, by the settings
    that size it."""
    n = prime.collect.num_samples
    rows = {"rollout round (CollectConfig prompts per round x num_samples)": prime.collect.prompts_per_round * n,
            "PrimeConfig.policy_mini_batch / policy_micro_batches":
                prime.policy_mini_batch // prime.policy_micro_batches}
    if run.eval_every > 0:
        rows["RunConfig.eval_batch_prompts"] = run.eval_batch_prompts
    if prime.uses_prm:
        rows["PrimeConfig.prm_mini_batch / prm_micro_batches"] = prime.prm_mini_batch // prime.prm_micro_batches
    if sft is not None and sft.steps > 0:
        rows["SFTConfig.batch_size / micro_batches"] = sft.batch_size // sft.micro_batches
    return rows


def warn_undivided(mesh, rows_by_name: dict[str, int], log: Callable[[str], None]) -> None:
    """Log the batches the mesh's batch shards do not divide (they run replicated, no faster)."""
    undivided = sharding.undivided_batches(mesh, rows_by_name)
    if undivided:
        log(f"warning: the mesh's {sharding.data_parallel_size(mesh)} batch shards (data x fsdp) do not "
            f"divide {', '.join(undivided)}; those batches run replicated, every shard computing all their "
            "rows. Pick MeshConfig.data (or JAX_NUM_CPU_DEVICES on a CPU) to divide them.")


def initial_policy(workdir: pathlib.Path, model: ModelSource, sft: SFTConfig | None, task_data,
                   mesh, seed: int, log) -> Role:
    """The SFT model: reloaded from ``workdir/sft_model`` if a warm-up already ran."""
    sft_dir = run_dir.sft_model_dir(workdir)
    if (sft_dir / "config.json").exists():
        log(f"loading the SFT model from {sft_dir}")
        source = dataclasses.replace(model, hf_path=str(sft_dir))
        return Role.of(build_model(source, mesh, seed=seed))
    role = Role.of(build_model(model, mesh, seed=seed))
    if sft is not None and sft.steps > 0:
        if not task_data.sft_examples:
            raise ValueError("SFTConfig given, but the task has no SFT examples (use sft=None)")
        role = run_sft(role, task_data.sft_examples, task_data.tokenizer, sft, mesh, workdir=workdir, log=log)
    elif not model.hf_path:  # a fresh init is kept too, so resume and export find the same weights
        save_model(role.module(), sft_dir, task_data.tokenizer, mesh)
    return role


def base_model_dir(workdir: pathlib.Path, model: ModelSource) -> pathlib.Path:
    """Where the run's initial weights (= the reference) live as a Hugging Face directory."""
    sft_dir = run_dir.sft_model_dir(workdir)
    return sft_dir if (sft_dir / "config.json").exists() or not model.hf_path else pathlib.Path(model.hf_path)


def initial_state(policy: Role, prime: PrimeConfig, model: ModelSource, policy_tx, prm_tx, mesh,
                  seed: int) -> tuple[TrainState, object]:
    """The train state (policy, and the process-reward source's own weights if it trains any) and
    the frozen reference's weights (None when nothing reads them). Three independent weight
    copies (updates donate their inputs); ``policy``'s buffers become the trainable policy's."""
    source = step.source_class(prime)
    reference_params = _copy(policy.params) if (source.reads_reference or prime.policy_loss.kl_coef) else None
    prm_params = None
    if source.trains_weights:
        prm_params = online_prm.initial_prm(prime.prm_init, model, policy, mesh, seed) if prime.prm_init \
            else _copy(policy.params)
    state = make_train_state(policy.params, prm_params, policy_tx, prm_tx if source.trains_weights else None, seed)
    return sharding.replicate_unsharded(state, mesh), reference_params


class _Run:
    """What the loop of one ``train`` call carries from step to step, and its bookkeeping:
    checkpoint, metrics row, evaluation."""

    def __init__(self, workdir: pathlib.Path, steps: int, task: TaskConfig, task_data, run: RunConfig,
                 sampling: SamplingConfig, mesh, state: TrainState, pipeline: PromptPipeline, lead: bool, log):
        self.workdir, self.steps, self.task, self.task_data, self.run = workdir, steps, task, task_data, run
        self.sampling, self.mesh, self.state, self.pipeline, self.log = sampling, mesh, state, pipeline, log
        self.checkpointer = Checkpointer(run_dir.checkpoint_dir(workdir))
        self.writer = MetricsWriter(workdir) if lead else None
        self.surplus: list[int] = []
        self.nonfinite_run = 0
        self.rows: list[dict] = []
        if self.checkpointer.latest_step() is not None:
            self.state, meta = self.checkpointer.restore(self.state)
            pipeline.restore(meta["pipeline"])
            self.surplus = list(meta["surplus"][jax.process_index()])
            self.nonfinite_run = int(meta["nonfinite_run"])
            log(f"resumed from step {int(self.state.step)} ({self.checkpointer.directory})")
        if self.writer:
            self.writer.truncate_after(int(self.state.step) if int(self.state.step) else -1)  # steps to be redone

    def save(self, step: int) -> None:
        self.checkpointer.save(step, self.state, {"pipeline": self.pipeline.state(),
                                                  "surplus": _gather_lists(self.surplus),
                                                  "nonfinite_run": self.nonfinite_run})

    def record(self, step: int, metrics: dict) -> None:
        row = self.writer.write(step, metrics) if self.writer else as_row(step, metrics)
        self.log(step_line(row))
        self.rows.append(row)

    def evaluate(self, policy: Role, pool) -> dict:
        return evaluate_accuracy(policy.module(self.state.policy_params), self.task_data.eval_prompts,
                                 self.task_data.tokenizer, pool, greedy(self.sampling), mesh=self.mesh,
                                 batch_prompts=self.run.eval_batch_prompts,
                                 max_prompt_length=self.task.max_prompt_length, seed=self.run.seed)

    def evaluates_at(self, step: int) -> bool:
        every = self.run.eval_every
        return bool(every and self.task_data.eval_prompts and (step % every == 0 or step == self.steps))

    def after_step(self, step: int, max_nonfinite_steps: int) -> None:
        """Stop on a run of non-finite steps (with a checkpoint), else checkpoint on schedule."""
        if self.nonfinite_run >= max_nonfinite_steps:
            self.save(step)
            raise NonFiniteError(
                f"{self.nonfinite_run} consecutive steps had non-finite gradients (updates skipped); "
                f"stopped at step {step} with a usable checkpoint in {self.checkpointer.directory}")
        if step % self.run.checkpoint_every == 0 or step == self.steps:
            self.save(step)

    def close(self, uses_prm: bool) -> list[dict]:
        if self.writer:
            self.writer.close()
            plot_curves(self.writer.jsonl_path, self.workdir / "curves.png", title=f"PRIME on {self.task.name}")
        self.log(closing_summary(self.rows, self.workdir.absolute(), last_checkpoint=self.checkpointer.latest_step(),
                                 uses_prm=uses_prm))
        self.checkpointer.close()
        return self.rows


def train(*, workdir: str, steps: int, task: TaskConfig = TaskConfig(), model: ModelSource = ModelSource(),
          sft: SFTConfig | None = None, prime: PrimeConfig = PrimeConfig(),
          sampling: SamplingConfig = SamplingConfig(max_new_tokens=3072),
          policy_optimizer: optax.GradientTransformation | None = None,
          prm_optimizer: optax.GradientTransformation | None = None, run: RunConfig = RunConfig(),
          after_first_step: Callable[[], None] | None = None, log: Callable[[str], None] = print) -> list[dict]:
    """Run RL until ``steps`` RL steps are done (continuing a checkpointed run):
    ``collect -> rl_step (process rewards, advantages, PPO) -> record / evaluate / checkpoint``."""
    workdir_path = pathlib.Path(workdir)
    workdir_path.mkdir(parents=True, exist_ok=True)
    sharding.maybe_initialize_distributed()
    lead = jax.process_index() == 0  # the process that writes files and logs
    log = log if lead else (lambda message: None)
    mesh = sharding.make_mesh(run.mesh)
    policy_tx = policy_optimizer or optax.adamw(5e-7, weight_decay=0.01)
    prm_tx = prm_optimizer or optax.adamw(1e-6, weight_decay=0.0)
    task_data = load_task(task)
    tokenizer = task_data.tokenizer
    log(f"mesh {dict(mesh.shape)}; task {task.name}: {len(task_data.train_prompts)} train / "
        f"{len(task_data.eval_prompts)} eval prompts")
    warn_undivided(mesh, batch_rows(prime, sft, run), log)
    policy = initial_policy(workdir_path, model, sft, task_data, mesh, run.seed, log)
    vocab_size = policy.module().config.vocab_size
    if lead:
        run_dir.RunInfo(base_model=str(base_model_dir(workdir_path, model).absolute()), tokenizer=task.tokenizer,
                        uses_prm=prime.uses_prm, prm_init=prime.prm_init, reward=prime.reward,
                        task=dataclasses.asdict(task)).write(workdir_path)
    state, reference_params = initial_state(policy, prime, model, policy_tx, prm_tx, mesh, run.seed)
    policy = Role(policy.graphdef, None)  # the SFT role handed its buffers to the trainable policy
    pipeline = PromptPipeline(task_data.train_prompts, tokenizer, num_samples=prime.num_samples,
                              max_prompt_length=task.max_prompt_length, seed=run.seed,
                              process_index=jax.process_index(), process_count=jax.process_count())
    loop = _Run(workdir_path, steps, task, task_data, run, sampling, mesh, state, pipeline, lead, log)
    delimiter = delimiter_ids(tokenizer, prime.reward.step_delimiter)
    source = step.build_source(SourceSettings(
        config=prime, graphdef=policy.graphdef, tx=prm_tx, reference_params=reference_params,
        delimiter_ids=delimiter, vocab_size=vocab_size, mesh=mesh), loop.state)
    policy_update = make_policy_update(policy.graphdef, policy_tx, prime.policy_loss,
                                       (shardings_of(loop.state.policy_params), shardings_of(loop.state.policy_opt)))
    logprob_fn = make_logprob_fn(policy.graphdef, prime.logprob_rows_per_pass)
    start = int(loop.state.step)
    abilities = {r.ability for r in (*task_data.train_prompts, *task_data.eval_prompts)}
    # A task with code rows and no working code sandbox stops here, before any training.
    with VerifierPool(run.verifier_workers, scorers=OUTCOME_SCORERS, abilities=abilities) as pool, \
            jax.set_mesh(mesh):
        if start == 0 and task_data.eval_prompts and run.eval_every:
            loop.record(0, loop.evaluate(policy, pool))
        for step_index in tqdm(range(start + 1, steps + 1), desc="prime", initial=start, total=steps,
                               disable=not lead):
            t_step = time.time()
            key = jax.random.fold_in(jax.random.wrap_key_data(np.asarray(loop.state.rng)), step_index)
            batch, loop.surplus, metrics = collect(  # rollout, verification (overlapped), accuracy filter
                policy=policy, policy_params=loop.state.policy_params, reference_params=reference_params,
                logprob_fn=logprob_fn, pipeline=pipeline, surplus=loop.surplus, pool=pool, tokenizer=tokenizer,
                sampling=sampling, config=prime.collect, mesh=mesh, key=key)
            state, step_metrics = step.rl_step(loop.state, batch, source=source, policy_update=policy_update,
                                               config=prime, mesh=mesh,
                                               rng=np.random.default_rng([run.seed, step_index]))
            loop.state = dataclasses.replace(state, step=jnp.asarray(step_index, jnp.int32))
            skipped = step_metrics.get("policy_skipped", 0.0) + step_metrics.get("prm_skipped", 0.0)
            loop.nonfinite_run = loop.nonfinite_run + 1 if skipped > 0 else 0
            metrics.update(step_metrics, seconds_step=time.time() - t_step)
            if loop.evaluates_at(step_index):
                metrics.update(loop.evaluate(policy, pool))
            loop.record(step_index, metrics)
            if step_index == start + 1 and after_first_step is not None:
                after_first_step()
            loop.after_step(step_index, prime.max_nonfinite_steps)
    return loop.close(prime.uses_prm)
