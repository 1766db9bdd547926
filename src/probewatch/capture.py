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

from .decode.escape import from_json
from .errors import ProbewatchError
from .event import Event
from .sinks.capture import (
    SCHEMA_VERSION,
    CaptureError,
    CaptureVersionError,
    NotACaptureError,
    TruncatedCaptureError,
    damaged,
    decode_fields,
    open_capture,
    read_proc,
    translate_db_error,
)

__all__ = [
    "Capture",
    "Run",
    "CaptureStats",
    "ProcessStats",
    "QueryResult",
    "MissingDependency",
    "QueryRefused",
    "CaptureError",
    "NotACaptureError",
    "TruncatedCaptureError",
    "CaptureVersionError",
]

_GLOB = frozenset("*?[")


class QueryRefused(CaptureError):
    """:meth:`Capture.query` refused a statement that would write, or touch another file."""


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


def _alert_shape_ok(a: Any) -> bool:
    """An ``alerts.alert`` object has the shape watch --json writes (a damaged or
    hostile capture must give an error, not a traceback in the readers)."""
    if not isinstance(a, dict):
        return False
    for key, typ in (("rule", dict), ("process", dict), ("matched", dict),
                     ("ancestry", list), ("events", list), ("raw_events", list)):
        if key in a and not isinstance(a[key], typ):
            return False
    for key in ("ts", "last_ts", "id", "count"):
        if key in a and a[key] is not None and (
                not isinstance(a[key], int) or isinstance(a[key], bool)):
            return False
    for key in ("level", "type", "time"):
        if key in a and not isinstance(a[key], str | int | float | None):
            return False
    rule = a.get("rule") or {}
    for key in ("techniques", "tags"):
        if key in rule and not isinstance(rule[key], list):
            return False
    return all(isinstance(x, dict) and isinstance(x.get("pid", 0), int)
               for x in a.get("ancestry") or [])


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


_INT = (int,)
_NUM = (int, float)
_STR = (str,)
_RUN_TYPES: dict[str, tuple[type, ...]] = {
    "id": _INT, "exit_status": _INT, "buffer_kb": _INT, "recorder_pid": _INT,
    "events": _INT, "first_ts": _INT, "last_ts": _INT, "lost": _INT, "page_missed": _INT,
    "unknown": _INT, "start_ts": _INT, "start_time": _NUM, "end_time": _NUM,
    "updated_time": _NUM, "status": _STR, "message": _STR, "clock": _STR, "host": _STR,
    "kernel": _STR, "machine": _STR, "version": _STR, "backend": _STR, "filter": _STR,
    "comm": _STR, "argv": (list,), "command": (list,), "pids": (list,),
    "lost_per_cpu": (dict,), "lost_per_probe": (dict,),
}
_RUN_REQUIRED = frozenset({"id", "status", "start_time", "events"})
_PROBE_TYPES: dict[str, tuple[type, ...]] = {
    "id": _INT, "run_id": _INT, "spec": _STR, "kind": _STR, "backend": _STR, "filter": _STR,
    "events": (list,), "target": _STR, "symbol": _STR, "offset": _INT, "address": _INT,
    "resolved": (list,), "count": _INT, "lost": _INT,
}
_PROC_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": _INT, "pid": _INT, "ppid": _INT, "comm": _STR, "exe": _STR, "argv": (list,),
    "start_ts": _INT, "exec_ts": _INT, "exit_ts": _INT, "start_time": _NUM,
    "exit_code": _INT, "source": _STR,
}


def _check_row(path: str, table: str, d: dict[str, Any],
               types: dict[str, tuple[type, ...]], required: frozenset[str]) -> None:
    """Raise the damaged-capture error when a column holds a value of the wrong type
    (a changed byte can turn a number into text or a blob)."""
    for k, t in types.items():
        v = d.get(k)
        if v is None:
            if k in required:
                raise damaged(path, f"{table}.{k} is empty")
            continue
        if not isinstance(v, t) or isinstance(v, bool):
            raise damaged(path, f"{table}.{k} holds {type(v).__name__} {v!r:.40}")
        if isinstance(v, dict) and not all(
            isinstance(a, str) and isinstance(b, int) for a, b in v.items()
        ):
            raise damaged(path, f"{table}.{k} is not a map of counts")


