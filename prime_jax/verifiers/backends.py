"""Sandbox backends: what the sandbox binds from the host (`layout`) and how each kind starts.

- `Bwrap`: bubblewrap (`apt-get install bubblewrap`), `bwrap --unshare-{pid,net,ipc,uts,cgroup}
  --die-with-parent --new-session --clearenv ...`; as root the harness keeps only CAP_SETUID,
  CAP_SETGID and CAP_KILL (to start each test under the dedicated uid and to end it), else the
  code keeps the caller's uid in a user namespace.
- `Builtin`: `_minroot.py`, the same layers made with unshare(2), mount(2), pivot_root(2); root.
- `Insecure`: no isolation; only when named.
Also the limits of one answer (`SandboxLimits`), the dedicated uids (never a host account's) and
the seccomp program of this machine. `sandbox.py` checks a backend and runs answers in it.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import glob
import itertools
import json
import os
import pathlib
import platform
import pwd
import shutil
import subprocess
import sys
import sysconfig
import threading

from prime_jax.verifiers import cgroups, seccomp

INSECURE = "insecure-no-isolation"
HARNESS_SOURCE = pathlib.Path(__file__).with_name("_harness.py").read_text()
ZYGOTE_SOURCE = pathlib.Path(__file__).with_name("_zygote.py").read_text()
MINROOT_SOURCE = pathlib.Path(__file__).with_name("_minroot.py").read_text()
SANDBOX_UID_BASE = 1_000_000  # uid = base + (pid * 64 + counter % 64) % 2**30: unique among runs
WORKDIR = "/tmp"
PACKAGES_DIR = "/opt/prime_jax_packages"  # where the allowed third-party packages appear
PACKAGES = ("numpy", "numpy.libs", "sortedcontainers")  # bound read-only where installed
CAP_SETGID, CAP_SETUID, CAP_SYS_ADMIN = 6, 7, 21
_counter = itertools.count()
_counter_lock = threading.Lock()


class SandboxUnavailable(RuntimeError):
    """A sandbox layer cannot be set up here; the message names it and the fix."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class SandboxLimits:
    """Limits for one answer: memory and processes for all its processes together (cgroup),
    disk = size of its /tmp tmpfs; the rest per process (rlimits) or per test."""

    cpu_seconds: int = 10
    memory_bytes: int = 1 << 30
    max_processes: int = 32
    disk_bytes: int = 64 << 20
    max_file_bytes: int = 16 << 20
    max_open_files: int = 64
    max_output_bytes: int = 1 << 20
    max_total_output_bytes: int = 32 << 20

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"SandboxLimits.{field.name} must be a positive integer, "
                                 f"got {value!r}")


@dataclasses.dataclass(frozen=True)
class Layout:
    """The sandbox's view of the host: its interpreter and the read-only / hidden paths."""

    python: str
    readonly: tuple[str, ...]
    hidden: tuple[str, ...]
    packages: tuple[tuple[str, str], ...] = ()  # (host path, path in the sandbox)


