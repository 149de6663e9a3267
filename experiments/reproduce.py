"""PRIME vs RLOO-with-outcome-only vs PRIME variants, several seeds, same settings.

    python experiments/reproduce.py --sft runs/quickstart_benchmark/sft_model [--seeds 0 1 2] [--steps 50]
        [--config configs/quickstart_countdown.gin --root runs/reproduce_countdown]
        [--offline-prm runs/prm_offline] [--explicit-prm runs/eprm_exact]
        [--methods prime rloo prime_dpo prime_frozen_offline step_ppo]

Methods (``--methods``, default all that can run): ``prime`` (online implicit PRM, CE loss),
``rloo`` (outcome reward only), ``grpo`` (outcome only with GRPO's group-normalised reward and no
whitening: SPRO's control arm), ``prime_dpo`` (online PRM with the DPO loss), and with
``--offline-prm`` (an implicit PRM from ``prime_jax.train_reward`` on the same SFT model)
``prime_frozen_offline`` (that PRM, never updated: the frozen-PRM ablation) and
``prime_offline_init`` (that PRM as the online PRM's starting point), and with ``--explicit-prm``
(a ``train_reward`` directory of kind ``explicit_prm``) ``step_ppo`` (Math-Shepherd's step-by-step
PPO: that frozen PRM's step probabilities as the process reward), ``pav`` (PAV-RL: that PRM read as
Q^pi, the effective reward ``Q^pi + 3 A^mu`` of a Best-of-4 prover, ``configs/pav_rl.gin``) and
``pav_q_plus_q`` (the ``Q^pi + 3 Q^mu`` ablation). Batch-semantics and credit
variants: ``prime_pure`` (PURE's credit: softmin-weighted step rewards at T = 0.1, step granularity),
``prime_min`` (the future-minimum credit of the logged rows: the minimum of future token rewards, not
PURE's transform; kept so those rows reproduce), ``spro`` (SPRO: the policy as its own implicit PRM,
masked step advantage, GRPO outcome, ``configs/spro.gin``), ``self_prm_sum`` (the policy as its own
implicit PRM with PRIME's credit: does PRIME need a separate PRM?), ``shadow_prm`` (the PRM trains online on the
rollouts but barely steers: process coefficient 1e-3), ``prime_fill`` (short batches topped up with
dropped groups, the pre-reference behaviour), ``prime_prm_lr0.2x`` / ``prime_prm_lr2x`` (PRM
learning rate relative to the policy's). A PRM frozen at the SFT
weights would equal RLOO exactly (it is the reference, so every process reward is 0).

Every run starts from the same SFT model (copied into its workdir, so no SFT is repeated) and
uses ``--config`` (default ``configs/quickstart.gin``); the methods differ only in their bindings. Reports, per method,
the mean and sample std (ddof 1) over seeds of (a) the first RL step at which the 5-step moving average
of the training accuracy (T=1 samples) reaches each ``--target`` (a seed that never does counts as
``--steps``; also the median with misses as never), (b) the final training accuracy (mean
of the last 5 steps), (c) held-out greedy accuracy and avg@k (``--avg-k`` samples per problem at
the run's temperature, ``prime_jax.evaluate``) of the final policy, (d) the PRM's within-group
pairwise accuracy over the first and last 20 steps and the correlation of sum q with response
length; with ``rloo`` among the methods, the paired per-seed differences against it (mean, sample
std, 95% bootstrap interval, wins/losses and the sign test's p); plots the mean training
curves with their spread; appends the table to experiments/LOG.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))  # machine.py
from machine import FIGURES, RESULTS_LOG  # noqa: E402
from seed_stats import format_paired, format_steps, mean_std  # noqa: E402  (experiments/, beside this file)

ROOT = pathlib.Path(__file__).resolve().parents[1]
OFFLINE = "prime_jax.rl.config.PrimeConfig.prm_init = '{offline}/model'"
POLICY_LR = 5e-5  # the quickstart configs' policy (and PRM) learning rate
METHODS = {  # workdir prefix -> (name, bindings); {offline} / {explicit} are the --offline-prm / --explicit-prm dirs
    "prime": ("PRIME", []),
    "rloo": ("RLOO (outcome only)", ["prime_jax.advantages.AdvantageConfig.process_coef = 0.0"]),
    "grpo": ("GRPO (outcome only, not whitened: SPRO without its process term)",
             ["prime_jax.advantages.AdvantageConfig.process_coef = 0.0", "prime_jax.advantages.AdvantageConfig.estimator = 'grpo'",
              "prime_jax.advantages.AdvantageConfig.whiten = False"]),
    "prime_dpo": ("PRIME, DPO PRM loss", ['prime_jax.reward_models.updates.PrmLossConfig.loss = "dpo"']),
    "prime_frozen_offline": ("PRIME, frozen offline PRM", [OFFLINE, 'prime_jax.rl.config.PrimeConfig.prm_mode = "none"']),
    "prime_offline_init": ("PRIME, offline-PRM init", [OFFLINE]),
    "step_ppo": ("Step-by-step PPO, frozen explicit PRM", ["prime_jax.rl.config.PrimeConfig.explicit_prm = '{explicit}'"]),
    "pav": ("PAV-RL, Q^pi + 3 A^mu (BoK-4 prover of the explicit PRM as Q^pi)",
            ["configs/pav_rl.gin", "prime_jax.rl.config.PrimeConfig.explicit_prm = '{explicit}'"]),
    "pav_q_plus_q": ("PAV ablation, Q^pi + 3 Q^mu", ["configs/pav_rl.gin", "prime_jax.rl.config.PrimeConfig.explicit_prm = '{explicit}'",
                                                     "prime_jax.pav.rl_rewards.PavRewardConfig.form = 'q_plus_q'"]),
    "prime_pure": ("PRIME, PURE credit (softmin step weights, T = 0.1)",
                   ["prime_jax.advantages.AdvantageConfig.credit = 'pure'",
                    "prime_jax.rewards.ImplicitRewardConfig.granularity = 'step'"]),
    "prime_min": ("PRIME, future-min token credit (not PURE)", ["prime_jax.advantages.AdvantageConfig.credit = 'future_min'"]),
    "spro": ("SPRO (policy as its own PRM, masked step advantage)", ["configs/spro.gin"]),
    "spro_beta0.5": ("SPRO, beta 0.5 (10x: its process term scales with beta)",
                     ["configs/spro.gin", "prime_jax.rewards.ImplicitRewardConfig.beta = 0.5"]),
    "self_prm_sum": ("Policy as its own PRM, PRIME's credit", ["prime_jax.rl.config.PrimeConfig.self_prm = True"]),
    "shadow_prm": ("Shadow PRM (process coef 1e-3)", ["prime_jax.advantages.AdvantageConfig.process_coef = 1e-3"]),
    "prime_fill": ("PRIME, short batches filled from dropped groups",
                   ["prime_jax.experience.collect.CollectConfig.short_batch = 'fill_from_dropped'"]),
    **{f"prime_prm_lr{ratio}x": (f"PRIME, PRM lr {ratio}x the policy's",
                                 [f"prm/optax.adamw.learning_rate = {ratio * POLICY_LR:g}"])
       for ratio in (0.2, 2)},
}
NEEDS = {"offline": "--offline-prm", "explicit": "--explicit-prm"}  # placeholder -> the flag that fills it


def _needs(method: str) -> set[str]:
    """The placeholders of ``method``'s bindings."""
    return {name for name in NEEDS if any("{" + name + "}" in b for b in METHODS[method][1])}


