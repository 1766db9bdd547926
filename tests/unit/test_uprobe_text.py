"""uprobe / kprobe / USDT definition text and the arch calling-convention tables.

Nothing here writes to tracefs (tests/integration/test_uprobe_kernel.py does).
"""

from __future__ import annotations

import itertools
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import missing, need_tool  # tests/conftest.py
from probewatch.elf import usdt as elf_usdt
from probewatch.elf.symbols import open_image
from probewatch.errors import NotFound, SpecError
from probewatch.sources import usdt as src_usdt
from probewatch.sources.args import ARM64, X86_64, RegisterRef, abi_for
from probewatch.sources.spec import parse_spec
from probewatch.sources.uprobe import (
    MAX_EVENT_NAME_LEN,
    DynamicProbe,
    check_group,
    default_group,
    event_name,
    kprobe_definition,
    render_args,
    resolve_uprobe,
)
from probewatch.sources.usdt import resolve_usdt, usdt_fetcharg
from targets.build import build_for_tests

_groups = itertools.count()


@pytest.fixture
def grp() -> str:
    """A fresh group per test, so event names start at _0."""
    return f"probewatch_{os.getpid()}_t{next(_groups)}"


def caret_at(e: SpecError) -> str:
    assert e.pos is not None
    return e.spec[e.pos :]


# ------------------------------------------------------------------ arch tables


def test_x86_64_calling_convention() -> None:
    assert [X86_64.arg_fetch(i) for i in range(8)] == [
        "%di", "%si", "%dx", "%cx", "%r8", "%r9", "$stack1", "$stack2",
    ]
    with pytest.raises(ValueError):
        X86_64.arg_fetch(-1)


def test_arm64_calling_convention() -> None:
    assert [ARM64.arg_fetch(i) for i in range(10)] == [
        "%x0", "%x1", "%x2", "%x3", "%x4", "%x5", "%x6", "%x7", "$stack0", "$stack1",
    ]


@pytest.mark.parametrize(
    "abi,name,ref",
    [
        (X86_64, "%di", RegisterRef("di")),
        (X86_64, "rdi", RegisterRef("di", 0, 8)),
        (X86_64, "%EDI", RegisterRef("di", 0, 4)),
        (X86_64, "%ah", RegisterRef("ax", 8, 1)),
        (X86_64, "%al", RegisterRef("ax", 0, 1)),
        (X86_64, "%r12d", RegisterRef("r12", 0, 4)),
        (X86_64, "%r9w", RegisterRef("r9", 0, 2)),
        (X86_64, "%rip", RegisterRef("ip", 0, 8)),
        (X86_64, "%sp", RegisterRef("sp")),
        (X86_64, "%x0", None),
        (X86_64, "%r16", None),
        (ARM64, "%x0", RegisterRef("x0")),
        (ARM64, "%x30", RegisterRef("x30")),
        (ARM64, "%w3", RegisterRef("x3", 0, 4)),
        (ARM64, "lr", RegisterRef("x30", 0, 8)),
        (ARM64, "%fp", RegisterRef("x29", 0, 8)),
        (ARM64, "%sp", RegisterRef("sp")),
        (ARM64, "%pc", RegisterRef("pc")),
        (ARM64, "%x31", None),
        (ARM64, "%di", None),
    ],
)
def test_register_names(abi: Any, name: str, ref: RegisterRef | None) -> None:
    assert abi.register(name) == ref


def test_abi_for() -> None:
    for m in ("x86_64", "amd64", "EM_X86_64"):
        assert abi_for(m) is X86_64
    for m in ("aarch64", "arm64", "EM_AARCH64"):
        assert abi_for(m) is ARM64
    with pytest.raises(ValueError, match="no calling-convention table for architecture 'mips'"):
        abi_for("mips")
    if platform.machine() in ("x86_64", "aarch64"):
        assert abi_for() in (X86_64, ARM64)


# ------------------------------------------------------------------ rendering


