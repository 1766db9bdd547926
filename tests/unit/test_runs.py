"""Pages decoded as columns (EventRun) and written as JSON lines from templates: the
same events, the same bytes, as the one-Event-per-record path."""

from __future__ import annotations

import io
import json
import os
import struct
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures"))

import fixturelib as fx  # noqa: E402

from probewatch.decode.escape import from_json  # noqa: E402
from probewatch.decode.format import parse_format  # noqa: E402
from probewatch.decode.ringbuf import PageDecoder, run_layout  # noqa: E402
from probewatch.event import Event, EventRun, expand  # noqa: E402
from probewatch.session import _cut_runs  # noqa: E402
from probewatch.sinks.jsonl import JsonLinesSink, event_json, run_lines  # noqa: E402
from probewatch.sinks.writer import Out  # noqa: E402

FORMATS = fx.load_formats()
GETPPID = fx.load_format("syscalls", "sys_enter_getppid")
OPENAT = fx.load_format("syscalls", "sys_enter_openat")
EXEC = fx.load_format("sched", "sched_process_exec")
RAW = parse_format("""name: sys_enter
ID: 443
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:long id;	offset:8;	size:8;	signed:1;
	field:unsigned long args[6];	offset:16;	size:48;	signed:0;

print fmt: "NR %ld (%lx, %lx, %lx, %lx, %lx, %lx)", REC->id, REC->args[0]
""", "raw_syscalls")


def getppid_record(pid: int, nr: int = 110) -> bytes:
    return fx.common(GETPPID.id, pid) + struct.pack("<i4x", nr)


def both(pages: list[tuple[int, bytes]], formats: dict[int, Any] | None = None,
         ids: Any = None, layout: Any = None) -> tuple[list[Any], list[Event], list[int],
                                                       list[int]]:
    fm = FORMATS if formats is None else formats
    lay = layout or fx.layout()
    a, b = PageDecoder(lay, fm), PageDecoder(lay, fm)
    runs: list[Any] = []
    evs: list[Event] = []
    ma = [a.decode_page_runs(p, cpu, runs, ids) for cpu, p in pages]
    mb = [b.decode_page(p, cpu, evs) for cpu, p in pages]
    assert a.unknown == b.unknown
    return runs, evs, ma, mb


@pytest.mark.parametrize("name", ["basic", "getppid", "overrun", "overrun_stored", "subbuf8k"])
def test_recorded_pages_give_the_same_events(name: str) -> None:
    cap = fx.load_capture(name)
    runs, evs, ma, mb = both(cap.pages)
    assert expand(runs) == evs
    assert ma == mb
    if name == "getppid":  # a firehose: nearly every page is one run
        n_runs = sum(1 for x in runs if type(x) is EventRun)
        assert n_runs >= len(cap.pages) - 2
        assert sum(len(x) for x in runs if type(x) is EventRun) >= 9000


def test_run_columns_and_time_stamps() -> None:
    page = (fx.PageBuilder(1000).event(getppid_record(7), delta=5)
            .event(getppid_record(7, 111), delta=(1 << 27) - 1)
            .event(getppid_record(7)).build(missed=12))
    runs, evs, ma, _ = both([(1, page)])
    assert len(runs) == 1 and type(runs[0]) is EventRun
    r = runs[0]
    assert (r.cpu, r.tid, r.event, r.names) == (1, 7, "syscalls:sys_enter_getppid",
                                                 ("__syscall_nr",))
    assert r.tss == [1005, 1005 + (1 << 27) - 1, 1005 + (1 << 27) - 1]
    assert (r.ts, r.last, len(r)) == (1005, 1005 + (1 << 27) - 1, 3)
    assert [list(c) for c in r.cols] == [[110, 111, 110]]
    assert ma == [12]
    assert expand(runs) == evs


@pytest.mark.parametrize("build", [
    # two threads, a time extend, padding, another event type, an id not asked for
    lambda: fx.PageBuilder(0).event(getppid_record(1)).event(getppid_record(2)).build(),
    lambda: fx.PageBuilder(0).event(getppid_record(1)).time_extend(5 << 27)
    .event(getppid_record(1)).build(),
    lambda: fx.PageBuilder(0).event(getppid_record(1)).padding(16, delta=3)
    .event(getppid_record(1)).build(),
    lambda: fx.PageBuilder(0).event(getppid_record(1)).event(
        fx.common(OPENAT.id, 1) + bytes(48)).build(),
])
def test_mixed_pages_fall_back_to_events(build: Any) -> None:
    runs, evs, _, _ = both([(0, build())])
    assert not any(type(x) is EventRun for x in runs)
    assert runs == evs and evs


def test_ids_restrict_runs_and_strings_never_run() -> None:
    page = fx.PageBuilder(0).event(getppid_record(1)).event(getppid_record(1)).build()
    runs, evs, _, _ = both([(0, page)], ids=frozenset({OPENAT.id}))
    assert runs == evs and len(evs) == 2
    assert run_layout(EXEC, 64) is None  # a __data_loc string
    assert run_layout(GETPPID, 8) is None  # shorter than the record
    code, names, counts = run_layout(OPENAT, 48) or ("", (), ())
    assert names == ("__syscall_nr", "dfd", "filename", "flags", "mode")
    assert counts == (0, 0, 0, 0, 0)
    assert struct.calcsize("<" + code) == 4 + 48
    assert run_layout(RAW, 64) == ("I H 2x i q 6Q", ("id", "args"), (0, 6))


