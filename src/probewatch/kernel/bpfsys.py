"""Minimal bpf(2) through ctypes: load a program, create a map, nothing more.

This is the probing half of BPF support (does this kernel let us load a program
of type X?); the real loader lives in ``collect/bpf``. File descriptors returned
here are plain ints owned by the caller: close them with :func:`os.close`.

Example::

    fd = prog_load(BPF_PROG_TYPE_TRACEPOINT, TRIVIAL_PROG)   # r0 = 0; exit
    os.close(fd)
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from collections.abc import Mapping
from typing import Any

# syscall numbers of bpf(2) per machine (uname -m)
SYS_BPF = {
    "x86_64": 321,
    "i386": 357,
    "i686": 357,
    "aarch64": 280,
    "arm64": 280,
    "riscv64": 280,
    "loongarch64": 280,
    "armv7l": 386,
    "armv6l": 386,
    "ppc64le": 361,
    "ppc64": 361,
    "s390x": 351,
    "mips64": 5315,
}

# enum bpf_cmd
BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5

# enum bpf_map_type
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_RINGBUF = 27

# enum bpf_prog_type
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_KPROBE = 2
BPF_PROG_TYPE_TRACEPOINT = 5
BPF_PROG_TYPE_RAW_TRACEPOINT = 17

BPF_OBJ_NAME_LEN = 16

# r0 = 0 (BPF_ALU64 | BPF_MOV | BPF_K); exit (BPF_JMP | BPF_EXIT)
TRIVIAL_PROG = bytes([0xB7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])


class SyscallError(OSError):
    """A raw syscall made through :func:`syscall` failed; ``errno`` is set, ``what`` says which."""

    def __init__(self, err: int, what: str) -> None:
        super().__init__(err, os.strerror(err))
        self.what = what

    def __str__(self) -> str:
        name = errno.errorcode.get(self.errno or 0, str(self.errno))
        return f"{self.what}: {name} ({self.strerror})"


class BpfError(SyscallError):
    """bpf(2) failed; ``errno`` is set, ``log`` holds the verifier log when one was asked for."""

    def __init__(self, err: int, what: str, log: str = "") -> None:
        super().__init__(err, what)
        self.log = log


class _MapCreateAttr(ctypes.Structure):
    # the BPF_MAP_CREATE member of union bpf_attr, up to map_extra (Linux 5.16 layout)
    _fields_ = [
        ("map_type", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("numa_node", ctypes.c_uint32),
        ("map_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("map_ifindex", ctypes.c_uint32),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
    ]


class _ProgLoadAttr(ctypes.Structure):
    # the BPF_PROG_LOAD member of union bpf_attr, up to expected_attach_type (4.17)
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("prog_ifindex", ctypes.c_uint32),
        ("expected_attach_type", ctypes.c_uint32),
    ]


_libc: ctypes.CDLL | None = None


def syscall(nr: int, *args: Any) -> int:
    """libc syscall(nr, args...) (ctypes-typed args); the result, -1 with errno on failure."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fn = _libc.syscall
    fn.restype = ctypes.c_long
    return int(fn(ctypes.c_long(nr), *args))


def syscall_nr(
    table: Mapping[str, int], what: str, error: type[SyscallError], machine: str | None = None
) -> int:
    """``table[machine]`` (default: this machine); ``error(ENOSYS, what + machine)`` if absent."""
    m = machine or os.uname().machine
    try:
        return table[m]
    except KeyError:
        raise error(errno.ENOSYS, f"{what}{m}") from None


def sys_bpf_nr(machine: str | None = None) -> int:
    """The bpf(2) syscall number on ``machine`` (default: this one); ENOSYS if unknown."""
    return syscall_nr(SYS_BPF, "bpf(2) syscall number unknown for machine ", BpfError, machine)


def bpf(cmd: int, attr: ctypes.Structure, what: str = "bpf") -> int:
    """Call bpf(cmd, &attr, sizeof attr); return the (non-negative) result or raise BpfError."""
    ret = syscall(
        sys_bpf_nr(), ctypes.c_int(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr))
    )
    if ret < 0:
        raise BpfError(ctypes.get_errno(), what)
    return ret


def kernel_version_code(release: str | None = None) -> int:
    """LINUX_VERSION_CODE for a release string ('6.1.0-18-amd64' -> 0x060100).

    Only kernels before 5.0 check ``kern_version`` of kprobe programs. Ubuntu's
    /proc/version_signature carries the real upstream sublevel and wins when present.
    """
    if release is None:
        release = os.uname().release
        try:
            with open("/proc/version_signature") as f:
                sig = f.read().split()
            if sig:
                release = sig[-1]
        except OSError:
            pass
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not m:
        return 0
    a, b, c = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    return (a << 16) + (b << 8) + min(c, 255)


def prog_load(
    prog_type: int,
    insns: bytes = TRIVIAL_PROG,
    license: str = "GPL",
    name: str = "",
    log_size: int = 0,
) -> int:
    """Load a program; return its fd. With ``log_size`` > 0 a failure carries the verifier log."""
    if len(insns) % 8:
        raise ValueError("BPF instructions are 8 bytes each")
    insn_buf = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    attr = _ProgLoadAttr()
    attr.prog_type = prog_type
    attr.insn_cnt = len(insns) // 8
    attr.insns = ctypes.addressof(insn_buf)
    attr.license = ctypes.addressof(lic)
    attr.kern_version = kernel_version_code()
    if name:
        attr.prog_name = name.encode()[: BPF_OBJ_NAME_LEN - 1]
    log = None
    if log_size > 0:
        log = ctypes.create_string_buffer(log_size)
        attr.log_level = 1
        attr.log_size = log_size
        attr.log_buf = ctypes.addressof(log)
    try:
        return bpf(BPF_PROG_LOAD, attr, f"BPF_PROG_LOAD type {prog_type}")
    except BpfError as e:
        if log is not None:
            e.log = log.value.decode(errors="replace").strip()
        raise


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int) -> int:
    """Create a map; return its fd."""
    attr = _MapCreateAttr()
    attr.map_type = map_type
    attr.key_size = key_size
    attr.value_size = value_size
    attr.max_entries = max_entries
    return bpf(BPF_MAP_CREATE, attr, f"BPF_MAP_CREATE type {map_type}")


__all__ = [
    "BpfError",
    "SyscallError",
    "bpf",
    "syscall",
    "syscall_nr",
    "prog_load",
    "map_create",
    "kernel_version_code",
    "sys_bpf_nr",
    "TRIVIAL_PROG",
    "BPF_PROG_TYPE_KPROBE",
    "BPF_PROG_TYPE_TRACEPOINT",
    "BPF_PROG_TYPE_RAW_TRACEPOINT",
    "BPF_MAP_TYPE_ARRAY",
    "BPF_MAP_TYPE_RINGBUF",
]
