"""Picklable scorers for the pool tests (imported by module name in spawned workers), and the
skip reason for tests that run code."""

import functools
import os
import time

from prime_jax.verifiers import sandbox


@functools.lru_cache(maxsize=None)
def sandbox_missing() -> str:
    """"" if a code sandbox works here, else its message (tests that run code skip with it)."""
    try:
        sandbox.resolve()
    except sandbox.SandboxUnavailable as error:
        return str(error)
    return ""


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
