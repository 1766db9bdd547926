"""The one Event record that every backend yields.

Example::

    ev = Event(ts=1, cpu=0, pid=42, tid=42, comm="bash",
               event="syscalls:sys_enter_getppid", probe="t:syscalls:sys_enter_getppid",
               fields={"__syscall_nr": 110})
    ev.to_dict()["event"]   # 'syscalls:sys_enter_getppid'
"""

from __future__ import annotations

from typing import Any


class Event:
    """One traced occurrence.

    ts: nanoseconds (the tracing clock of the backend; ftrace: ``local``/``mono``),
    cpu, pid (thread-group id), tid (thread id), comm, event ("system:name"),
    probe (the spec that produced it), fields (decoded payload, by field name).
    """

    __slots__ = ("ts", "cpu", "pid", "tid", "comm", "event", "probe", "fields")

    def __init__(
        self,
        ts: int,
        cpu: int,
        pid: int,
        tid: int,
        comm: str,
        event: str,
        probe: str,
        fields: dict[str, Any],
    ) -> None:
        self.ts = ts
        self.cpu = cpu
        self.pid = pid
        self.tid = tid
        self.comm = comm
        self.event = event
        self.probe = probe
        self.fields = fields

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON-ready: bytes become lists of ints)."""
        return {
            "ts": self.ts,
            "cpu": self.cpu,
            "pid": self.pid,
            "tid": self.tid,
            "comm": self.comm,
            "event": self.event,
            "probe": self.probe,
            "fields": {k: _jsonable(v) for k, v in self.fields.items()},
        }

    def __repr__(self) -> str:
        return (
            f"Event(ts={self.ts}, cpu={self.cpu}, pid={self.pid}, tid={self.tid}, "
            f"comm={self.comm!r}, event={self.event!r}, fields={self.fields!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    __hash__ = None  # type: ignore[assignment]


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes | bytearray):
        return list(v)
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


class EventRun:
    """Many events of one event type from one thread on one CPU, in time order, kept as
    columns: what the ftrace page reader hands a JSON consumer instead of one
    :class:`Event` per record (see ``Session.deliver_runs``).

    ``ts`` is the first event's time stamp (so a run sorts among Events), ``last`` the
    last one's, ``tss`` every time stamp; ``names`` are the field names and ``cols`` one
    sequence of values per field (row i = ``tss[i]``, ``cols[j][i]``); with ``counts``,
    a field of N values (a fixed array: N columns, a tuple in the Event) where the count
    is not 0. pid, comm and probe are filled in like an Event's.

    Example::

        run = EventRun(0, 7, "syscalls:sys_enter_getppid", [5, 9],
                       ("__syscall_nr",), [(110, 110)])
        [ev.ts for ev in run.events()]   # [5, 9]
    """

    __slots__ = ("ts", "last", "cpu", "pid", "tid", "comm", "event", "probe", "tss", "names",
                 "cols", "counts")

    def __init__(self, cpu: int, tid: int, event: str, tss: list[int],
                 names: tuple[str, ...], cols: list[Any],
                 counts: tuple[int, ...] | None = None) -> None:
        self.ts = tss[0]
        self.last = tss[-1]
        self.cpu = cpu
        self.pid = tid
        self.tid = tid
        self.comm = ""
        self.event = event
        self.probe = ""
        self.tss = tss
        self.names = names
        self.cols = cols
        self.counts = counts

    def __len__(self) -> int:
        return len(self.tss)

    def split(self, i: int) -> tuple[EventRun, EventRun]:
        """The first ``i`` events and the rest (0 < i < len)."""
        a = self._part(self.tss[:i], [c[:i] for c in self.cols])
        b = self._part(self.tss[i:], [c[i:] for c in self.cols])
        return a, b

    def _part(self, tss: list[int], cols: list[Any]) -> EventRun:
        r = EventRun(self.cpu, self.tid, self.event, tss, self.names, cols, self.counts)
        r.pid, r.comm, r.probe = self.pid, self.comm, self.probe
        return r

    def events(self) -> list[Event]:
        """The run as Event records."""
        names = self.names
        rows = zip(self.tss, *self.cols, strict=True)
        if self.counts is None:
            return [Event(ts, self.cpu, self.pid, self.tid, self.comm, self.event, self.probe,
                          dict(zip(names, row, strict=True))) for ts, *row in rows]
        out = []
        for ts, *row in rows:
            fields: dict[str, Any] = {}
            i = 0
            for name, k in zip(names, self.counts, strict=True):
                if k:
                    fields[name] = tuple(row[i : i + k])
                    i += k
                else:
                    fields[name] = row[i]
                    i += 1
            out.append(Event(ts, self.cpu, self.pid, self.tid, self.comm, self.event,
                             self.probe, fields))
        return out

    def __repr__(self) -> str:
        return (f"EventRun({self.event!r}, cpu={self.cpu}, tid={self.tid}, n={len(self)}, "
                f"ts={self.ts}..{self.last})")


def expand(items: list[Any]) -> list[Event]:
    """Events and EventRuns as a list of Events (a run becomes its events)."""
    out: list[Event] = []
    for x in items:
        if type(x) is EventRun:
            out.extend(x.events())
        else:
            out.append(x)
    return out
