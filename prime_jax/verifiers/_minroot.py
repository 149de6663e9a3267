"""Built-in sandbox launcher (the backend for machines without bubblewrap); stdlib only, as root.

Run by `sandbox.py` as `python -I -S -c <this source> PLAN_JSON`. It unshares the mount, PID,
network, IPC, UTS and cgroup namespaces, forks the namespace's first process, and waits for it
(its exit status becomes ours). That process builds a private root on a fresh tmpfs - the
read-only binds listed in the plan (the interpreter, its stdlib and the shared libraries it
links), empty read-only tmpfs over the stdlib's site-packages, a new /proc for the PID namespace
with /proc/sys read-only, a /dev holding only null, zero, full, random and urandom, and
size-capped tmpfs for /tmp and /dev/shm - pivots into it, detaches the host tree, and executes
the harness, which then drops to the dedicated uid. When that first process ends the kernel kills
every process in the namespace; when this launcher dies the first process gets SIGKILL.
Any failure exits with status 70 and a message on stderr: nothing runs half-isolated.
"""

import ctypes
import json
import os
import platform
import signal
import sys

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH, PR_SET_PDEATHSIG = 2, 1
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
DEVICES = ("null", "zero", "full", "random", "urandom")
# Where the new root's tmpfs may be mounted (inside our private mount namespace): the first of these
# that is no bound source's ancestor, since the tmpfs hides everything below its mount point.
NEWROOT_CANDIDATES = ("/tmp", "/mnt", "/media", "/srv", "/run", "/var/tmp")
LIBC = ctypes.CDLL(None, use_errno=True)


def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source, target, flags, fstype=None, data=None):
    """mount(2); raises OSError naming the target."""
    encode = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(LIBC.mount(encode(source), encode(target), encode(fstype), flags, encode(data)),
           f"mount {target}")


def tmpfs(target, size, mode, readonly=False):
    """A size-capped tmpfs at `target` (nosuid, nodev)."""
    flags = MS_NOSUID | MS_NODEV | (MS_RDONLY if readonly else 0)
    mount("tmpfs", target, flags, "tmpfs", f"size={size},mode={mode:o}")


def bind_readonly(source, target):
    """Binds `source` (file or directory, no submounts) read-only at `target`."""
    if os.path.isdir(source):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        open(target, "a").close()
    mount(source, target, MS_BIND)
    mount(None, target, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def make_dev(root):
    """A tiny /dev with the harmless character devices and a capped /dev/shm."""
    dev = root + "/dev"
    os.makedirs(dev, mode=0o755)
    tmpfs(dev, 1 << 16, 0o755)
    for name in DEVICES:
        open(f"{dev}/{name}", "a").close()
        mount(f"/dev/{name}", f"{dev}/{name}", MS_BIND)
        mount(None, f"{dev}/{name}", MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC)
    os.mkdir(f"{dev}/shm")
    return dev


def new_root_mount_point(sources, candidates=NEWROOT_CANDIDATES, exists=os.path.isdir):
    """The first existing candidate directory that is no source path's ancestor (a tmpfs mounted
    there would hide the source: e.g. a virtual environment under /tmp); OSError if none is."""
    for candidate in candidates:
        if exists(candidate) and not any(s == candidate or s.startswith(candidate + "/") for s in sources):
            return candidate
    raise OSError(f"no mount point for the private root: each of {candidates} is missing or holds a "
                  f"path the sandbox binds ({sorted(sources)})")


def build_root(plan):
    """Builds the private root on a tmpfs (at ``new_root_mount_point``) and pivots into it."""
    mount(None, "/", MS_REC | MS_PRIVATE)
    root = new_root_mount_point([*plan["readonly"], *(source for source, _ in plan["packages"])])
    tmpfs(root, 1 << 20, 0o755)
    for path in plan["readonly"]:
        bind_readonly(path, root + path)
    for path in plan["hidden"]:
        tmpfs(root + path, 4096, 0o555, readonly=True)
    for source, target in plan["packages"]:
        bind_readonly(source, root + target)
    dev = make_dev(root)
    tmpfs(f"{dev}/shm", plan["shm_bytes"], 0o1777)
    os.makedirs(root + "/proc", mode=0o555)
    mount("proc", root + "/proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "proc")
    mount(root + "/proc/sys", root + "/proc/sys", MS_BIND | MS_REC)
    mount(None, root + "/proc/sys", MS_BIND | MS_REMOUNT | MS_RDONLY)
    os.makedirs(root + plan["workdir"], mode=0o755, exist_ok=True)
    tmpfs(root + plan["workdir"], plan["disk_bytes"], 0o1777)
    mount(None, root, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(root)
    _check(LIBC.syscall(SYS_PIVOT_ROOT[platform.machine()], b".", b"."), "pivot_root")
    _check(LIBC.umount2(b".", MNT_DETACH), "detach the host root")
    os.chdir("/")


def first_process(plan):
    """The namespace's first process: private root, then the harness. Never returns."""
    try:
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        build_root(plan)
        os.execve(plan["python"], [plan["python"], "-I", "-S", "-c", plan["harness"]],
                  {"PATH": "/usr/bin:/bin", "HOME": plan["workdir"], "LANG": "C.UTF-8",
                   "TMPDIR": plan["workdir"], "PYTHONHASHSEED": "0"})
    except BaseException as error:  # noqa: BLE001 - report and refuse to run
        os.write(2, f"minroot: {error}\n".encode())
    os._exit(70)


def main():
    plan = json.loads(sys.argv[1])
    flags = (CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
             | CLONE_NEWCGROUP)
    try:
        _check(LIBC.unshare(flags), "unshare(mount, pid, net, ipc, uts, cgroup)")
    except OSError as error:
        os.write(2, f"minroot: {error}\n".encode())
        os._exit(70)
    pid = os.fork()
    if pid == 0:
        first_process(plan)
    status = os.waitpid(pid, 0)[1]
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


if __name__ == "__main__":
    main()
