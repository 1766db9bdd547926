"""decode/perfring.py: perf ring records -> Events, on records built here byte by byte
the way the kernel lays them out (perf_output_sample), and on arbitrary bytes."""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from probewatch.decode.format import parse_format
from probewatch.decode.perfring import (
    RECORD_COMM,
    RECORD_FORK,
    RECORD_LOST,
    RECORD_SAMPLE,
    Handler,
    PerfDecoder,
    RegArg,
    pmu_uprobe_decoder,
)
from probewatch.event import Event

FORMATS = Path(__file__).resolve().parent.parent / "fixtures" / "formats"
EXEC = parse_format((FORMATS / "sched" / "sched_process_exec.format").read_text(), "sched")
SPEC = "t:sched:sched_process_exec"


def _sample(sid: int, pid: int, tid: int, ts: int, cpu: int, raw: bytes,
            tail: bytes = b"") -> bytes:
    """A PERF_RECORD_SAMPLE: IDENTIFIER, TID, TIME, CPU, RAW (u32 size + data padded so
    that size field + data end on 8 bytes), then ``tail`` (e.g. REGS_USER)."""
    pad = (-(4 + len(raw))) % 8
    raw = raw + bytes(pad)
    body = struct.pack("<QIIQII", sid, pid, tid, ts, cpu, 0) + struct.pack("<I", len(raw))
    body += raw + tail
    return struct.pack("<IHH", RECORD_SAMPLE, 0, 8 + len(body)) + body


def _exec_raw(filename: bytes, pid: int) -> bytes:
    name = filename + b"\0"
    return struct.pack("<HBBiIii", EXEC.id, 0, 0, pid, (len(name) << 16) | 20, pid, pid) + name


def _rec(typ: int, body: bytes) -> bytes:
    body += bytes((-len(body)) % 8)
    return struct.pack("<IHH", typ, 0, 8 + len(body)) + body


def _decoder() -> PerfDecoder:
    counts = {SPEC: 0}
    return PerfDecoder({77: Handler("sched:sched_process_exec", SPEC, 0, fmt=EXEC)}, counts,
                       comm_of=lambda tid: f"t{tid}")


def test_samples_lost_comm_fork() -> None:
    dec = _decoder()
    chunk = (
        _rec(RECORD_COMM, struct.pack("<II", 10, 10) + b"sh\0")
        + _sample(77, 10, 10, 1000, 1, _exec_raw(b"/bin/true", 10))
        + _rec(RECORD_LOST, struct.pack("<QQ", 77, 5))
        + _rec(RECORD_FORK, struct.pack("<IIIIQ", 11, 10, 11, 10, 0))
        + _sample(77, 11, 11, 2000, 0, _exec_raw(b"/bin/echo", 11))
        + _sample(99, 1, 1, 3000, 0, _exec_raw(b"/x", 1))  # an id nobody asked for
        + _sample(77, 12, 12, 4000, 0, _exec_raw(b"/y", 12))  # a task never seen
    )
    out: list[Event] = []
    dec.decode(1, chunk, out)
    assert [(e.pid, e.tid, e.comm, e.ts, e.cpu, e.event, e.probe) for e in out] == [
        (10, 10, "sh", 1000, 1, "sched:sched_process_exec", SPEC),
        (11, 11, "sh", 2000, 0, "sched:sched_process_exec", SPEC),  # the parent's comm
        (12, 12, "t12", 4000, 0, "sched:sched_process_exec", SPEC),
    ]
    assert [e.fields for e in out] == [
        {"filename": "/bin/true", "pid": 10, "old_pid": 10},
        {"filename": "/bin/echo", "pid": 11, "old_pid": 11},
        {"filename": "/y", "pid": 12, "old_pid": 12},
    ]
    assert dec.seen == [3]
    assert dec.lost_records == 5 and dec.lost_per_cpu == {1: 5}
    assert dec.unknown == 1 and dec.decode_errors == 0
    assert dec.counts == {SPEC: 0}  # delivered is counted by the session, not here


def test_count_only_and_short_record() -> None:
    dec = _decoder()
    chunk = _sample(77, 5, 5, 1, 0, _exec_raw(b"/a", 5)) * 3
    dec.decode(0, chunk, None)
    assert dec.counts == {SPEC: 3} and dec.seen == [3]
    short = _sample(77, 5, 5, 1, 0, b"\x00" * 8)  # shorter than the format
    out: list[Event] = []
    dec.decode(0, short, out)
    assert out == [] and dec.decode_errors == 1 and dec.seen == [4]


