"""Picklable scorers for the pool tests (imported by module name in spawned workers)."""

import os
import time


def crash_or_match(response: str, ground_truth: str) -> float:
    """Kills its worker process on "CRASH"; otherwise exact match."""
    if response == "CRASH":
        os._exit(7)
    return float(response == ground_truth)


def hang_or_match(response: str, ground_truth: str) -> float:
    """Never returns on "HANG"; otherwise exact match."""
    while response == "HANG":
        time.sleep(1)
    return float(response == ground_truth)