def _linked_libraries(binaries: list[str]) -> set[str]:
    """Paths of the shared libraries `binaries` load (from ldd), with their real paths."""
    try:
        output = subprocess.run(["ldd", *binaries], capture_output=True, text=True,
                                timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    paths = set()
    for line in output.splitlines():
        for token in line.replace("=>", " ").split():
            if token.startswith("/") and not token.endswith(":") and os.path.exists(token):
                paths.update((token, os.path.realpath(token)))
    return paths


@functools.lru_cache(maxsize=None)
def layout() -> Layout:
    """The base interpreter (not a venv's), its stdlib and the directories of its libraries."""
    python = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    stdlib = os.path.realpath(sysconfig.get_path("stdlib"))
    extensions = glob.glob(os.path.join(stdlib, "lib-dynload", "*.so"))
    library_dirs = {os.path.dirname(path) for path in _linked_libraries([python, *extensions])}
    if not library_dirs:
        library_dirs = {path for path in ("/lib", "/lib64", "/usr/lib", "/usr/lib64")
                        if os.path.isdir(path)}
    readonly = sorted({python, stdlib, *library_dirs}, key=lambda p: (p.count("/"), p))
    hidden = tuple(path for name in ("site-packages", "dist-packages")
                   if os.path.isdir(path := os.path.join(stdlib, name)))
    return Layout(python, tuple(readonly), hidden, _package_binds())


def _package_binds() -> tuple[tuple[str, str], ...]:
    """(host directory, sandbox directory) of each of PACKAGES installed for this interpreter
    (numpy needs its numpy.libs sibling); only the interpreter's own version can load them."""
    binds = []
    for root in dict.fromkeys(map(os.path.realpath, sys.path)):
        for name in PACKAGES:
            path = os.path.join(root, name)
            if os.path.isdir(path) and name not in {os.path.basename(s) for s, _ in binds}:
                binds.append((path, f"{PACKAGES_DIR}/{name}"))
    return tuple(binds)


# ---------------------------------------------------------------------------- backends
def _effective_capabilities() -> int:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


class Backend(abc.ABC):
    """How one kind of sandbox is checked and started (each kind supplies ``command``)."""

    name = ""
    isolated = True

    def missing(self) -> list[str]:
        """Layers that cannot be set up here, each as "what: fix"."""
        missing = []
        if not sys.platform.startswith("linux"):
            missing.append("Linux namespaces: the code sandbox runs only on Linux (use a Linux "
                           "machine or container)")
            return missing
        if reason := cgroups.unavailable():
            missing.append(f"per-answer cgroup: {reason}")
        try:
            _filter()
        except seccomp.SeccompUnavailable as error:
            missing.append(f"seccomp filter: {error}")
        return missing

    @abc.abstractmethod
    def command(self, limits: SandboxLimits) -> list[str]:
        """The argv that starts the harness (reading its config on stdin) in the sandbox."""

    def sandbox_uid(self) -> int | None:
        """The dedicated uid the code runs as, or None to keep the caller's: the next of this
        process's 64 uids in the sandbox range that no host account and no /etc/subuid or
        /etc/subgid range uses (a collision would share keyrings and process limits)."""
        if os.geteuid() != 0:
            return None
        taken = _subordinate_ranges()
        for _ in range(64):
            with _counter_lock:
                uid = SANDBOX_UID_BASE + (os.getpid() * 64 + next(_counter) % 64) % (1 << 30)
            if not any(start <= uid < end for start, end in taken) and not _host_account(uid):
                return uid
        raise SandboxUnavailable("no free sandbox uid: every uid tried belongs to a host "
                                 "account or a subordinate id range; fix: change "
                                 "SANDBOX_UID_BASE")


def _host_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def _subordinate_ranges() -> tuple[tuple[int, int], ...]:
    """[start, end) id ranges handed to users in /etc/subuid and /etc/subgid."""
    ranges = []
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as handle:
                for line in handle:
                    fields = line.strip().split(":")
                    if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                        ranges.append((int(fields[1]), int(fields[1]) + int(fields[2])))
        except OSError:
            continue
    return tuple(ranges)


class Bwrap(Backend):
    """bubblewrap; as root the harness drops to a dedicated uid, else a user namespace."""

    name = "bwrap"

    def missing(self) -> list[str]:
        missing = super().missing()
        if shutil.which("bwrap") is None:
            missing.insert(0, "bubblewrap: the bwrap program is not installed; fix: "
                              "apt-get install -y bubblewrap (Debian/Ubuntu), dnf install "
                              "bubblewrap (Fedora), or use the builtin backend as root")
        return missing

    def command(self, limits: SandboxLimits) -> list[str]:
        view = layout()
        argv = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv"]
        for name, value in _environment().items():
            argv += ["--setenv", name, value]
        for path in _ancestors(view.readonly):  # bwrap would copy modes such as /root's 0700
            argv += ["--perms", "0755", "--dir", path]
        for path in view.readonly:
            argv += ["--ro-bind", path, path]
        for path in view.hidden:
            argv += ["--perms", "0555", "--size", "4096", "--tmpfs", path, "--remount-ro", path]
        if view.packages:
            argv += ["--perms", "0755", "--dir", os.path.dirname(PACKAGES_DIR),
                     "--perms", "0755", "--dir", PACKAGES_DIR]
        for source, target in view.packages:
            argv += ["--ro-bind", source, target]
        argv += ["--proc", "/proc", "--dev", "/dev",
                 "--perms", "01777", "--size", str(limits.disk_bytes), "--tmpfs", "/dev/shm",
                 "--perms", "01777", "--size", str(limits.disk_bytes), "--tmpfs", WORKDIR,
                 "--remount-ro", "/", "--chdir", WORKDIR]
        if os.geteuid() == 0:  # kept only until the harness drops to its uid
            argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add",
                     "CAP_KILL"]
        else:
            argv += ["--unshare-user", "--disable-userns"]
        return argv + [view.python, "-I", "-S", "-c", HARNESS_SOURCE]


