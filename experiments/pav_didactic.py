"""Didactic planted sub-sequence task (Rewarding Progress, arXiv 2410.08146, section 3.3):
policy gradient with the outcome reward only vs the PAV effective reward ``Q^pi + alpha A^mu``.

    python experiments/pav_didactic.py                      # seeds 0 1 2, gamma 10, alpha 1
    python experiments/pav_didactic.py --seeds 0 --gamma 30 --iterations 500

Per seed: a hidden 5-token target, one SFT policy (50 Adam steps on 3,200 samples of mu_5), then
both policy-gradient runs from that same policy (batch 64, Adam 1e-3; see
``prime_jax.pav.didactic_rl``). A run's score is the number of iterations until the
``--window``-iteration moving average of its training outcome reward reaches ``--target``; a run
cut at ``--iterations`` counts as that many, and a method none of whose runs reached the target
reports ``inf``. Defaults take a few minutes on a 2-core CPU (an outcome-only run that stalls
costs ~40 ms per iteration). Progress goes to stderr; stdout gets one line per seed and ends with

    pav_didactic: target=0.9 effective=<mean iterations> outcome=<mean iterations or inf> ratio=<outcome/effective>
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from tqdm import tqdm

from prime_jax.pav import didactic, didactic_rl


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--gamma", type=float, default=10.0, help="prover strength of mu_gamma for A^mu")
    parser.add_argument("--alpha", type=float, default=1.0, help="weight of A^mu in the effective reward")
    parser.add_argument("--iterations", type=int, default=1000, help="policy-gradient iterations per run (cap)")
    parser.add_argument("--target", type=float, default=0.9, help="moving-average training reward to reach")
    parser.add_argument("--window", type=int, default=20, help="moving-average window (iterations)")
    parser.add_argument("--sft-iterations", type=int, default=50,
                        help="SFT Adam steps of batch 64 on the 3,200 mu_5 samples (50 = one epoch)")
    parser.add_argument("--q-rollouts", type=int, default=0,
                        help="extra policy rollouts per prefix for Q^pi (0: the row's own outcome)")
    return parser.parse_args(argv)


def run_seed(seed: int, config: didactic_rl.DidacticConfig, args) -> dict[str, int | None]:
    """Iterations to target (None: cut) of both modes from one SFT policy."""
    target = didactic.random_target(np.random.default_rng(seed))
    graphdef, params = didactic_rl.sft_policy(config, target, seed)
    result = {}
    reached = lambda rewards: len(rewards) >= args.window and np.mean(rewards[-args.window:]) >= args.target
    for mode in didactic_rl.MODES:
        with tqdm(total=args.iterations, desc=f"seed {seed} {mode}", file=sys.stderr, leave=False) as bar:
            recent: list[float] = []

            def show(reward):
                recent.append(reward)
                bar.update(1)
                bar.set_postfix(avg=f"{np.mean(recent[-args.window:]):.3f}", refresh=False)

            rewards = didactic_rl.train_policy_gradient(mode, config, target, graphdef, params,
                                                        iterations=args.iterations, seed=seed, stop=reached,
                                                        on_iteration=show)
        result[mode] = didactic_rl.iterations_to_target(rewards, args.target, args.window, args.iterations)
    return result


def mean_iterations(counts: list[int | None], cap: int) -> float:
    """Mean with cut runs counted as ``cap``; inf if no run reached the target."""
    if all(c is None for c in counts):
        return float("inf")
    return float(np.mean([cap if c is None else c for c in counts]))


def main(argv=None) -> None:
    args = parse_args(argv)
    config = didactic_rl.DidacticConfig(prover_gamma=args.gamma, alpha=args.alpha, q_rollouts=args.q_rollouts,
                                          sft_iterations=args.sft_iterations)
    counts = {mode: [] for mode in didactic_rl.MODES}
    for seed in tqdm(args.seeds, desc="seeds", file=sys.stderr):
        result = run_seed(seed, config, args)
        for mode, n in result.items():
            counts[mode].append(n)
        cells = " ".join(f"{mode}={'cut@%d' % args.iterations if n is None else n}" for mode, n in result.items())
        print(f"seed={seed} gamma={args.gamma:g} alpha={args.alpha:g} {cells}", flush=True)
    effective = mean_iterations(counts["effective"], args.iterations)
    outcome = mean_iterations(counts["outcome"], args.iterations)
    ratio = outcome / effective
    print(f"pav_didactic: target={args.target:g} effective={effective:.1f} outcome={outcome:.1f} ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
