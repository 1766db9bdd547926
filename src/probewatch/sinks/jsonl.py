"""JSON lines: one JSON object per event per line (pipe it to ``jq``).

Example::

    sink = JsonLinesSink(sys.stdout)
    sink.write(ev)
"""

from __future__ import annotations

import json
from typing import IO, Any

from ..event import Event, _jsonable

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def event_json(ev: Event) -> str:
    """The JSON text of one event (no newline)."""
    fields = ev.fields
    for v in fields.values():
        if isinstance(v, bytes | bytearray | tuple):
            fields = {k: _jsonable(x) for k, x in fields.items()}
            break
    return _dumps(
        {
            "ts": ev.ts,
            "cpu": ev.cpu,
            "pid": ev.pid,
            "tid": ev.tid,
            "comm": ev.comm,
            "event": ev.event,
            "probe": ev.probe,
            "fields": fields,
        }
    )


class JsonLinesSink:
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, ev: Event) -> None:
        self.out.write(event_json(ev) + "\n")

    def write_many(self, evs: list[Event]) -> None:
        if evs:
            self.out.write("\n".join(map(event_json, evs)) + "\n")

    def write_obj(self, obj: Any) -> None:
        self.out.write(_dumps(obj) + "\n")
