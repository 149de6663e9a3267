"""Prover strength on countdown: Best-of-K provers of pi next to the exact "perfect" prover (issue 17).

    python -m prime_jax.mc_label --model runs/countdown_sft/sft_model --task countdown --num-prompts 128 \\
        --samples-per-prompt 4 --completions 16 --out runs/pav_countdown/mc_labels_128x4x16.jsonl
    python experiments/pav_countdown_provers.py runs/pav_countdown/mc_labels_128x4x16.jsonl [--write FILE]

For every step h of every sampled solution (a line, the boxed answer included) the label file holds
the Monte-Carlo ``Q^pi(s_h, a_h)`` (the fraction of N completions of the prefix through step h that
the verifier accepts). Provers mu and their step values:

    BoK(pi), K = 1, 2, 4, ...   Q^mu = 1 - (1 - Q^pi)^K              (K = 1 is pi itself)
    perfect                     Q^mu = 1 iff the target is still reachable after the step
                                (the brute-force solver: ``label_countdown_steps``), V^mu(s_0) = 1

``V^pi(s_0)`` of a prompt is the mean first-step ``Q^pi`` of its sampled solutions (then BoK's
closed form), and ``A^mu(s_h, a_h) = Q^mu(s_h, a_h) - Q^mu(s_{h-1}, a_{h-1})`` (``pav.provers``).
Per prover, over all steps pi took:

* distinguishability: the standard deviation of ``A^mu`` (a prover whose advantages are ~0 on
  every step pi takes cannot tell its steps apart), the same over the steps that keep the target
  reachable only (the perfect prover's is 0 there by construction), and the share of steps with
  ``|A^mu| < 0.01``;
* alignment: the correlation of ``A^mu`` with ``A^pi`` (does the prover's progress agree with the
  policy's own?);
* first-pit signal: the mean ``A^mu`` on the step where the exact label first drops to 0 (the first
  unrecoverable step) minus the mean on the other steps (how strongly it punishes the mistake).

Ends with ``pav_countdown_provers: steps=<n> perfect_zero_share=<x> bok4_alignment=<y>``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from prime_jax.data.synthetic.countdown import label_countdown_steps, parse_countdown_problem, reachable
from prime_jax.pav.provers import best_of_k_q, process_advantages

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))  # machine.py
from machine import cpu_line, date_line, load_average  # noqa: E402

KS = (1, 2, 4, 8, 16, 64)


def load(path: str):
    """Padded (B, H) arrays: MC ``Q^pi``, exact perfect-prover Q, step mask; prompt index per row."""
    rows = [json.loads(line) for line in open(path) if line.strip()]
    h = max(len(r["soft"]) for r in rows)
    q_pi, q_star, mask = (np.zeros((len(rows), h), np.float32) for _ in range(3))
    v0_star, prompt_b = np.zeros(len(rows), np.float32), np.array([r["prompt_index"] for r in rows])
    for i, r in enumerate(rows):
        steps = len(r["soft"])
        labels = label_countdown_steps(r["response"], r["ground_truth"])
        if len(labels) != steps:
            raise ValueError(f"{path}: row {i}: {len(labels)} exact labels for {steps} Monte-Carlo steps")
        q_pi[i, :steps], q_star[i, :steps], mask[i, :steps] = r["soft"], labels, 1.0
        problem = parse_countdown_problem(r["ground_truth"])
        v0_star[i] = float(reachable(problem.numbers, problem.target, problem.use_all))
    return q_pi, q_star, mask, v0_star, prompt_b


def start_values(q_pi, prompt_b):
    """``V^pi(s_0)`` per row: the mean first-step ``Q^pi`` over its prompt's rows."""
    first = q_pi[:, 0]
    means = {p: first[prompt_b == p].mean() for p in np.unique(prompt_b)}
    return np.array([means[p] for p in prompt_b], np.float32)


def measure(adv_bh, adv_pi_bh, mask_bh, first_pit_bh, solvable_bh) -> dict:
    valid = mask_bh > 0
    a, a_pi = adv_bh[valid], adv_pi_bh[valid]
    pit, solvable = first_pit_bh[valid], solvable_bh[valid] > 0
    corr = float(np.corrcoef(a, a_pi)[0, 1]) if a.std() > 0 and a_pi.std() > 0 else float("nan")
    return dict(std=float(a.std()), std_solvable=float(a[solvable].std()), zero=float(np.mean(np.abs(a) < 0.01)),
                align=corr,
                pit=float(a[pit].mean() - a[~pit].mean()) if pit.any() and (~pit).any() else float("nan"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", help="a prime_jax.mc_label jsonl file of countdown solutions")
    parser.add_argument("--write", help="also write the markdown section to this file")
    args = parser.parse_args(argv)
    q_pi, q_star, mask, v0_star, prompt_b = load(args.labels)
    v0_pi = start_values(q_pi, prompt_b)
    first_pit = (q_star == 0) & (mask > 0) & (np.cumsum((q_star == 0) & (mask > 0), axis=1) == 1)
    adv_pi = np.asarray(process_advantages(q_pi, v0_pi, mask))
    rows = {}
    for k in KS:
        adv = np.asarray(process_advantages(best_of_k_q(q_pi, k), best_of_k_q(v0_pi, k), mask))
        rows[f"BoK(pi), K = {k}"] = measure(adv, adv_pi, mask, first_pit, q_star)
    rows["perfect (solver)"] = measure(np.asarray(process_advantages(q_star, v0_star, mask)), adv_pi, mask, first_pit,
                                       q_star)
    steps, solutions = int(mask.sum()), mask.shape[0]
    accuracy = float(np.mean([q_star[i, int(mask[i].sum()) - 1] for i in range(solutions)]))
    lines = ["| prover | std of A^mu (distinguishability) | std on still-solvable steps | steps with abs(A^mu) < 0.01 "
             "| corr(A^mu, A^pi) (alignment) | first-pit A^mu minus other steps |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {name} | {r['std']:.3f} | {r['std_solvable']:.3f} | {r['zero']:.1%} | {r['align']:.3f} | {r['pit']:+.3f} |"
              for name, r in rows.items()]
    table = "\n".join(lines)
    facts = (f"{solutions} solutions of {len(np.unique(prompt_b))} prompts, {steps} steps; exactly correct "
             f"solutions {accuracy:.1%}; mean Q^pi {q_pi[mask > 0].mean():.3f}; steps still solvable "
             f"{q_star[mask > 0].mean():.1%}; first pits {int(first_pit.sum())}")
    summary = (f"pav_countdown_provers: steps={steps} perfect_zero_share={rows['perfect (solver)']['zero']:.3f} "
               f"bok4_alignment={rows['BoK(pi), K = 4']['align']:.3f}")
    print(facts)
    print(table)
    print(summary)
    if args.write:
        with open(args.write, "w") as f:
            f.write(f"## PAV provers on countdown: Best-of-K vs the perfect (solver) prover\n"
                    f"- command: `python experiments/pav_countdown_provers.py {args.labels}`\n"
                    f"- machine: {cpu_line()}, load {load_average()}\n{date_line()}\n- data: {facts}\n\n"
                    f"{table}\n\n{summary}\n")


if __name__ == "__main__":
    sys.exit(main())