def _ancestors(paths: tuple[str, ...]) -> list[str]:
    """The directories above `paths` that are not bound themselves, shallowest first."""
    ancestors = {str(parent) for path in paths for parent in pathlib.Path(path).parents}
    return sorted(ancestors - {"/", *paths}, key=lambda p: (p.count("/"), p))


class Builtin(Backend):
    """`_minroot.py`: namespaces, mounts and pivot_root done here, as root."""

    name = "builtin"

    def missing(self) -> list[str]:
        missing = super().missing()
        needed = {"CAP_SYS_ADMIN": CAP_SYS_ADMIN, "CAP_SETUID": CAP_SETUID,
                  "CAP_SETGID": CAP_SETGID}
        caps = _effective_capabilities()
        lacking = [name for name, bit in needed.items() if not caps >> bit & 1]
        if os.geteuid() != 0 or lacking:
            missing.insert(0, f"root with {', '.join(lacking or needed)}: the builtin sandbox "
                              "makes namespaces and mounts itself; fix: run the verifier as "
                              "root with these capabilities (containers: --privileged or "
                              "--cap-add SYS_ADMIN), or install bubblewrap")
        if platform.machine() not in ("x86_64", "aarch64"):
            missing.append(f"pivot_root syscall number for {platform.machine()}: use bwrap")
        return missing

    def command(self, limits: SandboxLimits) -> list[str]:
        view = layout()
        plan = {"readonly": list(view.readonly), "hidden": list(view.hidden),
                "packages": [list(pair) for pair in view.packages],
                "python": view.python, "harness": HARNESS_SOURCE, "workdir": WORKDIR,
                "disk_bytes": limits.disk_bytes, "shm_bytes": limits.disk_bytes}
        return [view.python, "-I", "-S", "-c", MINROOT_SOURCE, json.dumps(plan)]


class Insecure(Backend):
    """No isolation at all: rlimits and a temporary directory. Only when named explicitly."""

    name = INSECURE
    isolated = False

    def missing(self) -> list[str]:
        return []

    def command(self, limits: SandboxLimits) -> list[str]:
        return [layout().python, "-I", "-S", "-c", HARNESS_SOURCE]

    def sandbox_uid(self) -> int | None:
        return None


BACKENDS_BY_NAME = {"bwrap": Bwrap, "builtin": Builtin, INSECURE: Insecure}


@functools.lru_cache(maxsize=None)
def _filter() -> bytes:
    """This machine's seccomp program (raises SeccompUnavailable on another architecture)."""
    return seccomp.deny_filter()


def _environment() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": WORKDIR, "TMPDIR": WORKDIR, "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
