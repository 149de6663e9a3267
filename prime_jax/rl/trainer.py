"""``train(...)``: the PRIME loop, top to bottom in the paper's order (SPEC 1).

    for step:  rollout -> verify (pool, overlapped) -> accuracy filter (+ buffer)
               -> PRM update (after | before | none) -> process rewards
               -> fused advantages -> PPO mini-batches -> metrics / eval / checkpoint

Policy, reference and PRM are three copies of the SFT weights (a local HF
directory, or the SFT warm-up's output); ``prm_init`` starts the PRM from other
weights instead (e.g. an offline implicit PRM from ``prime_jax.train_reward``,
trained against the same reference). With ``PrimeConfig.explicit_prm`` a frozen explicit PRM's
step scores replace the online implicit PRM (step-by-step PPO). Everything a step needs to be
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
from prime_jax.data import PromptPipeline, countdown_reward
from prime_jax.data.task_config import TaskConfig, load_task
from prime_jax.experience.collect import collect
from prime_jax.experience.greedy import evaluate_accuracy, greedy
from prime_jax.metrics import MetricsWriter, as_row, plot_curves
from prime_jax.models import load_explicit_prm
from prime_jax.models.source import ModelSource, build_model, save_model
from prime_jax.reward_models.updates import PrmLossConfig
from prime_jax.rl import update
from prime_jax.rl.config import PrimeConfig
from prime_jax.rl.policy_update import PolicyLossConfig
from prime_jax.rl.report import closing_summary, step_line
from prime_jax.rl.sft import SFTConfig, run_sft
from prime_jax.rollout import SamplingConfig
from prime_jax.training.forward import make_logprob_fn
from prime_jax.training.state import Role, TrainState, make_train_state
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


def initial_prm(path: str, model: ModelSource, policy: Role, mesh, seed: int):
    """The weights of the HF directory ``path`` as the PRM's starting point; the architecture must
    be the policy's (both roles share one graph)."""
    module = build_model(dataclasses.replace(model, hf_path=path), mesh, seed=seed)
    expected = policy.module().config
    if module.config != expected:
        raise ValueError(f"train.prm_init={path!r}: its config.json ({module.config}) differs from the "
                         f"policy's ({expected})")
    return Role.of(module).params


@dataclasses.dataclass(frozen=True)
class ExplicitReward:
    """A frozen explicit PRM as the process-reward source: jitted scorer, weights, step delimiter."""

    reward_fn: Callable
    params: object
    delimiter_ids: tuple[int, ...]


def load_explicit_reward(path: str, tokenizer, vocab_size: int, mesh,
                         field: str = "PrimeConfig.explicit_prm") -> ExplicitReward:
    """The explicit PRM of a ``train_reward`` directory (``path/model`` + ``reward.json``), placed
    on ``mesh``, with the step delimiter it was trained on; its vocabulary must cover the policy's
    ``vocab_size`` ids (an id past its embedding table would read NaN). Errors name ``field``."""
    info = run_dir.read_reward_model_info(path, "explicit_prm")
    if info is None:
        raise FileNotFoundError(f"{field}={path!r}: no reward.json there (expected a "
                                "directory written by python -m prime_jax.train_reward, kind explicit_prm)")
    module = load_explicit_prm(pathlib.Path(path) / "model", mesh=mesh)
    if module.config.vocab_size < vocab_size:
        raise ValueError(f"{field}={path!r}: its vocabulary has {module.config.vocab_size} ids, "
                         f"fewer than the policy's {vocab_size}")
    role = Role.of(module)
    delimiter_ids = tuple(tokenizer.encode(info["step_delimiter"], add_special_tokens=False))
    return ExplicitReward(update.make_explicit_reward_fn(role.graphdef), role.params, delimiter_ids)


def base_model_dir(workdir: pathlib.Path, model: ModelSource) -> pathlib.Path:
    """Where the run's initial weights (= the reference) live as a Hugging Face directory."""
    sft_dir = run_dir.sft_model_dir(workdir)
    return sft_dir if (sft_dir / "config.json").exists() or not model.hf_path else pathlib.Path(model.hf_path)