def _recorder_alive(r: Run) -> bool:
    """Is the process that is writing this run still there (same host only)? The pid
    alone is not enough: a pid reused after the recorder died belongs to a process that
    started after the run did."""
    if not r.recorder_pid or r.host != os.uname().nodename:
        return False
    info = read_proc(r.recorder_pid)
    if info is None:
        return False
    started = info.get("start_time")
    if isinstance(started, int | float) and started > r.start_time + 2.0:
        return False  # started after the run began: not its recorder
    argv = info.get("argv") or []
    return any("probewatch" in a or "python" in a for a in argv)


# PRAGMAs a query may run: they only read. The first set takes a table or index name.
_PRAGMA_NAMED = frozenset({"table_info", "table_xinfo", "index_list", "index_info",
                           "index_xinfo", "foreign_key_list"})
_PRAGMA_READ = frozenset({
    "application_id", "user_version", "schema_version", "page_size", "page_count",
    "freelist_count", "encoding", "compile_options", "function_list", "module_list",
    "pragma_list", "collation_list", "table_list", "database_list", "integrity_check",
    "quick_check", "foreign_key_check", "journal_mode", "data_version", "auto_vacuum",
})
_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ,
                              sqlite3.SQLITE_RECURSIVE})
_ACTION_NAMES = {
    getattr(sqlite3, n): n[7:].replace("_", " ")
    for n in dir(sqlite3)
    if n.startswith("SQLITE_") and n[7:] in {
        "ATTACH", "DETACH", "PRAGMA", "INSERT", "UPDATE", "DELETE", "TRANSACTION",
        "CREATE_TABLE", "CREATE_TEMP_TABLE", "CREATE_VIEW", "CREATE_TEMP_VIEW",
        "CREATE_INDEX", "CREATE_TEMP_INDEX", "CREATE_TRIGGER", "CREATE_TEMP_TRIGGER",
        "CREATE_VTABLE", "DROP_TABLE", "DROP_VIEW", "DROP_INDEX", "DROP_TRIGGER",
        "DROP_TEMP_TABLE", "DROP_TEMP_VIEW", "DROP_TEMP_INDEX", "DROP_TEMP_TRIGGER",
        "DROP_VTABLE", "ALTER_TABLE", "REINDEX", "ANALYZE", "SAVEPOINT", "FUNCTION"}
}


