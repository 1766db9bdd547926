"""probewatch.decode.ringbuf: recorded trace_pipe_raw pages and synthetic ones."""

from __future__ import annotations

import os
import struct
import sys
from typing import Any

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures"))

import fixturelib as fx  # noqa: E402

from probewatch.decode.format import DEFAULT_LAYOUT, PageLayout  # noqa: E402
from probewatch.decode.ringbuf import (  # noqa: E402
    PageDecoder,
    iter_records,
    page_header,
)
from probewatch.errors import DecodeError  # noqa: E402
from probewatch.event import Event  # noqa: E402

FORMATS = fx.load_formats()
GETPPID = fx.load_format("syscalls", "sys_enter_getppid")
EXIT_GETPPID = fx.load_format("syscalls", "sys_exit_getppid")
EXEC = fx.load_format("sched", "sched_process_exec")
PRINT = fx.load_format("ftrace", "print")


def decode_capture(name: str, formats: dict[int, Any] | None = None
                   ) -> tuple[fx.Capture, PageDecoder, list[Event], list[int]]:
    cap = fx.load_capture(name)
    dec = PageDecoder(cap.layout, FORMATS if formats is None else formats)
    out: list[Event] = []
    missed = [dec.decode_page(page, cpu, out) for cpu, page in cap.pages]
    return cap, dec, out, missed


def getppid_record(pid: int, nr: int = 110) -> bytes:
    return fx.common(GETPPID.id, pid) + struct.pack("<i4x", nr)


# -- recorded pages against the kernel's own rendering -------------------------------


