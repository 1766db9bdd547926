"""The hand-rolled JSON lines encoder produces exactly what json.loads expects."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from probewatch.event import Event
from probewatch.sinks.jsonl import event_json

values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64),
    st.text(),
    st.binary(max_size=16),
    st.booleans(),
    st.none(),
    st.tuples(st.integers(), st.integers()),
)


@given(
    comm=st.text(max_size=16),
    fields=st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=6),
)
def test_roundtrip(comm: str, fields: dict) -> None:
    ev = Event(1, 2, 3, 4, comm, "sys:name", "t:sys:name", fields)
    got = json.loads(event_json(ev))
    assert got == json.loads(json.dumps(ev.to_dict()))


def test_shape() -> None:
    ev = Event(10, 1, 42, 43, 'a"b', "syscalls:sys_enter_openat", "t:x", {"dfd": -100,
                                                                       "name": "é\n"})
    line = event_json(ev)
    assert "\n" not in line
    assert json.loads(line) == {
        "ts": 10, "cpu": 1, "pid": 42, "tid": 43, "comm": 'a"b',
        "event": "syscalls:sys_enter_openat", "probe": "t:x",
        "fields": {"dfd": -100, "name": "é\n"},
    }
