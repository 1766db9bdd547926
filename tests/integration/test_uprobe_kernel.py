"""uprobe / USDT definitions on the running kernel.

Resolves probes on the C target (tests/targets/), checks the file offsets against
binutils, writes the definitions to ``uprobe_events`` (always O_APPEND: opening it
for writing without append would wipe every probe on the system), checks that the
kernel accepted them, and removes them with ``-:GROUP/NAME``. The last test arms them
in a private instance and checks the recorded argument values.

Group: ``probewatch_<pid of this test process>``. Nothing is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probewatch.elf.usdt import read_usdt_probes
from probewatch.sources.spec import parse_spec
from probewatch.sources.uprobe import DynamicProbe, resolve_uprobe
from probewatch.sources.usdt import resolve_usdt
from targets.build import build_for_tests

from .helpers import require_uprobe_events

pytestmark = pytest.mark.integration

GROUP = f"probewatch_{os.getpid()}"


@pytest.fixture(scope="module")
def uprobes(tracefs: str) -> str:
    """The tracefs root, when this kernel has uprobe events."""
    return require_uprobe_events(tracefs)


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_for_tests(tmp_path_factory, "ktargets",
                           x86_only="expected values below are for x86_64")


# ------------------------------------------------------------------ tracefs helpers


def append(path: str, text: str) -> None:
    """Append to a tracefs control file. NEVER O_TRUNC on uprobe_events."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def error_log(root: str) -> str:
    try:
        return read(os.path.join(root, "error_log"))[-2000:]
    except OSError:
        return ""


def our_lines(root: str) -> list[str]:
    return [ln for ln in read(os.path.join(root, "uprobe_events")).splitlines()
            if f":{GROUP}/" in ln]


@contextlib.contextmanager
def defined(root: str, probes: list[DynamicProbe]) -> Iterator[None]:
    """Write the definitions; on the way out remove them (and check they are gone)."""
    ctrl = os.path.join(root, "uprobe_events")
    done: list[DynamicProbe] = []
    try:
        for p in probes:
            assert p.group == GROUP
            try:
                append(ctrl, p.definition + "\n")
            except OSError as e:
                raise AssertionError(
                    f"kernel refused {p.definition!r}: {e}\n{error_log(root)}"
                ) from None
            done.append(p)
        yield
    finally:
        errors = []
        for p in reversed(done):
            try:
                append(ctrl, p.remove_line + "\n")
            except OSError as e:
                errors.append(f"{p.remove_line}: {e}")
        for p in done:
            assert not os.path.exists(os.path.join(root, "events", p.group, p.name))
        assert not errors, errors
        assert our_lines(root) == [], our_lines(root)


def nm_addr(path: Path, name: str) -> int:
    out = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[2] == name:
            return int(f[0], 16)
    raise AssertionError(f"nm: no {name} in {path}")


