"""Run metrics: ``metrics.jsonl``, TensorBoard event files and a PNG of the curves.

One row per step. The jsonl file is the source of truth (appended and flushed each step, so a
resumed run continues it); TensorBoard events are written with tensorboard's own event writer,
which imports TensorFlow when it is installed (seqio installs it), so the writer first imports it
quietly and CPU-only through ``data.tf_runtime``; ``plot_curves`` renders the chosen columns of
the jsonl file into ``curves.png``.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Mapping, Sequence

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from prime_jax.data.tf_runtime import import_tf

DEFAULT_CURVES = ("accuracy", "eval_accuracy", "kept_fraction", "prm_loss", "prm_pairwise_acc",
                  "policy_loss", "clip_frac", "approx_kl", "entropy", "response_length")


def _plain(value):
    value = float(value)
    return value if math.isfinite(value) else str(value)


def as_row(step: int, metrics: Mapping[str, float]) -> dict:
    """``{"step": step, **metrics}`` with plain JSON-able floats (non-finite ones as strings)."""
    return {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}


class MetricsWriter:
    """Append-only writer of scalar metrics for one run (``workdir``)."""

    def __init__(self, workdir: str | pathlib.Path, *, tensorboard: bool = True):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.workdir / "metrics.jsonl"
        if tensorboard:
            import_tf()  # before tensorboard does: no CUDA-probe noise, no accelerator memory taken
        self._events = EventFileWriter(str(self.workdir / "tensorboard")) if tensorboard else None

    def write(self, step: int, metrics: Mapping[str, float]) -> dict:
        """Record one row ``{"step": step, **metrics}`` and return it."""
        row = as_row(step, metrics)
        with self.jsonl_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self._events is not None:
            values = [summary_pb2.Summary.Value(tag=k, simple_value=v)
                      for k, v in row.items() if k != "step" and isinstance(v, float)]
            self._events.add_event(event_pb2.Event(
                wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)))
            self._events.flush()
        return row

    def truncate_after(self, step: int) -> None:
        """Drop rows past ``step`` (a resumed run rewrites the steps it repeats)."""
        if self.jsonl_path.exists():
            rows = read_metrics(self.jsonl_path)
            kept = [r for r in rows if r["step"] <= step]
            self.jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def close(self) -> None:
        if self._events is not None:
            self._events.close()


def read_metrics(path: str | pathlib.Path) -> list[dict]:
    """Rows of a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()]


def plot_curves(jsonl_path: str | pathlib.Path, png_path: str | pathlib.Path,
                keys: Sequence[str] = DEFAULT_CURVES, title: str = "") -> pathlib.Path | None:
    """One small panel per metric present in the file, against the step."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    rows = read_metrics(jsonl_path)
    present = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in rows)]
    if not present:
        return None
    cols = min(3, len(present))
    nrows = math.ceil(len(present) / cols)
    fig = Figure(figsize=(4 * cols, 2.8 * nrows))
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax, key in zip(axes.flat, present):
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 40 else None)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(present):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    return pathlib.Path(png_path)