def run(prefix: str, seed: int, args) -> pathlib.Path:
    """The workdir of ``prefix`` at ``seed``, trained first unless it already has metrics."""
    dirs = {"offline": pathlib.Path(args.offline_prm or "").absolute(),
            "explicit": pathlib.Path(args.explicit_prm or "").absolute()}
    method_bindings = [b.format(**dirs) for b in METHODS[prefix][1]]
    workdir = ROOT / args.root / f"{prefix}_{seed}"
    if not (workdir / "metrics.jsonl").exists() or args.fresh:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.copytree(args.sft, workdir / "sft_model")
        bindings = [args.config, f"prime_jax.training.run_config.RunConfig.seed = {seed}",
                    f"prime_jax.training.run_config.RunConfig.eval_every = {args.steps}", *method_bindings, *args.gin]
        cmd = [sys.executable, "-m", "prime_jax.train", *[a for b in bindings for a in ("--gin", b)],
               "--workdir", str(workdir), "--steps", str(args.steps)]
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return workdir


def held_out_samples(workdir: pathlib.Path, k: int) -> dict:
    """``prime_jax.evaluate`` of the run's final policy on its task's held-out problems (with the
    run's own synthetic settings, from its run.json), ``k`` samples each at the run's own sampling
    temperature (top-p 1): its metrics (avg@k, maj@k, pass@j). Cached in ``workdir/heldout_k{k}``.
    Empty for a run with its own synthetic settings whose run.json predates them."""
    out = workdir / f"heldout_k{k}"
    gin = (workdir / "operative_config.gin").read_text()
    if re.search(r"TaskConfig\.synthetic = @", gin) and not json.loads((workdir / "run.json").read_text()).get("task"):
        print(f"{workdir.name}: no held-out avg@{k}: the run binds its own TaskConfig.synthetic and its "
              "run.json (written before it recorded the task) does not say which", file=sys.stderr)
        return {}
    if not (out / "results.json").exists():
        setting = lambda name: re.search(rf"\.{name} = '?([\w.]+)'?", gin).group(1)  # noqa: E731
        cmd = [sys.executable, "-m", "prime_jax.evaluate", "--workdir", str(workdir),
               "--task", setting("TaskConfig.name"), "--num", setting("TaskConfig.num_eval"), "--k", str(k),
               "--temperature", setting("SamplingConfig.temperature"), "--top-p", "1.0",
               "--max-new-tokens", setting("SamplingConfig.max_new_tokens"),
               "--max-prompt-length", setting("TaskConfig.max_prompt_length"), "--batch-prompts", "64",
               "--out", str(out)]
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return json.loads((out / "results.json").read_text())["metrics"]


