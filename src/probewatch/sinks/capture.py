"""The capture store: one SQLite file per recording, written by a background thread.

The recorder's hot loop only appends Event records to an in-memory queue
(:meth:`CaptureWriter.add` / :meth:`CaptureWriter.add_many`); a writer thread turns
them into rows and commits them in batched transactions (it wakes every ``interval``
seconds; a transaction holds at most ``chunk`` events), so the loop never waits on the
disk. The file is created with mode 0600 and uses SQLite's WAL journal: a commit
survives the death of the recorder (even SIGKILL), so a killed recording loses at most
the batch that was not yet committed and the file still opens cleanly. Before each
transaction the writer keeps ``reserve`` bytes allocated past the end of the WAL; when
the file system cannot give them, the recording stops with :class:`DiskFullError`
while there is still room to close the run properly.

Only regular files are written (:func:`check_output_path`): a device node, FIFO,
directory or symbolic link at the path is refused, even with ``force``. An existing
capture replaced with ``force`` stays as it was until the new one is finished: the new
one is written to a hidden temporary file beside it and renamed over it by
:meth:`CaptureWriter.finish` (after a write error the old file is kept instead).

The schema is versioned (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`,
``PRAGMA application_id`` = :data:`APPLICATION_ID` and the ``meta`` table); see
:data:`SCHEMA` for the tables. :func:`open_capture` validates a file and opens it
read-only, turning every way a file can be wrong (not SQLite, not ours, truncated,
from a newer probewatch) into a typed :class:`CaptureError` that names the file.

Example::

    w = CaptureWriter("run.db")
    w.begin_run(RunInfo(backend="ftrace", clock="mono"),
                [ProbeInfo("t:sched:sched_switch", kind="tracepoint",
                           events=["sched:sched_switch"])])
    for ev in session.events(duration=5):
        w.add(ev)
    result = w.finish(status="complete")
    result.events, result.bytes      # rows written, size of the file
"""

from __future__ import annotations

import errno
import json
import os
import re
import sqlite3
import stat
import struct
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..decode.escape import from_json, is_b64
from ..errors import DecodeError, NotFound, ProbewatchError
from ..event import Event
from ..files import file_kind
from .jsonl import fields_json, obj_json

__all__ = [
    "SCHEMA_VERSION",
    "APPLICATION_ID",
    "SCHEMA",
    "CaptureError",
    "NotACaptureError",
    "TruncatedCaptureError",
    "CaptureVersionError",
    "CaptureWriteError",
    "DiskFullError",
    "RunInfo",
    "ProbeInfo",
    "WriteResult",
    "CaptureWriter",
    "open_capture",
    "check_capture_file",
    "decode_fields",
    "translate_db_error",
    "damaged",
    "check_output_path",
    "read_proc",
]

#: capture schema number, also in ``PRAGMA user_version`` and ``meta.schema``;
#: 2 added the ``alerts`` and ``process_snapshot`` tables (probewatch watch -o),
#: a schema 1 file still opens (those tables are then empty); 3 added
#: ``fleet_batches`` and the ``host_events`` view (probewatch collect: one run per
#: host and boot, every batch stored once)
SCHEMA_VERSION = 3
#: ``PRAGMA application_id`` of every capture: ASCII "PWCP"
APPLICATION_ID = 0x50574350
FORMAT_NAME = "probewatch-capture"
SQLITE_MAGIC = b"SQLite format 3\x00"