@pytest.mark.parametrize("name", ["basic", "overrun", "overrun_stored", "subbuf8k"])
def test_recorded_pages_match_the_kernels_trace_text(name: str) -> None:
    cap, dec, out, _ = decode_capture(name)
    assert dec.unknown == 0
    lines = cap.trace_lines()
    assert len(out) == len(lines)
    for cpu in {c for c, _ in cap.pages}:
        mine = [(ev.event, (ev.ts + 500) // 1000, ev.pid) for ev in out if ev.cpu == cpu]
        theirs = [(t.event, t.usecs, t.pid) for t in lines if t.cpu == cpu]
        assert mine == theirs, f"cpu {cpu}"
        assert int(cap.stats(cpu)["entries"]) == len(mine)


def test_basic_capture_exact_values() -> None:
    cap, _, out, missed = decode_capture("basic")
    facts = cap.facts
    me = facts["pid"]
    assert missed == [0] * len(cap.pages)
    for ev in out:
        assert (ev.comm, ev.probe) == ("", "")
        assert ev.tid == ev.pid
    by = lambda name: [ev for ev in out if ev.event == name]  # noqa: E731

    enters = by("syscalls:sys_enter_getppid")
    exits = by("syscalls:sys_exit_getppid")
    for cpu in (0, 1):
        n = facts[f"getppid_cpu{cpu}"]
        assert sum(ev.cpu == cpu for ev in enters) == n
        assert sum(ev.cpu == cpu for ev in exits) == n
    assert {ev.fields["__syscall_nr"] for ev in enters} == {110}
    assert {ev.fields["ret"] for ev in exits} == {facts["ppid"]}
    assert {ev.pid for ev in enters + exits} == {me}

    # openat(AT_FDCWD, target) and openat(dirfd, basename): dfd -100 and dirfd
    opens = [ev for ev in by("syscalls:sys_enter_openat") if ev.pid == me]
    dfds = [ev.fields["dfd"] for ev in opens]
    assert dfds.count(facts["openat_dirfd"]) == 1
    assert set(dfds) == {-100, facts["openat_dirfd"]}
    assert facts["openat_flags"][0] in {ev.fields["flags"] for ev in opens}
    rets = [ev.fields["ret"] for ev in by("syscalls:sys_exit_openat") if ev.pid == me]
    for fd in facts["openat_fds"] + [facts["openat_dirfd"]]:
        assert fd in rets

    execs = by("sched:sched_process_exec")
    assert [(ev.pid, ev.fields["pid"], ev.fields["old_pid"], ev.fields["filename"])
            for ev in execs] == [(e["pid"], e["pid"], e["pid"], e["filename"])
                                 for e in facts["exec"]]
    forks = by("sched:sched_process_fork")
    assert [(ev.fields["parent_pid"], ev.fields["parent_comm"], ev.fields["child_pid"],
             ev.fields["child_comm"]) for ev in forks] == [
        (me, facts["comm"], e["pid"], facts["comm"]) for e in facts["exec"]]
    exits_ = by("sched:sched_process_exit")
    assert [(ev.fields["pid"], ev.fields["group_dead"]) for ev in exits_] == [
        (e["pid"], 1) for e in facts["exec"]]
    assert exits_[0].fields["comm"] == "true"

    marks = by("ftrace:print")
    assert [ev.fields["buf"] for ev in marks] == [m + "\n" for m in facts["markers"]]

    # sched_switch against the text, field by field
    lines = [t for t in cap.trace_lines() if t.event == "sched:sched_switch"]
    switches = by("sched:sched_switch")
    assert len(switches) == len(lines) > 5
    for ev, t in zip(sorted(switches, key=lambda e: (e.cpu, e.ts)),
                     sorted(lines, key=lambda t: (t.cpu, t.usecs)), strict=True):
        kv = fx.kv(t.rest)
        for k in ("prev_comm", "next_comm"):
            assert ev.fields[k] == kv[k]
        for k in ("prev_pid", "prev_prio", "next_pid", "next_prio"):
            assert ev.fields[k] == int(kv[k])
        state = {"R": 0, "S": 1, "D": 2, "Z": 32, "R+": 256}[kv["prev_state"]]
        assert ev.fields["prev_state"] == state


def test_basic_capture_has_time_extends_and_long_events() -> None:
    cap = fx.load_capture("basic")
    tl = []
    for _, page in cap.pages:
        size = page_header(page, cap.layout).size
        pos = 16
        while pos < 16 + size:
            hdr = struct.unpack_from("<I", page, pos)[0]
            tl.append(hdr & 31)
            pos += {0: 4 + struct.unpack_from("<I", page, pos + 4)[0], 30: 8}.get(
                hdr & 31, 4 + 4 * (hdr & 31))
    assert tl.count(30) >= 1  # the 300 ms sleep
    assert tl.count(0) >= 2  # the 200-byte marker and the long exec filename
    # and the timestamps still agree with the kernel after the extend
    _, _, out, _ = decode_capture("basic")
    cpu0 = [ev.ts for ev in out if ev.cpu == 0]
    assert max(b - a for a, b in zip(cpu0, cpu0[1:], strict=False)) > cap.facts["sleep_ns"] // 2


def test_overrun_full_pages_report_unknown_loss() -> None:
    cap, _, out, missed = decode_capture("overrun")
    # sys_enter (20 bytes) + sys_exit (28 bytes) fill 4080 exactly: no room for the count
    assert missed[0] == -1 and missed[1:] == [0] * (len(missed) - 1)
    raw_commit = struct.unpack_from("<Q", cap.pages[0][1], 8)[0]
    assert raw_commit >> 32 == 0xFFFFFFFF  # the sign-extended (1 << 31) flag
    assert page_header(cap.pages[0][1], cap.layout).size == 4080
    n = cap.facts["getppid_cpu0"]
    assert len(out) + int(cap.stats(0)["overrun"]) == 2 * n


def test_overrun_with_stored_count() -> None:
    cap, dec, out, missed = decode_capture("overrun_stored")
    overrun = int(cap.stats(0)["overrun"])
    assert missed[0] == overrun > 0
    assert dec.last_missed == 0  # the last page read lost nothing
    assert len(out) + overrun == cap.facts["getppid_cpu0"]
    assert page_header(cap.pages[0][1], cap.layout) == (
        struct.unpack_from("<Q", cap.pages[0][1])[0], 4060, overrun)


def test_getppid_capture() -> None:
    cap, dec, out, missed = decode_capture("getppid", {GETPPID.id: GETPPID})
    assert set(missed) == {0}
    assert len(out) == cap.facts["getppid_cpu0"] == 10000
    assert {ev.fields["__syscall_nr"] for ev in out} == {cap.facts["syscall_nr"]}
    assert {(ev.pid, ev.cpu, ev.event) for ev in out} == {
        (cap.facts["pid"], 0, "syscalls:sys_enter_getppid")}
    ts = [ev.ts for ev in out]
    assert ts == sorted(ts)
    assert out[0] == Event(ts[0], 0, cap.facts["pid"], cap.facts["pid"], "",
                           "syscalls:sys_enter_getppid", "", {"__syscall_nr": 110})


@pytest.mark.parametrize("name", ["basic", "getppid", "overrun", "overrun_stored", "subbuf8k"])
def test_decoder_agrees_with_reference_walker_and_counter(name: str) -> None:
    cap = fx.load_capture(name)
    dec = PageDecoder(cap.layout, FORMATS)
    total: dict[int, int] = {}
    for cpu, page in cap.pages:
        out: list[Event] = []
        dec.decode_page(page, cpu, out)
        ref = list(dec.iter_records(page))
        assert [ev.ts for ev in out] == [r[0] for r in ref]
        assert [ev.event for ev in out] == [FORMATS[r[1]].event_name for r in ref]
        for ev, (_, tid, start, end) in zip(out, ref, strict=True):
            assert ev.fields == FORMATS[tid].decode(page, start, end)
        dec.count_page(page, total)
    walked: dict[int, int] = {}
    for _, page in cap.pages:
        for _, tid, _, _ in iter_records(page, cap.layout):
            walked[tid] = walked.get(tid, 0) + 1
    assert total == walked


def test_unknown_ids_are_counted_not_decoded() -> None:
    _, dec, out, _ = decode_capture("basic", {GETPPID.id: GETPPID})
    assert {ev.event for ev in out} == {"syscalls:sys_enter_getppid"}
    assert dec.unknown == 370 - len(out)
    assert len(out) == 151


def test_page_inputs_of_other_buffer_types() -> None:
    cap = fx.load_capture("getppid")
    dec = PageDecoder(cap.layout, {GETPPID.id: GETPPID})
    page = cap.pages[0][1]
    ref: list[Event] = []
    dec.decode_page(page, 0, ref)
    for variant in (bytearray(page), memoryview(page)):
        out: list[Event] = []
        dec.decode_page(variant, 0, out)
        assert out == ref


def test_empty_decoder_and_formats_that_disagree() -> None:
    dec = PageDecoder(DEFAULT_LAYOUT, {})
    page = fx.PageBuilder(10).event(getppid_record(1)).build()
    out: list[Event] = []
    assert dec.decode_page(page, 0, out) == 0
    assert out == [] and dec.unknown == 1
    odd = fx.load_format("sched", "sched_switch")
    text = fx.format_text("sched", "sched_switch").replace(
        "unsigned short common_type;\toffset:0;\tsize:2", "unsigned int common_type;\toffset:0;"
        "\tsize:4")
    from probewatch.decode.format import parse_format

    with pytest.raises(DecodeError, match="disagree"):
        PageDecoder(DEFAULT_LAYOUT, {odd.id: odd, 1: parse_format(text, "sched")})


# -- synthetic pages -------------------------------------------------------------------


def decode(page: bytes, formats: dict[int, Any] | None = None,
           layout: PageLayout = DEFAULT_LAYOUT) -> tuple[list[Event], int, PageDecoder]:
    dec = PageDecoder(layout, formats if formats is not None else {GETPPID.id: GETPPID})
    out: list[Event] = []
    missed = dec.decode_page(page, 3, out)
    assert [ev.ts for ev in out] == [r[0] for r in dec.iter_records(page)]
    return out, missed, dec


def test_deltas_accumulate_from_the_page_timestamp() -> None:
    page = (fx.PageBuilder(1_000_000).event(getppid_record(1), delta=5)
            .event(getppid_record(2), delta=(1 << 27) - 1).event(getppid_record(3)).build())
    out, missed, _ = decode(page)
    assert [(ev.ts, ev.pid, ev.cpu) for ev in out] == [
        (1_000_005, 1, 3), (1_000_005 + (1 << 27) - 1, 2, 3), (1_000_005 + (1 << 27) - 1, 3, 3)]
    assert missed == 0


def test_time_extend() -> None:
    big = 5 * 10**9 + 12345  # 5 s: needs the array word
    page = (fx.PageBuilder(100).event(getppid_record(1), delta=1).time_extend(big)
            .event(getppid_record(2)).time_extend(7).event(getppid_record(3), delta=2).build())
    out, _, _ = decode(page)
    assert [ev.ts for ev in out] == [101, 101 + big, 101 + big + 9]


def test_time_stamp_absolute_and_msb_fixup() -> None:
    page = (fx.PageBuilder(1000).event(getppid_record(1), delta=1).time_stamp(5_000_000)
            .event(getppid_record(2)).event(getppid_record(3), delta=4).build())
    out, _, _ = decode(page)
    assert [ev.ts for ev in out] == [1001, 5_000_000, 5_000_004]
    # clocks with the top 5 bits set: only 59 bits are stored, the rest comes from now
    msb = 0b10101 << 59
    base = msb | 1000
    page = (fx.PageBuilder(base).time_stamp(msb | 2000).event(getppid_record(1)).build())
    assert [ev.ts for ev in decode(page)[0]] == [msb | 2000]
    # ... and when the stored low bits wrapped past the current time, the MSBs advance
    page = (fx.PageBuilder(msb | ((1 << 59) - 10)).time_stamp(5).event(getppid_record(1))
            .build())
    assert [ev.ts for ev in decode(page)[0]] == [(msb | 5) + (1 << 59)]


def test_padding_discarded_event_and_end_of_page() -> None:
    page = (fx.PageBuilder(0).event(getppid_record(1), delta=1).padding(16, delta=10)
            .event(getppid_record(2), delta=3).null_padding(filler=0xEE)
            .build())
    out, _, _ = decode(page)
    # the discarded event's delta counts (the next delta is relative to it)
    assert [(ev.pid, ev.ts) for ev in out] == [(1, 1), (2, 14)]
    # bytes after a null padding are never read, whatever they hold
    b = fx.PageBuilder(0).event(getppid_record(1)).null_padding(n=0).raw(b"\x01\x02\x03")
    page = b.build()
    assert [ev.pid for ev in decode(page)[0]] == [1]


def test_long_records_type_len_zero() -> None:
    name = b"/" + b"x" * 150 + b"\0"
    rec = fx.common(EXEC.id, 7) + struct.pack("<I", (len(name) << 16) | 20) + struct.pack(
        "<ii", 7, 7) + name
    msg = b"hello\n\0"
    prt = fx.common(PRINT.id, 8) + struct.pack("<Q", 1) + msg
    page = (fx.PageBuilder(50).event(rec, delta=1).event(prt, delta=1, long=True)
            .event(getppid_record(9), long=True).build())
    out, _, _ = decode(page, {EXEC.id: EXEC, PRINT.id: PRINT, GETPPID.id: GETPPID})
    assert [(ev.event, ev.ts, ev.pid) for ev in out] == [
        ("sched:sched_process_exec", 51, 7), ("ftrace:print", 52, 8),
        ("syscalls:sys_enter_getppid", 52, 9)]
    assert out[0].fields["filename"] == name[:-1].decode()
    assert out[1].fields == {"ip": 1, "buf": "hello\n"}


def test_missed_events_flags() -> None:
    base = fx.PageBuilder(0).event(getppid_record(1))
    assert decode(base.build())[1] == 0
    assert decode(base.build(missed=1234))[1] == 1234
    assert decode(base.build(missed=99, stored=False))[1] == -1
    # stored flag set but the page was cut right after the data: count unknown
    page = base.build(missed=5)[: 16 + 20]
    out, missed, dec = decode(page)
    assert (missed, dec.last_missed, len(out)) == (-1, -1, 1)
    assert page_header(base.build(missed=7)) == (0, 20, 7)


def test_32bit_layout() -> None:
    lay = PageLayout(commit_size=4, data_offset=12, data_size=4084)
    b = fx.PageBuilder(77, lay).event(getppid_record(5), delta=3)
    page = b.build(missed=3)
    out, missed, _ = decode(page, layout=lay)
    assert [(ev.ts, ev.pid) for ev in out] == [(80, 5)]
    assert missed == 3


def test_pages_shorter_than_a_subbuffer() -> None:
    page = fx.PageBuilder(0).event(getppid_record(1)).event(getppid_record(2)).build()
    assert len(decode(page[: 16 + 40])[0]) == 2


@pytest.mark.parametrize(
    "page,message",
    [
        (b"", "shorter than its 16-byte header"),
        (bytes(15), "shorter"),
        (fx.PageBuilder(0).event(getppid_record(1)).build()[:30], "truncated"),
        (fx.PageBuilder(0).event(getppid_record(1)).build(commit=8000), "truncated"),
        # event claims 20 bytes, commit says 12
        (fx.PageBuilder(0).event(getppid_record(1)).build(commit=12), "runs past"),
        (fx.PageBuilder(0).raw(fx.u32(0) + fx.u32(2) + bytes(8)).build(), "bad length 2"),
        (fx.PageBuilder(0).raw(fx.u32(0) + fx.u32(400) + bytes(8)).build(), "bad length 400"),
        (fx.PageBuilder(0).raw(fx.u32(0) + fx.u32(5)).build(), "bad length 5"),
        (fx.PageBuilder(0).raw(fx.u32(30)).build(), "time extend"),
        (fx.PageBuilder(0).raw(fx.u32(31)).build(), "time stamp"),
        (fx.PageBuilder(0).raw(fx.u32(29 | 32)).build(), "padding"),
        (fx.PageBuilder(0).raw(fx.u32(29 | 32) + fx.u32(64)).build(), "runs past"),
    ],
    ids=["empty", "15 bytes", "cut page", "commit too big", "event past commit",
         "long too short", "long too long", "long no type", "extend cut", "stamp cut",
         "padding cut", "padding too long"],
)
def test_corrupt_pages_raise_decode_error(page: bytes, message: str) -> None:
    dec = PageDecoder(DEFAULT_LAYOUT, {GETPPID.id: GETPPID})
    with pytest.raises(DecodeError, match=message):
        dec.decode_page(page, 0, [])
    with pytest.raises(DecodeError):
        dec.count_page(page)
    with pytest.raises(DecodeError):
        list(dec.iter_records(page))


def test_record_shorter_than_its_format() -> None:
    sw = fx.load_format("sched", "sched_switch")
    page = fx.PageBuilder(0).event(getppid_record(1)).event(
        fx.common(sw.id, 2) + bytes(8)).build()
    out: list[Event] = []
    dec = PageDecoder(DEFAULT_LAYOUT, {GETPPID.id: GETPPID, sw.id: sw})
    with pytest.raises(DecodeError, match="sched_switch: record is 16 bytes"):
        dec.decode_page(page, 0, out)
    assert [ev.pid for ev in out] == [1]  # what came before the bad record is kept


def test_custom_type_values_from_header_event() -> None:
    # a hypothetical kernel with other type numbers: the decoder follows header_event
    lay = PageLayout(padding_type=31, time_extend_type=29, time_stamp_type=30)
    page = (fx.PageBuilder(0, lay).event(getppid_record(1), delta=1)
            .raw(fx.u32(29 | (4 << 5)) + fx.u32(1))  # extend by 4 + (1 << 27)
            .event(getppid_record(2)).raw(fx.u32(31)).raw(b"junk").build())
    out, _, _ = decode(page, layout=lay)
    assert [ev.ts for ev in out] == [1, 1 + 4 + (1 << 27)]
    lay2 = PageLayout(data_max_type_len=20)
    page = fx.PageBuilder(0, lay2).raw(fx.u32(25) + bytes(100)).build()
    with pytest.raises(DecodeError, match="unknown type_len 25"):
        decode(page, layout=lay2)


def test_count_page_walks_every_event_kind() -> None:
    rec = fx.common(EXEC.id, 7) + struct.pack("<I", (130 << 16) | 20) + struct.pack(
        "<ii", 7, 7) + b"y" * 129 + b"\0"
    page = (fx.PageBuilder(0).event(getppid_record(1)).time_extend(1 << 30)
            .event(rec).padding(8).time_stamp(99).event(getppid_record(2), long=True)
            .event(getppid_record(3)).null_padding().build(missed=4))
    dec = PageDecoder(DEFAULT_LAYOUT, {})
    counts = dec.count_page(page)
    assert counts == {GETPPID.id: 3, EXEC.id: 1}
    assert dec.last_missed == 4
    assert dec.count_page(page, counts) is counts and counts[GETPPID.id] == 6
    out, missed, _ = decode(page, {GETPPID.id: GETPPID, EXEC.id: EXEC})
    assert [ev.ts for ev in out] == [0, 1 << 30, 99, 99]
    assert missed == 4
