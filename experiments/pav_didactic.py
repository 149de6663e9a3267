"""Didactic planted sub-sequence task (Rewarding Progress, arXiv 2410.08146, section 3.3):
policy gradient with the outcome reward only vs the PAV effective reward ``Q^pi + alpha A^mu``.

    python experiments/pav_didactic.py                                   # seeds 0 1 2, gamma 10, alpha 1
    python experiments/pav_didactic.py --seeds 0 1 2 --q-rollouts 128    # + the near-oracle Q^pi arms
    python experiments/pav_didactic.py --sweep-gammas 1 3 10 30 100      # prover-strength sweep

Per seed: a hidden 5-token target, one SFT policy (``--sft-iterations`` Adam steps of batch 64 on
3,200 samples of mu_5), then every arm's policy-gradient run from that same policy (batch 64,
Adam 1e-3; ``prime_jax.pav.didactic_rl``), each cut at ``--iterations`` (the paper's 10,000). A
run's count is the number of iterations until the ``--window``-iteration moving average of its
training outcome reward reaches ``--target``. Arms: ``outcome`` (REINFORCE on the outcome,
Q^pi = the row's own outcome: one sample) and ``effective`` (+ alpha A^mu of mu_gamma); with
``--q-rollouts K`` also ``outcome_mc`` / ``effective_mc`` with Q^pi the mean of the row and K policy
rollouts from each prefix (K > 100: the paper's near-oracle Q^pi), and then the headline uses
those; with ``--sweep-gammas`` the effective arm once per prover strength (with the headline's
``Q^pi``, compared with the headline's outcome arm).

The summary (``didactic_rl.summarise_runs``): per-seed ratios outcome / effective over the seeds
where both arms reached the target; a cut effective run refuses the ratio; no inf. stdout gets one
line per seed and arm and ends with

    pav_didactic: target=T effective=E outcome=O ratio=R outcome_reached=k/n
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np
from tqdm import tqdm

from prime_jax.pav import didactic, didactic_rl


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--gamma", type=float, default=10.0, help="prover strength of mu_gamma for A^mu")
    parser.add_argument("--alpha", type=float, default=1.0, help="weight of A^mu in the effective reward")
    parser.add_argument("--iterations", type=int, default=10_000,
                        help="policy-gradient iterations per run (cap; the paper's 10,000)")
    parser.add_argument("--target", type=float, default=0.9, help="moving-average training reward to reach")
    parser.add_argument("--window", type=int, default=20, help="moving-average window (iterations)")
    parser.add_argument("--sft-iterations", type=int, default=200,
                        help="SFT Adam steps of batch 64 on the 3,200 mu_5 samples (200 = 4 epochs)")
    parser.add_argument("--q-rollouts", type=int, default=0,
                        help="K > 0 adds the outcome_mc / effective_mc arms (Q^pi from the row and K policy "
                             "rollouts per prefix) and the headline uses them")
    parser.add_argument("--sweep-gammas", type=float, nargs="*", default=[],
                        help="also run the headline's effective arm at each of these prover strengths")
    return parser.parse_args(argv)


def arms(args) -> dict[str, tuple[str, didactic_rl.DidacticConfig]]:
    """Arm name -> (mode, config) for this invocation (module docstring)."""
    base = didactic_rl.DidacticConfig(prover_gamma=args.gamma, alpha=args.alpha, sft_iterations=args.sft_iterations)
    out = {"outcome": ("outcome", base), "effective": ("effective", base)}
    if args.q_rollouts:
        mc = dataclasses.replace(base, q_rollouts=args.q_rollouts)
        out |= {"outcome_mc": ("outcome", mc), "effective_mc": ("effective", mc)}
    sweep_base = out["effective_mc" if args.q_rollouts else "effective"][1]
    for gamma in args.sweep_gammas:
        out.setdefault(f"effective_gamma{gamma:g}", ("effective", dataclasses.replace(sweep_base, prover_gamma=gamma)))
    return out


def run_seed(seed: int, args) -> dict[str, int | None]:
    """Iterations to target (None: cut at the cap) of every arm from one SFT policy."""
    target = didactic.random_target(np.random.default_rng(seed))
    runs = arms(args)
    graphdef, params = didactic_rl.sft_policy(runs["outcome"][1], target, seed)
    reached = lambda rewards: len(rewards) >= args.window and np.mean(rewards[-args.window:]) >= args.target  # noqa: E731
    result = {}
    for name, (mode, config) in runs.items():
        with tqdm(total=args.iterations, desc=f"seed {seed} {name}", file=sys.stderr, leave=False) as bar:
            rewards = didactic_rl.train_policy_gradient(mode, config, target, graphdef, params,
                                                        iterations=args.iterations, seed=seed, stop=reached,
                                                        on_iteration=lambda reward: bar.update(1))
        result[name] = didactic_rl.iterations_to_target(rewards, args.target, args.window, args.iterations)
        count = f"cut@{args.iterations}" if result[name] is None else result[name]
        print(f"seed={seed} arm={name} gamma={config.prover_gamma:g} alpha={config.alpha:g} "
              f"q_rollouts={config.q_rollouts} iterations={count}", flush=True)
    return result


def main(argv=None) -> None:
    args = parse_args(argv)
    counts: dict[str, list[int | None]] = {name: [] for name in arms(args)}
    for seed in tqdm(args.seeds, desc="seeds", file=sys.stderr):
        for name, n in run_seed(seed, args).items():
            counts[name].append(n)
    pair = ("outcome_mc", "effective_mc") if args.q_rollouts else ("outcome", "effective")
    for gamma in args.sweep_gammas:
        sweep = didactic_rl.summarise_runs(counts[pair[0]], counts[f"effective_gamma{gamma:g}"])
        print(sweep.line(args.target, name=f"pav_didactic_sweep gamma={gamma:g}"))
    if args.q_rollouts:
        print(didactic_rl.summarise_runs(counts["outcome"], counts["effective"]).line(
            args.target, name="pav_didactic_one_sample_q"))
    summary = didactic_rl.summarise_runs(counts[pair[0]], counts[pair[1]])
    per_seed = " ".join(f"{seed}:{'-' if r is None else f'{r:.2f}'}" for seed, r in zip(args.seeds, summary.ratios))
    q_pi = (f"near-oracle Q^pi (the row and {args.q_rollouts} policy rollouts per prefix)" if args.q_rollouts
            else "one-sample Q^pi (the row's own outcome; the outcome arm is plain REINFORCE)")
    print(f"headline arms: {pair[0]} vs {pair[1]}, {q_pi}; prover gamma={args.gamma:g}, alpha={args.alpha:g}; "
          f"per-seed ratios {per_seed}; deviations from the paper: a 2-layer 64-wide transformer policy, "
          f"{args.sft_iterations} SFT steps on mu_5, target = {args.window}-iteration mean training reward "
          f">= {args.target:g}, cap {args.iterations}")
    print(summary.line(args.target))


if __name__ == "__main__":
    main()
