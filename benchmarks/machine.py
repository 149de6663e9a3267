"""The machine line every benchmark and experiment writes, and where results go.

``RESULTS_LOG`` is the append-only log (``experiments/LOG.md``); ``FIGURES`` the one folder of
figures (``docs/figures/``, shown by the README and the documentation site). Experiment drivers
in ``experiments/`` import this module from ``benchmarks/``.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import platform

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS_LOG = ROOT / "experiments" / "LOG.md"
FIGURES = ROOT / "docs" / "figures"


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (else what ``platform`` knows)."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_line() -> str:
    """``"<CPU model>, <n> cores"``."""
    return f"{cpu_name()}, {os.cpu_count()} cores"


def load_average() -> str:
    """The 1-minute load average, e.g. ``"4.1"`` (the cores are shared: timings depend on it)."""
    return f"{os.getloadavg()[0]:.1f}"


def date_line() -> str:
    """``"- date: YYYY-MM-DD (run at HH:MM)"`` for a section of the results log."""
    now = datetime.datetime.now()
    return f"- date: {now:%Y-%m-%d} (run at {now:%H:%M})"
