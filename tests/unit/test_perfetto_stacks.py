"""Stacks in the Perfetto / Chrome trace-event export: the ``stack`` arg as readable
frames and ``sf`` into a shared ``stackFrames`` tree (no kernel needed)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from probewatch.event import Event
from probewatch.sinks.perfetto import PerfettoWriter, check_trace_events


def _frame(sym: str | None, off: int, mod: str | None, addr: int = 0x1000) -> dict[str, Any]:
    return {"addr": addr, "symbol": sym, "offset": off, "module": mod}


MAIN = _frame("main", 0x4F, "/t/x")
F1 = _frame("st_f1", 0x18, "/t/x")


def _export(evs: list[Event]) -> dict[str, Any]:
    buf = io.StringIO()
    w = PerfettoWriter(buf)
    for e in evs:
        w.write(e)
    w.close()
    return json.loads(buf.getvalue())


def test_stacks_as_args_and_shared_stack_frames() -> None:
    a = Event(1000, 0, 7, 7, "t", "g:f2", "u:/t/x:st_f2",
              {"x": 1, "stack": [_frame("st_f2", 0, "/t/x"), F1, MAIN]})
    b = Event(2000, 0, 7, 7, "t", "g:f3", "u:/t/x:st_f3",
              {"stack": [_frame("st_f3", 0, "/t/x"), F1, MAIN, _frame(None, 0, None, 0xAB)]})
    c = Event(3000, 0, 7, 7, "t", "g:n", "t:g:n", {"y": 2})
    doc = _export([a, b, c])
    check_trace_events(doc)
    evs = {e["name"]: e for e in doc["traceEvents"] if e["ph"] == "i"}
    assert evs["g:f2"]["args"]["stack"] == ["st_f2+0x0 (/t/x)", "st_f1+0x18 (/t/x)",
                                            "main+0x4f (/t/x)"]
    assert evs["g:f2"]["args"]["x"] == 1 and "sf" not in evs["g:n"]
    frames = doc["stackFrames"]

    def chain(fid: str | None) -> list[tuple[str, str]]:
        out = []
        while fid is not None:
            out.append((frames[fid]["name"], frames[fid]["category"]))
            fid = frames[fid].get("parent")
        return out

    assert chain(evs["g:f2"]["sf"]) == [("st_f2+0x0", "/t/x"), ("st_f1+0x18", "/t/x"),
                                        ("main+0x4f", "/t/x")]
    assert chain(evs["g:f3"]["sf"])[-1] == ("0xab", "unknown")
    # a and b share no root (b's outermost frame is 0xab), so 3 + 4 nodes
    assert len(frames) == 7


def test_common_callers_share_nodes() -> None:
    evs = [Event(1000 + i, 0, 7, 7, "t", "g:f2", "p",
                 {"stack": [_frame(f"leaf{i}", 0, "/t/x"), F1, MAIN]}) for i in range(3)]
    doc = _export(evs)
    check_trace_events(doc)
    assert len(doc["stackFrames"]) == 2 + 3  # main, st_f1 once; three leaves


def test_no_stacks_no_stack_frames() -> None:
    doc = _export([Event(1, 0, 7, 7, "t", "g:n", "p", {"y": 1})])
    assert "stackFrames" not in doc
    check_trace_events(doc)


@pytest.mark.parametrize("bad, why", [
    ({"stackFrames": {"1": {"name": "a", "parent": "9"}}}, "unknown parent"),
    ({"stackFrames": {"1": {"name": "a"}}, "sf": "2"}, "sf names no stackFrames"),
    ({"stackFrames": []}, "stackFrames is not an object"),
])
def test_validator_catches_bad_stacks(bad: dict[str, Any], why: str) -> None:
    ev = {"name": "x", "ph": "i", "ts": 0, "pid": 1, "tid": 1, "s": "t"}
    if "sf" in bad:
        ev["sf"] = bad["sf"]
    doc = {"traceEvents": [ev, {"name": "process_name", "ph": "M", "ts": 0, "pid": 1,
                                "tid": 1, "args": {"name": "p"}},
                           {"name": "thread_name", "ph": "M", "ts": 0, "pid": 1, "tid": 1,
                            "args": {"name": "t"}}],
           "stackFrames": bad["stackFrames"]}
    with pytest.raises(ValueError, match=why):
        check_trace_events(doc)