def test_render_args_arm64() -> None:
    spec = parse_spec(
        "u:/x:f a=arg0:u64 b=arg9 c=+8(arg1):string d=arg2:ustring e=%w1 f=%x0"
        " g=-16(%sp):s32 h=arg3:u8[4]"
    )
    assert render_args(spec, ARM64, user_memory=True) == [
        "a=%x0:u64",
        "b=$stack1",
        "c=+8(%x1):string",
        "d=+0(%x2):string",
        "e=%x1:u32",
        "f=%x0",
        "g=-16(%sp):s32",
        "h=+0(%x3):u8[4]",
    ]


def test_render_args_x86_64() -> None:
    spec = parse_spec(
        "u:/x:f a=arg0:u64 b=arg6 c=+8(arg1):string d=arg2:ustring e=%edi f=%rsi"
        " g=-16(+8(%rbp)):x32 h=%ah i=arg3:u8[16]"
    )
    assert render_args(spec, X86_64, user_memory=True) == [
        "a=%di:u64",
        "b=$stack1",
        "c=+8(%si):string",
        "d=+0(%dx):string",
        "e=%di:u32",
        "f=%si",
        "g=-16(+8(%bp)):x32",
        "h=%ax:b8@8/64",
        "i=+0(%cx):u8[16]",
    ]
    # kprobes keep ustring (user memory read from the kernel) and string
    k = parse_spec("k:f a=arg1:ustring b=+0(arg2):string")
    assert render_args(k, X86_64, user_memory=False) == ["a=+0(%si):ustring", "b=+0(%dx):string"]


def test_render_register_errors() -> None:
    spec = parse_spec("u:/x:f a=+8(%di) b=%bogus")
    with pytest.raises(SpecError) as ei:
        render_args(spec, X86_64, user_memory=True)
    assert "unknown register '%bogus' for x86_64 (expected one of:" in ei.value.message
    assert caret_at(ei.value) == "%bogus"
    with pytest.raises(SpecError) as ei:
        render_args(parse_spec("u:/x:f a=+8(%di)"), ARM64, user_memory=True)
    assert "unknown register '%di' for arm64" in ei.value.message
    assert "x0" in ei.value.message
    assert caret_at(ei.value) == "%di)"
    with pytest.raises(SpecError) as ei:
        render_args(parse_spec("u:/x:f a=%ah:u8"), X86_64, user_memory=True)
    assert "part of a register" in ei.value.message
    assert caret_at(ei.value) == "u8"


def test_kprobe_definition_x86_64(grp: str) -> None:
    p = kprobe_definition(parse_spec("k:do_sys_openat2 dfd=arg0:s32 name=+0(arg1):ustring"), grp,
                          machine="x86_64")
    assert p.definition == (
        f"p:{grp}/do_sys_openat2_0 do_sys_openat2 dfd=%di:s32 name=+0(%si):ustring"
    )
    assert (p.kind, p.control_file, p.symbol, p.offset) == (
        "kprobe", "kprobe_events", "do_sys_openat2", 0,
    )
    r = kprobe_definition(parse_spec("kr:do_sys_openat2 ret=retval:s64"), grp, machine="x86_64")
    assert r.definition == f"r:{grp}/do_sys_openat2_1 do_sys_openat2 ret=$retval:s64"
    assert r.remove_line == f"-:{grp}/do_sys_openat2_1"
    assert r.event == f"{grp}/do_sys_openat2_1"
    m = kprobe_definition(parse_spec("k:ext4:ext4_file_open+16"), grp, machine="x86_64")
    assert m.definition == f"p:{grp}/ext4_file_open_0 ext4:ext4_file_open+16"
    s = kprobe_definition(parse_spec("kr:getname r=+0(retval):string"), grp, machine="x86_64")
    assert s.definition == f"r:{grp}/getname_0 getname r=+0($retval):string"
    d = kprobe_definition(parse_spec("k:foo.isra.0 x=arg7"), grp, machine="x86_64")
    assert d.definition == f"p:{grp}/foo_isra_0_0 foo.isra.0 x=$stack2"


