"""Stacks of ``trace --stack``: the BPF record trailer, ftrace's kernel_stack records,
frames as perf script lines, and user frames named through build-ids."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import PROGS

from probewatch.analyze.stacks import BUILD_ID_FRAME, BUILD_ID_IP, BUILD_ID_VALID, Symbolizer
from probewatch.collect.bpf.generic import HDR, STACK_HDR, record_stacks
from probewatch.event import Event
from probewatch.session import _kernel_stack_maker
from probewatch.sinks.text import TextSink, frame_line


def _record(data: bytes, kips: list[int], uips: list[int], bids: bytes) -> bytes:
    pad = bytes(-len(data) % 8)
    return (bytes(HDR.size) + data + pad
            + STACK_HDR.pack(8 * len(kips), 8 * len(uips), len(bids))
            + struct.pack(f"<{len(kips)}Q", *kips) + struct.pack(f"<{len(uips)}Q", *uips)
            + bids)


def test_record_stacks_after_unaligned_data() -> None:
    bids = BUILD_ID_FRAME.pack(BUILD_ID_VALID, b"\x11" * 20, 0x1139)
    rec = _record(b"abcde", [0xFFFFFFFF81000130, 0xFFFFFFFF8223E12F], [0x55D0C0DE1139], bids)
    assert record_stacks(rec, HDR.size, 5) == (
        [0xFFFFFFFF81000130, 0xFFFFFFFF8223E12F], [0x55D0C0DE1139], bids)


def test_record_stacks_kernel_only() -> None:
    rec = _record(b"x" * 16, [1, 2, 3], [], b"")
    assert record_stacks(rec, HDR.size, 16) == ([1, 2, 3], [], b"")


@given(st.binary(max_size=300), st.integers(0, 400))
def test_record_stacks_any_bytes(raw: bytes, size: int) -> None:
    k, u, b = record_stacks(raw, 0, size)  # never raises, never reads past the record
    assert 8 * (len(k) + len(u)) + len(b) <= len(raw)


def _kernel_stack_record(tid: int, callers: list[int], declared: int) -> bytes:
    return struct.pack("<HBBii4x", 4, 0, 0, tid, declared) + struct.pack(
        f"<{len(callers)}Q", *callers)


def test_kernel_stack_maker_reads_size_callers_not_8() -> None:
    callers = [0xFFFFFFFF81000000 + i for i in range(11)]  # more than the format's 8
    rec = _kernel_stack_record(42, callers, 11)
    ev = _kernel_stack_maker(4)(rec, 0, len(rec), 7, 1)
    assert (ev.ts, ev.cpu, ev.tid, ev.event) == (7, 1, 42, "ftrace:kernel_stack")
    assert ev.fields["caller"] == callers


def test_kernel_stack_maker_bounded_by_record() -> None:
    rec = _kernel_stack_record(1, [5, 6, 0], 1000)  # a size beyond the record: cut
    assert _kernel_stack_maker(4)(rec, 0, len(rec), 0, 0).fields["caller"] == [5, 6]


@given(st.binary(min_size=16, max_size=200))
def test_kernel_stack_maker_any_bytes(raw: bytes) -> None:
    ev = _kernel_stack_maker(4)(raw, 0, len(raw), 0, 0)
    assert len(ev.fields["caller"]) <= (len(raw) - 16) // 8


def test_frame_line_like_perf_script() -> None:
    assert frame_line({"addr": 0x55D0C0DE1139, "symbol": "st_f2", "offset": 0,
                       "module": "/t/x"}) == "\t    55d0c0de1139 st_f2+0x0 (/t/x)"
    assert frame_line({"addr": 0xFFFFFFFF8223E12F, "symbol": "do_syscall_64",
                       "offset": 0x20F, "module": "kernel"}) == (
        "\tffffffff8223e12f do_syscall_64+0x20f (kernel)")
    assert frame_line({"addr": 0x7F00, "symbol": None, "offset": 0, "module": None}) == (
        "\t            7f00 [unknown] (unknown)")
    # what a traced program controls cannot start a line of its own
    line = frame_line({"addr": 1, "symbol": "a\nb", "offset": 0, "module": "/x\r\n"})
    assert "\n" not in line and "\r" not in line


def test_text_sink_prints_frames_under_the_event() -> None:
    class Out:
        def __init__(self) -> None:
            self.text = ""

        def write(self, s: str) -> None:
            self.text += s

    out = Out()
    ev = Event(1_500_000_000, 1, 7, 7, "t", "g:e", "u:x:e", {
        "x": 3, "stack": [{"addr": 16, "symbol": "f", "offset": 4, "module": "/b"},
                          {"addr": 32, "symbol": "main", "offset": 8, "module": "/b"}]})
    TextSink(out).write(ev)
    lines = out.text.splitlines()
    assert lines[1].endswith("g:e x=3")
    assert lines[2:] == ["\t              10 f+0x4 (/b)", "\t              20 main+0x8 (/b)"]


def test_user_frames_by_build_id_after_exit(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    if not gcc:
        pytest.fail("gcc is needed (apt-get install gcc)")
    exe = tmp_path / "stack_target"
    subprocess.run([gcc, "-O0", "-o", str(exe), str(PROGS / "stack_target.c")], check=True)
    dump = subprocess.run(["objdump", "-d", "-F", str(exe)], capture_output=True,
                          text=True, check=True).stdout
    offs = {m.group(1): int(m.group(2), 16) for m in re.finditer(
        r"^[0-9a-f]+ <(\w+)> \(File Offset: 0x([0-9a-f]+)\):", dump, re.M)}
    out = subprocess.run(["readelf", "-n", str(exe)], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    assert m
    bid = bytes.fromhex(m.group(1)).ljust(20, b"\0")
    sym = Symbolizer()
    sym.add_file(str(exe), "/shown/name")
    raw = (BUILD_ID_FRAME.pack(BUILD_ID_VALID, bid, offs["st_f2"])
           + BUILD_ID_FRAME.pack(BUILD_ID_VALID, bid, offs["st_f1"] + 5)
           + BUILD_ID_FRAME.pack(BUILD_ID_IP, bytes(20), 0x1234))
    pid = 1 << 22  # no such process: only the build-ids can name the frames
    frames = sym.user_frames(pid, [0x5000, 0x6000, 0x1234], raw)
    assert frames == [
        {"addr": 0x5000, "symbol": "st_f2", "offset": 0, "module": "/shown/name"},
        {"addr": 0x6000, "symbol": "st_f1", "offset": 5, "module": "/shown/name"},
        {"addr": 0x1234, "symbol": None, "offset": 0, "module": None},
    ]


def test_read_build_id_like_readelf() -> None:
    from probewatch.analyze.stacks import read_build_id

    readelf = shutil.which("readelf")
    if not readelf:
        pytest.fail("readelf is needed (apt-get install binutils)")
    for path in ("/bin/ls", "/usr/lib/x86_64-linux-gnu/libc.so.6"):
        out = subprocess.run([readelf, "-n", path], capture_output=True, text=True,
                             check=True).stdout
        m = re.search(r"Build ID: ([0-9a-f]+)", out)
        assert m, out
        got = read_build_id(path)
        assert got is not None and got.hex() == m.group(1)
    assert read_build_id(str(PROGS / "stack_target.c")) is None  # not ELF
    assert read_build_id("/nonexistent/x") is None


@given(st.binary(max_size=400))
def test_read_build_id_any_bytes(raw: bytes) -> None:
    import os
    import tempfile

    from probewatch.analyze.stacks import read_build_id

    fd, path = tempfile.mkstemp()
    try:
        os.write(fd, b"\x7fELF\x02\x01" + raw)
        os.close(fd)
        got = read_build_id(path)  # never raises
        assert got is None or isinstance(got, bytes)
    finally:
        os.unlink(path)
