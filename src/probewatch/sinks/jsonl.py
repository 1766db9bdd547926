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
from ..event import Event, EventRun, _jsonable
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


#: run templates: (event, probe, cpu, pid, tid, comm, names, constant values) -> the
#: line as bytes with a %d for the time stamp and for each varying field
_templates: dict[tuple[Any, ...], bytes | None] = {}
_SENTINEL = 7_340_987_654_321_000_000  # a 19-digit int that no name holds


def _run_template(run: EventRun, consts: tuple[Any, ...]) -> bytes | None:
    """The JSON line of ``run``'s events (see :data:`_templates`), or None when it cannot
    be written as a template (then the run is written event by event)."""
    key = (run.event, run.probe, run.cpu, run.pid, run.tid, run.comm, run.names, run.counts,
           consts)
    t = _templates.get(key, b"")
    if t != b"":
        return t
    # a sentinel per column (sentinels[j + 1] for column j) and for the time stamp
    sentinels = [_SENTINEL + i for i in range(len(consts) + 1)]
    vals = [sentinels[j + 1] if c is None else c for j, c in enumerate(consts)]
    fields: dict[str, Any] = {}
    j = 0
    for name, k in zip(run.names, run.counts or (0,) * len(run.names), strict=True):
        if k:
            fields[name] = tuple(vals[j : j + k])
            j += k
        else:
            fields[name] = vals[j]
            j += 1
    line = event_json(Event(sentinels[0], run.cpu, run.pid, run.tid, run.comm, run.event,
                            run.probe, fields)).replace("%", "%%")
    tmpl: bytes | None = None
    used = [s for i, s in enumerate(sentinels) if i == 0 or consts[i - 1] is None]
    if line.count(str(_SENTINEL)[:15]) == len(used) and all(
            line.count(str(s)) == 1 for s in used):
        for s in used:
            line = line.replace(str(s), "%d")
        tmpl = (line + "\n").encode("utf-8")
    if len(_templates) >= 4096:
        _templates.clear()
    _templates[key] = tmpl
    return tmpl


def run_lines(run: EventRun) -> bytes:
    """The JSON lines of a run's events, as bytes (UTF-8), each ending in a newline: the
    same text as :func:`event_json` of each of its events.

    Example::

        run_lines(run)[:40]   # b'{"ts":5066193121,"cpu":0,"pid":42,"tid":4'
    """
    n = len(run.tss)
    consts = tuple(c[0] if c.count(c[0]) == n else None for c in run.cols)
    tmpl = _run_template(run, consts)
    if tmpl is None:
        return ("\n".join(map(event_json, run.events())) + "\n").encode("utf-8",
                                                                          "backslashreplace")
    varying = [c for c, k in zip(run.cols, consts, strict=True) if k is None]
    if not varying:
        return b"".join(map(tmpl.__mod__, run.tss))
    return b"".join(map(tmpl.__mod__, zip(run.tss, *varying, strict=True)))


class JsonLinesSink:
    def __init__(self, out: TextOut) -> None:
        self.out = out
        self._bytes = getattr(out, "write_bytes", None)

    def write(self, ev: Event) -> None:
        self.out.write(event_json(ev) + "\n")

    def write_many(self, evs: list[Any]) -> None:
        """Write a batch of Events and EventRuns, :data:`WRITE_CHUNK` events per write:
        the text of a batch is never held whole, and a blocking reader holds the caller
        in write() (the backlog then waits in the kernel's buffers, bounded, not here)."""
        out = self.out
        if not any(type(e) is EventRun for e in evs):
            for i in range(0, len(evs), WRITE_CHUNK):
                out.write("\n".join(map(event_json, evs[i : i + WRITE_CHUNK])) + "\n")
            return
        wb = self._bytes
        parts: list[bytes] = []
        size = 0
        single: list[Event] = []
        for e in evs:
            if type(e) is EventRun:
                if single:
                    parts.append(("\n".join(map(event_json, single)) + "\n").encode(
                        "utf-8", "backslashreplace"))
                    single = []
                parts.append(run_lines(e))
                size += len(e.tss)
            else:
                single.append(e)
                size += 1
            if size >= WRITE_CHUNK:
                if single:
                    parts.append(("\n".join(map(event_json, single)) + "\n").encode(
                        "utf-8", "backslashreplace"))
                    single = []
                self._put(wb, b"".join(parts))
                parts = []
                size = 0
        if single:
            parts.append(("\n".join(map(event_json, single)) + "\n").encode(
                "utf-8", "backslashreplace"))
        if parts:
            self._put(wb, b"".join(parts))

    def _put(self, wb: Any, data: bytes) -> None:
        if wb is not None:
            wb(data)
        else:
            self.out.write(data.decode("utf-8", "surrogateescape"))

    def write_obj(self, obj: Any) -> None:
        self.out.write(obj_json(obj) + "\n")
