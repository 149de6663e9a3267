"""A verification pool: scores batches of (response, ground_truth, ability) rows in worker
processes, asynchronously, so the trainer can overlap verification with accelerator work.

Each worker is a `spawn`ed process (never `fork` from a process that runs JAX threads) driven by
one manager thread in the caller. A manager sends one row at a time, so a row that kills its
worker (segfault, os._exit, OOM) or overruns `row_timeout` is known exactly: it scores 0, is
counted ("crash" / "timeout"), and the worker is replaced; the other rows are unaffected.

Code rows run in the code sandbox (`sandbox.py`), which fails closed: the pool checks it when it
starts. With `abilities` naming "code" a missing sandbox layer makes the constructor raise
`SandboxUnavailable` (the message names the capability and the fix); with `abilities=None`
(any ability) the pool starts, logs that message, and `submit` raises it for any batch holding a
code row, so math-only runs work where no sandbox can. `sandbox` picks the backend ("auto",
"bwrap", "builtin", or the explicit opt-out "insecure-no-isolation", whose verdicts say so);
None reads $PRIME_JAX_SANDBOX, else "auto".

    with VerifierPool(num_workers=2) as pool:
        future = pool.submit(rows)       # returns at once
        ...                              # accelerator work
        rewards = future.result()        # list[float], in row order
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from prime_jax.verifiers import code as code_verifier
from prime_jax.verifiers import math as math_verifier
from prime_jax.verifiers import sandbox as code_sandbox
from prime_jax.verifiers.stats import FAILURE_STATUSES, Verdict, VerifierStats

_LOG = logging.getLogger(__name__)
Row = tuple[str, str, str]  # (response, ground_truth, ability)
Scorer = Callable[[str, str], "float | Verdict"]


def as_row(row: Any) -> Row:
    """Accepts (response, ground_truth, ability) tuples or mappings with those keys."""
    if isinstance(row, Mapping):
        return str(row["response"]), str(row["ground_truth"]), str(row["ability"])
    response, ground_truth, ability = row
    return str(response), str(ground_truth), str(ability)


def score_row(row: Row, *, math_timeout: float, code_timeout: float,
              scorers: Mapping[str, Scorer] | None = None,
              code_backend: str | None = None) -> Verdict:
    """Scores one row in the current process (what a worker runs); never raises."""
    response, ground_truth, ability = row
    try:
        if scorers and ability in scorers:
            result = scorers[ability](response, ground_truth)
            return result if isinstance(result, Verdict) else Verdict(float(result), "custom")
        if ability == "math":
            return math_verifier.verify_detailed(response, ground_truth, timeout=math_timeout)
        if ability == "code":
            return code_verifier.verify_detailed(response, ground_truth, timeout=code_timeout,
                                                 backend=code_backend)
        return Verdict(0.0, "unknown", f"unknown ability {ability!r}")
    except Exception as error:  # noqa: BLE001 - isolate per-row failures
        return Verdict(0.0, "error", repr(error)[:300])


def _worker_main(conn, math_timeout: float, code_timeout: float, scorers,
                 code_backend: str | None) -> None:
    """Worker loop: receive a row, send back its verdict, until told to stop."""
    try:
        while True:
            message = conn.recv()
            if message is None:
                break
            verdict = score_row(message, math_timeout=math_timeout, code_timeout=code_timeout,
                                scorers=scorers, code_backend=code_backend)
            conn.send((verdict.score, verdict.status, verdict.reason))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        math_verifier.shutdown()


class _Batch:
    """Collects verdicts for one submitted batch and resolves its futures when complete."""

    def __init__(self, size: int) -> None:
        self.verdicts: list[Verdict | None] = [None] * size
        self.remaining = size
        self.lock = threading.Lock()
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self.future.set_running_or_notify_cancel()

    def set(self, index: int, verdict: Verdict) -> None:
        with self.lock:
            self.verdicts[index] = verdict
            self.remaining -= 1
            done = self.remaining == 0
        if done:
            self.future.set_result(list(self.verdicts))


class VerifierPool:
    """Process pool of verifiers with an async (`submit`) and a sync (`score`) API.

    Args:
      num_workers: worker processes (default: CPU count).
      math_timeout: symbolic-check limit per math row (s). code_timeout: limit per code test (s).
      row_timeout: hard wall limit per row; the worker is killed past it (default 120 s).
      scorers: optional {ability: picklable callable(response, ground_truth) -> float|Verdict}
        overriding or extending "math" / "code".
      start_method: "spawn" (default) or "forkserver"; never "fork".
      sandbox: code sandbox backend name (see the module doc); None = $PRIME_JAX_SANDBOX/auto.
      abilities: the abilities this pool will score; if it names "code" (or the sandbox is
        needed and this is None, see the module doc) the sandbox is checked at start.
    """

    def __init__(self, num_workers: int | None = None, *, math_timeout: float = 5.0,
                 code_timeout: float = 4.0, row_timeout: float = 120.0,
                 scorers: Mapping[str, Scorer] | None = None,
                 start_method: str = "spawn", sandbox: str | None = None,
                 abilities: Collection[str] | None = None) -> None:
        if start_method == "fork":
            raise ValueError("fork is unsafe in a process running JAX threads")
        self._scorers = dict(scorers or {})
        self._sandbox_error: code_sandbox.SandboxUnavailable | None = None
        code_backend = self._check_sandbox(sandbox, abilities)
        self.num_workers = num_workers or os.cpu_count() or 1
        self.row_timeout = row_timeout
        self.stats = VerifierStats()
        self._context = multiprocessing.get_context(start_method)
        self._worker_args = (math_timeout, code_timeout, self._scorers, code_backend)
        self._jobs: queue.Queue = queue.Queue()
        self._closed = False
        self._threads = [threading.Thread(target=self._manage, name=f"verifier-{i}", daemon=True)
                         for i in range(self.num_workers)]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------------ public API
    def submit_detailed(self, rows: Sequence[Any]) -> concurrent.futures.Future:
        """Schedules `rows`; the future resolves to a list of `Verdict`s in row order."""
        if self._closed:
            raise RuntimeError("VerifierPool is closed")
        rows = [as_row(row) for row in rows]
        if self._sandbox_error is not None and any(
                row[2] == "code" and "code" not in self._scorers for row in rows):
            raise self._sandbox_error
        batch = _Batch(len(rows))
        if not rows:
            batch.future.set_result([])
        for index, row in enumerate(rows):
            self._jobs.put((batch, index, row))
        return batch.future

    def submit(self, rows: Sequence[Any]) -> concurrent.futures.Future:
        """Schedules `rows`; the future resolves to a list of float rewards in row order."""
        rewards: concurrent.futures.Future = concurrent.futures.Future()
        rewards.set_running_or_notify_cancel()
        detailed = self.submit_detailed(rows)
        detailed.add_done_callback(
            lambda done: rewards.set_result([verdict.score for verdict in done.result()]))
        return rewards

    score_async = submit

    def score(self, rows: Sequence[Any]) -> list[float]:
        """Synchronous `submit(rows).result()`."""
        return self.submit(rows).result()

    def close(self) -> None:
        """Stops the workers (after the rows already submitted are scored)."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> "VerifierPool":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _check_sandbox(self, name: str | None, abilities: Collection[str] | None) -> str | None:
        """The checked sandbox backend's name; see the module doc for what a failure does."""
        if "code" in self._scorers or (abilities is not None and "code" not in abilities):
            return None
        try:
            return code_sandbox.resolve(name).name
        except code_sandbox.SandboxUnavailable as error:
            if abilities is not None:
                raise
            self._sandbox_error = error
            _LOG.error("code rows will be refused: %s", error)
            return None

    def _start_worker(self):
        parent_conn, child_conn = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child_conn, *self._worker_args),
                                        name="prime-verifier", daemon=False)
        process.start()
        child_conn.close()
        return process, parent_conn

    @staticmethod
    def _stop_worker(process, conn, graceful: bool) -> None:
        if graceful:
            try:
                conn.send(None)
            except OSError:
                pass
            process.join(timeout=10)
        if process.is_alive():
            process.kill()
        process.join()
        conn.close()

    def _run_one(self, process, conn, row: Row) -> tuple[Verdict, bool]:
        """(verdict, worker still healthy?) for one row on one worker."""
        try:
            conn.send(row)
            ready = multiprocessing.connection.wait([conn, process.sentinel], self.row_timeout)
            if conn in ready:
                score, status, reason = conn.recv()
                return Verdict(score, status, reason), True
        except (EOFError, OSError, ValueError) as error:
            return Verdict(0.0, "crash", f"worker lost: {error!r}"), False
        if ready:
            return Verdict(0.0, "crash", f"worker died (exit code {process.exitcode})"), False
        return Verdict(0.0, "timeout", f"row exceeded {self.row_timeout}s; worker killed"), False

    def _manage(self) -> None:
        process = conn = None
        try:
            while (job := self._jobs.get()) is not None:
                batch, index, row = job
                try:
                    if process is None:
                        process, conn = self._start_worker()
                    verdict, healthy = self._run_one(process, conn, row)
                except Exception as error:  # noqa: BLE001 - e.g. a worker that cannot start
                    verdict, healthy = Verdict(0.0, "error", repr(error)[:300]), process is None
                if not healthy and process is not None:
                    self._stop_worker(process, conn, graceful=False)
                    process = conn = None
                self.stats.record(row[2], verdict.status)
                if verdict.status in FAILURE_STATUSES:
                    _LOG.warning("verification of a %s row: %s %s", row[2], verdict.status,
                                 verdict.reason)
                batch.set(index, verdict)
        finally:
            if process is not None:
                self._stop_worker(process, conn, graceful=True)