def summarise(workdir: pathlib.Path, targets: list[float], avg_k: int) -> dict:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    heldout = held_out_samples(workdir, avg_k) if avg_k else {}
    acc = np.array([r["accuracy"] for r in rows if r["step"] > 0])
    smooth = np.convolve(acc, np.ones(5) / 5, mode="valid")
    evals = [r["eval_accuracy"] for r in rows if "eval_accuracy" in r]
    first = lambda hit: float(hit[0] + 5) if len(hit) else float("nan")  # noqa: E731
    window = lambda key, part: float(np.nanmean([r.get(key, np.nan) for r in part]))  # noqa: E731
    steps = [r for r in rows if r["step"] > 0]
    return {"steps_to_target": [first(np.flatnonzero(smooth >= t)) for t in targets],
            "final_train_acc": float(acc[-5:].mean()), "first_train_acc": float(acc[:5].mean()),
            "final_greedy_eval": evals[-1], "final_avg_k": heldout.get(f"avg@{avg_k}", float("nan")), "curve": acc,
            "prm_pair_first": window("prm_pairwise_acc", steps[:20]), "prm_pair_last": window("prm_pairwise_acc", steps[-20:]),
            "q_length_corr_last": window("prm_q_length_corr", steps[-20:])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft", required=True, help="HF directory of the shared SFT model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--target", type=float, nargs="+", default=[0.75], help="training accuracies to time")
    parser.add_argument("--root", default="runs/reproduce")
    parser.add_argument("--gin", action="append", default=[], help="extra bindings for every run")
    parser.add_argument("--fresh", action="store_true", help="rerun runs that already have metrics")
    parser.add_argument("--avg-k", type=int, default=8,
                        help="held-out samples per problem for the final policy's avg@k (0: skip)")
    parser.add_argument("--config", default="configs/quickstart.gin", help="the gin file every run starts from")
    parser.add_argument("--offline-prm", help="an offline implicit-PRM directory (prime_jax.train_reward) trained "
                                              "on --sft's samples, for the prime_frozen_offline / prime_offline_init methods")
    parser.add_argument("--explicit-prm", help="an explicit-PRM directory (prime_jax.train_reward kind explicit_prm) "
                                               "for the step_ppo method")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), help="methods to run (default: all that can)")
    args = parser.parse_args()
    given = {name for name in NEEDS if getattr(args, f"{name}_prm")}
    methods = args.methods or [m for m in METHODS if _needs(m) <= given]
    for method in methods:
        for name in _needs(method) - given:
            parser.error(f"method {method} needs {NEEDS[name]} DIR")

    results = {METHODS[m][0]: [summarise(run(m, s, args), args.target, args.avg_k) for s in args.seeds] for m in methods}
    fmt = mean_std
    extra = "".join(f" --gin '{g}'" for g in args.gin) + "".join(
        f" {NEEDS[name]} {getattr(args, f'{name}_prm')}" for name in sorted(given))
    extra += f" --methods {' '.join(methods)}"
    lines = [f"## Reproduction: PRIME vs RLOO, {args.config} ({datetime.date.today().isoformat()})",
             f"- command: `python experiments/reproduce.py --sft {args.sft} --seeds {' '.join(map(str, args.seeds))} "
             f"--steps {args.steps} --target {' '.join(map(str, args.target))} --config {args.config} --root {args.root}{extra}`",
             f"- {len(args.seeds)} seeds per method, {args.steps} RL steps of 32 prompts x 4 samples from one shared "
             "SFT model; mean ± sample std (ddof 1) over seeds; steps-to-target uses the 5-step moving average of the "
             f"training accuracy, mean ± std with a miss counted as {args.steps} / median with a miss as never "
             "(seeds that reached it in brackets)", "",
             "| method | train acc, first 5 steps | train acc, last 5 steps | "
             + " | ".join(f"steps to {t}" for t in args.target) + " | greedy held-out at end | "
             f"held-out avg@{args.avg_k} at end | "
             "PRM pairwise acc, first / last 20 steps | corr(sum q, length), last 20 steps |",
             "|---|---|---|" + "---|" * len(args.target) + "---|---|---|---|"]
    for method, rs in results.items():
        steps_rt = np.array([r["steps_to_target"] for r in rs])
        timed = [format_steps(steps_rt[:, i], args.steps) for i in range(len(args.target))]
        lines.append(f"| {method} | {fmt([r['first_train_acc'] for r in rs])} | "
                     f"{fmt([r['final_train_acc'] for r in rs])} | " + " | ".join(timed) + " | "
                     f"{fmt([r['final_greedy_eval'] for r in rs])} | {fmt([r['final_avg_k'] for r in rs])} | "
                     f"{fmt([r['prm_pair_first'] for r in rs])} / "
                     f"{fmt([r['prm_pair_last'] for r in rs])} | {fmt([r['q_length_corr_last'] for r in rs])} |")
    if "rloo" in methods:
        lines += paired_table(results, METHODS["rloo"][0], args)
    # one image per --root and method list: a second experiment in the same root keeps the first's image
    png = FIGURES / f"reproduce_curves_{pathlib.Path(args.root).name}_{'-'.join(methods)}.png"
    plot(results, png, args.target)
    lines += ["", f"![training accuracy by method](../docs/figures/{png.name})", ""]
    report = "\n".join(lines)
    print(report)
    with RESULTS_LOG.open("a") as f:
        f.write("\n" + report)
    return 0


