"""The collector's store: every host's batches in one capture file (schema 3).

The file is an ordinary probewatch capture (``probewatch report``, ``query``,
``watch --replay`` read it) holding one run per agent host and boot (``runs.host``;
the ``host_events`` view gives each event its host) and one ``fleet_batches`` row per
batch stored, keyed by (host, boot id, sequence): a batch that arrives again (a retry
the stream's 2-minute dedupe window no longer covers, a redelivery after the
collector died before acknowledging) is recognised there and skipped, in the same
transaction that would have stored it. Unlike ``record -o`` the store is reopened and
continued by the next ``probewatch collect`` (its durable consumer resumes where the
last acknowledgement left it).

Example::

    st = FleetStore("fleet.db")
    with st.transaction():
        if st.store_batch(meta, "events", records, events=evs):
            ...                                         # new: detect on it
    st.close()
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..decode.escape import from_json
from ..errors import ProbewatchError
from ..event import Event
from ..sinks.capture import (
    APPLICATION_ID,
    FORMAT_NAME,
    SCHEMA,
    SCHEMA_VERSION,
    CaptureWriteError,
    _alert_cell,
    _create_file,
    _safe_row,
    _statements,
    _text,
    _value_types,
    check_capture_file,
    check_schema,
)
from ..sinks.jsonl import obj_json

__all__ = ["FleetStore", "ALERT_COLS"]


def _bytes_list(v: Any) -> Any:
    if isinstance(v, bytes | bytearray | memoryview):
        return list(bytes(v))
    raise TypeError(f"not JSON: {type(v).__name__}")


#: the fields as JSON text, byte for byte what sinks.jsonl.fields_json writes (bytes as
#: lists of ints, tuples as arrays, no spaces, non-ASCII kept), from the C encoder
_fields_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                                default=_bytes_list).encode

ALERT_COLS = (
    "id", "run_id", "ts", "last_ts", "time", "count", "level", "rule_id", "title",
    "techniques", "pid", "image", "command_line", "lineage", "matched", "alert",
)


class FleetStore:
    """One capture file for the whole fleet (see the module docs)."""

    def __init__(self, path: str) -> None:
        self.path = path
        if os.path.exists(path):
            check_capture_file(path)
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            (uv,) = self._conn.execute("PRAGMA user_version").fetchone()
            if uv != SCHEMA_VERSION:
                self._conn.close()
                raise ProbewatchError(
                    f"{path}: a capture of schema {uv}, not a fleet store of schema "
                    f"{SCHEMA_VERSION}: give probewatch collect a new file with -o")
            check_schema(self._conn, path)
        else:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise CaptureWriteError(f"cannot create {path}: no directory {parent}", path)
            _create_file(path)
            self._conn = self._create()
        c = self._conn
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("PRAGMA synchronous = NORMAL")
        c.execute("PRAGMA cache_size = -16384")
        self._runs: dict[tuple[str, str], int] = {}
        for host, boot, run in c.execute(
                "SELECT DISTINCT host, boot_id, run_id FROM fleet_batches"):
            self._runs[(host, boot)] = run
        self._probes: dict[tuple[int, str], int] = {}
        for pid, run, spec in c.execute("SELECT id, run_id, spec FROM probes"):
            self._probes[(run, spec)] = pid
        self._types: dict[tuple[int, str, str], int] = {}
        for tid, run, spec, name in c.execute(
                "SELECT t.id, p.run_id, p.spec, t.name FROM event_types t "
                "JOIN probes p ON p.id = t.probe_id"):
            self._types[(run, spec, name)] = tid
        self._alert_ids: dict[tuple[str, str, int], int] = {}
        self._next_alert = int(c.execute("SELECT coalesce(max(id), 0) FROM alerts")
                               .fetchone()[0]) + 1
        self._counts: dict[int, int] = dict(c.execute("SELECT id, events FROM runs"))
        self.events = sum(self._counts.values())
        self.batches = 0
        self.duplicates = 0

    def _create(self) -> sqlite3.Connection:
        from .. import __version__

        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("BEGIN")
        for stmt in _statements(SCHEMA):
            conn.execute(stmt)
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
            ("format", FORMAT_NAME), ("schema", str(SCHEMA_VERSION)),
            ("created", f"{time.time():.6f}"), ("writer", f"probewatch {__version__} collect"),
        ])
        conn.execute("COMMIT")
        return conn

    # -- transactions
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        c = self._conn
        c.execute("BEGIN")
        try:
            yield
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    # -- runs, probes, types
    def run_id(self, meta: Mapping[str, Any]) -> int:
        host, boot = str(meta["host"]), str(meta["boot"])
        r = self._runs.get((host, boot))
        if r is not None:
            return r
        now = time.time()
        off = meta.get("wall_offset_ns")
        start_ts = int(now * 1e9) - off if isinstance(off, int) else None
        cur = self._conn.execute(
            "INSERT INTO runs (status, start_time, updated_time, start_ts, clock, host, "
            "backend, recorder_pid, argv) VALUES (?,?,?,?,?,?,?,?,?)",
            ("recording", now, now, start_ts, "mono", _text(host),
             _text(str(meta.get("backend") or "")) or None, os.getpid(),
             json.dumps(["probewatch", "collect", f"boot {boot}"])))
        r = int(cur.lastrowid or 0)
        self._runs[(host, boot)] = r
        self._counts[r] = 0
        return r

    def _type_id(self, run: int, ev: Event) -> int:
        key = (run, ev.probe, ev.event)
        t = self._types.get(key)
        if t is not None:
            return t
        p = self._probes.get((run, ev.probe))
        if p is None:
            cur = self._conn.execute(
                "INSERT INTO probes (run_id, spec, events) VALUES (?,?,?)",
                (run, _text(ev.probe), json.dumps([_text(ev.event)])))
            p = self._probes[(run, ev.probe)] = int(cur.lastrowid or 0)
        vt = _value_types(ev.fields)
        cur = self._conn.execute(
            "INSERT INTO event_types (probe_id, name, hex_fields, value_types) VALUES (?,?,?,?)",
            (p, _text(ev.event), "[]", json.dumps(vt) if vt else None))
        t = self._types[key] = int(cur.lastrowid or 0)
        return t

    # -- batches
    def store_batch(self, meta: Mapping[str, Any], records: Sequence[Any],
                    events: Sequence[Event] | None = None) -> bool:
        """Store one decoded batch (inside :meth:`transaction`); False when this
        (host, boot, seq) was stored before (nothing is written then)."""
        c = self._conn
        host, boot, seq, kind = meta["host"], meta["boot"], meta["seq"], meta["kind"]
        run = self.run_id(meta)
        made = meta.get("made")
        cur = c.execute(
            "INSERT OR IGNORE INTO fleet_batches (host, boot_id, seq, kind, run_id, records, "
            "made, received) VALUES (?,?,?,?,?,?,?,?)",
            (host, boot, seq, kind, run, len(records),
             float(made) if isinstance(made, int | float) else None, time.time()))
        if cur.rowcount == 0:
            self.duplicates += 1
            return False
        self.batches += 1
        if kind == "events" and events:
            fj = _fields_json
            rows = [(ev.ts, ev.cpu, ev.pid, ev.tid, ev.comm, self._type_id(run, ev),
                     fj(ev.fields)) for ev in events]
            sql = ("INSERT INTO event_rows (ts, cpu, pid, tid, comm, type_id, fields) "
                   "VALUES (?,?,?,?,?,?,?)")
            try:
                c.executemany(sql, rows)
            except UnicodeEncodeError:
                c.executemany(sql, [_safe_row(r) for r in rows])
            n = self._counts[run] = self._counts.get(run, 0) + len(rows)
            self.events += len(rows)
            c.execute("UPDATE runs SET events = ?, updated_time = ?, last_ts = max("
                      "coalesce(last_ts, 0), ?), first_ts = coalesce(first_ts, ?), lost = ? "
                      "WHERE id = ?", (n, time.time(), events[-1].ts, events[0].ts,
                                       _int(meta.get("lost")), run))
        elif kind == "processes":
            c.executemany(
                "INSERT OR REPLACE INTO process_snapshot (run_id, pid, ppid, info) "
                "VALUES (?,?,?,?)",
                [(run, int(p["pid"]), _int(p.get("ppid")), obj_json(p)) for p in records
                 if isinstance(p, dict) and isinstance(p.get("pid"), int)])
        elif kind == "alerts":
            for row in records:
                if isinstance(row, dict):
                    self.add_alert(meta, row, source="agent")
        return True

    def add_alert(self, meta: Mapping[str, Any], row: Mapping[str, Any],
                  source: str = "central") -> int:
        """Insert (or update: a repeat count) one alert row; returns its id here."""
        run = self.run_id(meta)
        key = (f"{meta['host']}:{source}", str(meta["boot"]), _int(row.get("id")) or 0)
        aid = self._alert_ids.get(key)
        if aid is None:
            aid = self._alert_ids[key] = self._next_alert
            self._next_alert += 1
        vals = {c: row.get(c) for c in ALERT_COLS}
        vals["id"], vals["run_id"] = aid, run
        if vals["ts"] is None:
            vals["ts"] = 0
        vals["count"] = _int(vals["count"]) or 1
        vals["level"] = str(vals["level"] or "informational")
        vals["rule_id"] = str(vals["rule_id"] or "")
        vals["alert"] = vals["alert"] if isinstance(vals["alert"], str) else obj_json(
            vals["alert"] or {})
        self._conn.execute(
            f"INSERT OR REPLACE INTO alerts ({', '.join(ALERT_COLS)}) VALUES "
            f"({', '.join('?' * len(ALERT_COLS))})",
            [_alert_cell(vals[c]) if c not in ("id", "run_id") else vals[c]
             for c in ALERT_COLS])
        return aid

    def snapshot(self, meta: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The process records stored for the run of meta's host and boot."""
        run = self._runs.get((str(meta["host"]), str(meta["boot"])))
        if run is None:
            return []
        out = []
        for (info,) in self._conn.execute(
                "SELECT info FROM process_snapshot WHERE run_id = ?", (run,)):
            try:
                d = json.loads(info)
            except ValueError:
                continue
            if isinstance(d, dict):
                out.append(from_json(d) if '"b64"' in info else d)
        return out

    def count_events(self, host: str | None = None) -> int:
        if host is None:
            return int(self._conn.execute("SELECT count(*) FROM event_rows").fetchone()[0])
        return int(self._conn.execute("SELECT count(*) FROM host_events WHERE host = ?",
                                      (host,)).fetchone()[0])

    def close(self) -> None:
        c = self._conn
        try:
            c.execute("UPDATE runs SET status = 'complete', end_time = ? WHERE status = "
                      "'recording'", (time.time(),))
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        c.close()


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None