class QueryAuthorizer:
    """SQLite authorizer of :meth:`Capture.query`: reading is allowed, and nothing else.

    Denied: ATTACH (and VACUUM INTO, which attaches its target) and DETACH, which would
    open or create another file; PRAGMAs that set something or are not known to only
    read; every write, transaction and schema change; ``load_extension``. ``denied``
    names the first refused action, for the error message.

    Example::

        conn.set_authorizer(QueryAuthorizer())
    """

    def __init__(self) -> None:
        self.denied: str | None = None

    def __call__(self, action: int, a1: str | None, a2: str | None, db: str | None,
                 trigger: str | None) -> int:
        if action in _ALLOWED_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_UPDATE and a1 == "sqlite_master" and db == "main":
            # asked when a table-valued function (json_each, pragma_table_info) is set
            # up; a real UPDATE of sqlite_master is refused by SQLite itself
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            if (a2 or "").lower() not in ("load_extension", "readfile", "writefile", "edit"):
                return sqlite3.SQLITE_OK
            what = f"the function {a2}() is not allowed"
        elif action == sqlite3.SQLITE_PRAGMA:
            name = (a1 or "").lower()
            if (name in _PRAGMA_NAMED) or (name in _PRAGMA_READ and a2 is None):
                return sqlite3.SQLITE_OK
            what = (f"PRAGMA {a1} = {a2} would change a setting" if a2 is not None
                    else f"PRAGMA {a1} is not known to only read")
        elif action == sqlite3.SQLITE_ATTACH:
            what = ("ATTACH and VACUUM INTO would open or create another file: query reads "
                    "this capture only")
        elif action == sqlite3.SQLITE_DETACH:
            what = "DETACH is not allowed"
        elif action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE) \
                and a1 in ("sqlite_master", "sqlite_temp_master"):
            what = "changing the schema is not allowed (the capture is read-only)"
        else:
            what = _ACTION_NAMES.get(action, f"action {action}")
            if a1:
                what += f" {a1}"
            what += " is not allowed (the capture is read-only)"
        if self.denied is None:
            self.denied = what
        return sqlite3.SQLITE_DENY


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
        except (sqlite3.Error, UnicodeDecodeError) as e:
            self._conn.close()
            raise translate_db_error(e, self.path) from None
        except CaptureError:
            self._conn.close()
            raise

    # -- lifecycle
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Capture({self.path!r})"

    def _err(self, e: BaseException) -> CaptureError:
        return translate_db_error(e, self.path)

    def _load_types(self) -> dict[int, _Type]:
        out = {}
        for tid, name, spec, pid, run_id, hexf, vt in self._conn.execute(
            "SELECT t.id, t.name, p.spec, p.id, p.run_id, t.hex_fields, t.value_types"
            " FROM event_types t JOIN probes p ON p.id = t.probe_id"
        ):
            hx, vts = _loads(hexf) or [], _loads(vt)
            if not (isinstance(tid, int) and isinstance(name, str) and isinstance(spec, str)
                    and isinstance(hx, list) and all(isinstance(h, str) for h in hx)
                    and (vts is None or isinstance(vts, dict))):
                raise damaged(self.path, f"event type {tid!r:.20} is not readable")
            out[tid] = _Type(tid, name, spec, pid, run_id, hx, vts)
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
                _check_row(self.path, "runs", d, _RUN_TYPES, _RUN_REQUIRED)
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
        except (sqlite3.Error, UnicodeDecodeError) as e:
            raise self._err(e) from None

    def host_runs(self, host: str) -> set[int]:
        """Ids of the runs recorded on ``host`` (``runs.host``)."""
        return {r.id for r in self.runs() if r.host == host}

    def probes(self) -> list[dict[str, Any]]:
        """Rows of the ``probes`` table (``events`` decoded to a list)."""
        rows = self._dicts("SELECT * FROM probes ORDER BY id")
        for r in rows:
            r["events"] = _loads(r.get("events")) or []
            r["resolved"] = _loads(r.get("resolved"))
            _check_row(self.path, "probes", r, _PROBE_TYPES, frozenset({"id", "spec"}))
            if not all(isinstance(x, dict) for x in r["resolved"] or []):
                raise damaged(self.path, "probes.resolved is not a list of objects")
        return rows

    def processes(self) -> list[dict[str, Any]]:
        """Rows of the ``processes`` table (``argv`` decoded to a list)."""
        rows = self._dicts("SELECT * FROM processes ORDER BY run_id, pid")
        for r in rows:
            r["argv"] = _loads(r.get("argv"))
            _check_row(self.path, "processes", r, _PROC_TYPES, frozenset({"pid"}))
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
        ``watch --json`` printed (with its final ``count`` and ``last_ts``), plus
        ``run_id``, decoded: strings exact (``{"b64": ...}`` objects turned back into
        strings by :func:`probewatch.decode.escape.from_json`; ``obj_json`` of
        :mod:`probewatch.sinks.jsonl` writes the line again).
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
                if not _alert_shape_ok(a) or not isinstance(count, int) or not (
                        last_ts is None or isinstance(last_ts, int)):
                    raise TruncatedCaptureError(
                        f"{self.path}: capture is damaged (bad alert row)", self.path)
                if '"b64"' in text:  # strings with undecodable bytes
                    a = from_json(a)
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
            out = [from_json(json.loads(t))
                   for (t,) in self._conn.execute(sql + " ORDER BY pid", params)]
            if not all(isinstance(d, dict) for d in out):
                raise ValueError("a record is not an object")
            return out
        except sqlite3.Error as e:
            raise self._err(e) from None
        except (ValueError, TypeError):
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
        except (sqlite3.Error, UnicodeDecodeError) as e:
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
        host: str | None = None,
    ) -> tuple[str, list[Any]] | None:
        """SQL WHERE for the filters; None when no row can match."""
        conds: list[str] = []
        params: list[Any] = []
        types = list(self._types.values())
        if host is not None:  # a fleet capture: one run per host and boot
            runs = self.host_runs(host)
            types = [t for t in types if t.run_id in runs]
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
        host: str | None = None,
    ) -> Iterator[Event]:
        """Yield the recorded Events in time order, filtered like ``probewatch report``.

        ``pid``: one or several thread-group ids; ``comm``: exact, or a glob when it has
        ``* ? [``; ``event``: a glob over ``"system:name"`` (without ``:`` it matches
        the name, so ``"sys_enter_*"`` works); ``probe``: the spec as recorded;
        ``run``: a run id; ``tid``: thread ids; ``host``: the runs of this host
        (``runs.host``; a fleet capture of ``probewatch collect`` has one per host).

        Example::

            [ev.fields["filename"] for ev in cap.events(event="sched_process_exec")]
        """
        w = self._where(pid, comm, event, probe, run, tid, host)
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
                    if (type(ts) is not int or type(c) is not str or type(p) is not int
                            or type(t) is not int or type(cpu) is not int
                            or type(fields) is not str):
                        raise damaged(self.path, f"an event row holds a value of the wrong "
                                      f"type ({ts!r:.30}, {c!r:.30})")
                    ty = types.get(type_id)
                    if ty is None:
                        raise damaged(self.path, f"event type {type_id!r:.20} missing")
                    if ty.value_types:
                        f = decode_fields(fields, ty.value_types)
                    else:
                        hit = cache.get(fields)
                        if hit is not None:
                            f = dict(hit)
                        else:
                            f = loads(fields)
                            if type(f) is not dict:
                                raise damaged(self.path, "event fields are not an object")
                            if '"b64"' in fields:  # undecodable bytes (sinks/capture.py)
                                f = from_json(f)
                            if len(fields) < 512 and all(
                                isinstance(v, scalar) for v in f.values()
                            ):
                                if len(cache) >= 4096:
                                    cache.clear()
                                cache[fields] = dict(f)
                    yield Event(ts, cpu, p, t, c, ty.name, ty.probe, f)
        except (sqlite3.Error, UnicodeDecodeError) as e:
            raise self._err(e) from None
        except (ValueError, TypeError, AttributeError, RecursionError) as e:
            raise damaged(self.path, f"bad event fields ({e})") from None

    def count(
        self,
        pid: int | Iterable[int] | None = None,
        comm: str | None = None,
        event: str | None = None,
        probe: str | None = None,
        run: int | None = None,
        tid: int | Iterable[int] | None = None,
        host: str | None = None,
    ) -> int:
        """How many events :meth:`events` would yield with these filters."""
        w = self._where(pid, comm, event, probe, run, tid, host)
        if w is None:
            return 0
        try:
            return int(
                self._conn.execute("SELECT count(*) FROM event_rows" + w[0], w[1]).fetchone()[0]
            )
        except (sqlite3.Error, UnicodeDecodeError) as e:
            raise self._err(e) from None

    # -- summaries
    def stats(self) -> CaptureStats:
        """Events per probe, per event and per process, duration, span and losses."""
        try:
            return self._stats()
        except (TypeError, ValueError, AttributeError) as e:  # values of the wrong type
            raise damaged(self.path, e) from None

    def _stats(self) -> CaptureStats:
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
        except (sqlite3.Error, UnicodeDecodeError) as e:
            raise self._err(e) from None
        for pid, comm, _n, _ in procs:
            if not isinstance(pid, int) or not isinstance(comm, str):
                raise damaged(self.path, f"an event row holds pid {pid!r:.20}, comm {comm!r:.20}")
        for pid, (ppid, exe) in info.items():
            if not (ppid is None or isinstance(ppid, int)) or not (
                    exe is None or isinstance(exe, str)):
                raise damaged(self.path, f"processes row of pid {pid!r:.20} is not readable")
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
        auth = QueryAuthorizer()
        self._conn.set_authorizer(auth)
        try:
            cur = self._conn.execute(sql, params)
        except sqlite3.Error as e:
            if auth.denied is not None:
                raise QueryRefused(f"query refused: {auth.denied}", self.path) from None
            if isinstance(e, sqlite3.DatabaseError) and not isinstance(
                    e, sqlite3.OperationalError | sqlite3.ProgrammingError):
                raise self._err(e) from None
            raise CaptureError(f"query failed: {e}", self.path) from None
        except UnicodeDecodeError as e:
            raise self._err(e) from None
        cols = [d[0] for d in cur.description] if cur.description else []

        def rows() -> Iterator[tuple[Any, ...]]:
            try:
                while True:
                    batch = cur.fetchmany(1024)
                    if not batch:
                        return
                    yield from batch
            except UnicodeDecodeError as e:
                raise self._err(e) from None
            except sqlite3.Error as e:
                if isinstance(e, sqlite3.DatabaseError) and not isinstance(
                        e, sqlite3.OperationalError | sqlite3.ProgrammingError):
                    raise self._err(e) from None
                if "Could not decode" in str(e):
                    raise self._err(e) from None
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