def paired_table(results: dict, baseline: str, args) -> list[str]:
    """Markdown lines: each method minus ``baseline`` per seed (same seeds), by metric (format_paired)."""
    metrics = [("train acc, last 5 steps", lambda r: r["final_train_acc"]),
               ("greedy held-out at end", lambda r: r["final_greedy_eval"]),
               (f"held-out avg@{args.avg_k} at end", lambda r: r["final_avg_k"]),
               *[(f"steps to {t} (miss = {args.steps})",
                  lambda r, i=i: min(r["steps_to_target"][i], args.steps) if np.isfinite(r["steps_to_target"][i])
                  else args.steps) for i, t in enumerate(args.target)]]
    lines = ["", f"Paired per-seed difference vs {baseline}: mean ± sample std [95% bootstrap interval] "
             "(seeds above+ / below- the baseline, two-sided sign test p; for steps, below is faster)", "",
             "| method | " + " | ".join(name for name, _ in metrics) + " |", "|---|" + "---|" * len(metrics)]
    base = results[baseline]
    for method, rs in results.items():
        if method != baseline:
            cells = [format_paired([get(r) for r in rs], [get(r) for r in base]) for _, get in metrics]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def plot(results: dict, path: pathlib.Path, targets: list[float]) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for method, rs in results.items():
        curves = np.stack([r["curve"] for r in rs])
        smooth = np.stack([np.convolve(c, np.ones(5) / 5, mode="valid") for c in curves])
        steps = np.arange(5, curves.shape[1] + 1)
        mean, std = smooth.mean(0), smooth.std(0, ddof=1 if len(smooth) > 1 else 0)
        ax.plot(steps, mean, label=method)
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    for target in targets:
        ax.axhline(target, color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel("RL step")
    ax.set_ylabel("training accuracy (T=1, 5-step mean)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
