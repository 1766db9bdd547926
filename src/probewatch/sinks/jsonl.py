"""JSON lines: one JSON object per event per line (pipe it to ``jq``).

The encoder is hand-rolled for the hot path (ints and strings, names cached) and
falls back to :mod:`json` for anything else; output is the same JSON either way.

Every line is valid UTF-8 JSON, whatever the traced processes did: a string holding
bytes that are not UTF-8 (decoded with surrogateescape) is written as the object
``{"b64": "<base64 of the raw bytes>"}`` (see :mod:`probewatch.decode.escape`;
:func:`probewatch.decode.escape.from_json` restores the original strings).

Example::

    sink = JsonLinesSink(sys.stdout)
    sink.write(ev)
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring  # the C implementation when available
from typing import Any

from ..decode.escape import has_surrogates, obj_json, to_json
from ..event import Event, _jsonable
from .writer import TextOut

#: events per write() of :meth:`JsonLinesSink.write_many`
WRITE_CHUNK = 2048

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
_quoted: dict[str, str] = {}
_keys: dict[str, str] = {}


def _q(s: str) -> str:
    """JSON string literal of a name that repeats (comm, event, probe), cached."""
    r = _quoted.get(s)
    if r is None:
        r = encode_basestring(s)
        if len(_quoted) < 65536:
            _quoted[s] = r
    return r


def _k(name: str) -> str:
    r = _keys.get(name)
    if r is None:
        r = _keys[name] = encode_basestring(name) + ":"
    return r


def fields_json(fields: dict[str, Any]) -> str:
    """The fields as JSON text; strings with undecodable bytes are kept as lone
    surrogates here (the capture stores this form; :func:`event_json` does not)."""
    parts = []
    for k, v in fields.items():
        t = type(v)
        if t is int:
            parts.append(_k(k) + str(v))
        elif t is str:
            parts.append(_k(k) + encode_basestring(v))
        else:
            parts.append(_k(k) + _dumps(_jsonable(v)))
    return "{" + ",".join(parts) + "}"


def event_json(ev: Event) -> str:
    """The JSON text of one event (no newline): valid UTF-8 JSON, always."""
    line = (
        f'{{"ts":{ev.ts},"cpu":{ev.cpu},"pid":{ev.pid},"tid":{ev.tid},'
        f'"comm":{_q(ev.comm)},"event":{_q(ev.event)},"probe":{_q(ev.probe)},'
        f'"fields":{fields_json(ev.fields)}}}'
    )
    if line.isascii() or not has_surrogates(line):
        return line
    return _dumps(to_json({"ts": ev.ts, "cpu": ev.cpu, "pid": ev.pid, "tid": ev.tid,
                           "comm": ev.comm, "event": ev.event, "probe": ev.probe,
                           "fields": ev.fields}))


class JsonLinesSink:
    def __init__(self, out: TextOut) -> None:
        self.out = out

    def write(self, ev: Event) -> None:
        self.out.write(event_json(ev) + "\n")

    def write_many(self, evs: list[Event]) -> None:
        """Write a batch, :data:`WRITE_CHUNK` events per write: the text of a batch is
        never held whole, and a blocking reader holds the caller in write() (the
        backlog then waits in the kernel's buffers, bounded, not here)."""
        out = self.out
        for i in range(0, len(evs), WRITE_CHUNK):
            out.write("\n".join(map(event_json, evs[i : i + WRITE_CHUNK])) + "\n")

    def write_obj(self, obj: Any) -> None:
        self.out.write(obj_json(obj) + "\n")