def test_kprobe_definition_arm64(grp: str) -> None:
    p = kprobe_definition(parse_spec("k:do_sys_openat2 dfd=arg0:s32 name=+0(arg1):ustring"), grp,
                          machine="aarch64")
    assert p.definition == (
        f"p:{grp}/do_sys_openat2_0 do_sys_openat2 dfd=%x0:s32 name=+0(%x1):ustring"
    )
    q = kprobe_definition(parse_spec("k:f a=arg8 b=%w2"), grp, machine="aarch64")
    assert q.definition == f"p:{grp}/f_0 f a=$stack0 b=%x2:u32"


def test_kprobe_definition_errors(grp: str) -> None:
    spec = parse_spec("k:vfs_* x=arg0")
    with pytest.raises(SpecError) as ei:
        kprobe_definition(spec, grp)
    assert "is a glob: expand it against available_filter_functions" in ei.value.message
    assert caret_at(ei.value).startswith("vfs_*")
    p = kprobe_definition(spec, grp, function="vfs_read", machine="x86_64")
    assert p.definition == f"p:{grp}/vfs_read_0 vfs_read x=%di"
    with pytest.raises(SpecError, match="bad kernel function name"):
        kprobe_definition(spec, grp, function="vfs read")
    with pytest.raises(SpecError, match="needs a kprobe/kretprobe spec, not uprobe"):
        kprobe_definition(parse_spec("u:/x:f"), grp)
    with pytest.raises(SpecError, match="no calling-convention table"):
        kprobe_definition(parse_spec("k:f"), grp, machine="mips")


# ------------------------------------------------------------------ names


def test_event_names(grp: str) -> None:
    assert event_name(grp, "malloc") == "malloc_0"
    assert event_name(grp, "malloc") == "malloc_1"
    assert event_name(grp + "x", "malloc") == "malloc_0"  # per group
    assert event_name(grp, "foo.isra.0") == "foo_isra_0_0"
    assert event_name(grp, "9lives") == "_9lives_0"
    assert event_name(grp, "_ZN3foo3barEv@@V1") == "_ZN3foo3barEv__V1_0"
    assert event_name(grp, "") == "probe_0"
    long = "a" * 200
    names = [event_name(grp, long) for _ in range(12)]
    assert len(set(names)) == 12
    for n in names:
        assert len(n) <= MAX_EVENT_NAME_LEN
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n)
    assert names[11].endswith("_11")


def test_groups() -> None:
    assert default_group() == f"probewatch_{os.getpid()}"
    assert check_group("probewatch_12") == "probewatch_12"
    for bad in ("probe-watch", "1abc", "", "a" * 64, "a/b"):
        with pytest.raises(SpecError, match="bad probe group name"):
            check_group(bad)


# ------------------------------------------------------------------ built targets


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_for_tests(tmp_path_factory, "targets", skip_unavailable=True,
                           x86_only="the expected texts below are for x86_64")


