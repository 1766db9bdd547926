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