SCHEMA = """
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE runs (
  id             INTEGER PRIMARY KEY,
  status         TEXT NOT NULL,  -- recording | complete | interrupted | disk-full | error
  message        TEXT,           -- why the run ended early, when it did
  start_time     REAL NOT NULL,  -- wall clock, seconds since the epoch
  end_time       REAL,           -- NULL while recording (and forever if the recorder died)
  updated_time   REAL,           -- wall clock of the last commit: a killed run ended after it
  start_ts       INTEGER,        -- the trace clock (ns) at start_time
  clock          TEXT,           -- trace clock of every ts ('mono' = CLOCK_MONOTONIC)
  host           TEXT,
  kernel         TEXT,           -- kernel release (uname -r)
  machine        TEXT,           -- uname -m
  version        TEXT,           -- probewatch version that recorded
  argv           TEXT,           -- JSON list: the probewatch command line
  command        TEXT,           -- JSON list: the traced command, NULL when none
  exit_status    INTEGER,        -- the traced command's exit status
  backend        TEXT,
  buffer_kb      INTEGER,
  filter         TEXT,           -- the --filter expression
  pids           TEXT,           -- JSON list of -p pids
  comm           TEXT,           -- the -c comm
  recorder_pid   INTEGER,
  events         INTEGER NOT NULL DEFAULT 0,  -- rows committed so far
  first_ts       INTEGER,
  last_ts        INTEGER,
  lost           INTEGER,        -- events the kernel dropped (NULL: the run did not end)
  lost_per_cpu   TEXT,           -- JSON {"cpu": n}
  lost_per_probe TEXT,           -- JSON {"spec": n}; NULL when the backend cannot attribute
  page_missed    INTEGER,
  unknown        INTEGER         -- records of unknown event types
);

CREATE TABLE probes (
  id       INTEGER PRIMARY KEY,
  run_id   INTEGER NOT NULL REFERENCES runs(id),
  spec     TEXT NOT NULL,        -- as the user wrote it (Event.probe)
  kind     TEXT,                 -- tracepoint, uprobe, uretprobe, kprobe, kretprobe, usdt
  backend  TEXT,
  filter   TEXT,
  events   TEXT,                 -- JSON list of the "system:name" events it resolved to
  target   TEXT,                 -- resolved binary path / module / "system:name" pattern
  symbol   TEXT,                 -- function (uprobe/kprobe), probe name (USDT)
  offset   INTEGER,              -- the spec's +OFFSET into the symbol
  address  INTEGER,              -- the spec's address, when it names one
  resolved TEXT,                 -- JSON list, one per dynamic event the spec created:
                                 -- {event, kind, target, symbol, offset, entry}
  count    INTEGER,              -- events the backend delivered (set when the run ends)
  lost     INTEGER               -- NULL when the backend cannot attribute losses to probes
);

CREATE TABLE event_types (
  id          INTEGER PRIMARY KEY,
  probe_id    INTEGER NOT NULL REFERENCES probes(id),
  name        TEXT NOT NULL,     -- "system:name" (Event.event)
  hex_fields  TEXT,              -- JSON list: pointer fields (hex in text output)
  value_types TEXT               -- JSON {"field": "bytes" | "tuple"}: what JSON cannot tell
);

CREATE TABLE event_rows (
  id      INTEGER PRIMARY KEY,   -- write order = time order
  ts      INTEGER NOT NULL,      -- ns, runs.clock
  cpu     INTEGER NOT NULL,
  pid     INTEGER NOT NULL,      -- thread-group id
  tid     INTEGER NOT NULL,
  comm    TEXT NOT NULL,
  type_id INTEGER NOT NULL REFERENCES event_types(id),
  fields  TEXT NOT NULL          -- JSON object, field order kept
);

CREATE VIEW events AS
  SELECT e.id, p.run_id, e.ts, e.cpu, e.pid, e.tid, e.comm, t.probe_id,
         p.spec AS probe, t.name AS event, e.fields
  FROM event_rows e
  JOIN event_types t ON t.id = e.type_id
  JOIN probes p ON p.id = t.probe_id;

CREATE TABLE processes (
  run_id     INTEGER NOT NULL REFERENCES runs(id),
  pid        INTEGER NOT NULL,
  ppid       INTEGER,
  comm       TEXT,
  exe        TEXT,
  argv       TEXT,               -- JSON list
  start_ts   INTEGER,            -- trace clock ns: sched_process_fork
  exec_ts    INTEGER,            -- trace clock ns: sched_process_exec
  exit_ts    INTEGER,            -- trace clock ns: sched_process_exit of the group
  start_time REAL,               -- wall clock from /proc/PID/stat
  exit_code  INTEGER,            -- known for the traced command
  source     TEXT,               -- where the row came from: proc, trace, command
  PRIMARY KEY (run_id, pid)
);
""" + """
CREATE TABLE alerts (              -- schema 2: probewatch watch -o
  id           INTEGER PRIMARY KEY, -- the alert's id (watch --json "id")
  run_id       INTEGER NOT NULL REFERENCES runs(id),
  ts           INTEGER NOT NULL,   -- trace clock ns of the first matching event
  last_ts      INTEGER,            -- of the last repeat folded into this alert
  time         REAL,               -- wall clock of ts
  count        INTEGER NOT NULL,   -- 1 + the repeats collapsed into it
  level        TEXT NOT NULL,
  rule_id      TEXT NOT NULL,
  title        TEXT,
  techniques   TEXT,               -- JSON list of ATT&CK ids
  pid          INTEGER,
  image        TEXT,
  command_line TEXT,
  lineage      TEXT,               -- "sshd(812) > bash(4410) > python3(4502)", escaped
  matched      TEXT,               -- JSON object: field -> value
  alert        TEXT NOT NULL       -- the whole alert as watch --json prints it
);

CREATE TABLE process_snapshot (    -- schema 2: the process table watch started from
  run_id  INTEGER NOT NULL REFERENCES runs(id),
  pid     INTEGER NOT NULL,
  ppid    INTEGER,
  info    TEXT NOT NULL,           -- JSON object: the process table's record
  PRIMARY KEY (run_id, pid)
);
""" + """
CREATE TABLE fleet_batches (       -- schema 3: probewatch collect, one row per batch stored
  host     TEXT NOT NULL,          -- the agent's host name (runs.host of run_id)
  boot_id  TEXT NOT NULL,          -- the agent machine's boot id
  seq      INTEGER NOT NULL,       -- the agent's batch sequence (Nats-Msg-Id host:boot:seq)
  kind     TEXT NOT NULL,          -- events, alerts, processes, status
  run_id   INTEGER NOT NULL REFERENCES runs(id),
  records  INTEGER NOT NULL,
  made     REAL,                   -- agent wall clock when the batch was made
  received REAL NOT NULL,          -- collector wall clock when it was stored
  PRIMARY KEY (host, boot_id, seq)
) WITHOUT ROWID;

CREATE VIEW host_events AS         -- schema 3: events with the host that sent them
  SELECT e.*, r.host AS host FROM events e JOIN runs r ON r.id = e.run_id;
"""

_INSERT_ROW = (
    "INSERT INTO event_rows (ts, cpu, pid, tid, comm, type_id, fields) VALUES (?,?,?,?,?,?,?)"
)
_ALERT_COLS = (
    "id", "run_id", "ts", "last_ts", "time", "count", "level", "rule_id", "title",
    "techniques", "pid", "image", "command_line", "lineage", "matched", "alert",
)
_INSERT_ALERT = (
    f"INSERT OR REPLACE INTO alerts ({', '.join(_ALERT_COLS)}) "
    f"VALUES ({', '.join('?' * len(_ALERT_COLS))})"
)
_PROC_COLS = (
    "run_id", "pid", "ppid", "comm", "exe", "argv", "start_ts", "exec_ts", "exit_ts",
    "start_time", "exit_code", "source",
)
_INSERT_PROC = (
    f"INSERT OR REPLACE INTO processes ({', '.join(_PROC_COLS)}) "
    f"VALUES ({', '.join('?' * len(_PROC_COLS))})"
)


# ----------------------------------------------------------------------------- errors


class CaptureError(DecodeError):
    """A capture file cannot be read; ``path`` names it."""

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        super().__init__(message)


class NotACaptureError(CaptureError):
    """The file is not a probewatch capture (not SQLite, or another program's SQLite)."""


class TruncatedCaptureError(CaptureError):
    """The file is a capture but shorter than it should be, or damaged."""


class CaptureVersionError(CaptureError):
    """The capture was written with a newer schema than this probewatch reads."""


class CaptureWriteError(ProbewatchError):
    """Writing the capture failed; the events committed before the failure are kept."""

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        super().__init__(message)


class DiskFullError(CaptureWriteError):
    """The file system of the capture is full."""


# ----------------------------------------------------------------------------- records


@dataclass
class RunInfo:
    """What the recorder knows about a run before it starts (a row of ``runs``)."""

    backend: str = ""
    clock: str | None = None
    argv: Sequence[str] | None = None
    command: Sequence[str] | None = None
    buffer_kb: int | None = None
    filter: str | None = None
    pids: Sequence[int] | None = None
    comm: str | None = None
    host: str | None = None
    kernel: str | None = None
    machine: str | None = None
    version: str | None = None


