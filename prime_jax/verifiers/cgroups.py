"""Per-answer cgroups: one memory + pids cgroup for every sandboxed run.

The memory limit covers everything the answer's processes charge to it together - heap, stacks,
tmpfs and /dev/shm files, memfd and SysV shared memory - and the pids limit counts all of its
processes and threads. cgroup v2 (`memory.max`, `memory.swap.max`, `pids.max`) is used when the
unified hierarchy offers both controllers, else cgroup v1 (`memory.limit_in_bytes`,
`memory.memsw.limit_in_bytes` where swap accounting exists, `pids.max`). New cgroups are made
under the caller's own cgroup (v1) or under `/sys/fs/cgroup/prime_jax_sandbox` (v2, whose root is
exempt from the no-internal-processes rule). `unavailable()` says why neither works, or "".
"""

from __future__ import annotations

import functools
import itertools
import os
import signal
import time

ROOT = "/sys/fs/cgroup"
V2_PARENT = "prime_jax_sandbox"
_counter = itertools.count()


def _write(path: str, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _v2_ready() -> bool:
    try:
        with open(f"{ROOT}/cgroup.controllers") as handle:
            return {"memory", "pids"} <= set(handle.read().split())
    except OSError:
        return False


def _v1_dirs() -> dict[str, str] | None:
    """{controller: the caller's cgroup directory} for v1 memory and pids, if mounted."""
    dirs = {}
    try:
        with open("/proc/self/cgroup") as handle:
            for line in handle:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for controller in ("memory", "pids"):
                    if controller in controllers.split(","):
                        dirs[controller] = os.path.join(ROOT, controller, path.lstrip("/"))
    except OSError:
        return None
    return dirs if len(dirs) == 2 and all(map(os.path.isdir, dirs.values())) else None


@functools.lru_cache(maxsize=None)
def _v2_parent() -> str:
    """The v2 parent directory with memory and pids delegated to its children."""
    parent = os.path.join(ROOT, V2_PARENT)
    os.makedirs(parent, exist_ok=True)
    _write(f"{ROOT}/cgroup.subtree_control", "+memory +pids")
    _write(f"{parent}/cgroup.subtree_control", "+memory +pids")
    return parent


class AnswerCgroup:
    """A fresh cgroup (v2) or memory + pids pair (v1) with the answer's limits set."""

    def __init__(self, memory_bytes: int, max_processes: int) -> None:
        name = f"answer_{os.getpid()}_{next(_counter)}"
        if _v2_ready():
            self.dirs = [os.path.join(_v2_parent(), name)]
            os.mkdir(self.dirs[0])
            self._set_v2(memory_bytes, max_processes)
        else:
            parents = _v1_dirs()
            if parents is None:
                raise OSError("no cgroup v1 memory and pids controllers")
            self.dirs = [os.path.join(parents["memory"], name), os.path.join(parents["pids"], name)]
            for path in self.dirs:
                os.mkdir(path)
            self._set_v1(memory_bytes, max_processes)

    def _set_v2(self, memory_bytes: int, max_processes: int) -> None:
        cgroup = self.dirs[0]
        _write(f"{cgroup}/memory.max", str(memory_bytes))
        if os.path.exists(f"{cgroup}/memory.swap.max"):
            _write(f"{cgroup}/memory.swap.max", "0")
        _write(f"{cgroup}/pids.max", str(max_processes))

    def _set_v1(self, memory_bytes: int, max_processes: int) -> None:
        memory, pids = self.dirs
        _write(f"{memory}/memory.limit_in_bytes", str(memory_bytes))
        if os.path.exists(f"{memory}/memory.memsw.limit_in_bytes"):
            _write(f"{memory}/memory.memsw.limit_in_bytes", str(memory_bytes))
        _write(f"{pids}/pids.max", str(max_processes))

    @property
    def procs_files(self) -> list[str]:
        """The files a process writes its pid to in order to join (all of them)."""
        return [f"{path}/cgroup.procs" for path in self.dirs]

    def pids(self) -> list[int]:
        """Live members (read from the last directory: pids in v1, the only one in v2)."""
        try:
            with open(self.procs_files[-1]) as handle:
                return [int(line) for line in handle if line.strip()]
        except OSError:
            return []

    def destroy(self, seconds: float = 15.0) -> int:
        """Kills every member until none is left, then removes the cgroup; returns how many
        processes were still there on the first sweep. Keeps trying for ``seconds`` (a killed
        process on a loaded machine can take a while to leave), polling every 2-20 ms."""
        first, deadline, pause = None, time.monotonic() + seconds, 0.002
        while True:
            pids = self.pids()
            first = len(pids) if first is None else first
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if (not pids and self._remove()) or time.monotonic() > deadline:
                return first or 0
            time.sleep(pause)
            pause = min(2 * pause, 0.02)

    def _remove(self) -> bool:
        """Removes the directories; False while one is still busy (members not yet gone)."""
        for path in self.dirs:
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:
                return False
        return True


@functools.lru_cache(maxsize=None)
def unavailable() -> str:
    """"" if per-answer cgroups can be made here, else why not (a trial cgroup is made)."""
    try:
        AnswerCgroup(64 << 20, 4).destroy()
    except OSError as error:
        return (f"cannot create a cgroup with memory and pids limits under {ROOT} ({error}); "
                "run the verifier as root with a writable cgroup filesystem (containers: "
                "--privileged, or --cgroupns=private with /sys/fs/cgroup mounted read-write)")
    return ""
