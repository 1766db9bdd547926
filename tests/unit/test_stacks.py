"""Build-id stack frames named through ELF files, against objdump's file offsets."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import PROGS

from probewatch.analyze.allocs import log2_rows
from probewatch.analyze.stacks import (
    BUILD_ID_FRAME,
    Symbolizer,
    frame_text,
    parse_build_id_stack,
)


def _build_id(path: Path) -> bytes:
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    assert m, out
    return bytes.fromhex(m.group(1)).ljust(20, b"\0")


def test_frames_named_like_objdump(tmp_path: Path) -> None:
    exe = tmp_path / "mt"
    subprocess.run(["gcc", "-O0", "-fno-omit-frame-pointer", "-o", str(exe),
                    str(PROGS / "mallocs_target.c")], check=True)
    dump = subprocess.run(["objdump", "-d", "-F", str(exe)], capture_output=True,
                          text=True, check=True).stdout
    offs = {m.group(2): int(m.group(3), 16) for m in re.finditer(
        r"^([0-9a-f]+) <(\w+)> \(File Offset: 0x([0-9a-f]+)\):", dump, re.M)}
    bid = _build_id(exe)
    sym = Symbolizer()
    sym.add_file(str(exe))
    raw = b"".join(BUILD_ID_FRAME.pack(1, bid, offs[f] + 5) for f in ("grow", "main"))
    raw += BUILD_ID_FRAME.pack(2, b"\0" * 20, 0x7F0012345678)  # an unresolved ip
    raw += BUILD_ID_FRAME.pack(1, b"\x11" * 20, 0x40)          # an unknown file
    raw += BUILD_ID_FRAME.pack(0, b"\0" * 20, 0) * 3            # the empty rest
    frames = sym.build_id_frames(raw)
    assert [(f["symbol"], f["offset"], f["module"]) for f in frames] == [
        ("grow", 5, "mt"), ("main", 5, "mt"), (None, 0, None),
        (None, 0, "buildid:111111111111")]
    assert frame_text(frames[0]) == "grow+0x5 (mt)"
    assert frame_text(frames[2]) == "0x7f0012345678"
    assert frames[0] == {"addr": offs["grow"] + 5, "symbol": "grow", "offset": 5,
                         "module": "mt"}


def test_log2_rows() -> None:
    hist = [0] * 64
    hist[12] = 1000
    hist[15] = 3
    assert log2_rows(hist) == [(4096, 8191, 1000), (8192, 16383, 0), (16384, 32767, 0),
                               (32768, 65535, 3)]
    hist2 = [2] + [0] * 63
    assert log2_rows(hist2) == [(0, 1, 2)]
    assert log2_rows([0] * 64) == []


@given(st.binary(max_size=200))
def test_parse_any_bytes(raw: bytes) -> None:
    frames = parse_build_id_stack(raw)
    assert len(frames) <= len(raw) // BUILD_ID_FRAME.size
    assert all(status != 0 and len(bid) == 20 for status, bid, _ in frames)
    Symbolizer().build_id_frames(raw)  # knows no file: never fails