def test_openat_run_signed_fields_match() -> None:
    rec = fx.common(OPENAT.id, 9) + struct.pack("<i4xqQqQ", 257, -100, 0x7ffd1234, 0o2000000,
                                                  0o644)
    rec2 = fx.common(OPENAT.id, 9) + struct.pack("<i4xqQqQ", 257, 3, 0x10, 0, 0)
    page = fx.PageBuilder(10).event(rec, delta=1).event(rec2, delta=2).build()
    runs, evs, _, _ = both([(0, page)])
    assert type(runs[0]) is EventRun and expand(runs) == evs
    assert evs[0].fields["dfd"] == -100


def test_array_fields_run_and_render() -> None:
    def rec(pid: int, nr: int, a0: int) -> bytes:
        return fx.common(RAW.id, pid) + struct.pack("<q6Q", nr, a0, 2, 3, 4, 5, (1 << 64) - 1)

    page = (fx.PageBuilder(50).event(rec(3, 110, 7), delta=1).event(rec(3, 110, 8), delta=2)
            .event(rec(3, 39, 7), delta=3).build())
    runs, evs, _, _ = both([(1, page)], {RAW.id: RAW})
    assert type(runs[0]) is EventRun and runs[0].counts == (0, 6)
    assert expand(runs) == evs
    assert evs[0].fields == {"id": 110, "args": (7, 2, 3, 4, 5, (1 << 64) - 1)}
    r = runs[0]
    r.pid, r.comm, r.probe = 3, "x", "t:raw_syscalls:sys_enter"
    want = "".join(event_json(ev) + "\n" for ev in r.events()).encode()
    assert run_lines(r) == want
    a, b = r.split(1)
    assert expand([a, b]) == r.events()


def test_split_and_cut_runs() -> None:
    r = EventRun(0, 5, "e:x", [10, 20, 30, 40], ("a",), [(1, 2, 3, 4)])
    r.pid, r.comm, r.probe = 4, "c", "t:e:x"
    a, b = r.split(2)
    assert (a.tss, list(a.cols[0]), b.tss, list(b.cols[0])) == ([10, 20], [1, 2], [30, 40],
                                                                [3, 4])
    assert (b.pid, b.comm, b.probe) == (4, "c", "t:e:x")
    pending: list[Any] = []
    ev = Event(15, 1, 1, 1, "o", "e:y", "", {})
    # the run is cut at 25: what follows waits; the Event on another CPU overlaps it
    ready = _cut_runs([r, ev], 25, pending)
    assert [(x.ts, type(x).__name__) for x in ready] == [(10, "Event"), (15, "Event"),
                                                         (20, "Event")]
    assert [x.tss for x in pending] == [[30, 40]]
    # no overlap: runs stay runs
    pending = []
    ready = _cut_runs([r], 1 << 63, pending)
    assert ready == [r] and not pending


names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=15) | st.sampled_from(
    ["\udcff\udcfe", "a%d%%", 'q"\\', "7340987654321000000"])


@settings(max_examples=150, deadline=None)
@given(comm=names, probe=names,
       cols=st.lists(st.lists(st.integers(-(1 << 63), (1 << 64) - 1), min_size=3, max_size=3),
                     max_size=4),
       const=st.booleans())
def test_run_lines_equal_event_json(comm: str, probe: str, cols: list[list[int]],
                                    const: bool) -> None:
    if const:
        cols = [[c[0]] * 3 for c in cols]
    r = EventRun(1, 42, "sys:ev%s", [1, 2, 3 + (1 << 62)],
                 tuple(f"f{i}" for i in range(len(cols))), [tuple(c) for c in cols])
    r.pid, r.comm, r.probe = 40, comm, probe
    want = "".join(event_json(ev) + "\n" for ev in r.events()).encode()
    assert run_lines(r) == want
    assert run_lines(r) == want  # from the cached template
    for line in want.decode().split("\n")[:-1]:  # not splitlines(): U+0085 is a line end
        assert from_json(json.loads(line))["comm"] == comm


def test_sink_writes_mixed_batches_byte_identical(tmp_path: Any) -> None:
    fmt = parse_format(fx.format_text("syscalls", "sys_enter_getppid"), "syscalls")
    r = EventRun(0, 7, fmt.event_name, list(range(5000)), ("__syscall_nr",),
                 [tuple([110] * 4999 + [111])])
    r.pid, r.comm, r.probe = 7, "loop", "t:syscalls:sys_enter_getppid"
    e = Event(6000, 1, 8, 8, "x\udcff", "syscalls:sys_enter_getppid", "p", {"__syscall_nr": 1})
    batch: list[Any] = [e, r, e]
    want = "".join(event_json(ev) + "\n" for ev in expand(batch))
    path = tmp_path / "out.jsonl"
    with open(path, "w") as f:
        out = Out(f)
        JsonLinesSink(out).write_many(batch)
        out.flush()
    assert path.read_text() == want
    sio = io.StringIO()
    JsonLinesSink(sio).write_many(batch)
    assert sio.getvalue() == want
