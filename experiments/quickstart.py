"""Run a training config end to end and report accuracy and time per stage.

    python experiments/quickstart.py [--gin configs/quickstart.gin] [--gin BINDING ...] [--workdir DIR]

Runs ``python -m prime_jax.train`` in a subprocess (wall time measured around
it), then summarises the run's ``metrics.jsonl`` and ``sft_history.json``:
held-out greedy accuracy after SFT and after RL, training (T=1) accuracy of
the first and last steps, and the mean seconds of each RL stage. Prints a
markdown table and appends it to ``experiments/LOG.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))  # machine.py
from machine import RESULTS_LOG, cpu_name  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
STAGES = ("seconds_rollout", "seconds_logprobs", "seconds_verify_wait", "seconds_prm", "seconds_policy",
          "seconds_step")


def summarise(workdir: pathlib.Path, wall: float, command: str) -> str:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["step"] > 0]
    evals = [(r["step"], r["eval_accuracy"]) for r in rows if "eval_accuracy" in r]
    sft = json.loads((workdir / "sft_history.json").read_text()) if (workdir / "sft_history.json").exists() else []
    head, tail = steps[:5], steps[-5:]
    mean = lambda rs, k: float(np.mean([r[k] for r in rs if k in r])) if rs else float("nan")  # noqa: E731
    cpu = cpu_name()
    lines = [
        f"## {workdir.name}: end-to-end run ({datetime.date.today().isoformat()})",
        f"- command: `{command}`",
        f"- machine: {cpu}, {os.cpu_count()} cores, CPU only",
        f"- wall time: {wall:.0f} s in all; SFT {sft[-1]['seconds']:.0f} s ({sft[-1]['sft_step']} steps, "
        f"final loss {sft[-1]['sft_loss']:.3f})" if sft else f"- wall time: {wall:.0f} s",
        "",
        "| held-out greedy accuracy | step |", "|---|---|",
        *[f"| {acc:.3f} | {step} |" for step, acc in evals],
        "",
        "| training accuracy (T=1) | mean |", "|---|---|",
        f"| first 5 RL steps | {mean(head, 'accuracy'):.3f} |",
        f"| last 5 RL steps | {mean(tail, 'accuracy'):.3f} |",
        f"| kept fraction (all steps) | {mean(steps, 'kept_fraction'):.3f} |",
        "",
        "| stage | mean seconds per RL step |", "|---|---|",
        *[f"| {k.removeprefix('seconds_')} | {mean(steps[1:], k):.3f} |" for k in STAGES],
        f"| rollout tokens/s | {mean(steps[1:], 'rollout_tokens_per_s'):.0f} |",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gin", action="append", default=[])
    parser.add_argument("--workdir", default="runs/quickstart_benchmark")
    args = parser.parse_args()
    gin_args = args.gin or ["configs/quickstart.gin"]
    cmd = [sys.executable, "-m", "prime_jax.train", *[a for g in gin_args for a in ("--gin", g)],
           "--workdir", args.workdir]
    start = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT)
    wall = time.time() - start
    report = summarise(ROOT / args.workdir, wall, " ".join(["python -m prime_jax.train", *cmd[3:]]))
    print(report)
    with RESULTS_LOG.open("a") as f:
        f.write("\n" + report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