def readelf_sym(path: Path, name: str) -> int:
    out = subprocess.run(["readelf", "-sW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 8 and f[7] == name and f[3] == "FUNC":
            return int(f[1], 16)
    raise AssertionError(f"readelf: no {name} in {path}")


def readelf_loads(path: Path) -> list[tuple[int, int, int]]:
    out = subprocess.run(["readelf", "-lW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return [
        (int(f[1], 16), int(f[2], 16), int(f[4], 16))
        for f in (ln.split() for ln in out.splitlines())
        if f and f[0] == "LOAD"
    ]


def objdump_offset(path: Path, name: str) -> int:
    out = subprocess.run(["objdump", "-d", "-F", f"--disassemble={name}", str(path)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(rf"<{re.escape(name)}> \(File Offset: 0x([0-9a-f]+)\):", out)
    assert m, out[:1000]
    return int(m.group(1), 16)


# ------------------------------------------------------------------ definitions


@pytest.mark.parametrize("variant", ["pie", "nopie", "stripped"])
def test_kernel_accepts_uprobe(uprobes: str, targets: Any, variant: str) -> None:
    path = targets.variants[variant]
    symfile = targets.stripped_debug if variant == "stripped" else path
    [p] = resolve_uprobe(parse_spec(f"u:{path}:pw_add a=arg0:s32 b=arg1:s64"), group=GROUP)
    # the offset is what binutils say: nm/readelf for the address, PT_LOAD for the offset
    vaddr = nm_addr(symfile, "pw_add")
    assert readelf_sym(symfile, "pw_add") == vaddr
    [seg] = [s for s in readelf_loads(path) if s[1] <= vaddr < s[1] + s[2]]
    assert p.offset == vaddr - seg[1] + seg[0]
    assert p.offset == objdump_offset(targets.pie if variant == "stripped" else path, "pw_add")
    assert re.fullmatch(r"pw_add_\d+", p.name)

    with defined(uprobes, [p]):
        assert p.definition in our_lines(uprobes)
        fmt = read(os.path.join(uprobes, "events", GROUP, p.name, "format"))
        assert f"name: {p.name}" in fmt
        assert re.search(r"field:s32 a;", fmt) and re.search(r"field:s64 b;", fmt)


def test_kernel_accepts_uretprobe_and_stack_args(uprobes: str, targets: Any) -> None:
    path = targets.pie
    probes = resolve_uprobe(parse_spec(f"ur:{path}:pw_greet s=+0(retval):string"), group=GROUP)
    probes += resolve_uprobe(parse_spec(f"u:{path}:pw_many x=arg6:s64 y=arg7:s64 h=%ah"),
                             group=GROUP)
    probes += resolve_uprobe(parse_spec(f"u:{targets.lib}:pw_lib_mul a=arg0:s32 b=arg1:s32"),
                             group=GROUP)
    with defined(uprobes, probes):
        lines = our_lines(uprobes)
        for p in probes:
            assert p.definition in lines
            assert os.path.isdir(os.path.join(uprobes, "events", GROUP, p.name))
        assert lines[0].startswith(f"r:{GROUP}/pw_greet_")
        fmt = read(os.path.join(uprobes, "events", GROUP, probes[0].name, "format"))
        assert "__data_loc char[] s;" in fmt


@pytest.mark.parametrize("variant", ["pie", "nopie"])
def test_kernel_accepts_usdt_with_semaphore(uprobes: str, targets: Any, variant: str) -> None:
    if not targets.has_sdt:
        pytest.fail("<sys/sdt.h> missing: apt-get install systemtap-sdt-dev")
    path = targets.variants[variant]
    probes = resolve_usdt(parse_spec(f"usdt:{path}:pwtest:*"), group=GROUP)
    assert len(probes) == 6
    [sem] = [p for p in probes if p.symbol == "pwtest:withsem"]
    assert sem.ref_ctr_offset is not None
    assert f"(0x{sem.ref_ctr_offset:x})" in sem.definition
    with defined(uprobes, probes):
        lines = our_lines(uprobes)
        for p in probes:
            assert p.definition in lines
        assert any(f"(0x{sem.ref_ctr_offset:x})" in ln for ln in lines)


# ------------------------------------------------------------------ armed


EVENT_LINE = re.compile(r"\s(\w+): \((0x[0-9a-f]+)(?: <- 0x[0-9a-f]+)?\)(.*)$")
ARG = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def parse_trace(text: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = EVENT_LINE.search(line)
        if m:
            out.append((m.group(1), {k: v.strip('"') for k, v in ARG.findall(m.group(3))}))
    return out


@contextlib.contextmanager
def private_instance(root: str, events: list[DynamicProbe]) -> Iterator[str]:
    inst = os.path.join(root, "instances", f"probewatch-{os.getpid()}-99")
    os.mkdir(inst)
    enabled: list[str] = []
    try:
        for p in events:
            en = os.path.join(inst, "events", p.group, p.name, "enable")
            write(en, "1")
            enabled.append(en)
        yield inst
    finally:
        for en in enabled:
            with contextlib.suppress(OSError):
                write(en, "0")
        for _ in range(100):
            try:
                os.rmdir(inst)
                break
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
                time.sleep(0.02)
        assert not os.path.exists(inst)


@pytest.mark.parametrize("variant", ["pie", "nopie"])
def test_armed_values(uprobes: str, targets: Any, variant: str) -> None:
    if not targets.has_sdt:
        pytest.fail("<sys/sdt.h> missing: apt-get install systemtap-sdt-dev")
    path = targets.variants[variant]
    specs = [
        f"u:{path}:pw_add a=arg0:s32 b=arg1:s64",
        f"ur:{path}:pw_greet s=+0(retval):string",
        f"u:{path}:pw_greet who=arg0:string",
        f"u:{path}:pw_many x=arg6:s64 y=arg7:s64 z=arg0:s64",
        f"u:{targets.lib}:pw_lib_mul a=arg0:s32 b=arg1:s32",
    ]
    probes = [p for s in specs for p in resolve_uprobe(parse_spec(s), group=GROUP)]
    usdt = resolve_usdt(parse_spec(f"usdt:{path}:pwtest:*"), group=GROUP)
    usdt_named = resolve_usdt(parse_spec(f"usdt:{path}:pwtest:add n=arg2:string a=arg0 b=arg1"),
                              group=GROUP)
    allp = probes + usdt + usdt_named
    by_name = {p.name: p for p in allp}
    with defined(uprobes, allp), private_instance(uprobes, allp) as inst:
        run = subprocess.run([str(path), "1"], capture_output=True, text=True, timeout=30,
                             check=True)
        # the kernel set the semaphore while pwtest:withsem was armed
        assert "sem=1" in run.stdout, run.stdout
        # the records were committed while it ran: `trace` shows them now, no wait
        recs = parse_trace(read(os.path.join(inst, "trace")))
        write(os.path.join(inst, "tracing_on"), "0")
    got: dict[str, list[dict[str, str]]] = {}
    for name, args in recs:
        if name in by_name:
            got.setdefault(by_name[name].symbol or name, []).append(args)
    assert got["pw_add"] == [{"a": "-7", "b": "5000000000"}]
    assert got["pw_greet"] == [{"s": "hello, probewatch"}, {"who": "probewatch"}] or got[
        "pw_greet"
    ] == [{"who": "probewatch"}, {"s": "hello, probewatch"}]
    assert got["pw_many"] == [{"x": "77", "y": "88", "z": "1"}]
    assert got["pw_lib_mul"] == [{"a": "6", "b": "7"}]
    assert got["pwtest:konst"] == [{"arg0": "5"}]
    assert got["pwtest:global"] == [{"arg0": "41"}]
    assert got["pwtest:withsem"] == [{"arg0": "100"}]
    assert sorted(a["arg0"] for a in got["pwtest:twice"]) == ["1", "2"]
    adds = got["pwtest:add"]
    assert {"n": "probewatch", "a": "-7", "b": "5000000000"} in adds
    auto = [a for a in adds if "arg0" in a]
    assert len(auto) == 1 and auto[0]["arg0"] == "-7" and auto[0]["arg1"] == "5000000000"


def test_notes_cover_every_probe_kind(targets: Any) -> None:
    """The armed test above exercises register, memory, constant and %rip arguments."""
    if not targets.has_sdt:
        pytest.fail("<sys/sdt.h> missing: apt-get install systemtap-sdt-dev")
    kinds = {a.kind for v in ("pie", "nopie") for p in read_usdt_probes(
        str(targets.variants[v])) for a in p.args}
    assert {"reg", "mem", "const"} <= kinds
    assert "sym" in {a.kind for p in read_usdt_probes(str(targets.pie)) for a in p.args}