def train(*, workdir: str, steps: int, task: TaskConfig = TaskConfig(), model: ModelSource = ModelSource(),
          sft: SFTConfig | None = None, prime: PrimeConfig = PrimeConfig(),
          sampling: SamplingConfig = SamplingConfig(max_new_tokens=3072),
          policy_loss: PolicyLossConfig = PolicyLossConfig(),
          prm_loss: PrmLossConfig = PrmLossConfig(),
          policy_optimizer: optax.GradientTransformation | None = None,
          prm_optimizer: optax.GradientTransformation | None = None,
          mesh: sharding.MeshConfig = sharding.MeshConfig(), seed: int = 0,
          eval_every: int = 10, eval_batch_prompts: int = 64, checkpoint_every: int = 10,
          verifier_workers: int = 2, prm_init: str | None = None, after_first_step: Callable[[], None] | None = None,
          log: Callable[[str], None] = print) -> list[dict]:
    """Run PRIME RL until ``steps`` RL steps are done (continuing a checkpointed run)."""
    workdir_path = pathlib.Path(workdir)
    workdir_path.mkdir(parents=True, exist_ok=True)
    sharding.maybe_initialize_distributed()
    lead = jax.process_index() == 0  # the process that writes files and logs
    log = log if lead else (lambda message: None)
    device_mesh = sharding.make_mesh(mesh)
    policy_optimizer = policy_optimizer or optax.adamw(5e-7, weight_decay=0.01)
    prm_optimizer = prm_optimizer or optax.adamw(1e-6, weight_decay=0.0)
    task_data = load_task(task)
    tokenizer = task_data.tokenizer
    log(f"mesh {dict(device_mesh.shape)}; task {task.name}: {len(task_data.train_prompts)} train / "
        f"{len(task_data.eval_prompts)} eval prompts")

    policy = initial_policy(workdir_path, model, sft, task_data, device_mesh, seed, log)
    vocab_size = policy.module().config.vocab_size
    if lead:
        run_dir.RunInfo(base_model=str(base_model_dir(workdir_path, model).absolute()), tokenizer=task.tokenizer,
                        uses_prm=prime.uses_prm, prm_init=prm_init, reward=prime.reward,
                        task=dataclasses.asdict(task)).write(workdir_path)
    # Three independent weight copies (updates donate their inputs); the SFT role hands its own
    # buffers to the trainable policy and is not used afterwards.
    reference_params = _copy(policy.params) if (prime.uses_prm or policy_loss.kl_coef) else None
    prm_params = None
    if prime.uses_prm:
        prm_params = initial_prm(prm_init, model, policy, device_mesh, seed) if prm_init else _copy(policy.params)
    state = make_train_state(policy.params, prm_params, policy_optimizer,
                             prm_optimizer if prime.uses_prm else None, seed)
    policy = Role(policy.graphdef, None)
    state = sharding.replicate_unsharded(state, device_mesh)
    pipeline = PromptPipeline(task_data.train_prompts, tokenizer, num_samples=prime.num_samples,
                              max_prompt_length=task.max_prompt_length, seed=seed,
                              process_index=jax.process_index(), process_count=jax.process_count())
    checkpointer = Checkpointer(run_dir.checkpoint_dir(workdir_path))
    writer = MetricsWriter(workdir_path) if lead else None
    surplus: list[int] = []
    nonfinite_run = 0
    if checkpointer.latest_step() is not None:
        state, meta = checkpointer.restore(state)
        pipeline.restore(meta["pipeline"])
        surplus, nonfinite_run = list(meta["surplus"][jax.process_index()]), int(meta["nonfinite_run"])
        log(f"resumed from step {int(state.step)} ({checkpointer.directory})")
    if writer:
        writer.truncate_after(int(state.step) if int(state.step) else -1)  # rows of steps to be redone

    explicit = load_explicit_reward(prime.explicit_prm, tokenizer, vocab_size, device_mesh) \
        if prime.explicit_prm else None
    prover = None
    if prime.step_reward.prover_prm:  # PAV-RL with a separate prover policy's Q model
        prover = load_explicit_reward(prime.step_reward.prover_prm, tokenizer, vocab_size, device_mesh,
                                      field="PavRewardConfig.prover_prm")
        if prover.delimiter_ids != explicit.delimiter_ids:
            raise ValueError(f"PavRewardConfig.prover_prm={prime.step_reward.prover_prm!r} ends steps with ids "
                             f"{prover.delimiter_ids}, the Q^pi model with {explicit.delimiter_ids}: train both on "
                             "one step delimiter")
    updaters = update.make_updaters(policy.graphdef, policy.graphdef, policy_optimizer, prm_optimizer,
                                    prime, policy_loss, prm_loss, state)
    logprob_fn = make_logprob_fn(policy.graphdef, prime.logprob_rows_per_pass)
    delimiter = tuple(tokenizer.encode(prime.reward.step_delimiter, add_special_tokens=False))
    scorers = {"countdown": countdown_reward}
    rows: list[dict] = []

    def save(step: int) -> None:
        checkpointer.save(step, state, {"pipeline": pipeline.state(), "surplus": _gather_lists(surplus),
                                        "nonfinite_run": nonfinite_run})

    def record(step: int, metrics: dict) -> dict:
        row = writer.write(step, metrics) if writer else as_row(step, metrics)
        log(step_line(row))
        return row

    def evaluate(step_state: TrainState) -> dict:
        return evaluate_accuracy(policy.module(step_state.policy_params), task_data.eval_prompts, tokenizer,
                                 pool, greedy(sampling), mesh=device_mesh, batch_prompts=eval_batch_prompts,
                                 max_prompt_length=task.max_prompt_length, seed=seed)

    start = int(state.step)
    abilities = {r.ability for r in (*task_data.train_prompts, *task_data.eval_prompts)}
    # A task with code rows and no working code sandbox stops here, before any training.
    with VerifierPool(verifier_workers, scorers=scorers, abilities=abilities) as pool, jax.set_mesh(device_mesh):
        if start == 0 and task_data.eval_prompts and eval_every:
            rows.append(record(0, evaluate(state)))
        for step in tqdm(range(start + 1, steps + 1), desc="prime", initial=start, total=steps, disable=not lead):
            t_step = time.time()
            key = jax.random.fold_in(jax.random.wrap_key_data(np.asarray(state.rng)), step)
            # 1-3. rollout, verification (overlapped with old/ref log-probs), accuracy filter.
            batch, surplus, metrics = collect(
                policy=policy, policy_params=state.policy_params, reference_params=reference_params,
                logprob_fn=logprob_fn, pipeline=pipeline, surplus=surplus, pool=pool, tokenizer=tokenizer,
                sampling=sampling, config=prime.collect, mesh=device_mesh, key=key)
            # 4-5. implicit PRM update and its token log-probs.
            t0 = time.time()
            state, logp_prm, prm_metrics = update.prm_phase(state, batch, updaters, prime, device_mesh,
                                                             reference_params)
            metrics["seconds_prm"] = time.time() - t0
            if logp_prm is not None:
                metrics["prm_q_length_corr"] = update.q_length_correlation(batch, logp_prm)
            # 6. process rewards, RLOO returns and whitened advantages in one jitted call.
            if explicit is None:
                out = update.advantage_phase(batch, logp_prm, prime, delimiter, device_mesh)
            else:  # step-by-step PPO: a frozen explicit PRM's step scores are the process rewards
                out = update.explicit_advantage_phase(batch, explicit.reward_fn, explicit.params, prime,
                                                      explicit.delimiter_ids, device_mesh,
                                                      prover and (prover.reward_fn, prover.params))
            # 7. PPO, one epoch of shuffled mini-batches.
            t0 = time.time()
            state, policy_metrics = update.policy_phase(
                state, batch, np.asarray(out.advantages), updaters, prime, device_mesh,
                np.random.default_rng([seed, step]))
            metrics["seconds_policy"] = time.time() - t0
            state = dataclasses.replace(state, step=jnp.asarray(step, jnp.int32))
            skipped = policy_metrics.get("policy_skipped", 0.0) + prm_metrics.get("prm_skipped", 0.0)
            nonfinite_run = nonfinite_run + 1 if skipped > 0 else 0
            tokens = max(int(batch.response_mask_bl.sum()), 1)
            metrics.update(prm_metrics, **policy_metrics, process_reward_mean=float(np.sum(out.process_rewards) / tokens),
                           seconds_step=time.time() - t_step)
            if eval_every and task_data.eval_prompts and (step % eval_every == 0 or step == steps):
                metrics.update(evaluate(state))
            rows.append(record(step, metrics))
            if step == start + 1 and after_first_step is not None:
                after_first_step()
            if nonfinite_run >= prime.max_nonfinite_steps:
                save(step)
                raise NonFiniteError(
                    f"{nonfinite_run} consecutive steps had non-finite gradients (updates skipped); "
                    f"stopped at step {step} with a usable checkpoint in {checkpointer.directory}")
            if step % checkpoint_every == 0 or step == steps:
                save(step)
    if writer:
        writer.close()
        plot_curves(writer.jsonl_path, workdir_path / "curves.png", title=f"PRIME on {task.name}")
    log(closing_summary(rows, workdir_path.absolute(), last_checkpoint=checkpointer.latest_step(),
                        uses_prm=prime.uses_prm))
    checkpointer.close()
    return rows
