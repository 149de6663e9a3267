"""What a PRIME run prints: one compact line per RL step and a closing summary.

The full record of every step is ``metrics.jsonl`` (and TensorBoard); the console shows what a
researcher watches - training accuracy, the share of groups kept by the filter, the PRM's
within-group pairwise accuracy, the policy's approximate KL to the rollout policy and seconds.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence

STEP_FIELDS = (  # (metrics key, label, format)
    ("accuracy", "acc", "{:.3f}"),
    ("kept_fraction", "kept", "{:.2f}"),
    ("short_batch_groups", "short", "{:.0f}"),
    ("prm_pairwise_acc", "prm_pair", "{:.2f}"),
    ("approx_kl", "kl", "{:.1e}"),
    ("eval_accuracy", "eval", "{:.3f}"),
    ("seconds_step", "s", "{:.2f}"),
)


def step_line(row: dict) -> str:
    """``step 12 | acc 0.684 | kept 0.75 | prm_pair 0.81 | kl 2.1e-03 | s 0.91`` (absent keys
    are left out, and ``short`` (groups missing from a short batch) while it is 0; non-finite
    values print as they are)."""
    parts = [f"step {row['step']}"]
    for key, label, fmt in STEP_FIELDS:
        if key in row and not (key == "short_batch_groups" and row[key] == 0):
            value = row[key]
            text = fmt.format(value) if isinstance(value, (int, float)) and math.isfinite(value) else str(value)
            parts.append(f"{label} {text}")
    return " | ".join(parts)


def _mean(rows: Sequence[dict], key: str) -> float | None:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return sum(values) / len(values) if values else None


def closing_summary(rows: Sequence[dict], workdir: pathlib.Path, *, last_checkpoint: int | None,
                    uses_prm: bool, window: int = 5) -> str:
    """Accuracy over the first and last ``window`` RL steps of this invocation, held-out accuracy,
    where the curves and checkpoints are, and the commands that export and evaluate the run."""
    steps = [r for r in rows if r["step"] > 0]
    lines = ["", f"PRIME run finished: {workdir}"]
    if steps:
        first, last = _mean(steps[:window], "accuracy"), _mean(steps[-window:], "accuracy")
        if first is not None and last is not None:
            lines.append(f"  training accuracy (T as sampled): {first:.3f} (first {min(window, len(steps))} steps) "
                         f"-> {last:.3f} (last {min(window, len(steps))}), steps {steps[0]['step']}-{steps[-1]['step']}")
    short = [r for r in steps if r.get("short_batch_groups")]
    if short:
        lines.append(f"  short batches: {len(short)} of {len(steps)} steps, "
                     f"{sum(r['short_batch_groups'] for r in short):.0f} groups missing in all "
                     "(CollectConfig.short_batch; raise max_rollout_rounds or widen the accuracy band)")
    evals = [r for r in rows if "eval_accuracy" in r]
    if evals:
        lines.append("  held-out greedy accuracy: " + ", ".join(
            f"{r['eval_accuracy']:.3f} @ step {r['step']}" for r in evals))
    lines += [f"  metrics: {workdir / 'metrics.jsonl'} (TensorBoard events beside it)",
              f"  curves:  {workdir / 'curves.png'}"]
    if last_checkpoint is not None:
        lines.append(f"  checkpoint: {workdir / 'checkpoints' / str(last_checkpoint)}")
    lines += [f"  export:   python -m prime_jax.export --workdir {workdir} --out {workdir / 'hf_policy'}",
              f"  evaluate: python -m prime_jax.evaluate --workdir {workdir} --task TASK"
              + (f" --prm-workdir {workdir}" if uses_prm else "")]
    return "\n".join(lines)