def objdump_offset(path: Path, name: str) -> int:
    out = subprocess.run(
        ["objdump", "-d", "-F", f"--disassemble={name}", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout
    m = re.search(rf"<{re.escape(name)}> \(File Offset: 0x([0-9a-f]+)\):", out)
    assert m
    return int(m.group(1), 16)


def nm_symbols(path: Path) -> dict[str, int]:
    out = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    res: dict[str, int] = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3:
            res.setdefault(f[2], int(f[0], 16))
    return res


def test_uprobe_definition_pie(targets: Any, grp: str) -> None:
    path = str(targets.pie)
    off = objdump_offset(targets.pie, "pw_add")
    [p] = resolve_uprobe(parse_spec(f"u:{path}:pw_add a=arg0:s32 b=arg1:s64"), group=grp)
    assert p.definition == f"p:{grp}/pw_add_0 {path}:0x{off:016x} a=%di:s32 b=%si:s64"
    assert (p.group, p.name, p.target_path, p.offset, p.symbol, p.kind) == (
        grp, "pw_add_0", path, off, "pw_add", "uprobe",
    )
    assert p.spec_text == f"u:{path}:pw_add a=arg0:s32 b=arg1:s64"
    assert p.warnings == [] and p.control_file == "uprobe_events"
    assert p.remove_line == f"-:{grp}/pw_add_0"


def test_uretprobe_and_ustring(targets: Any, grp: str) -> None:
    path = str(targets.pie)
    off = objdump_offset(targets.pie, "pw_greet")
    [r] = resolve_uprobe(parse_spec(f"ur:{path}:pw_greet s=+0(retval):string"), group=grp)
    assert r.definition == f"r:{grp}/pw_greet_0 {path}:0x{off:016x} s=+0($retval):string"
    assert r.kind == "uretprobe"
    [u] = resolve_uprobe(parse_spec(f"u:{path}:pw_greet who=arg0:ustring"), group=grp)
    assert u.definition == f"p:{grp}/pw_greet_1 {path}:0x{off:016x} who=+0(%di):string"


def test_stack_args(targets: Any, grp: str) -> None:
    path = str(targets.pie)
    [p] = resolve_uprobe(parse_spec(f"u:{path}:pw_many x=arg6:s64 y=arg7"), group=grp)
    assert p.definition.endswith(" x=$stack1:s64 y=$stack2")


def test_nopie_and_address_forms(targets: Any, grp: str) -> None:
    path = str(targets.nopie)
    vaddr = nm_symbols(targets.nopie)["pw_add"]
    off = objdump_offset(targets.nopie, "pw_add")
    assert vaddr - off == 0x400000
    [p] = resolve_uprobe(parse_spec(f"u:{path}:pw_add"), group=grp)
    assert p.definition == f"p:{grp}/pw_add_0 {path}:0x{off:016x}"
    [a] = resolve_uprobe(parse_spec(f"u:{path}:0x{vaddr:x} a=arg0:s32"), group=grp)
    assert a.definition == f"p:{grp}/addr_{vaddr:x}_0 {path}:0x{off:016x} a=%di:s32"
    assert a.symbol is None and a.warnings == []
    data = nm_symbols(targets.nopie)["pw_counter"]
    [d] = resolve_uprobe(parse_spec(f"u:{path}:0x{data:x}"), group=grp)
    assert "not in an executable segment" in d.warnings[0]
    with pytest.raises(SpecError) as ei:
        resolve_uprobe(parse_spec(f"u:{path}:0x10"), group=grp)
    assert "is not inside any loadable segment" in ei.value.message
    assert caret_at(ei.value) == "0x10"


def test_symbol_offset(targets: Any, grp: str) -> None:
    path = str(targets.nopie)  # -O0: pw_add is long enough for +4
    off = objdump_offset(targets.nopie, "pw_add")
    [p] = resolve_uprobe(parse_spec(f"u:{path}:pw_add+4"), group=grp)
    assert p.offset == off + 4 and p.warnings == []
    [q] = resolve_uprobe(parse_spec(f"u:{path}:pw_add+0x4 a=arg0"), group=grp)
    assert q.offset == off + 4
    assert "may no longer hold the arguments" in q.warnings[0]
    with pytest.raises(SpecError) as ei:
        resolve_uprobe(parse_spec(f"u:{path}:pw_add+0x10000"), group=grp)
    assert "offset 0x10000 is past the end of pw_add" in ei.value.message
    assert caret_at(ei.value) == "0x10000"


def test_glob_probes(targets: Any, grp: str) -> None:
    path = str(targets.pie)
    ps = resolve_uprobe(parse_spec(f"u:{path}:pw_*"), group=grp)
    names = [p.name for p in ps]
    assert len(set(names)) == len(names)
    assert {"pw_add_0", "pw_greet_0", "pw_local_0", "pw_local_1"} <= set(names)
    for p in ps:
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", p.name)
        assert p.definition.startswith(f"p:{grp}/{p.name} {path}:0x")
    with pytest.raises(SpecError) as ei:
        resolve_uprobe(parse_spec(f"u:{path}:pw_*"), group=grp, max_matches=2)
    assert "more than the limit of 2" in ei.value.message
    assert caret_at(ei.value) == "pw_*"


def test_symbol_errors(targets: Any, grp: str) -> None:
    path = str(targets.pie)
    with pytest.raises(SpecError) as ei:
        resolve_uprobe(parse_spec(f"u:{path}:pw_local x=arg0"), group=grp)
    assert "'pw_local' is ambiguous" in ei.value.message
    assert caret_at(ei.value) == "pw_local x=arg0"
    with pytest.raises(NotFound, match="did you mean: pw_add"):
        resolve_uprobe(parse_spec(f"u:{path}:pw_ad"), group=grp)
    with pytest.raises(NotFound, match="no such file"):
        resolve_uprobe(parse_spec("u:/nonexistent/bin:f"), group=grp)
    with pytest.raises(SpecError) as ei:
        resolve_uprobe(parse_spec(f"u:{path}:pw_add r=%nope"), group=grp)
    assert caret_at(ei.value) == "%nope"
    with pytest.raises(SpecError, match="needs a uprobe/uretprobe spec, not kprobe"):
        resolve_uprobe(parse_spec("k:f"), group=grp)
    with pytest.raises(SpecError, match="bad probe group name"):
        resolve_uprobe(parse_spec(f"u:{path}:pw_add"), group="bad-group")


def test_foreign_architecture(targets: Any, grp: str, tmp_path: Path) -> None:
    # the same file with e_machine = EM_RISCV (243): no register table for it
    data = bytearray(targets.pie.read_bytes())
    data[18:20] = (243).to_bytes(2, "little")
    p = tmp_path / "riscv"
    p.write_bytes(bytes(data))
    with pytest.raises(SpecError) as ei:
        resolve_uprobe(parse_spec(f"u:{p}:pw_add"), group=grp)
    assert "no calling-convention table for architecture 'EM_RISCV'" in ei.value.message
    assert caret_at(ei.value).startswith(str(p))


def test_ifunc_warning_travels(targets: Any, grp: str) -> None:
    [p] = resolve_uprobe(parse_spec(f"u:{targets.pie}:pw_ifunc"), group=grp)
    assert len(p.warnings) == 1 and "__pw_ifunc_fast" in p.warnings[0]


def test_stripped_via_debuglink(targets: Any, grp: str, tmp_path: Path) -> None:
    off = objdump_offset(targets.pie, "pw_add")
    [p] = resolve_uprobe(
        parse_spec(f"u:{targets.stripped}:pw_add"), group=grp, debug_roots=[str(tmp_path)]
    )
    assert p.offset == off and p.target_path == str(targets.stripped)
    with pytest.raises(NotFound, match="is stripped"):
        resolve_uprobe(
            parse_spec(f"u:{targets.nodebug}:pw_add"), group=grp, debug_roots=[str(tmp_path)]
        )
    [b] = resolve_uprobe(
        parse_spec(f"u:{targets.buildid}:pw_add"), group=grp,
        debug_roots=[str(targets.debug_root)],
    )
    assert b.offset == off


def test_path_with_space(
    targets: Any, grp: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "with space"
    d.mkdir()
    shutil.copy(targets.pie, d / "pwprog")
    # a symlink without spaces is kept as it is (the kernel follows it)
    link = tmp_path / "link"
    link.symlink_to(d / "pwprog")
    [p] = resolve_uprobe(parse_spec(f"u:{link}:pw_add"), group=grp)
    assert p.target_path == str(link)
    # a program found through $PATH in a directory with a space cannot be expressed
    monkeypatch.setenv("PATH", str(d))
    with pytest.raises(SpecError) as ei:
        resolve_uprobe(parse_spec("u:pwprog:pw_add"), group=grp)
    assert "contains whitespace, which uprobe_events cannot express" in ei.value.message
    assert caret_at(ei.value).startswith("pwprog")


@pytest.fixture
def waiting_target(targets: Any) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [str(targets.pie), "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_library_through_pid(targets: Any, grp: str, waiting_target: Any) -> None:
    pid = waiting_target.pid
    off = objdump_offset(targets.lib, "pw_lib_mul")
    [p] = resolve_uprobe(parse_spec("u:libpw:pw_lib_mul a=arg0:s32"), pid=pid, group=grp)
    assert p.target_path == f"/proc/{pid}/root{targets.lib}"
    assert p.definition == (
        f"p:{grp}/pw_lib_mul_0 /proc/{pid}/root{targets.lib}:0x{off:016x} a=%di:s32"
    )


def test_library_short_name_without_pid(grp: str) -> None:
    if platform.machine() != "x86_64":
        pytest.skip("x86_64 text")
    try:
        [p] = resolve_uprobe(parse_spec("u:libc:malloc size=arg0:u64"), group=grp)
    except NotFound:
        missing("no libc in the ld.so cache (libc6)")
    assert re.fullmatch(
        rf"p:{grp}/malloc_0 /\S*libc\.so\.6:0x[0-9a-f]{{16}} size=%di:u64", p.definition
    )
    # the file offset as binutils computes it: malloc's address (readelf --dyn-syms)
    # minus the vaddr of the LOAD segment holding it plus that segment's file offset
    readelf = need_tool("readelf", "binutils")
    syms = subprocess.run([readelf, "--dyn-syms", "-W", p.target_path], capture_output=True,
                          text=True, check=True).stdout
    [addr] = {int(m, 16) for m in re.findall(r"\s([0-9a-f]{16})\s+\d+\s+FUNC\s+\w+\s+\w+"
                                             r"\s+\d+\s+malloc@@", syms)}
    segs = subprocess.run([readelf, "-lW", p.target_path], capture_output=True, text=True,
                          check=True).stdout
    [want] = [addr - int(va, 16) + int(off, 16)
              for off, va, fsz in re.findall(r"^\s*LOAD\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+"
                                             r"0x[0-9a-f]+\s+0x([0-9a-f]+)", segs, re.M)
              if int(va, 16) <= addr < int(va, 16) + int(fsz, 16)]
    assert p.offset == want
    assert p.definition.split()[1].endswith(f":0x{want:016x}")


# ------------------------------------------------------------------ USDT


@pytest.fixture(scope="module")
def sdt_targets(targets: Any) -> Any:
    if not targets.has_sdt:
        missing("no <sys/sdt.h> (apt-get install systemtap-sdt-dev)")
    return targets


def _expected_fetch(arg: str) -> str:
    """An independent rendering of the simple note-argument forms the target uses."""
    m = re.fullmatch(r"(-?)(\d)@(.*)", arg)
    assert m
    typ = f"{'s' if m.group(1) else 'u'}{int(m.group(2)) * 8}"
    op = m.group(3)
    regs = {"rax": "ax", "eax": "ax", "rdi": "di", "edi": "di", "rsi": "si", "esi": "si",
            "rdx": "dx", "edx": "dx", "rcx": "cx", "ecx": "cx", "rsp": "sp", "rbp": "bp",
            "rbx": "bx", "ebx": "bx"}
    if mm := re.fullmatch(r"%(\w+)", op):
        return f"%{regs[mm.group(1)]}:{typ}"
    if mm := re.fullmatch(r"\$(-?\d+)", op):
        return f"\\{mm.group(1)}:{typ}"
    if mm := re.fullmatch(r"(-?\d+)\(%(\w+)\)", op):
        n = int(mm.group(1))
        return f"{'-' if n < 0 else '+'}{abs(n)}(%{regs[mm.group(2)]}):{typ}"
    raise AssertionError(f"unexpected note argument {arg}")


def readelf_probes_section(path: Path) -> tuple[int, int]:
    out = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"\]\s+\.probes\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)", out)
    assert m
    return int(m.group(1), 16), int(m.group(2), 16)


@pytest.mark.parametrize("variant", ["pie", "nopie"])
def test_usdt_semaphore(sdt_targets: Any, grp: str, variant: str) -> None:
    path = sdt_targets.variants[variant]
    [note] = [p for p in elf_usdt.read_usdt_probes(str(path)) if p.name == "withsem"]
    addr, off = readelf_probes_section(path)
    sem_off = note.semaphore - addr + off
    [p] = resolve_usdt(parse_spec(f"usdt:{path}:pwtest:withsem"), group=grp)
    fetch = _expected_fetch(note.args_text)
    assert p.definition == (
        f"p:{grp}/pwtest_withsem_0 {path}:0x{note.offset:016x}(0x{sem_off:x}) arg0={fetch}"
    )
    assert p.ref_ctr_offset == sem_off and p.kind == "usdt"
    assert p.symbol == "pwtest:withsem" and p.control_file == "uprobe_events"


@pytest.mark.parametrize("variant", ["pie", "nopie"])
def test_usdt_all_probes(sdt_targets: Any, grp: str, variant: str) -> None:
    path = sdt_targets.variants[variant]
    notes = [p for p in elf_usdt.read_usdt_probes(str(path)) if p.provider == "pwtest"]
    ps = resolve_usdt(parse_spec(f"usdt:{path}:pwtest:*"), group=grp)
    assert len(ps) == len(notes) == 6
    syms = nm_symbols(path)
    img = open_image(str(path))
    for p, n in zip(ps, notes, strict=True):
        assert p.warnings == []
        assert p.offset == n.offset
        args = p.definition.split(" ")[2:]
        assert len(args) == len(n.args)
        for i, (text, a) in enumerate(zip(args, n.args, strict=True)):
            if a.kind == "sym":
                assert a.symbol is not None
                seg = next(s for s in img.segments if s.contains(n.pc))
                rel = syms[a.symbol] + a.offset - (seg.vaddr - seg.offset)
                assert text == f"arg{i}=@+0x{rel:x}:{a.type}"
            else:
                assert text == f"arg{i}=" + _expected_fetch(a.text)
    konst = [p for p in ps if p.symbol == "pwtest:konst"]
    assert konst[0].definition.endswith(" arg0=\\5:s32")
    assert len({p.name for p in ps}) == 6


def test_usdt_user_args(sdt_targets: Any, grp: str) -> None:
    path = sdt_targets.pie
    [note] = [p for p in elf_usdt.read_usdt_probes(str(path)) if p.full_name == "pwtest:add"]
    [p] = resolve_usdt(parse_spec(f"usdt:{path}:pwtest:add n=arg2:string a=arg0 b=arg1:x64"),
                       group=grp)
    f0 = _expected_fetch(note.args[0].text)
    f1 = _expected_fetch(note.args[1].text).rsplit(":", 1)[0]
    f2 = _expected_fetch(note.args[2].text).rsplit(":", 1)[0]
    n_fetch = f2 if f2.endswith(")") else f"+0({f2})"
    assert p.definition.split(" ")[2:] == [f"n={n_fetch}:string", f"a={f0}", f"b={f1}:x64"]


def test_usdt_errors(sdt_targets: Any, grp: str) -> None:
    path = sdt_targets.pie
    with pytest.raises(SpecError) as ei:
        resolve_usdt(parse_spec(f"usdt:{path}:add"), group=grp)
    assert "defined by several providers" in ei.value.message
    assert "pwother, pwtest" in ei.value.message
    assert caret_at(ei.value) == "add"
    [one] = resolve_usdt(parse_spec(f"usdt:{path}:withsem"), group=grp)  # unique: no provider
    assert one.symbol == "pwtest:withsem"
    with pytest.raises(NotFound) as nf:
        resolve_usdt(parse_spec(f"usdt:{path}:pwtest:ad"), group=grp)
    assert "no USDT probe 'pwtest:ad'" in str(nf.value) and "pwtest:add" in str(nf.value)
    with pytest.raises(SpecError) as ei:
        resolve_usdt(parse_spec(f"usdt:{path}:pwtest:add x=arg5"), group=grp)
    assert "has 3 argument(s) (arg0..arg2)" in ei.value.message
    assert caret_at(ei.value) == "arg5"
    with pytest.raises(SpecError) as ei:
        resolve_usdt(parse_spec(f"usdt:{path}:pwtest:konst x=+0(arg0)"), group=grp)
    assert "a constant cannot be dereferenced" in ei.value.message
    assert caret_at(ei.value) == "+0(arg0)"
    with pytest.raises(SpecError) as ei:
        resolve_usdt(parse_spec(f"usdt:{path}:pwtest:konst x=arg0:string"), group=grp)
    assert "arg0 is a constant; a string needs a pointer to read from" in ei.value.message
    assert caret_at(ei.value) == "arg0:string"
    with pytest.raises(NotFound, match="has no USDT probes"):
        resolve_usdt(parse_spec(f"usdt:{sdt_targets.lib}:p:n"), group=grp)
    with pytest.raises(SpecError) as ei:
        resolve_usdt(parse_spec(f"usdt:{path}:pwtest:*"), group=grp, max_matches=2)
    assert "6 USDT probe locations match" in ei.value.message
    assert "more than the limit of 2" in ei.value.message
    assert caret_at(ei.value) == "*"
    with pytest.raises(SpecError, match="needs a usdt spec"):
        resolve_usdt(parse_spec("u:/x:f"), group=grp)


def _fake_probe(path: str, args: str, machine: str = "EM_X86_64") -> elf_usdt.UsdtProbe:
    return elf_usdt.UsdtProbe(
        path=path, provider="fake", name="probe", pc=0x1180, base=0, semaphore=0,
        args_text=args, args=elf_usdt.parse_usdt_args(args, machine), offset=0x1180,
        semaphore_offset=None,
    )


def test_usdt_unsupported_argument(
    sdt_targets: Any, grp: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(sdt_targets.pie)
    fake = _fake_probe(path, "-4@%edi 8@(%rax,%rdx,8) 8@%rsi")
    monkeypatch.setattr(src_usdt, "read_usdt_probes", lambda p: [fake])
    [p] = resolve_usdt(parse_spec(f"usdt:{path}:fake:probe"), group=grp)
    assert p.definition.split(" ")[2:] == ["arg0=%di:s32", "arg2=%si:u64"]
    assert "argument '8@(%rax,%rdx,8)' skipped" in p.warnings[0]
    with pytest.raises(SpecError) as ei:
        resolve_usdt(parse_spec(f"usdt:{path}:fake:probe v=arg1"), group=grp)
    assert "cannot be read by a uprobe" in ei.value.message
    assert caret_at(ei.value) == "arg1"


def test_usdt_fetcharg_arm64_text(sdt_targets: Any) -> None:
    img = open_image(str(sdt_targets.pie))  # only used for symbols; none are needed here
    probe = _fake_probe(str(sdt_targets.pie), "-4@x0 8@[sp, 16] -4@w1 4@5 -8@[x29, -8]",
                        "EM_AARCH64")
    got = [usdt_fetcharg(a, ARM64, img, probe) for a in probe.args]
    assert got == [("%x0", "s32"), ("+16(%sp)", "u64"), ("%x1", "s32"), ("\\5", "u32"),
                   ("-8(%x29)", "s64")]
    high = _fake_probe(str(sdt_targets.pie), "-1@%ah")
    assert usdt_fetcharg(high.args[0], X86_64, img, high) == ("%ax", "b8@8/64")


def test_dynamic_probe_fields() -> None:
    p = DynamicProbe("g", "n_0", "p:g/n_0 /x:0x0000000000000010", "u:/x:f", "/x", 16)
    assert p.warnings == [] and p.event == "g/n_0" and p.remove_line == "-:g/n_0"
    assert p.control_file == "uprobe_events"
