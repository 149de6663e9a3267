"""The seccomp program itself: its syscall numbers agree with libseccomp's tables for both
architectures, and the BPF it builds decides each call as documented (run on an interpreter of
classic BPF written here, so the x86_64 and the aarch64 programs are both checked on any host)."""

import ctypes
import ctypes.util
import errno
import struct

import pytest

from prime_jax.verifiers import seccomp

ARCHES = ("x86_64", "aarch64")


def _libseccomp():
    name = ctypes.util.find_library("seccomp")
    return ctypes.CDLL(name) if name else None


@pytest.mark.skipif(_libseccomp() is None, reason="libseccomp is not installed")
@pytest.mark.parametrize("arch", ARCHES)
def test_numbers_agree_with_libseccomp(arch):
    resolve = _libseccomp().seccomp_syscall_resolve_name_arch
    resolve.argtypes, resolve.restype = [ctypes.c_uint32, ctypes.c_char_p], ctypes.c_int
    column = ARCHES.index(arch)
    wrong = {}
    for name, numbers in {**seccomp.SYSCALLS, "clone": tuple(seccomp.CLONE.values())}.items():
        theirs = resolve(seccomp.AUDIT_ARCH[arch], name.encode())
        ours = numbers[column]
        if (ours if ours is not None else "absent") != (theirs if theirs >= 0 else "absent"):
            wrong[name] = (ours, theirs)
    assert wrong == {}


def run_bpf(program: bytes, nr: int, arch: int, arg0: int = 0) -> int:
    """A classic-BPF interpreter for the four instructions the filter uses."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    code = [struct.unpack("=HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    pc, acc = 0, 0
    while True:
        op, jt, jf, k = code[pc]
        if op == 0x20:
            acc = struct.unpack_from("=I", data, k)[0]
        elif op in (0x15, 0x35, 0x45):
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[op]
            pc += jt if taken else jf
        elif op == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")
        pc += 1


@pytest.mark.parametrize("arch", ARCHES)
def test_the_program_decides_as_documented(arch):
    program = seccomp.deny_filter(arch)
    audit = seccomp.AUDIT_ARCH[arch]
    column = ARCHES.index(arch)
    deny = seccomp.SECCOMP_RET_ERRNO
    for name, numbers in seccomp.SYSCALLS.items():
        if numbers[column] is not None:
            expected = errno.ENOSYS if name in seccomp.ENOSYS_CALLS else errno.EPERM
            assert run_bpf(program, numbers[column], audit) == deny | expected, name
    getpid = {"x86_64": 39, "aarch64": 172}[arch]
    assert run_bpf(program, getpid, audit) == seccomp.SECCOMP_RET_ALLOW
    assert run_bpf(program, getpid, 0x40000003) == seccomp.SECCOMP_RET_KILL_PROCESS  # i386
    clone = seccomp.CLONE[arch]
    assert run_bpf(program, clone, audit, arg0=0x01200011) == seccomp.SECCOMP_RET_ALLOW  # fork
    assert run_bpf(program, clone, audit, arg0=0x10000000) == deny | errno.EPERM  # NEWUSER
    if arch == "x86_64":
        assert run_bpf(program, 0x40000000 | getpid, audit) == deny | errno.EPERM  # x32


def test_unknown_architecture_fails_closed():
    with pytest.raises(seccomp.SeccompUnavailable, match="riscv64"):
        seccomp.deny_filter("riscv64")
