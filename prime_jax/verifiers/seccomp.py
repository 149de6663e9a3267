"""The code sandbox's system-call filter: a classic-BPF seccomp program built here, in Python.

`deny_filter(arch)` returns the program's bytes (an array of `struct sock_filter`); the harness
installs it in every test process with prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER) after
PR_SET_NO_NEW_PRIVS and right before the code runs, on both backends. The program, per call:

    arch != AUDIT_ARCH of this machine        -> kill the process (no i386 / other ABIs)
    x86_64: nr >= 0x40000000 (the x32 ABI)    -> EPERM
    nr in DENIED                              -> EPERM (io_uring, clone3: ENOSYS, so libraries
                                                 fall back to epoll / clone)
    nr == clone and flags & CLONE_NEW*        -> EPERM (no new namespaces)
    anything else                             -> allow

DENIED is the usual container deny list: kernel keyrings (add_key, keyctl, request_key),
ptrace and cross-process memory access, bpf, userfaultfd, perf_event_open, mount and namespace
calls, kernel modules, kexec and reboot, io_uring, swap / clock / hostname / accounting, and the
SysV / POSIX IPC objects that would outlive one test inside the sandbox's IPC namespace (shmget,
semget, msgget, mq_open). Numbers are the kernel's for x86_64 and aarch64 (asm-generic).
"""

from __future__ import annotations

import errno
import platform
import struct

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000
CLONE_NAMESPACE_FLAGS = 0x7E020080  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME
SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_ERRNO, SECCOMP_RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_NR_OFFSET, _ARCH_OFFSET, _ARG0_OFFSET = 0, 4, 16  # struct seccomp_data (arg0's low half)

# name: (x86_64 number, aarch64 number); None where the call does not exist on that arch.
SYSCALLS = {
    "add_key": (248, 217), "request_key": (249, 218), "keyctl": (250, 219),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "kcmp": (312, 272), "pidfd_getfd": (438, 438), "bpf": (321, 280),
    "userfaultfd": (323, 282), "perf_event_open": (298, 241),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "unshare": (272, 97), "setns": (308, 268), "open_tree": (428, 428),
    "move_mount": (429, 429), "fsopen": (430, 430), "fsconfig": (431, 431),
    "fsmount": (432, 432), "fspick": (433, 433), "mount_setattr": (442, 442),
    "init_module": (175, 105), "finit_module": (313, 273), "delete_module": (176, 106),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294), "reboot": (169, 142),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427), "clone3": (435, 435),
    "acct": (163, 89), "swapon": (167, 224), "swapoff": (168, 225), "syslog": (103, 116),
    "sethostname": (170, 161), "setdomainname": (171, 162), "iopl": (172, None),
    "ioperm": (173, None), "quotactl": (179, 60), "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264), "clock_settime": (227, 112), "settimeofday": (164, 170),
    "adjtimex": (159, 171), "clock_adjtime": (305, 266), "fanotify_init": (300, 262),
    "lookup_dcookie": (212, 18), "uselib": (134, None),
    "shmget": (29, 194), "semget": (64, 190), "msgget": (68, 186), "mq_open": (240, 180),
}
CLONE = {"x86_64": 56, "aarch64": 220}
ENOSYS_CALLS = ("io_uring_setup", "io_uring_enter", "io_uring_register", "clone3")


class SeccompUnavailable(RuntimeError):
    """No filter for this machine's architecture."""


def _instruction(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def denied_numbers(arch: str) -> dict[int, int]:
    """{syscall number: errno} of the deny list on `arch`."""
    column = ("x86_64", "aarch64").index(arch)
    return {numbers[column]: errno.ENOSYS if name in ENOSYS_CALLS else errno.EPERM
            for name, numbers in SYSCALLS.items() if numbers[column] is not None}


def deny_filter(arch: str | None = None) -> bytes:
    """The filter program for `arch` (default: this machine) as `struct sock_filter` bytes."""
    arch = arch or platform.machine()
    if arch not in AUDIT_ARCH:
        raise SeccompUnavailable(f"no seccomp filter for architecture {arch!r}; fix: run the "
                                 "code verifier on x86_64 or aarch64")
    denied = sorted(denied_numbers(arch).items())
    # Layout: 0 ld arch, 1 jeq arch, 2 kill, 3 ld nr, [4 jge x32], one jeq per number,
    # clone check (jeq clone, ld arg0, jset flags), allow, then one return per errno.
    errnos = sorted({value for _, value in denied})
    head = [_instruction(_LD_W_ABS, _ARCH_OFFSET),
            _instruction(_JEQ_K, AUDIT_ARCH[arch], jt=1, jf=0),
            _instruction(_RET_K, SECCOMP_RET_KILL_PROCESS),
            _instruction(_LD_W_ABS, _NR_OFFSET)]
    checks_start = len(head) + (1 if arch == "x86_64" else 0)
    clone_start = checks_start + len(denied)
    allow_at = clone_start + 3
    return_at = {value: allow_at + 1 + index for index, value in enumerate(errnos)}
    program = list(head)
    if arch == "x86_64":
        program.append(_instruction(_JGE_K, X32_SYSCALL_BIT,
                                    jt=return_at[errno.EPERM] - len(program) - 1))
    for number, value in denied:
        program.append(_instruction(_JEQ_K, number, jt=return_at[value] - len(program) - 1))
    program.append(_instruction(_JEQ_K, CLONE[arch], jt=0, jf=2))
    program.append(_instruction(_LD_W_ABS, _ARG0_OFFSET))
    program.append(_instruction(_JSET_K, CLONE_NAMESPACE_FLAGS,
                                jt=return_at[errno.EPERM] - len(program) - 1))
    program.append(_instruction(_RET_K, SECCOMP_RET_ALLOW))
    program += [_instruction(_RET_K, SECCOMP_RET_ERRNO | value) for value in errnos]
    if len(program) > 256:  # every jump must fit the 8-bit offsets
        raise SeccompUnavailable(f"filter of {len(program)} instructions is too long")
    return b"".join(program)
