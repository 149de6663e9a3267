"""CPU smoke run of the real Qwen2.5-0.5B shapes through full PRIME RL steps.

    JAX_PLATFORMS=cpu python benchmarks/smoke_qwen2.5_0.5b.py [--layers 24] [--param-dtype float32]

Runs ``python -m prime_jax.train`` in-process on ``configs/prime_qwen2.5_0.5b.gin`` (its dtypes,
remat, logits_chunk, bf16 cache, EOS/pad ids, optimisers, loss settings) with only what a CPU needs
changed: random weights of the Qwen2.5-0.5B shape (``ModelConfig`` preset ``qwen2.5-0.5b``: 24
layers, width 896, 14/2 heads, MLP 4864, vocabulary 151936, tied embeddings, rope theta 1e6), an
offline Qwen2-style BPE tokenizer with Qwen2's special ids (``prime_jax.data.qwen_style_tokenizer``),
the bundled arithmetic task, a tiny batch (``--prompts`` x ``--samples`` rows, ``--max-new-tokens``),
a 1-device mesh, no evaluation. Each step is the whole path: rollout, verification, old/reference
log-probs, PRM update and PRM log-probs, advantages, PPO update; then the run's final checkpoint.

Prints per-step phase seconds (the trainer's ``seconds_*`` metrics; step 1 includes compilation),
peak RSS, the parameter count, and whether every metric is finite; ``--results FILE`` appends a
markdown section. A watchdog thread ends the process (exit 3) when its RSS passes ``--max-rss-gib``,
so a configuration that does not fit is reported instead of taking the machine's memory.

Measured on 2 shared CPU cores (2026-11-30): with the config's float32 weights the 24-layer step
holds 12.9 GiB of state (3 models, 2 Adam states) and XLA:CPU plans 7.3 GiB of scratch for the PPO
update, ~21.7 GiB in all; ``--param-dtype bfloat16`` peaks at 16.6 GiB (2 steps: 280 s with
compilation, then 129 s under a load average of ~8). ``--json FILE`` writes the rows and numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import platform
import resource
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "prime_qwen2.5_0.5b.gin"
# Random weights solve nothing, so every outcome reward (and its RLOO advantage) is 0: only the
# implicit PRM's process rewards beta * (log pi_prm - log pi_ref) can make advantages nonzero. With
# prm_mode "after" a mini-batch's PRM log-probs come from the weights before its own update, so on
# step 1 the first PRM mini-batch scores exactly 0: the batch is cut into 2 PRM mini-batches, and the
# second is scored by a PRM one update away from the reference. The config's PRM learning rate
# (2e-6) moves no bf16 weight in one Adam step (param_dtype bfloat16); 1e-3 moves them, so that the
# policy update back-propagates a nonzero loss in every variant.
PRM_LEARNING_RATE = 1e-3
METRICS = ("prm_loss", "prm_grad_norm", "process_reward_mean", "policy_loss", "policy_grad_norm", "entropy")
# Metrics that are NaN by definition in this run, not by a numerical failure: the correlation of the
# PRM's score with response length is undefined when every response has the same length (random
# weights never emit EOS, so all are truncated at max_new_tokens).
UNDEFINED_HERE = ("prm_q_length_corr",)
PHASES = ("seconds_rollout", "seconds_logprobs", "seconds_verify_wait", "seconds_prm", "seconds_policy",
          "seconds_step")


def rss_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def start_watchdog(limit_gib: float) -> None:
    def watch():
        while True:
            if rss_gib() > limit_gib:
                print(f"smoke: RSS {rss_gib():.1f} GiB passed --max-rss-gib {limit_gib}: stopping", flush=True)
                os._exit(3)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()


def model_bindings(num_layers: int) -> list[str]:
    """gin bindings of ModelConfig = the qwen2.5-0.5b preset with ``num_layers`` layers."""
    from prime_jax.models.config import PRESETS

    preset = PRESETS["qwen2.5-0.5b"].replace(num_layers=num_layers)
    skip = {"dtype", "param_dtype", "remat", "logits_chunk", "rope_scaling"}  # set by ModelSource / none
    return [f"prime_jax.models.ModelConfig.{f.name} = {json.dumps(getattr(preset, f.name))}"
            .replace("true", "True").replace("false", "False").replace("null", "None")
            for f in dataclasses.fields(preset) if f.name not in skip]


def smoke_gin(tokenizer_dir: str, *, num_layers: int, prompts: int, samples: int, max_new_tokens: int,
              param_dtype: str | None, steps: int, prm_learning_rate: float | None,
              policy_micro_batches: int = 2) -> str:
    """A gin file parsed after the real config: everything it changes, one line each."""
    rows = prompts * samples
    lines = [
        "from __gin__ import dynamic_registration",
        "import prime_jax.models", "import prime_jax.models.source", "import prime_jax.rl.trainer",
        "import prime_jax.data.task_config", "import prime_jax.rl.config", "import prime_jax.rollout",
        "import prime_jax.experience.collect", "import prime_jax.sharding", "import optax",
        # random weights of the 0.5B shape instead of a downloaded checkpoint
        "prime_jax.models.source.ModelSource.hf_path = None",
        "prime_jax.models.source.ModelSource.config = @prime_jax.models.ModelConfig()",
        *model_bindings(num_layers),
        # the bundled arithmetic task through the offline Qwen2-style tokenizer
        'prime_jax.data.task_config.TaskConfig.name = "arithmetic"',
        "prime_jax.data.task_config.TaskConfig.path = None",
        "prime_jax.data.task_config.TaskConfig.eval_path = None",
        f'prime_jax.data.task_config.TaskConfig.tokenizer = "{tokenizer_dir}"',
        "prime_jax.data.task_config.TaskConfig.num_train = 64",
        "prime_jax.data.task_config.TaskConfig.num_eval = 0",
        "prime_jax.data.task_config.TaskConfig.num_sft = 0",
        "prime_jax.data.task_config.TaskConfig.max_prompt_length = 64",
        # a tiny batch; the real policy micro-batching and row-capped log-prob passes kept (2 of
        # each by default); 2 PRM mini-batches of one group each (see PRM_LEARNING_RATE)
        f"prime_jax.experience.collect.CollectConfig.num_samples = {samples}",
        f"prime_jax.experience.collect.CollectConfig.batch_prompts = {prompts}",
        "prime_jax.experience.collect.CollectConfig.oversample = 1.0",
        "prime_jax.experience.collect.CollectConfig.max_rollout_rounds = 1",
        # random weights solve nothing: train on the dropped groups so that every update runs
        'prime_jax.experience.collect.CollectConfig.short_batch = "fill_from_dropped"',
        f"prime_jax.rl.config.PrimeConfig.prm_mini_batch = {max(1, rows // 2)}",
        f"prime_jax.rl.config.PrimeConfig.policy_mini_batch = {rows}",
        "prime_jax.rl.config.PrimeConfig.prm_micro_batches = 1",  # a micro-batch holds whole groups
        f"prime_jax.rl.config.PrimeConfig.policy_micro_batches = {policy_micro_batches}",
        f"prime_jax.rl.config.PrimeConfig.logprob_rows_per_pass = {max(1, rows // 2)}",
        f"prime_jax.rollout.SamplingConfig.max_new_tokens = {max_new_tokens}",
        # one CPU device
        "prime_jax.sharding.MeshConfig.data = 1",
        "prime_jax.sharding.MeshConfig.fsdp = 1",
        "prime_jax.sharding.MeshConfig.tensor = 1",
        f"prime_jax.rl.trainer.train.steps = {steps}",
        "prime_jax.training.run_config.RunConfig.eval_every = 0",
        "prime_jax.training.run_config.RunConfig.checkpoint_every = 1000",
        "prime_jax.training.run_config.RunConfig.verifier_workers = 1",
    ]
    if prm_learning_rate is not None:
        lines.append(f"prm/optax.adamw.learning_rate = {prm_learning_rate}")
    if param_dtype:
        lines.append(f'prime_jax.models.source.ModelSource.param_dtype = "{param_dtype}"')
    return "\n".join(lines) + "\n"


def _finite(value) -> bool:
    """metrics.jsonl writes non-finite floats as the strings "nan", "inf", "-inf"."""
    if isinstance(value, str):
        return value.lower() not in ("nan", "inf", "-inf", "infinity", "-infinity")
    return not isinstance(value, float) or math.isfinite(value)


def param_count(num_layers: int) -> int:
    import jax
    from flax import nnx

    from prime_jax.models import Transformer
    from prime_jax.models.config import PRESETS

    config = PRESETS["qwen2.5-0.5b"].replace(num_layers=num_layers)
    shapes = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
    return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(shapes, nnx.Param)))


def run_smoke(workdir: str | os.PathLike, *, num_layers: int = 24, prompts: int = 2, samples: int = 2,
              max_new_tokens: int = 16, param_dtype: str | None = None, steps: int = 1,
              prm_learning_rate: float | None = PRM_LEARNING_RATE, policy_micro_batches: int = 2) -> dict:
    """Build the tokenizer, run ``steps`` RL steps; returns the metric rows and measurements."""
    from prime_jax import train
    from prime_jax.data.qwen_style_tokenizer import build_qwen_style_tokenizer

    workdir = pathlib.Path(workdir)
    t0 = time.time()
    tokenizer_dir = build_qwen_style_tokenizer(workdir / "qwen_style_tokenizer")
    seconds_tokenizer = time.time() - t0
    overrides = workdir / "smoke.gin"
    overrides.write_text(smoke_gin(str(tokenizer_dir), num_layers=num_layers, prompts=prompts, samples=samples,
                                   max_new_tokens=max_new_tokens, param_dtype=param_dtype, steps=steps,
                                   prm_learning_rate=prm_learning_rate, policy_micro_batches=policy_micro_batches))
    t0 = time.time()
    code = train.main(["--gin", str(CONFIG), "--gin", str(overrides), "--workdir", str(workdir / "run")])
    seconds_train = time.time() - t0
    if code:
        raise RuntimeError(f"prime_jax.train exited with {code}")
    rows = [json.loads(line) for line in (workdir / "run" / "metrics.jsonl").read_text().splitlines()]
    nonfinite = sorted({k for row in rows for k, v in row.items() if not _finite(v)})
    model_config = json.loads((workdir / "run" / "sft_model" / "config.json").read_text())
    return {"rows": rows, "model_config": model_config, "nonfinite": nonfinite,
            "finite": bool(rows) and not set(nonfinite) - set(UNDEFINED_HERE),
            "seconds_tokenizer": seconds_tokenizer, "seconds_train": seconds_train,
            "peak_rss_gib": peak_rss_gib(), "cpu_seconds": sum(os.times()[:2]),
            "load_average": os.getloadavg()[0], "tokenizer_dir": tokenizer_dir}


def report(args, result: dict, params: int) -> str:
    import jax

    dtype = args.param_dtype or "float32 (the config's)"
    lines = [f"## Qwen2.5-0.5B shapes, CPU smoke ({args.layers} layers, param_dtype {dtype})", "",
             f"`JAX_PLATFORMS=cpu python {' '.join(sys.argv)}`", "",
             f"{platform.node()}: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
             f"jax {jax.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"- parameters: {params:,} ({params / 1e6:.1f} M); rows {args.prompts} prompts x {args.samples} "
             f"samples, max_new_tokens {args.max_new_tokens}",
             f"- tokenizer build {result['seconds_tokenizer']:.1f} s; train() {result['seconds_train']:.1f} s "
             f"(model init + fresh-weights save, steps, final checkpoint); process CPU time "
             f"{result['cpu_seconds']:.0f} s; 1-minute load average at the end {result['load_average']:.1f}"
             + (" (above the core count: other jobs shared the CPUs, wall times are inflated)"
                if result["load_average"] > (os.cpu_count() or 1) else ""),
             f"- peak RSS {result['peak_rss_gib']:.2f} GiB; all metrics finite: {result['finite']} (non-finite: "
             f"{', '.join(result['nonfinite']) or 'none'}; NaN by definition here: {', '.join(UNDEFINED_HERE)})", "",
             f"- PRM learning rate {args.prm_learning_rate or 'the config 2e-6'} (see PRM_LEARNING_RATE)", "",
             "| step | " + " | ".join(p.removeprefix("seconds_") for p in PHASES) + " | "
             + " | ".join(METRICS) + " |",
             "|---" * (len(PHASES) + len(METRICS) + 1) + "|"]
    for row in result["rows"]:
        cells = [f"{row.get(p, float('nan')):.1f}" for p in PHASES]
        cells += [f"{row.get(k, float('nan')):.4g}" for k in METRICS]
        lines.append(f"| {row['step']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--param-dtype", choices=("float32", "bfloat16"), default=None,
                        help="override the config's param_dtype (float32)")
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1, help="RL steps (step 1 includes compilation)")
    parser.add_argument("--prm-learning-rate", type=float, default=PRM_LEARNING_RATE,
                        help="the PRM's Adam learning rate (0: the config's 2e-6); see PRM_LEARNING_RATE")
    parser.add_argument("--policy-micro-batches", type=int, default=2,
                        help="micro-batches of the PPO mini-batch (all rows); on XLA:CPU each one past the "
                             "first adds about two float32 copies of the weights to the update's scratch")
    parser.add_argument("--workdir", help="default: a temporary directory, removed afterwards")
    parser.add_argument("--max-rss-gib", type=float, default=19.0)
    parser.add_argument("--results", help="append the markdown report to this file")
    parser.add_argument("--json", help="write the metric rows and measurements to this JSON file")
    args = parser.parse_args()
    start_watchdog(args.max_rss_gib)
    params = param_count(args.layers)
    with tempfile.TemporaryDirectory(prefix="smoke_qwen05b_") as tmp:
        result = run_smoke(args.workdir or tmp, num_layers=args.layers, prompts=args.prompts,
                           samples=args.samples, max_new_tokens=args.max_new_tokens,
                           param_dtype=args.param_dtype, steps=args.steps,
                           prm_learning_rate=args.prm_learning_rate or None,
                           policy_micro_batches=args.policy_micro_batches)
    text = report(args, result, params)
    print(text)
    if args.json:
        summary = {k: v for k, v in result.items() if k != "tokenizer_dir"}
        pathlib.Path(args.json).write_text(json.dumps({**summary, "params": params}, indent=1) + "\n")
    if args.results:
        with open(args.results, "a") as f:
            f.write(text + "\n")
    return 0 if result["finite"] else 1


if __name__ == "__main__":
    sys.exit(main())
