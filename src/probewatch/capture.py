"""Capture: read a recording made by ``probewatch record`` (an SQLite capture file).

The file is opened read-only; everything that can be wrong with it (missing, not a
capture, truncated or damaged, written by a newer probewatch) raises a typed
:class:`~probewatch.sinks.capture.CaptureError` naming the file.

Example::

    import probewatch
    with probewatch.Capture("probewatch-20250101-120000.db") as cap:
        for ev in cap.events(event="syscalls:sys_enter_open*", comm="cat"):
            print(ev.ts, ev.pid, ev.fields["filename"])
        print(cap.stats().per_probe)          # {'t:syscalls:sys_enter_openat': 12}
        df = cap.to_pandas(pid=1234)          # needs pandas
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ProbewatchError
from .event import Event
from .sinks.capture import (
    SCHEMA_VERSION,
    CaptureError,
    CaptureVersionError,
    NotACaptureError,
    TruncatedCaptureError,
    decode_fields,
    open_capture,
    translate_db_error,
)

__all__ = [
    "Capture",
    "Run",
    "CaptureStats",
    "ProcessStats",
    "QueryResult",
    "MissingDependency",
    "CaptureError",
    "NotACaptureError",
    "TruncatedCaptureError",
    "CaptureVersionError",
]

_GLOB = frozenset("*?[")


class MissingDependency(ProbewatchError, ImportError):
    """An optional Python package that a feature needs is not installed."""


@dataclass
class Run:
    """One row of the ``runs`` table (JSON columns decoded)."""

    id: int
    status: str
    message: str | None
    start_time: float
    end_time: float | None
    updated_time: float | None
    start_ts: int | None
    clock: str | None
    host: str | None
    kernel: str | None
    machine: str | None
    version: str | None
    argv: list[str] | None
    command: list[str] | None
    exit_status: int | None
    backend: str | None
    buffer_kb: int | None
    filter: str | None
    pids: list[int] | None
    comm: str | None
    recorder_pid: int | None
    events: int
    first_ts: int | None
    last_ts: int | None
    lost: int | None
    lost_per_cpu: dict[str, int] | None
    lost_per_probe: dict[str, int] | None
    page_missed: int | None
    unknown: int | None

    @property
    def duration(self) -> float:
        """Seconds recorded (to the last commit when the recorder died)."""
        end = self.end_time if self.end_time is not None else self.updated_time
        return max(0.0, (end or self.start_time) - self.start_time)

    @property
    def complete(self) -> bool:
        return self.end_time is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["duration"] = round(self.duration, 6)
        return d


@dataclass
class ProcessStats:
    pid: int
    comm: str
    events: int
    ppid: int | None = None
    exe: str | None = None


@dataclass
class CaptureStats:
    """What :meth:`Capture.stats` reports."""

    path: str
    bytes: int
    schema: int
    runs: list[Run]
    events: int
    per_probe: dict[str, int]
    per_event: dict[str, int]
    per_process: list[ProcessStats]
    duration: float
    span: float
    lost: int | None
    lost_per_cpu: dict[str, int]
    lost_per_probe: dict[str, int] | None
    status: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "bytes": self.bytes,
            "schema": self.schema,
            "status": self.status,
            "events": self.events,
            "per_probe": dict(self.per_probe),
            "per_event": dict(self.per_event),
            "per_process": [asdict(p) for p in self.per_process],
            "duration": round(self.duration, 6),
            "span": round(self.span, 9),
            "lost": self.lost,
            "lost_per_cpu": dict(self.lost_per_cpu),
            "lost_per_probe": None if self.lost_per_probe is None else dict(self.lost_per_probe),
            "runs": [r.to_dict() for r in self.runs],
        }


@dataclass
class QueryResult:
    columns: list[str]
    rows: Iterator[tuple[Any, ...]] = field(repr=False)


@dataclass
class _Type:
    id: int
    name: str
    probe: str
    probe_id: int
    run_id: int
    hex_fields: list[str]
    value_types: dict[str, str] | None


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _recorder_alive(r: Run) -> bool:
    """Is the process that is writing this run still there (same host only)?"""
    if not r.recorder_pid or r.host != os.uname().nodename:
        return False
    try:
        with open(f"/proc/{r.recorder_pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return b"probewatch" in cmdline or b"python" in cmdline


class Capture:
    """A capture file opened read-only. Use as a context manager or call :meth:`close`.

    Example::

        cap = probewatch.Capture("run.db")
        n = sum(1 for _ in cap.events(pid=4242))
        cap.close()
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._conn: sqlite3.Connection = open_capture(self.path)
        self.schema_version = SCHEMA_VERSION
        try:
            (self.schema_version,) = self._conn.execute("PRAGMA user_version").fetchone()
            self._types = self._load_types()
        except sqlite3.Error as e:
            self._conn.close()
            raise translate_db_error(e, self.path) from None

    # -- lifecycle
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Capture({self.path!r})"

    def _err(self, e: sqlite3.Error) -> CaptureError:
        return translate_db_error(e, self.path)

    def _load_types(self) -> dict[int, _Type]:
        out = {}
        for tid, name, spec, pid, run_id, hexf, vt in self._conn.execute(
            "SELECT t.id, t.name, p.spec, p.id, p.run_id, t.hex_fields, t.value_types"
            " FROM event_types t JOIN probes p ON p.id = t.probe_id"
        ):
            out[tid] = _Type(tid, name, spec, pid, run_id, _loads(hexf) or [], _loads(vt))
        return out

    # -- metadata
    def runs(self) -> list[Run]:
        """Every run in the file (one per ``probewatch record``)."""
        try:
            cur = self._conn.execute("SELECT * FROM runs ORDER BY id")
            cols = [d[0] for d in cur.description]
            out = []
            for row in cur:
                d: dict[str, Any] = dict(zip(cols, row, strict=True))
                for k in ("argv", "command", "pids", "lost_per_cpu", "lost_per_probe"):
                    d[k] = _loads(d.get(k))
                kw: dict[str, Any] = {k: d.get(k) for k in Run.__dataclass_fields__}
                r = Run(**kw)
                if r.status == "recording" and not _recorder_alive(r):
                    r.status = "unfinished"
                    r.message = r.message or (
                        f"the recorder (pid {r.recorder_pid}) ended without closing the run "
                        "(killed or crashed): events up to its last commit are kept"
                    )
                out.append(r)
            return out
        except sqlite3.Error as e:
            raise self._err(e) from None

    def probes(self) -> list[dict[str, Any]]:
        """Rows of the ``probes`` table (``events`` decoded to a list)."""
        rows = self._dicts("SELECT * FROM probes ORDER BY id")
        for r in rows:
            r["events"] = _loads(r.get("events")) or []
            r["resolved"] = _loads(r.get("resolved"))
        return rows

    def processes(self) -> list[dict[str, Any]]:
        """Rows of the ``processes`` table (``argv`` decoded to a list)."""
        rows = self._dicts("SELECT * FROM processes ORDER BY run_id, pid")
        for r in rows:
            r["argv"] = _loads(r.get("argv"))
        return rows

    def _has_table(self, name: str) -> bool:
        try:
            return self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
            ).fetchone() is not None
        except sqlite3.Error as e:
            raise self._err(e) from None

    def alerts(self, run: int | None = None) -> list[dict[str, Any]]:
        """The alerts ``probewatch watch -o`` stored, in time order: each the object
        ``watch --json`` printed (with its final ``count``), plus ``run_id``.
        Empty for a capture without alerts (or of schema 1, before there were any).

        Example::

            [a["rule"]["title"] for a in cap.alerts() if a["level"] == "high"]
        """
        if not self._has_table("alerts"):
            return []
        sql = "SELECT run_id, count, last_ts, alert FROM alerts"
        params: list[Any] = []
        if run is not None:
            sql += " WHERE run_id = ?"
            params.append(run)
        out = []
        try:
            for run_id, count, last_ts, text in self._conn.execute(
                sql + " ORDER BY ts, id", params
            ):
                a = _loads(text)
                if not isinstance(a, dict):
                    raise TruncatedCaptureError(
                        f"{self.path}: capture is damaged (bad alert row)", self.path)
                a["count"] = count
                a["last_ts"] = last_ts
                a["run_id"] = run_id
                out.append(a)
        except sqlite3.Error as e:
            raise self._err(e) from None
        return out

    def process_snapshot(self, run: int | None = None) -> list[dict[str, Any]]:
        """The process table a ``watch -o`` / ``record --watch`` run started from (one
        record per process, as the process table serialized it); [] when none."""
        if not self._has_table("process_snapshot"):
            return []
        sql = "SELECT info FROM process_snapshot"
        params: list[Any] = []
        if run is not None:
            sql += " WHERE run_id = ?"
            params.append(run)
        try:
            return [json.loads(t) for (t,) in self._conn.execute(sql + " ORDER BY pid", params)]
        except sqlite3.Error as e:
            raise self._err(e) from None
        except ValueError:
            raise TruncatedCaptureError(
                f"{self.path}: capture is damaged (bad process snapshot)", self.path) from None

    def hex_fields(self) -> dict[str, set[str]]:
        """event name -> pointer fields (the text sink prints them in hex)."""
        out: dict[str, set[str]] = {}
        for t in self._types.values():
            out.setdefault(t.name, set()).update(t.hex_fields)
        return out

    def event_names(self) -> list[str]:
        """The distinct "system:name" events in the capture."""
        return sorted({t.name for t in self._types.values()})

    def event_types(self) -> list[tuple[str, str]]:
        """The distinct (event, probe spec) pairs in the capture."""
        return sorted({(t.name, t.probe) for t in self._types.values()})

    def _dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            cur = self._conn.execute(sql, params)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur]
        except sqlite3.Error as e:
            raise self._err(e) from None

    # -- events
    def _where(
        self,
        pid: int | Iterable[int] | None,
        comm: str | None,
        event: str | None,
        probe: str | None,
        run: int | None,
        tid: int | Iterable[int] | None,
    ) -> tuple[str, list[Any]] | None:
        """SQL WHERE for the filters; None when no row can match."""
        conds: list[str] = []
        params: list[Any] = []
        types = list(self._types.values())
        if event is not None:
            pat = event if ":" in event else "*:" + event
            types = [t for t in types if fnmatch.fnmatchcase(t.name, pat)]
        if probe is not None:
            types = [t for t in types if t.probe == probe]
        if run is not None:
            types = [t for t in types if t.run_id == run]
        if len(types) != len(self._types):
            if not types:
                return None
            conds.append(f"type_id IN ({','.join(str(t.id) for t in types)})")
        for col, val in (("pid", pid), ("tid", tid)):
            if val is None:
                continue
            vals = [int(val)] if isinstance(val, int) else [int(v) for v in val]
            if not vals:
                continue
            conds.append(f"{col} IN ({','.join(str(v) for v in vals)})")
        if comm is not None:
            if _GLOB & set(comm):
                conds.append("comm GLOB ?")
            else:
                conds.append("comm = ?")
            params.append(comm)
        return (" WHERE " + " AND ".join(conds) if conds else ""), params

    def events(
        self,
        pid: int | Iterable[int] | None = None,
        comm: str | None = None,
        event: str | None = None,
        probe: str | None = None,
        run: int | None = None,
        tid: int | Iterable[int] | None = None,
        limit: int | None = None,
    ) -> Iterator[Event]:
        """Yield the recorded Events in time order, filtered like ``probewatch report``.

        ``pid``: one or several thread-group ids; ``comm``: exact, or a glob when it has
        ``* ? [``; ``event``: a glob over ``"system:name"`` (without ``:`` it matches
        the name, so ``"sys_enter_*"`` works); ``probe``: the spec as recorded;
        ``run``: a run id; ``tid``: thread ids.

        Example::

            [ev.fields["filename"] for ev in cap.events(event="sched_process_exec")]
        """
        w = self._where(pid, comm, event, probe, run, tid)
        if w is None:
            return
        where, params = w
        sql = "SELECT ts, cpu, pid, tid, comm, type_id, fields FROM event_rows" + where
        sql += " ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        types = self._types
        loads = json.loads
        # many events carry identical field text (a hot syscall): parse each text once
        cache: dict[str, dict[str, Any]] = {}
        scalar = (str, int, float, bool, type(None))
        try:
            cur = self._conn.execute(sql, params)
            cur.arraysize = 4096
            while True:
                rows = cur.fetchmany()
                if not rows:
                    break
                for ts, cpu, p, t, c, type_id, fields in rows:
                    ty = types.get(type_id)
                    if ty is None:
                        raise TruncatedCaptureError(
                            f"{self.path}: capture is damaged (event type {type_id} missing)",
                            self.path,
                        )
                    if ty.value_types:
                        f = decode_fields(fields, ty.value_types)
                    else:
                        hit = cache.get(fields)
                        if hit is not None:
                            f = dict(hit)
                        else:
                            f = loads(fields)
                            if len(fields) < 512 and all(
                                isinstance(v, scalar) for v in f.values()
                            ):
                                if len(cache) >= 4096:
                                    cache.clear()
                                cache[fields] = dict(f)
                    yield Event(ts, cpu, p, t, c, ty.name, ty.probe, f)
        except sqlite3.Error as e:
            raise self._err(e) from None
        except ValueError as e:
            raise TruncatedCaptureError(
                f"{self.path}: capture is damaged (bad event fields: {e})", self.path
            ) from None

    def count(
        self,
        pid: int | Iterable[int] | None = None,
        comm: str | None = None,
        event: str | None = None,
        probe: str | None = None,
        run: int | None = None,
        tid: int | Iterable[int] | None = None,
    ) -> int:
        """How many events :meth:`events` would yield with these filters."""
        w = self._where(pid, comm, event, probe, run, tid)
        if w is None:
            return 0
        try:
            return int(
                self._conn.execute("SELECT count(*) FROM event_rows" + w[0], w[1]).fetchone()[0]
            )
        except sqlite3.Error as e:
            raise self._err(e) from None

    # -- summaries
    def stats(self) -> CaptureStats:
        """Events per probe, per event and per process, duration, span and losses."""
        runs = self.runs()
        try:
            per_type = dict(
                self._conn.execute("SELECT type_id, count(*) FROM event_rows GROUP BY type_id")
            )
            procs = self._conn.execute(
                "SELECT pid, comm, count(*), max(id) FROM event_rows GROUP BY pid"
                " ORDER BY count(*) DESC, pid"
            ).fetchall()
            info = {
                pid: (ppid, exe)
                for pid, ppid, exe in self._conn.execute("SELECT pid, ppid, exe FROM processes")
            }
            span_row = self._conn.execute(
                "SELECT (SELECT ts FROM event_rows ORDER BY id LIMIT 1),"
                " (SELECT ts FROM event_rows ORDER BY id DESC LIMIT 1)"
            ).fetchone()
        except sqlite3.Error as e:
            raise self._err(e) from None
        per_probe: dict[str, int] = {}
        per_event: dict[str, int] = {}
        for p in self.probes():
            per_probe.setdefault(p["spec"], 0)
        for tid, n in per_type.items():
            ty = self._types.get(tid)
            if ty is None:
                continue
            per_probe[ty.probe] = per_probe.get(ty.probe, 0) + n
            per_event[ty.name] = per_event.get(ty.name, 0) + n
        lost: int | None = None
        lost_cpu: dict[str, int] = {}
        lost_probe: dict[str, int] | None = None
        for r in runs:
            if r.lost is not None:
                lost = (lost or 0) + r.lost
            for c, n in (r.lost_per_cpu or {}).items():
                lost_cpu[c] = lost_cpu.get(c, 0) + n
            if r.lost_per_probe is not None:
                lost_probe = lost_probe or {}
                for s, n in r.lost_per_probe.items():
                    lost_probe[s] = lost_probe.get(s, 0) + n
        statuses = [r.status for r in runs]
        status = "empty" if not runs else (
            statuses[0] if len(set(statuses)) == 1 else ",".join(statuses))
        size = 0
        for fp in (self.path, self.path + "-wal"):
            try:
                size += os.path.getsize(fp)
            except OSError:
                pass
        first, last = span_row if span_row else (None, None)
        return CaptureStats(
            path=self.path,
            bytes=size,
            schema=int(self.schema_version),
            runs=runs,
            events=sum(per_type.values()),
            per_probe=per_probe,
            per_event=dict(sorted(per_event.items())),
            per_process=[
                ProcessStats(pid, comm, n, *info.get(pid, (None, None)))
                for pid, comm, n, _ in procs
            ],
            duration=sum(r.duration for r in runs),
            span=((last - first) / 1e9) if first is not None and last is not None else 0.0,
            lost=lost,
            lost_per_cpu=lost_cpu,
            lost_per_probe=lost_probe,
            status=status,
        )

    # -- SQL
    def query(self, sql: str, params: Sequence[Any] = ()) -> QueryResult:
        """Run read-only SQL over the capture (tables: runs, probes, event_types,
        event_rows, processes, meta, alerts, process_snapshot; view: events). Writes
        are refused."""
        try:
            cur = self._conn.execute(sql, params)
        except sqlite3.Error as e:
            raise CaptureError(f"query failed: {e}", self.path) from None
        cols = [d[0] for d in cur.description] if cur.description else []

        def rows() -> Iterator[tuple[Any, ...]]:
            try:
                while True:
                    batch = cur.fetchmany(1024)
                    if not batch:
                        return
                    yield from batch
            except sqlite3.Error as e:
                raise CaptureError(f"query failed: {e}", self.path) from None

        return QueryResult(cols, rows())

    # -- pandas
    def to_pandas(
        self,
        pid: int | Iterable[int] | None = None,
        comm: str | None = None,
        event: str | None = None,
        probe: str | None = None,
        run: int | None = None,
        tid: int | Iterable[int] | None = None,
        expand_fields: bool = False,
    ) -> Any:
        """A pandas DataFrame of the events (same filters as :meth:`events`).

        Columns: ts, cpu, pid, tid, comm, event, probe, fields (a dict per row); with
        ``expand_fields`` each field becomes a column instead (a field named like a
        base column gets a ``field_`` prefix). Needs pandas (an optional dependency).

        Example::

            df = cap.to_pandas(event="sys_enter_*")
            df.groupby("comm").size()
        """
        try:
            pd = importlib.import_module("pandas")
        except ImportError:
            raise MissingDependency(
                "Capture.to_pandas needs pandas, which is not installed "
                "(pip install pandas, or pip install 'probewatch[pandas]')"
            ) from None
        base = ["ts", "cpu", "pid", "tid", "comm", "event", "probe"]
        recs = []
        for ev in self.events(pid=pid, comm=comm, event=event, probe=probe, run=run, tid=tid):
            if expand_fields:
                r: dict[str, Any] = {k: getattr(ev, k) for k in base}
                for k, v in ev.fields.items():
                    r[("field_" + k) if k in r else k] = v
            else:
                r = {k: getattr(ev, k) for k in base}
                r["fields"] = ev.fields
            recs.append(r)
        cols = None if (expand_fields and recs) else base + ([] if expand_fields else ["fields"])
        return pd.DataFrame.from_records(recs, columns=cols)
