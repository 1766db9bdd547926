"""Marks without the kernel: what probewatch.mark writes, how a mark's text is parsed
back (fuzzed round trip), and marks in the Perfetto export."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probewatch.event import Event
from probewatch.marks import MAX_MARK, encode, parse_mark
from probewatch.sinks.perfetto import PerfettoWriter, check_trace_events


def test_encode_forms() -> None:
    assert encode("req", {}) == b"req"
    assert encode("req", {"id": 1, "p": "/x y"}) == b'req {"id":1,"p":"/x y"}'
    assert encode("step", {"n": 2}, "B") == b'B|step {"n":2}'
    assert encode("step", {}, "E") == b"E|step"
    assert encode("caf\u00e9", {"v": "\u00fc"}) == 'caf\u00e9 {"v":"\u00fc"}'.encode()
    for bad in ("", "a b", "a|b", "a{"):
        with pytest.raises(ValueError, match="without spaces"):
            encode(bad, {})
    with pytest.raises(ValueError, match="at most"):
        encode("big", {"x": "y" * MAX_MARK})


@pytest.mark.parametrize("text,want", [
    ('req {"id":1}', {"mark": "req", "phase": "i", "id": 1}),
    ("req", {"mark": "req", "phase": "i"}),
    ('B|step {"n":2}\n', {"mark": "step", "phase": "B", "n": 2}),
    ("E|step", {"mark": "step", "phase": "E"}),
    # a mark's own fields never replace what probewatch sets
    ('m {"mark":"x","phase":"B","buf":"b","ip":1,"k":2}',
     {"mark": "m", "phase": "i", "k": 2}),
    # other writers: free text is a mark without a name
    ("hello world", {"mark": None, "phase": "i"}),
    ("m {not json}", {"mark": None, "phase": "i"}),
    ("m [1,2]", {"mark": None, "phase": "i"}),
    ("", {"mark": None, "phase": "i"}),
    # Android atrace
    ("B|1234|draw", {"mark": "draw", "phase": "B", "atrace_pid": 1234}),
    ("E|1234", {"mark": None, "phase": "E", "atrace_pid": 1234}),
    ("C|1234|queue|7", {"mark": "queue", "phase": "i", "atrace_pid": 1234,
                        "value": "7"}),
])
def test_parse_mark(text: str, want: dict[str, Any]) -> None:
    assert parse_mark(text) == want


_names = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp"),
                               blacklist_characters="|{ \x85"), min_size=1, max_size=20)
_vals = st.one_of(st.integers(-2**60, 2**60), st.text(max_size=20), st.booleans(),
                  st.none(), st.lists(st.integers(), max_size=3))


@settings(max_examples=300, deadline=None)
@given(_names, st.dictionaries(st.text(min_size=1, max_size=8), _vals, max_size=4),
       st.sampled_from(["i", "B", "E"]))
def test_encode_parse_round_trip(name: str, fields: dict[str, Any], phase: str) -> None:
    try:
        data = encode(name, fields, phase)
    except ValueError:
        return
    got = parse_mark(data.decode())
    assert got["mark"] == name and got["phase"] == phase
    want = {k: v for k, v in fields.items() if k not in ("mark", "phase", "buf", "ip")}
    assert {k: v for k, v in got.items() if k not in ("mark", "phase")} == want


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_parse_mark_fuzz(text: str) -> None:
    got = parse_mark(text)
    assert got["phase"] in ("i", "B", "E")
    assert got["mark"] is None or isinstance(got["mark"], str)


def _ev(ts: int, tid: int, **fields: Any) -> Event:
    return Event(ts, 0, tid, tid, "app", "ftrace:print", "marker", fields)


def test_perfetto_marks_become_slices_and_named_instants() -> None:
    buf = io.StringIO()
    w = PerfettoWriter(buf)
    for e in [
        _ev(1000, 7, mark="outer", phase="B", buf="B|outer"),
        _ev(2000, 7, mark="tick", phase="i", n=1, buf='tick {"n":1}'),
        _ev(2500, 7, mark="inner", phase="B", buf="B|inner"),
        _ev(3000, 7, mark="inner", phase="E", buf="E|inner"),
        _ev(4000, 7, mark="outer", phase="E", buf="E|outer"),
        _ev(5000, 7, mark=None, phase="i", buf="free text"),
        _ev(6000, 8, mark="lonely", phase="E", buf="E|lonely"),
    ]:
        w.write(e)
    st_ = w.close()
    doc = json.loads(buf.getvalue())
    check_trace_events(doc)
    evs = [(e["name"], e["ph"], e.get("dur")) for e in doc["traceEvents"] if e["ph"] != "M"]
    assert evs == [("tick", "i", None), ("inner", "X", 0.5), ("outer", "X", 3.0),
                   ("ftrace:print", "i", None), ("lonely", "i", None)]
    assert st_.slices == 2 and st_.unmatched == 1
    tick = next(e for e in doc["traceEvents"] if e["name"] == "tick")
    assert tick["args"]["n"] == 1 and tick["args"]["probe"] == "marker"
