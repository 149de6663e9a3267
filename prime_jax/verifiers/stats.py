"""Per-call verdicts and thread-safe counters shared by the math and code verifiers and the pool."""

from __future__ import annotations

import collections
import dataclasses
import threading

# Statuses that mean "the verifier could not decide"; they score 0 and are logged.
FAILURE_STATUSES = frozenset({"timeout", "crash", "error", "malformed", "too_long", "unknown"})


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One verification: the reward in [0, 1], a short status and a human-readable reason."""

    score: float
    status: str
    reason: str = ""


class VerifierStats:
    """Counts verdict statuses per ability (e.g. ``stats.counts()["math"]["timeout"]``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, collections.Counter] = collections.defaultdict(
            collections.Counter)

    def record(self, ability: str, status: str, n: int = 1) -> None:
        with self._lock:
            self._counts[ability][status] += n
            self._counts[ability]["total"] += n

    def merge(self, other: "VerifierStats") -> None:
        for ability, counter in other.counts().items():
            with self._lock:
                self._counts[ability].update(counter)

    def counts(self) -> dict[str, dict[str, int]]:
        """A snapshot: {ability: {status: count, "total": count}}."""
        with self._lock:
            return {ability: dict(counter) for ability, counter in self._counts.items()}

    def get(self, ability: str, status: str) -> int:
        with self._lock:
            return self._counts[ability][status] if ability in self._counts else 0

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
