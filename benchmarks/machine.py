"""The machine line every benchmark writes into RESULTS.md."""

from __future__ import annotations

import os
import pathlib
import platform


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
