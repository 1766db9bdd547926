"""Perfetto / Chrome trace-event export: format, slices, nesting (no kernel needed)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from probewatch.cli.main import main
from probewatch.event import Event
from probewatch.sinks.capture import CaptureWriter, ProbeInfo, RunInfo
from probewatch.sinks.perfetto import PairRules, PerfettoWriter, check_trace_events

from .test_capture import make_events, write_capture


def validate_trace_events(doc: Any) -> dict[int, list[dict[str, Any]]]:
    return check_trace_events(doc)


def ev(ts: int, tid: int, event: str, probe: str, pid: int | None = None,
       comm: str = "t", **fields: Any) -> Event:
    return Event(ts, 0, pid if pid is not None else tid, tid, comm, event, probe, fields)


def export(evs: list[Event], rules: PairRules | None = None,
           **kw: Any) -> tuple[dict[str, Any], Any]:
    buf = io.StringIO()
    w = PerfettoWriter(buf, rules, **kw)
    for e in evs:
        w.write(e)
    st = w.close()
    return json.loads(buf.getvalue()), st


ENTER = "syscalls:sys_enter_getppid"
EXIT = "syscalls:sys_exit_getppid"
TP_EN, TP_EX = "t:syscalls:sys_enter_getppid", "t:syscalls:sys_exit_getppid"
UP, URP = "u:/bin/bash:readline", "ur:/bin/bash:readline"
RULES = PairRules.from_probes([(UP, "uprobe"), (URP, "uretprobe"),
                               ("u:/bin/bash:readline+4", "uprobe")])


def test_syscall_pairs_become_slices() -> None:
    evs = []
    for i in range(3):
        evs.append(ev(1000 + i * 100, 7, ENTER, TP_EN, __syscall_nr=110))
        evs.append(ev(1050 + i * 100, 7, EXIT, TP_EX, __syscall_nr=110, ret=1))
    doc, st = export(evs)
    slices = validate_trace_events(doc)
    assert st.slices == 3 and st.instants == 0 and st.unmatched == 0
    s = slices[7]
    assert [x["name"] for x in s] == ["getppid"] * 3
    assert [(x["ts"], x["dur"]) for x in s] == [(0.0, 0.05), (0.1, 0.05), (0.2, 0.05)]
    assert s[0]["args"]["exit"] == {"__syscall_nr": 110, "ret": 1}


def test_uprobe_pairs_nest_with_syscalls_and_recursion() -> None:
    evs = [
        ev(1000, 5, "probewatch_1:readline_0", UP),
        ev(1100, 5, "probewatch_1:readline_0", UP),        # recursive call
        ev(1200, 5, ENTER, TP_EN),
        ev(1300, 5, EXIT, TP_EX, ret=1),
        ev(1400, 5, "probewatch_1:readline_1", URP, line="x"),
        ev(1500, 5, "probewatch_1:readline_1", URP, line="y"),
    ]
    doc, st = export(evs, RULES)
    slices = validate_trace_events(doc)[5]
    assert st.slices == 3 and st.instants == 0
    by = sorted((x["ts"], x["dur"], x["name"]) for x in slices)
    assert by == [(0.0, 0.5, "readline"), (0.1, 0.3, "readline"), (0.2, 0.1, "getppid")]
    outer = [x for x in slices if x["dur"] == 0.5][0]
    assert outer["args"]["exit"] == {"line": "y"}


def test_lost_and_unmatched_events_become_instants() -> None:
    evs = [
        ev(1000, 5, "probewatch_1:readline_0", UP),
        ev(1100, 5, ENTER, TP_EN),                          # its exit was lost
        ev(1400, 5, "probewatch_1:readline_1", URP),
        ev(1500, 5, EXIT, TP_EX),                           # exit without enter
        ev(1600, 5, "syscalls:sys_enter_read", "t:syscalls:sys_enter_read"),  # never exits
        ev(1700, 6, "probewatch_1:readline_2", "u:/bin/bash:readline+4"),  # not an entry
        ev(1800, 6, "sched:sched_switch", "t:sched:sched_switch", prev_comm="a"),
    ]
    doc, st = export(evs, RULES)
    slices = validate_trace_events(doc)
    assert st.slices == 1 and st.instants == 5 and st.unmatched == 3
    assert [(x["name"], x["ts"], x["dur"]) for x in slices[5]] == [("readline", 0.0, 0.4)]
    inst = [e for e in doc["traceEvents"] if e["ph"] == "i"]
    assert {e["name"] for e in inst} == {ENTER, EXIT, "syscalls:sys_enter_read",
                                         "probewatch_1:readline_2", "sched:sched_switch"}
    sw = [e for e in inst if e["name"] == "sched:sched_switch"][0]
    assert sw["args"]["prev_comm"] == "a" and sw["s"] == "t"


def test_raw_syscalls_pair_by_id_and_threads_get_names() -> None:
    evs = [
        ev(1000, 11, "raw_syscalls:sys_enter", "t:raw_syscalls:*", pid=10, comm="worker",
           id=0, args=(1, 2, 3, 4, 5, 6)),
        ev(1010, 10, "raw_syscalls:sys_enter", "t:raw_syscalls:*", pid=10, comm="main",
           id=1, args=(0,) * 6),
        ev(1020, 11, "raw_syscalls:sys_exit", "t:raw_syscalls:*", pid=10, comm="worker",
           id=0, ret=3),
        ev(1030, 10, "raw_syscalls:sys_exit", "t:raw_syscalls:*", pid=10, comm="main",
           id=1, ret=1),
        ev(1040, 20, "raw_syscalls:sys_enter", "t:raw_syscalls:*", comm="other", id=60,
           args=(0,) * 6, blob=b"\x01\x02"),
    ]
    doc, st = export(evs, None, process_names={10: "myprog"}, metadata={"file": "x.db"})
    slices = validate_trace_events(doc)
    assert [x["name"] for x in slices[11]] == ["syscall_0"]
    assert [x["name"] for x in slices[10]] == ["syscall_1"]
    assert slices[11][0]["args"]["enter"]["args"] == [1, 2, 3, 4, 5, 6]
    meta = {(e["name"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"]
            if e["ph"] == "M"}
    assert meta[("process_name", 10)] == "myprog"
    assert meta[("thread_name", 11)] == "worker" and meta[("thread_name", 10)] == "main"
    assert meta[("process_name", 20)] == "other"
    inst = [e for e in doc["traceEvents"] if e["ph"] == "i"]
    assert inst[0]["args"]["blob"] == [1, 2]
    assert st.threads == 3 and st.processes == 2
    assert doc["displayTimeUnit"] == "ns"
    assert doc["otherData"]["probewatch_file"] == "x.db"
    assert doc["otherData"]["probewatch_t0_ns"] == "1000"


def test_export_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "run.db"
    evs = make_events()
    write_capture(p, evs)
    out = tmp_path / "run.json"
    assert main(["export", str(p), "--perfetto", str(out), "--jsonl", str(tmp_path / "r.jsonl")]) \
        == 0
    err = capsys.readouterr().err
    assert f"{len(evs)} events" in err
    doc = json.loads(out.read_text())
    validate_trace_events(doc)
    assert sum(1 for e in doc["traceEvents"] if e["ph"] == "i") == len(evs)
    from probewatch.sinks.jsonl import event_json

    assert (tmp_path / "r.jsonl").read_text().splitlines() == [event_json(e) for e in evs]
    assert main(["export", str(p)]) == 1
    assert "nothing to export" in capsys.readouterr().err


def test_export_cli_pairs_probes_from_the_capture(tmp_path: Path) -> None:
    p = tmp_path / "u.db"
    w = CaptureWriter(str(p))
    w.begin_run(RunInfo(backend="test"), [
        ProbeInfo(UP, kind="uprobe", target="/usr/bin/bash", symbol="readline", offset=0),
        ProbeInfo(URP, kind="uretprobe", target="/usr/bin/bash", symbol="readline", offset=0),
    ])
    for e in [ev(1000, 5, "probewatch_1:readline_0", UP),
              ev(3000, 5, "probewatch_1:readline_1", URP, line="ls")]:
        w.add(e)
    w.finish()
    out = tmp_path / "u.json"
    assert main(["export", str(p), "--perfetto", str(out)]) == 0
    slices = validate_trace_events(json.loads(out.read_text()))
    assert [(x["name"], x["dur"]) for x in slices[5]] == [("readline", 2.0)]


def test_validator_catches_bad_nesting() -> None:
    bad = {"traceEvents": [
        {"name": "a", "ph": "X", "ts": 0, "dur": 10, "pid": 1, "tid": 1},
        {"name": "b", "ph": "X", "ts": 5, "dur": 10, "pid": 1, "tid": 1},
        {"name": "thread_name", "ph": "M", "ts": 0, "pid": 1, "tid": 1, "args": {"name": "x"}},
        {"name": "process_name", "ph": "M", "ts": 0, "pid": 1, "tid": 1,
         "args": {"name": "x"}},
    ]}
    with pytest.raises(ValueError, match="overlaps"):
        validate_trace_events(bad)


@pytest.mark.parametrize("bad, why", [
    ({"traceEvents": [{"ph": "i", "ts": 0, "pid": 1, "name": "x"}]}, "without tid"),
    ({"traceEvents": [{"ph": "Q", "ts": 0, "pid": 1, "tid": 1, "name": "x"}]}, "phase"),
    ({"traceEvents": [{"ph": "X", "ts": 0, "pid": 1, "tid": 1, "name": "x", "dur": -1}]},
     "bad dur"),
    ({"traceEvents": [{"ph": "i", "ts": 0, "pid": 1, "tid": 1, "name": "x"}]},
     "without thread_name"),
    ([], "not a trace-event document"),
])
def test_validator_catches_format_errors(bad: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_trace_events(bad)


def test_glob_probes_pair_per_function() -> None:
    rules = PairRules.from_probes([("u:libc:mem*", "uprobe"), ("ur:libc:mem*", "uretprobe"),
                                   ("k:vfs_*", "kprobe"), ("kr:vfs_*", "kretprobe")])
    evs = [
        ev(1000, 3, "probewatch_1:memcpy_0", "u:libc:mem*"),
        ev(1100, 3, "probewatch_1:memset_1", "u:libc:mem*"),
        ev(1200, 3, "probewatch_1:memset_3", "ur:libc:mem*"),
        ev(1300, 3, "probewatch_1:memcpy_2", "ur:libc:mem*"),
        ev(1400, 3, "probewatch_1:vfs_read_0", "k:vfs_*"),
        ev(1500, 3, "probewatch_1:vfs_read_1", "kr:vfs_*"),
    ]
    doc, st = export(evs, rules)
    got = sorted((s["name"], s["ts"], s["dur"]) for s in validate_trace_events(doc)[3])
    assert got == [("memcpy", 0.0, 0.3), ("memset", 0.1, 0.1), ("vfs_read", 0.4, 0.1)]
    # exact per-event knowledge (as record stores it) wins over the naming convention
    exact = PairRules(events={
        "g:a_0": ("uprobe", "/bin/x", "alpha", 0), "g:b_7": ("uretprobe", "/bin/x", "alpha", 0),
    })
    doc, st = export([ev(1000, 3, "g:a_0", "u:/bin/x:alpha"),
                      ev(2000, 3, "g:b_7", "ur:/bin/x:alpha")], exact)
    assert [(s["name"], s["dur"]) for s in validate_trace_events(doc)[3]] == [("alpha", 1.0)]


def test_entries_without_their_exit_in_the_capture_stay_instants() -> None:
    evs = [ev(1000 + i, 3, ENTER, TP_EN) for i in range(2000)]
    doc, st = export(evs, PairRules(present=[(ENTER, TP_EN)]))
    assert st.instants == 2000 and st.slices == 0 and st.unmatched == 0
    validate_trace_events(doc)
    # without knowing what is present, entries are held (bounded) and then let go
    doc, st = export(evs)
    assert st.instants == 2000 and st.unmatched == 2000
    validate_trace_events(doc)


def test_export_equals_hand_written_trace_event_json() -> None:
    """The whole document, written by hand from the Trace Event Format (Chrome's
    trace-event JSON that ui.perfetto.dev loads): complete events ph=X with ts and dur
    in microseconds relative to the first event, a thread-scoped instant (ph=i, s=t)
    for an exit without its entry, process_name/thread_name metadata (ph=M)."""
    evs = [
        ev(1_000_000, 7, ENTER, TP_EN, pid=5, comm="getppid_n", __syscall_nr=110),
        ev(1_002_500, 7, EXIT, TP_EX, pid=5, comm="getppid_n", __syscall_nr=110, ret=5),
        ev(1_010_000, 8, "probewatch_1:readline_0", UP, pid=8, comm="bash"),
        ev(1_011_000, 8, "probewatch_1:readline_1", URP, pid=8, comm="bash", ret=0),
        ev(1_020_000, 7, EXIT, TP_EX, pid=5, comm="getppid_n", __syscall_nr=110, ret=5),
    ]
    doc, st = export(evs, RULES)
    assert doc == {
        "traceEvents": [
            {"name": "getppid", "cat": "syscalls", "ph": "X", "ts": 0.0, "dur": 2.5,
             "pid": 5, "tid": 7,
             "args": {"probe": TP_EN, "enter": {"__syscall_nr": 110},
                      "exit": {"__syscall_nr": 110, "ret": 5}}},
            {"name": "readline", "cat": "probewatch_1", "ph": "X", "ts": 10.0, "dur": 1.0,
             "pid": 8, "tid": 8, "args": {"probe": UP, "enter": {}, "exit": {"ret": 0}}},
            {"name": "syscalls:sys_exit_getppid", "cat": "syscalls", "ph": "i", "s": "t",
             "ts": 20.0, "pid": 5, "tid": 7,
             "args": {"probe": TP_EX, "cpu": 0, "__syscall_nr": 110, "ret": 5}},
            {"name": "process_name", "ph": "M", "ts": 0, "pid": 5, "tid": 5,
             "args": {"name": "getppid_n"}},
            {"name": "process_name", "ph": "M", "ts": 0, "pid": 8, "tid": 8,
             "args": {"name": "bash"}},
            {"name": "thread_name", "ph": "M", "ts": 0, "pid": 5, "tid": 7,
             "args": {"name": "getppid_n"}},
            {"name": "thread_name", "ph": "M", "ts": 0, "pid": 8, "tid": 8,
             "args": {"name": "bash"}},
        ],
        "displayTimeUnit": "ns",
        "otherData": {"probewatch_t0_ns": "1000000"},
    }
    assert (st.events, st.slices, st.instants, st.unmatched, st.threads, st.processes) == (
        5, 2, 1, 1, 2, 2)