@dataclass
class ProbeInfo:
    """One probe spec of a run (a row of ``probes``)."""

    spec: str
    kind: str | None = None
    backend: str | None = None
    filter: str | None = None
    events: Sequence[str] = field(default_factory=list)
    target: str | None = None
    symbol: str | None = None
    offset: int | None = None
    address: int | None = None
    resolved: Sequence[Mapping[str, Any]] | None = None


@dataclass
class WriteResult:
    """What :meth:`CaptureWriter.finish` wrote."""

    path: str
    run_id: int
    events: int
    bytes: int
    status: str
    error: CaptureWriteError | None = None


# ----------------------------------------------------------------------------- helpers


#: fields -> JSON text exactly as the JSON-lines sink writes them (tuples become arrays,
#: bytes lists of ints); value_types in event_types says which lists were which
_dumps = fields_json


def _safe_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row whose strings hold lone surrogates (undecodable bytes kept by
    surrogateescape): comm gets U+FFFD, fields the {"b64": ...} form of the JSON sink
    (valid UTF-8 for SQLite's json functions; decode_fields gives the same str back)."""
    ts, cpu, pid, tid, comm, type_id, fields = row
    try:
        comm.encode("utf-8")
    except UnicodeEncodeError:
        comm = comm.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    try:
        fields.encode("utf-8")
    except UnicodeEncodeError:
        fields = obj_json(json.loads(fields))
    return ts, cpu, pid, tid, comm, type_id, fields


def _value_types(fields: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in fields.items():
        if isinstance(v, bytes | bytearray | memoryview):
            out[k] = "bytes"
        elif isinstance(v, tuple):
            out[k] = "tuple"
    return out


def decode_fields(text: str, value_types: Mapping[str, str] | None) -> dict[str, Any]:
    """Stored JSON -> the field dict the backend produced (bytes and tuples restored)."""
    fields: dict[str, Any] = json.loads(text)
    if not isinstance(fields, dict):
        raise ValueError("event fields are not an object")
    if '"b64"' in text:  # strings with undecodable bytes (see _safe_row)
        fields = from_json(fields)
    if value_types:
        for k, t in value_types.items():
            v = fields.get(k)
            if isinstance(v, list):
                try:
                    fields[k] = bytes(v) if t == "bytes" else tuple(v)
                except (TypeError, ValueError):
                    pass
    return fields


def _is_disk_full(e: BaseException, path: str) -> bool:
    if isinstance(e, sqlite3.Error):
        code = getattr(e, "sqlite_errorcode", 0) or 0
        if code & 0xFF == sqlite3.SQLITE_FULL:
            return True
        if "disk is full" in str(e):
            return True
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        st = os.statvfs(os.path.dirname(path) or ".")
        return st.f_bavail * st.f_frsize < 64 * 1024
    except OSError:
        return False


_DAMAGE_HINTS = ("malformed", "not a database", "disk I/O", "Could not decode", "no such column",
                 "no such table", "prohibited", "syntax error", "unrecognized token")


def damaged(path: str, detail: object) -> TruncatedCaptureError:
    """The one error for a capture whose content is damaged: ``PATH: damaged capture: ...``.

    Example::

        raise damaged("run.db", "event type 7 missing")
    """
    text = str(detail)
    if isinstance(detail, UnicodeDecodeError):
        text = f"text that is not UTF-8 ({detail.reason})"
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    # one line: the damaged text may hold newlines and control characters of its own
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in " ".join(text.split()))
    if len(text) > 200:
        text = text[:200] + "..."
    return TruncatedCaptureError(f"{path}: damaged capture: {text}", path)


def translate_db_error(e: BaseException, path: str) -> CaptureError:
    """An SQLite error (or the UnicodeDecodeError sqlite3 raises for a message or a text
    that is not UTF-8) while reading ``path`` -> a CaptureError naming the file."""
    if isinstance(e, UnicodeDecodeError):
        return damaged(path, e)
    msg = str(e)
    if isinstance(e, sqlite3.DatabaseError) and any(h in msg for h in _DAMAGE_HINTS):
        return damaged(path, f"truncated or damaged ({msg})")
    return CaptureError(f"{path}: cannot read the capture ({msg})", path)


_expected_schema: frozenset[tuple[str, str, str, str]] | None = None


def expected_schema() -> frozenset[tuple[str, str, str, str]]:
    """(type, name, tbl_name, sql) of every table and view :data:`SCHEMA` creates, as
    ``sqlite_master`` holds them in a capture of this schema version."""
    global _expected_schema
    if _expected_schema is None:
        conn = sqlite3.connect(":memory:")
        try:
            for stmt in _statements(SCHEMA):
                conn.execute(stmt)
            _expected_schema = frozenset(conn.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master"
                " WHERE name NOT LIKE 'sqlite_%'").fetchall())
        finally:
            conn.close()
    return _expected_schema


#: tables each schema version added (older captures lack them and still open)
_ADDED_IN = {2: frozenset({"alerts", "process_snapshot"}),
             3: frozenset({"fleet_batches", "host_events"})}


def check_schema(conn: sqlite3.Connection, path: str, version: int = SCHEMA_VERSION) -> None:
    """Raise the damaged-capture error unless the tables and views are exactly those of
    :data:`SCHEMA` at schema ``version`` (a changed byte in a column name or type shows
    up here, not as a KeyError deep in a reader)."""
    have = frozenset(conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    ).fetchall())
    later = frozenset().union(*(t for v, t in _ADDED_IN.items() if v > version))
    want = frozenset(r for r in expected_schema() if r[2] not in later)
    if have != want:
        bad = sorted(str(r[1]) for r in (have ^ want))
        raise damaged(path, "its tables differ from a capture's (" + ", ".join(
            dict.fromkeys(bad)) + ")")


def _uname() -> tuple[str, str, str]:
    u = os.uname()
    return u.nodename, u.release, u.machine


def _boot_time() -> float | None:
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_BOOT_TIME = _boot_time()


