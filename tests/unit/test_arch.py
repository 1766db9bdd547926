"""What differs per architecture, checked on any host: the shipped BPF objects and
syscall tables of x86_64 and arm64, arm64's pt_regs for BPF uprobes, arm64's open
flags. (tests/arm64 runs the real thing in an arm64 kernel.)"""

from __future__ import annotations

import struct
from importlib import resources

import pytest

from probewatch.collect.bpf.generic import PT_REGS_ARM64, UARG_INT, UARG_STR, compile_uarg
from probewatch.collect.bpf.loader import machine
from probewatch.decode import syscalls as d
from probewatch.decode.syscalls import parse_syscall_numbers
from probewatch.errors import SpecError
from probewatch.sources.args import ARM64
from probewatch.sources.spec import parse_spec

OBJ = resources.files("probewatch.collect.bpf").joinpath("obj")
EM_BPF = 247


def test_obj_dir_names() -> None:
    assert (machine("x86_64"), machine("aarch64"), machine("arm64")) == (
        "x86_64", "arm64", "arm64")


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_objects_shipped_for_both(arch: str) -> None:
    names = sorted(p.name for p in OBJ.joinpath(arch).iterdir())
    sources = sorted(p.name.replace(".bpf.c", ".bpf.o") for p in OBJ.parent.glob("*.bpf.c"))
    assert len(sources) >= 6
    assert names == sorted([*sources, "syscalls.tbl"])
    for n in sources:
        data = OBJ.joinpath(arch).joinpath(n).read_bytes()
        assert data[:4] == b"\x7fELF" and struct.unpack_from("<H", data, 18)[0] == EM_BPF
        assert b".BTF" in data  # CO-RE needs it


def test_syscall_tables_per_architecture() -> None:
    x86 = {v: k for k, v in parse_syscall_numbers(
        OBJ.joinpath("x86_64").joinpath("syscalls.tbl").read_text()).items()}
    arm = {v: k for k, v in parse_syscall_numbers(
        OBJ.joinpath("arm64").joinpath("syscalls.tbl").read_text()).items()}
    assert (x86["openat"], x86["open"], x86["stat"], x86["fork"], x86["execve"]) == (
        257, 2, 4, 57, 59)
    # the generic table: names defined through __NR3264_* are followed
    assert (arm["openat"], arm["newfstatat"], arm["fstat"], arm["clone"], arm["execve"],
            arm["mmap"], arm["fcntl"], arm["getppid"]) == (56, 79, 80, 220, 221, 222, 25, 173)
    assert not {"open", "stat", "lstat", "fork", "vfork", "syscalls"} & set(arm)
    assert len(arm) > 300 and max(arm.values()) < 1024  # PW_NR_MAX


def _uargs(text: str) -> list[tuple[int, tuple[int, ...], int, int]]:
    ps = parse_spec(text)
    return [(u.reg, u.offs, u.kind, u.size) for u in (compile_uarg(ps, a, ARM64)
                                                      for a in ps.args)]


def test_arm64_uprobe_arguments_for_bpf() -> None:
    assert PT_REGS_ARM64[:1] + PT_REGS_ARM64[29:] == ("x0", "x29", "x30", "sp", "pc",
                                                       "pstate")
    # x0..x7, then the stack from [sp] (no return address on arm64's stack)
    assert _uargs("u:/bin/x:f a=arg0 b=arg7:s32 c=arg8 d=arg9:u16 s=arg1:string") == [
        (0, (), UARG_INT, 8), (7, (), UARG_INT, 4), (31, (0,), UARG_INT, 8),
        (31, (8,), UARG_INT, 2), (1, (0,), UARG_STR, 0)]
    assert _uargs("ur:/bin/x:f r=retval w=%w3 l=%lr p=%pc f=+8(%fp):s32") == [
        (0, (), UARG_INT, 8), (3, (), UARG_INT, 4), (30, (), UARG_INT, 8),
        (32, (), UARG_INT, 8), (29, (8,), UARG_INT, 4)]
    with pytest.raises(SpecError, match="unknown register '%di' for arm64"):
        _uargs("u:/bin/x:f a=%di")


def test_arm64_open_flags() -> None:
    arm = "aarch64"
    assert d.open_flags(0o40000 | 0o100000 | 0o2000000, arm) == \
        "O_RDONLY|O_NOFOLLOW|O_CLOEXEC|O_DIRECTORY"  # strace's order
    assert d.open_flags(0o200000 | 0o400000 | 1, arm) == "O_WRONLY|O_DIRECT|O_LARGEFILE"
    assert d.open_flags(0o20040000 | 2, arm) == "O_RDWR|O_TMPFILE"
    # the same bits read as x86_64's
    assert d.open_flags(0o40000 | 0o100000, "x86_64") == "O_RDONLY|O_DIRECT|O_LARGEFILE"
    assert d.needs_mode(0o20040000, arm) and not d.needs_mode(0o40000, arm)
    assert not d.needs_mode(0o20040000, "x86_64")
    # the flags both share are the same
    assert d.open_flags(0o1101, arm) == d.open_flags(0o1101, "x86_64") == \
        "O_WRONLY|O_CREAT|O_TRUNC"
