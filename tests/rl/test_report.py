"""The console lines of a PRIME run (prime_jax/rl/report.py)."""

import pathlib

from prime_jax.rl.report import closing_summary, step_line


def test_step_line_shows_short_batches_only_when_there_are_some():
    row = {"step": 3, "accuracy": 0.5, "kept_fraction": 0.25, "short_batch_groups": 0.0, "seconds_step": 1.0}
    assert step_line(row) == "step 3 | acc 0.500 | kept 0.25 | s 1.00"
    assert step_line({**row, "short_batch_groups": 3.0}) == "step 3 | acc 0.500 | kept 0.25 | short 3 | s 1.00"


def test_closing_summary_counts_short_batches():
    rows = [{"step": s, "accuracy": 0.5, "short_batch_groups": float(s % 2)} for s in range(1, 5)]
    text = closing_summary(rows, pathlib.Path("runs/x"), last_checkpoint=None, uses_prm=True)
    assert "short batches: 2 of 4 steps, 2 groups missing in all" in text
    no_short = [rows[1]]  # step 2, nothing missing
    assert "short batches" not in closing_summary(no_short, pathlib.Path("runs/x"), last_checkpoint=None, uses_prm=True)