def read_proc(pid: int) -> dict[str, Any] | None:
    """ppid, comm, exe, argv and start time of a live process from /proc (None: gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    info: dict[str, Any] = {}
    lp, rp = stat.find(b"("), stat.rfind(b")")
    if lp < 0 or rp < 0:
        return None
    info["comm"] = stat[lp + 1 : rp].decode(errors="replace")
    rest = stat[rp + 2 :].split()
    try:
        info["ppid"] = int(rest[1])
        if _BOOT_TIME is not None:
            info["start_time"] = round(_BOOT_TIME + int(rest[19]) / _CLK_TCK, 2)
    except (IndexError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
        if raw:
            info["argv"] = [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]
    except OSError:
        pass
    try:
        info["exe"] = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        pass
    return info


# ----------------------------------------------------------------------------- reading


def check_capture_file(path: str) -> None:
    """Look at the file's SQLite header; raise a typed CaptureError when it is not a
    readable probewatch capture (missing, not SQLite, truncated, another application's
    database, newer schema)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotFound(f"{path}: no such capture file") from None
    except OSError as e:
        raise CaptureError(f"{path}: cannot open the capture ({e.strerror})", path) from None
    if not os.path.isfile(path):
        raise NotACaptureError(f"{path} is not a probewatch capture (not a regular file)", path)
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError as e:
        raise CaptureError(f"{path}: cannot read the capture ({e.strerror})", path) from None
    if not head:
        raise TruncatedCaptureError(
            f"{path}: capture is empty (0 bytes): truncated, or the recording never started",
            path,
        )
    if not SQLITE_MAGIC.startswith(head[:16]) or (len(head) >= 16 and head[:16] != SQLITE_MAGIC):
        raise NotACaptureError(
            f"{path} is not a probewatch capture (not an SQLite database)", path
        )
    if len(head) < 100:
        raise TruncatedCaptureError(
            f"{path}: capture is truncated ({st.st_size} bytes, shorter than its header)", path
        )
    (page_size,) = struct.unpack_from(">H", head, 16)
    page_size = 65536 if page_size == 1 else page_size
    change, n_pages = struct.unpack_from(">II", head, 24)
    (user_version,) = struct.unpack_from(">i", head, 60)
    (app_id,) = struct.unpack_from(">I", head, 68)
    (valid_for,) = struct.unpack_from(">I", head, 92)
    if app_id != APPLICATION_ID:
        raise NotACaptureError(
            f"{path} is an SQLite database but not a probewatch capture "
            f"(application id 0x{app_id:08x})",
            path,
        )
    if user_version > SCHEMA_VERSION:
        raise CaptureVersionError(_newer_msg(path, user_version), path)
    expected = n_pages * page_size if (n_pages and change == valid_for) else 0
    try:
        if os.path.getsize(path + "-wal") > 0:
            # the WAL holds pages the main file does not have yet (a failed or pending
            # checkpoint may even have written page 1 first): SQLite reads them from there
            expected = 0
    except OSError:
        pass
    if page_size and (st.st_size % page_size or st.st_size < expected):
        raise TruncatedCaptureError(
            f"{path}: capture is truncated ({st.st_size} bytes, its header says "
            f"{max(expected, st.st_size + 1)})",
            path,
        )


def _newer_msg(path: str, version: int) -> str:
    return (
        f"{path} was written by a newer probewatch (capture schema {version}; this "
        f"version reads schema {SCHEMA_VERSION} and older): upgrade probewatch to read it"
    )


def _ro_uri(path: str) -> str:
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    if not os.path.exists(path + "-wal"):
        # no WAL: nobody is writing it (a live recorder always has one) and the file
        # was closed cleanly; immutable=1 reads it without creating -wal/-shm files
        uri += "&immutable=1"
    return uri


def open_capture(path: str) -> sqlite3.Connection:
    """Validate ``path`` and open it read-only (``mode=ro``, ``PRAGMA query_only``).

    Raises NotFound, NotACaptureError, TruncatedCaptureError or CaptureVersionError,
    each naming the file.
    """
    check_capture_file(path)
    try:
        conn = sqlite3.connect(_ro_uri(path), uri=True, check_same_thread=False)
    except (sqlite3.Error, UnicodeDecodeError) as e:
        raise translate_db_error(e, path) from None
    try:
        conn.execute("PRAGMA query_only = ON")
        (uv,) = conn.execute("PRAGMA user_version").fetchone()
        (app,) = conn.execute("PRAGMA application_id").fetchone()
        if app != APPLICATION_ID:
            raise NotACaptureError(f"{path} is an SQLite database but not a probewatch "
                                   "capture", path)
        if uv > SCHEMA_VERSION:
            raise CaptureVersionError(_newer_msg(path, uv), path)
        # the application id says "capture" from here on: what is missing is damage
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError:
            raise damaged(path, "it has no meta table") from None
        if meta.get("format") != FORMAT_NAME:
            raise damaged(path, f"meta.format is {meta.get('format')!r:.40}, not "
                          f"{FORMAT_NAME!r}")
        try:
            schema = int(meta.get("schema", "0"))
        except ValueError:
            schema = 0
        if schema > SCHEMA_VERSION:
            raise CaptureVersionError(_newer_msg(path, schema), path)
        check_schema(conn, path, min(uv, schema) if uv and schema else SCHEMA_VERSION)
        # touch the tables the reader needs: a damaged file fails here, not later
        conn.execute("SELECT count(*) FROM event_types").fetchone()
        conn.execute("SELECT max(id) FROM event_rows").fetchone()
    except CaptureError:
        conn.close()
        raise
    except (sqlite3.Error, UnicodeDecodeError) as e:
        conn.close()
        raise translate_db_error(e, path) from None
    except (TypeError, ValueError, AttributeError) as e:  # meta values of the wrong type
        conn.close()
        raise damaged(path, e) from None
    return conn


# ----------------------------------------------------------------------------- writing