def test_pmu_uprobe_registers() -> None:
    faults = [0]
    # registers sampled: bit order di (5) then r8 (16): slots 0 and 1
    udec = pmu_uprobe_decoder([RegArg("a", 0, 4, True), RegArg("b", 1, 8, False),
                               RegArg("c", 1, 1, False)], False, 2, faults)
    dec = PerfDecoder({3: Handler("g:f_0", "u:x:f", 0, udec=udec)}, {"u:x:f": 0})
    raw = struct.pack("<HBBiQ", 0, 0, 0, 42, 0x401136)
    regs = struct.pack("<QQQ", 2, (1 << 64) - 7, 0x1_2345_6789)  # abi 64, di, r8
    out: list[Event] = []
    dec.decode(0, _sample(3, 42, 43, 9, 1, raw, regs), out)
    assert [e.fields for e in out] == [{"__probe_ip": 0x401136, "a": -7, "b": 0x1_2345_6789,
                                        "c": 0x89}]
    assert (out[0].pid, out[0].tid) == (42, 43) and faults == [0]
    # ABI none (a kernel thread): no registers follow; zeros, counted
    out.clear()
    dec.decode(0, _sample(3, 42, 43, 9, 1, raw, struct.pack("<Q", 0)), out)
    assert out[0].fields == {"__probe_ip": 0x401136, "a": 0, "b": 0, "c": 0}
    assert faults == [1]


def test_uretprobe_addresses() -> None:
    udec = pmu_uprobe_decoder([], True, 0, [0])
    dec = PerfDecoder({1: Handler("g:f_1", "ur:x:f", 0, udec=udec)}, {"ur:x:f": 0})
    raw = struct.pack("<HBBiQQ", 0, 0, 0, 1, 0x1000, 0x2000)
    out: list[Event] = []
    dec.decode(0, _sample(1, 1, 1, 5, 0, raw), out)
    assert out[0].fields == {"__probe_func": 0x1000, "__probe_ret_ip": 0x2000}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 600))
def test_arbitrary_bytes_never_raise(data: bytes, cut: int) -> None:
    dec = _decoder()
    good = _sample(77, 1, 1, 1, 0, _exec_raw(b"/bin/sh", 1))
    out: list[Event] = []
    dec.decode(0, good + data[:cut], out)
    # the whole record before the junk always decodes; junk never makes up more
    # events than it could hold records, and everything is accounted somewhere
    assert out and out[0].fields["filename"] == "/bin/sh"
    assert len(out) <= 1 + len(data[:cut]) // 44
    assert dec.seen[0] == len(out) + dec.decode_errors


def test_callchain_sample_and_mmap() -> None:
    from probewatch.decode.perfring import (
        CONTEXT_KERNEL,
        CONTEXT_USER,
        MISC_COMM_EXEC,
        RECORD_MMAP2,
    )

    calls: list[tuple[object, ...]] = []
    dec = _decoder()
    dec.stack_of = lambda pid, user, kern: [{"u": user, "k": kern, "pid": pid}]
    dec.on_mmap = lambda *a: calls.append(("mmap", *a))
    dec.on_exec = lambda pid: calls.append(("exec", pid))
    raw = _exec_raw(b"/bin/true", 7)
    raw += bytes((-(4 + len(raw))) % 8)
    ips = [CONTEXT_KERNEL, 0xFFFFFFFF81000010, 0xFFFFFFFF81000020, CONTEXT_USER, 0x401000]
    body = (struct.pack("<QIIQIIQ", 77, 7, 7, 50, 1, 0, len(ips))
            + struct.pack(f"<{len(ips)}Q", *ips) + struct.pack("<I", len(raw)) + raw)
    sample = struct.pack("<IHH", RECORD_SAMPLE, 0, 8 + len(body)) + body
    comm = struct.pack("<II", 7, 7) + b"true\0\0\0\0"
    comm_rec = struct.pack("<IHH", RECORD_COMM, MISC_COMM_EXEC, 8 + len(comm)) + comm
    mm = struct.pack("<IIQQQ", 7, 7, 0x400000, 0x2000, 0) + bytes(32) + b"/bin/true" + bytes(7)
    mmap_rec = struct.pack("<IHH", RECORD_MMAP2, 0, 8 + len(mm)) + mm
    out: list[Event] = []
    dec.decode(0, comm_rec + mmap_rec + sample, out)
    assert calls == [("exec", 7), ("mmap", 7, 0x400000, 0x2000, 0, "/bin/true")]
    assert len(out) == 1 and out[0].comm == "true"
    assert out[0].fields["filename"] == "/bin/true"
    assert out[0].fields["stack"] == [{"u": [0x401000], "k": ips[1:3], "pid": 7}]
    # a callchain longer than its record: damaged, counted, not raised
    bad = sample[:40] + struct.pack("<Q", 1 << 20) + sample[48:]
    dec.decode(0, bad, out)
    assert len(out) == 1 and dec.unknown == 1


def test_throttle_records_are_counted() -> None:
    """PERF_RECORD_THROTTLE (time, id, stream_id) counts; UNTHROTTLE does not."""
    from probewatch.decode.perfring import RECORD_THROTTLE, RECORD_UNTHROTTLE

    dec = _decoder()
    body = struct.pack("<QQQ", 1000, 77, 77)
    chunk = _rec(RECORD_THROTTLE, body) + _rec(RECORD_UNTHROTTLE, body) \
        + _rec(RECORD_THROTTLE, body)
    out: list[Event] = []
    dec.decode(0, chunk, out)
    assert dec.throttles == 2
    assert out == [] and dec.unknown == 0
