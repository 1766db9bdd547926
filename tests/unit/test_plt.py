"""PLT stubs against objdump's <name@plt> labels, on real binaries of this machine."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import PROGS

from probewatch.elf.plt import linked_objects, needed, plt_stubs
from probewatch.errors import NotFound

LABEL = re.compile(r"^([0-9a-f]+) <([^>@*]+)@plt>:", re.M)
BINARIES = ["/usr/bin/ls", "/usr/bin/bash", "/usr/bin/git", "/usr/bin/curl",
            "/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libssl.so.3"]


def _objdump(objdump: str, path: str) -> dict[str, int]:
    out = subprocess.run([objdump, "-d", "-j", ".plt", "-j", ".plt.sec", "-j", ".plt.got",
                          path], capture_output=True, text=True, check=True).stdout
    ref: dict[str, int] = {}
    for m in LABEL.finditer(out):
        ref.setdefault(m.group(2), int(m.group(1), 16))
    return ref


@pytest.mark.parametrize("path", BINARIES)
def test_same_stubs_as_objdump(path: str) -> None:
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.fail("objdump (binutils) is needed")
    if not Path(path).exists():
        pytest.fail(f"{path} is part of the packages scripts/install.sh installs")
    ref = _objdump(objdump, path)
    mine = {k: v.address for k, v in plt_stubs(path).items()}
    assert len(ref) > 10
    assert mine == ref


def test_aarch64_stubs_as_objdump(tmp_path: Path) -> None:
    cc = shutil.which("aarch64-linux-gnu-gcc")
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    if cc is None or objdump is None:
        pytest.fail("gcc-aarch64-linux-gnu is needed (scripts/install.sh WITH_TESTS=1)")
    out = tmp_path / "lcalls.arm64"
    subprocess.run([cc, "-O0", "-fno-builtin", "-o", str(out), str(PROGS / "lcalls.c")],
                   check=True)
    ref = _objdump(objdump, str(out))
    mine = {k: v.address for k, v in plt_stubs(str(out)).items()}
    assert {"malloc", "printf", "getenv", "setenv"} <= set(ref)
    assert mine == ref


def test_static_binary_has_none_and_needed(tmp_path: Path) -> None:
    out = tmp_path / "static"
    subprocess.run(["gcc", "-static", "-O0", "-o", str(out), str(PROGS / "lcalls.c")],
                   check=True)
    assert plt_stubs(str(out)) == {}
    assert needed(str(out)) == []
    assert needed("/usr/bin/ls")[-1] == "libc.so.6"
    objs = linked_objects("/usr/bin/ls")
    assert objs[0] == "/usr/bin/ls"
    assert any(p.endswith("/libc.so.6") for p in objs)
    assert any(p.endswith("/libselinux.so.1") for p in objs)


def test_not_elf(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"#!/bin/sh\necho\n")
    with pytest.raises(NotFound, match="not a valid ELF"):
        plt_stubs(str(f))
    with pytest.raises(NotFound, match="no such file"):
        plt_stubs(str(tmp_path / "missing"))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 1 << 16), st.binary(min_size=1, max_size=64))
def test_corrupt_elf_only_notfound(tmp_path_factory: pytest.TempPathFactory, pos: int,
                                   junk: bytes) -> None:
    """A damaged copy of a real binary: a result or NotFound, nothing else."""
    data = bytearray(Path("/usr/bin/true").read_bytes())
    pos %= len(data)
    data[pos:pos + len(junk)] = junk
    f = tmp_path_factory.mktemp("plt") / "t"
    f.write_bytes(bytes(data))
    try:
        stubs = plt_stubs(str(f))
    except NotFound as e:
        assert str(e)
    else:
        assert all(s.address > 0 and s.name for s in stubs.values())