def check_output_path(path: str, force: bool) -> bool:
    """Validate a capture's output path before anything is written or armed.

    Only a regular file is ever replaced (with ``force``): a device node, FIFO,
    socket, directory or symbolic link is refused even with ``force``. The directory
    must exist. Returns True when ``path`` exists and will be replaced. Raises
    CaptureWriteError.

    Example::

        replacing = check_output_path("run.db", force=True)
    """
    try:
        st: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise CaptureWriteError(f"cannot use {path}: {e.strerror}", path) from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = file_kind(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            try:
                kind += f" (to {file_kind(os.stat(path).st_mode)})"
            except OSError:
                kind += " (dangling)"
        raise CaptureWriteError(
            f"{path} is {kind}, not a regular file: a capture is written only to a new or "
            "an existing regular file (--force never replaces anything else); choose "
            "another name with -o", path)
    if st is not None and not force:
        raise CaptureWriteError(
            f"{path} exists: choose another name with -o, or overwrite it with --force", path
        )
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CaptureWriteError(f"cannot create {path}: no directory {parent}", path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CaptureWriteError(f"cannot create {path}: {parent} is not writable", path)
    return st is not None


def _unlink_regular(p: str) -> None:
    """Remove ``p`` if it is a regular file (a stale -wal/-shm/-journal); never else."""
    try:
        if stat.S_ISREG(os.lstat(p).st_mode):
            os.unlink(p)
    except OSError:
        pass


def _create_file(path: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except FileExistsError:
        raise CaptureWriteError(
            f"{path} exists: choose another name with -o, or overwrite it with --force", path
        ) from None
    except OSError as e:
        raise CaptureWriteError(f"cannot create {path}: {e.strerror}", path) from None
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _temp_name(path: str) -> str:
    d, base = os.path.split(os.path.abspath(path))
    return os.path.join(d, f".{base}.{os.getpid()}-{os.urandom(4).hex()}.tmp")


def _fsync_path(p: str, directory: bool = False) -> None:
    try:
        fd = os.open(p, (os.O_RDONLY | os.O_DIRECTORY) if directory else os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class CaptureWriter:
    """Writes one capture file; events go in through :meth:`add` (any thread, no waiting).

    ``interval``: how often the writer thread wakes to commit (seconds);
    ``chunk``: the most events one transaction holds;
    ``max_backlog``: queued events above which :meth:`wait_backlog` makes the producer
    wait (the kernel then drops and counts events instead of memory growing without end);
    ``reserve``: bytes of disk kept allocated for the closing update: the recording
    stops with DiskFullError when the file system cannot keep them (0: no reserve).

    After a write error, :attr:`error` is set, ``on_error`` (if set) is called from the
    writer thread, and further events are discarded.
    """

    def __init__(
        self,
        path: str,
        *,
        force: bool = False,
        interval: float = 0.1,
        max_backlog: int = 100_000,
        chunk: int = 8192,
        reserve: int = 1 << 20,
    ) -> None:
        self.path = path
        self.interval = interval
        self.max_backlog = max_backlog
        self.chunk = chunk
        self.reserve = reserve
        self._wal_fd = -1
        self.error: CaptureWriteError | None = None
        self.on_error: Callable[[CaptureWriteError], None] | None = None
        self.written = 0
        self.run_id = 0
        self._q: deque[Event] = deque()
        #: the hot path: append one Event (deque.append, thread-safe)
        self.add: Callable[[Event], None] = self._q.append
        self._ctl: deque[tuple[str, Any]] = deque()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._finished = False
        self._types: dict[str, dict[str, tuple[int, Callable[[Event], None] | None]]] = {}
        self._probe_ids: dict[str, int] = {}
        self._hex: dict[str, list[str]] = {}
        self._seen_pids: set[int] = set()
        self._procs: dict[int, dict[str, Any]] = {}
        self._dirty: set[int] = set()
        self._first_ts: int | None = None
        self._last_ts: int | None = None
        self._last_commit = 0.0
        #: True: ``path`` exists and is replaced by :meth:`finish` (the capture is
        #: written to a temporary file beside it until then); False: written in place
        self.replacing = check_output_path(path, force)
        #: the file SQLite writes: ``path``, or the temporary file while replacing
        self.file = _temp_name(path) if self.replacing else path
        created = False
        try:
            if not self.replacing:
                # -wal/-shm/-journal left by a capture deleted without them would be
                # taken as this new file's journal
                for sfx in ("-wal", "-shm", "-journal"):
                    _unlink_regular(path + sfx)
            _create_file(self.file)
            created = True
            self._conn = self._init_db()
        except BaseException:
            if created:
                self._unlink_all()
            raise

    # -- setup
    def _init_db(self) -> sqlite3.Connection:
        path = self.path
        try:
            conn = sqlite3.connect(self.file, isolation_level=None, check_same_thread=False)
            # header fields first, in rollback mode, so the main file carries them
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("BEGIN")
            for stmt in _statements(SCHEMA):
                conn.execute(stmt)
            from .. import __version__

            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("format", FORMAT_NAME),
                    ("schema", str(SCHEMA_VERSION)),
                    ("created", f"{time.time():.6f}"),
                    ("writer", f"probewatch {__version__}"),
                ],
            )
            conn.execute("COMMIT")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise CaptureWriteError(
                    f"{path}: the file system does not support SQLite's WAL journal", path
                )
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -16384")
            conn.execute("PRAGMA temp_store = MEMORY")
        except sqlite3.Error as e:
            if _is_disk_full(e, path):
                err: CaptureWriteError = DiskFullError(
                    f"{path}: disk full, cannot create the capture", path)
                raise err from None
            raise CaptureWriteError(f"cannot create the capture {path}: {e}", path) from None
        return conn

    def _unlink_all(self) -> None:
        for p in (self.file, self.file + "-wal", self.file + "-shm", self.file + "-journal"):
            _unlink_regular(p)

    def abandon(self) -> None:
        """Close and delete the file (nothing was recorded: e.g. a probe failed to arm)."""
        self._stop_thread()
        self._finished = True
        self._close_wal_fd()
        try:
            self._conn.close()
        except sqlite3.Error:
            pass
        self._unlink_all()

    def begin_run(
        self,
        run: RunInfo,
        probes: Iterable[ProbeInfo],
        hex_fields: Mapping[str, Collection[str]] | None = None,
        start_ts: int | None = None,
    ) -> int:
        """Write the run and probe rows and start the writer thread; returns the run id."""
        host, kernel, machine = _uname()
        from .. import __version__

        conn = self._conn
        now = time.time()
        if start_ts is None:
            start_ts = time.monotonic_ns() if (run.clock in (None, "mono")) else None
        try:
            conn.execute("BEGIN")
            cur = conn.execute(
                "INSERT INTO runs (status, start_time, updated_time, start_ts, clock, host,"
                " kernel, machine, version, argv, command, backend, buffer_kb, filter, pids,"
                " comm, recorder_pid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    "recording", now, now, start_ts, run.clock, _text(run.host or host),
                    _text(run.kernel or kernel), run.machine or machine,
                    run.version or __version__, _json_or_none(run.argv),
                    _json_or_none(run.command), run.backend, run.buffer_kb, _text(run.filter),
                    _json_or_none(run.pids), _text(run.comm), os.getpid(),
                ),
            )
            self.run_id = int(cur.lastrowid or 0)
            for p in probes:
                self._insert_probe(p)
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback()
            raise self._write_error(e) from None
        self._hex = {k: sorted(v) for k, v in (hex_fields or {}).items()}
        self._last_commit = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="probewatch-capture",
                                        daemon=True)
        self._thread.start()
        return self.run_id

    def _insert_probe(self, p: ProbeInfo) -> int:
        cur = self._conn.execute(
            "INSERT INTO probes (run_id, spec, kind, backend, filter, events, target, symbol,"
            " offset, address, resolved) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (self.run_id, _text(p.spec), p.kind, p.backend, _text(p.filter),
             _json_or_none(p.events), _text(p.target), _text(p.symbol), p.offset, p.address,
             json.dumps([{k: _text(v) for k, v in r.items()} for r in p.resolved])
             if p.resolved else None),
        )
        pid = int(cur.lastrowid or 0)
        self._probe_ids[p.spec] = pid
        return pid

    # -- producer side (any thread)
    def add_many(self, evs: Iterable[Event]) -> None:
        """Queue a batch of events (discarded after a write error)."""
        if self.error is None:
            self._q.extend(evs)

    def backlog(self) -> int:
        """Events queued but not yet written."""
        return len(self._q)

    def wait_backlog(self, low: int | None = None, timeout: float | None = None) -> None:
        """Block until the backlog is at most ``low`` (default: half of max_backlog),
        the writer failed or stopped, or ``timeout`` seconds passed (None: no limit).
        The queue stays bounded only if producers wait here when it is over
        ``max_backlog``."""
        low = self.max_backlog // 2 if low is None else low
        end = None if timeout is None else time.monotonic() + timeout
        while len(self._q) > low and self.error is None:
            if self._thread is None or not self._thread.is_alive():
                break
            if end is not None and time.monotonic() >= end:
                break
            time.sleep(0.002)

    def note_process(self, pid: int, **info: Any) -> None:
        """Add what is known about a process (ppid, comm, exe, argv, exit_code, ...)."""
        self._ctl.append(("proc", (pid, info)))

    # -- the writer thread
    def _loop(self) -> None:
        try:
            while True:
                closing = self._closing.wait(self.interval)
                self._flush()
                if closing:
                    break
        except BaseException as e:  # noqa: BLE001 - every failure stops the recording
            self._rollback()
            err = self._write_error(e)
            self.error = err
            self._q.clear()
            self.add = _discard
            cb = self.on_error
            if cb is not None:
                try:
                    cb(err)
                except Exception:
                    pass

    def _flush(self) -> None:
        """Write everything queued, one transaction per ``chunk`` events (so that one
        transaction never needs more than the disk space kept in reserve)."""
        q = self._q
        ctl = self._ctl
        heartbeat = time.monotonic() - self._last_commit > 1.0
        while q or ctl or heartbeat:
            heartbeat = False
            self._reserve()
            conn = self._conn
            conn.execute("BEGIN")
            total = self.written
            while ctl:
                self._apply_ctl(*ctl.popleft())
            n = min(len(q), self.chunk)
            if n:
                pop = q.popleft
                rows = self._convert([pop() for _ in range(n)])
                conn.execute("SAVEPOINT chunk")
                try:
                    conn.executemany(_INSERT_ROW, rows)
                except UnicodeEncodeError:
                    conn.execute("ROLLBACK TO chunk")
                    conn.executemany(_INSERT_ROW, [_safe_row(r) for r in rows])
                conn.execute("RELEASE chunk")
                total += len(rows)
            if self._dirty:
                procs = self._procs
                conn.executemany(
                    _INSERT_PROC,
                    [_proc_row(self.run_id, pid, procs[pid]) for pid in sorted(self._dirty)],
                )
                self._dirty.clear()
            conn.execute(
                "UPDATE runs SET updated_time = ?, events = ?, first_ts = ?, last_ts = ?"
                " WHERE id = ?",
                (time.time(), total, self._first_ts, self._last_ts, self.run_id),
            )
            conn.execute("COMMIT")
            self.written = total
            self._last_commit = time.monotonic()

    def _reserve(self) -> None:
        """Keep ``reserve`` bytes allocated past the end of the WAL (fallocate with
        KEEP_SIZE) before each transaction. When the file system cannot give them, stop
        *before* it is full: the reserve then still holds the run's closing update."""
        if self._wal_fd == -2 or not self.reserve:
            return
        if self._wal_fd < 0:
            try:
                self._wal_fd = os.open(self.file + "-wal", os.O_WRONLY | os.O_CLOEXEC)
            except OSError:
                return  # not there yet: SQLite creates it with the first write
        try:
            end = os.fstat(self._wal_fd).st_size
            _fallocate_keep_size(self._wal_fd, end, self.reserve)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                free = _free_bytes(self.path)
                where = os.path.dirname(os.path.abspath(self.path))
                raise DiskFullError(
                    f"{self.path}: disk full after {self.written} events ({free // 1024} "
                    f"KiB free on {where}, the recorder stops below "
                    f"{self.reserve // 1024} KiB); recording stopped, {self._kept()}",
                    self.path,
                ) from None
            self._close_wal_fd()
            self._wal_fd = -2  # fallocate not supported here: rely on write errors

    def _close_wal_fd(self) -> None:
        if self._wal_fd >= 0:
            try:
                os.close(self._wal_fd)
            except OSError:
                pass
        self._wal_fd = -1

    def _convert(self, chunk: list[Event]) -> list[tuple[Any, ...]]:
        types = self._types
        seen = self._seen_pids
        dumps = _dumps
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        for ev in chunk:
            per_probe = types.get(ev.probe)
            t = per_probe.get(ev.event) if per_probe is not None else None
            if t is None:
                t = self._new_type(ev)
            append((ev.ts, ev.cpu, ev.pid, ev.tid, ev.comm, t[0], dumps(ev.fields)))
            if ev.pid not in seen:
                self._new_pid(ev)
            if t[1] is not None:
                t[1](ev)
        if rows:
            if self._first_ts is None:
                self._first_ts = rows[0][0]
            self._last_ts = rows[-1][0]
        return rows

    def _new_type(self, ev: Event) -> tuple[int, Callable[[Event], None] | None]:
        probe_id = self._probe_ids.get(ev.probe)
        if probe_id is None:
            probe_id = self._insert_probe(ProbeInfo(ev.probe, events=[ev.event]))
        vt = _value_types(ev.fields)
        cur = self._conn.execute(
            "INSERT INTO event_types (probe_id, name, hex_fields, value_types) VALUES (?,?,?,?)",
            (probe_id, ev.event, json.dumps(self._hex.get(ev.event, [])),
             json.dumps(vt) if vt else None),
        )
        hook = {
            "sched:sched_process_fork": self._on_fork,
            "sched:sched_process_exec": self._on_exec,
            "sched:sched_process_exit": self._on_exit,
        }.get(ev.event)
        t = (int(cur.lastrowid or 0), hook)
        self._types.setdefault(ev.probe, {})[ev.event] = t
        return t

    # -- processes
    def _proc(self, pid: int) -> dict[str, Any]:
        p = self._procs.get(pid)
        if p is None:
            p = self._procs[pid] = {}
        self._dirty.add(pid)
        return p

    def _new_pid(self, ev: Event) -> None:
        pid = ev.pid
        self._seen_pids.add(pid)
        if pid <= 0:
            return
        p = self._proc(pid)
        info = read_proc(pid)
        if info is not None:
            for k, v in info.items():
                p.setdefault(k, v)
            _add_source(p, "proc")
        p.setdefault("comm", ev.comm)

    def _on_fork(self, ev: Event) -> None:
        child = ev.fields.get("child_pid")
        if not isinstance(child, int) or child <= 0:
            return
        try:  # a new thread is not a process: its Tgid differs from its tid
            with open(f"/proc/{child}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"Tgid:"):
                        if int(line[5:]) != child:
                            return
                        break
        except (OSError, ValueError):
            pass
        p = self._proc(child)
        p["ppid"] = ev.pid
        p["start_ts"] = ev.ts
        cc = ev.fields.get("child_comm")
        if isinstance(cc, str) and cc:
            p["comm"] = cc
        _add_source(p, "trace")

    def _on_exec(self, ev: Event) -> None:
        p = self._proc(ev.pid)
        fn = ev.fields.get("filename")
        if isinstance(fn, str) and fn:
            p["exe"] = fn
            # the new argv, if the process still runs that program
            info = read_proc(ev.pid)
            if info and info.get("argv") and os.path.basename(
                str(info.get("exe", "")).removesuffix(" (deleted)")
            ) == os.path.basename(fn):
                p["argv"] = info["argv"]
        p["exec_ts"] = ev.ts
        p["comm"] = ev.comm
        _add_source(p, "trace")

    def _on_exit(self, ev: Event) -> None:
        tid = ev.fields.get("pid", ev.tid)
        if ev.fields.get("group_dead") or tid == ev.pid:
            p = self._proc(ev.pid)
            p["exit_ts"] = ev.ts
            _add_source(p, "trace")

    def _apply_ctl(self, kind: str, payload: Any) -> None:
        if kind in ("alert", "snapshot"):
            self._apply_detect(kind, payload)
            return
        if kind == "proc":
            pid, info = payload
            p = self._proc(pid)
            src = info.pop("source", None)
            for k, v in info.items():
                if v is not None:
                    p[k] = v
            if src:
                _add_source(p, src)

    # -- detection (probewatch watch -o): alerts and the process-table snapshot
    def add_alert(self, row: Mapping[str, Any]) -> None:
        """Insert one row of ``alerts`` (columns by name; ``id`` given): a row with
        the id of one already written replaces it (a repeat count that grew)."""
        self._ctl.append(("alert", dict(row)))

    def note_snapshot(self, procs: Iterable[Mapping[str, Any]]) -> None:
        """Store the process table a run started from (``process_snapshot``): one
        JSON-ready record per process, with at least ``pid`` and ``ppid``."""
        self._ctl.append(("snapshot", [dict(p) for p in procs]))

    def _apply_detect(self, kind: str, payload: Any) -> None:
        conn = self._conn
        if kind == "alert":
            row = {c: payload.get(c) for c in _ALERT_COLS}
            row["run_id"] = self.run_id
            conn.execute(_INSERT_ALERT, [_alert_cell(row[c]) for c in _ALERT_COLS])
            return
        conn.executemany(
            "INSERT OR REPLACE INTO process_snapshot (run_id, pid, ppid, info) VALUES (?,?,?,?)",
            [(self.run_id, int(p["pid"]), p.get("ppid"), obj_json(p)) for p in payload],
        )

    # -- finishing
    def _stop_thread(self) -> None:
        self._closing.set()
        t = self._thread
        if t is not None:
            t.join()
            self._thread = None

    def finish(
        self,
        status: str = "complete",
        message: str | None = None,
        exit_status: int | None = None,
        lost_per_cpu: Mapping[int, int] | None = None,
        lost_per_probe: Mapping[str, int] | None = None,
        counts: Mapping[str, int] | None = None,
        page_missed: int | None = None,
        unknown: int | None = None,
        lost: int | None = None,
    ) -> WriteResult:
        """Write what is still queued, close the run and the file (WAL checkpointed).

        ``lost``: the run's total loss as the backend counts it (default: the sum of
        ``lost_per_cpu``; perf counts losses per probe exactly, its per-ring lost
        records are a cross-check).

        After a write error the run is closed as ``disk-full``/``error`` when the disk
        still allows it; the events committed before the error are kept either way.
        """
        if self._finished:
            raise ProbewatchError(f"{self.path}: capture already finished")
        self._finished = True
        self._stop_thread()
        err = self.error
        if err is not None:
            status = "disk-full" if isinstance(err, DiskFullError) else "error"
            message = str(err)
        conn = self._conn
        if lost is None and lost_per_cpu is not None:
            lost = sum(lost_per_cpu.values())
        if err is not None:  # what is really in the file (the failed batch was rolled back)
            try:
                self.written = conn.execute(
                    "SELECT count(*) FROM event_rows e JOIN event_types t ON t.id = e.type_id"
                    " JOIN probes p ON p.id = t.probe_id WHERE p.run_id = ?", (self.run_id,)
                ).fetchone()[0]
                row = conn.execute(
                    "SELECT min(ts), max(ts) FROM event_rows"
                ).fetchone()
                self._first_ts, self._last_ts = row
            except sqlite3.Error:
                pass
        try:
            conn.execute("BEGIN")
            conn.execute(
                "UPDATE runs SET status = ?, message = ?, end_time = ?, updated_time = ?,"
                " exit_status = ?, events = ?, first_ts = ?, last_ts = ?, lost = ?,"
                " lost_per_cpu = ?, lost_per_probe = ?, page_missed = ?, unknown = ?"
                " WHERE id = ?",
                (
                    status, message, time.time(), time.time(), exit_status, self.written,
                    self._first_ts, self._last_ts, lost,
                    json.dumps({str(k): v for k, v in sorted(lost_per_cpu.items())})
                    if lost_per_cpu is not None else None,
                    json.dumps(dict(lost_per_probe)) if lost_per_probe is not None else None,
                    page_missed, unknown, self.run_id,
                ),
            )
            for spec, n in (counts or {}).items():
                conn.execute(
                    "UPDATE probes SET count = ?, lost = ? WHERE run_id = ? AND spec = ?",
                    (n, (lost_per_probe or {}).get(spec), self.run_id, spec),
                )
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback()
            if err is None:
                err = self._write_error(e)
                self.error = err
        self._close_wal_fd()
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # the WAL keeps the data; the next reader recovers it
        try:
            conn.close()
        except sqlite3.Error:
            pass
        if self.replacing:
            err = self._replace(err)
        size = 0
        for p in ((self.path,) if self.replacing and err else (self.file, self.file + "-wal")):
            try:
                size += os.path.getsize(p)
            except OSError:
                pass
        return WriteResult(self.path, self.run_id, self.written, size,
                           "disk-full" if isinstance(err, DiskFullError) else
                           ("error" if err else status), err)

    def _replace(self, err: CaptureWriteError | None) -> CaptureWriteError | None:
        """Put the finished temporary file in place of the old capture; after a write
        error drop it instead and leave the old capture as it was."""
        path = self.path
        if err is None:
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode):
                    err = CaptureWriteError(
                        f"{path} became {file_kind(st.st_mode)} while recording: not "
                        f"replaced; the new capture is {self.file}", path)
                    self.error = err
                    return err
            except FileNotFoundError:
                pass
            except OSError as e:
                err = CaptureWriteError(f"cannot replace {path}: {e.strerror}; the new "
                                        f"capture is {self.file}", path)
                self.error = err
                return err
            _fsync_path(self.file)
            for sfx in ("-wal", "-shm", "-journal"):  # the old capture's, if any
                _unlink_regular(path + sfx)
            try:
                os.replace(self.file, path)
            except OSError as e:
                err = CaptureWriteError(f"cannot replace {path}: {e.strerror}; the new "
                                        f"capture is {self.file}", path)
                self.error = err
                return err
            for sfx in ("-wal", "-shm"):  # empty after the checkpoint; not ours any more
                _unlink_regular(self.file + sfx)
            _fsync_path(os.path.dirname(os.path.abspath(path)), directory=True)
            self.file = path
            return None
        self._unlink_all()
        self.written = 0
        return err

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _kept(self) -> str:
        if self.replacing:
            return (f"the new recording is dropped and the existing {self.path} is left "
                    "unchanged")
        return "the events written so far are kept"

    def _write_error(self, e: BaseException) -> CaptureWriteError:
        if isinstance(e, CaptureWriteError):
            return e
        if _is_disk_full(e, self.path):
            return DiskFullError(
                f"{self.path}: disk full after {self.written} events; recording stopped, "
                f"{self._kept()}",
                self.path,
            )
        return CaptureWriteError(
            f"{self.path}: writing the capture failed after {self.written} events ({e}); "
            f"recording stopped, {self._kept()}",
            self.path,
        )


_libc: Any = None


def _fallocate_keep_size(fd: int, offset: int, length: int) -> None:
    """fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, length): allocate, size unchanged."""
    global _libc
    if _libc is None:
        import ctypes
        import ctypes.util

        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if _libc.fallocate(fd, 1, offset, length) != 0:
        import ctypes

        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def _free_bytes(path: str) -> int:
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
        return st.f_bavail * st.f_frsize
    except OSError:
        return 0


def _discard(ev: Event) -> None:
    return None


def _add_source(p: dict[str, Any], src: str) -> None:
    cur = p.get("source")
    if not cur:
        p["source"] = src
    elif src not in cur.split(","):
        p["source"] = cur + "," + src


def _proc_row(run_id: int, pid: int, p: Mapping[str, Any]) -> tuple[Any, ...]:
    argv = p.get("argv")
    return (
        run_id, pid, p.get("ppid"), _text(p.get("comm")), _text(p.get("exe")),
        _json_or_none(argv),
        p.get("start_ts"), p.get("exec_ts"), p.get("exit_ts"), p.get("start_time"),
        p.get("exit_code"), p.get("source"),
    )


def _text(v: Any) -> Any:
    """A str that SQLite can store: bytes that were not UTF-8 (argv, paths and comm
    arrive with surrogate escapes) become visible ``\\xNN`` escapes."""
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            try:
                return v.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            except UnicodeEncodeError:  # surrogates that are not escaped bytes
                return v.encode("utf-8", "backslashreplace").decode("utf-8")
    return v


def _alert_cell(v: Any) -> Any:
    """An ``alerts`` column value: text that SQLite can store. A string in probewatch's
    JSON form (``{"b64": ...}``, as :func:`probewatch.detect.alerts.jsonable` gives
    the image and command line) is stored as text with ``\\xNN`` for the bytes that
    are not UTF-8, like the ``processes`` columns (the exact string is in ``alert``)."""
    if is_b64(v):
        v = from_json(v)
    elif isinstance(v, dict | list):
        return obj_json(v)
    return _text(v)


def _json_or_none(v: Sequence[Any] | None) -> str | None:
    return None if v is None else json.dumps([_text(x) for x in v])


def _statements(script: str) -> list[str]:
    """Split the schema into statements (no ';' inside them; '--' comments dropped)."""
    lines = [re.sub(r"--.*$", "", ln) for ln in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
