"""Damaged captures, unsafe capture outputs and ELF inputs that are not regular files
(no kernel needed: the captures are written here with CaptureWriter).

What may escape from reading a capture is a CaptureError whose message is one line
(``PATH: damaged capture: ...`` for a damaged one); from the CLI, that line and exit
status 1. Never a UnicodeDecodeError, sqlite3 error, KeyError or TypeError.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probewatch.capture import Capture, QueryRefused
from probewatch.cli.main import main
from probewatch.errors import NotFound
from probewatch.event import Event
from probewatch.files import open_regular
from probewatch.sinks.capture import (
    SCHEMA_VERSION,
    CaptureError,
    CaptureWriteError,
    CaptureWriter,
    ProbeInfo,
    RunInfo,
    TruncatedCaptureError,
    check_output_path,
)

SPEC = "t:syscalls:sys_enter_openat"


def _write(path: Path, n: int = 200) -> None:
    w = CaptureWriter(str(path))
    w.begin_run(RunInfo(backend="test", clock="mono", argv=["probewatch", "record"],
                        command=["cat", "x"]),
                [ProbeInfo(SPEC, kind="tracepoint", events=["syscalls:sys_enter_openat"])])
    for i in range(n):
        w.add(Event(1000 + i, i % 2, 100 + i % 3, 100 + i % 3, f"cat{i % 3}",
                    "syscalls:sys_enter_openat", SPEC,
                    {"dfd": -100, "filename": f"/etc/f{i}", "flags": i, "blob": bytes([i % 256])}))
    w.note_process(100, ppid=1, comm="cat0", exe="/usr/bin/cat", argv=["cat", "x"],
                   source="command")
    res = w.finish(lost_per_cpu={0: 0, 1: 0}, exit_status=0)
    assert res.error is None and res.events == n


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("good") / "good.db"
    _write(p)
    return p


@pytest.fixture
def cap(good: Path, tmp_path: Path) -> Path:
    p = tmp_path / "c.db"
    shutil.copy(good, p)
    return p


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _read_all(p: Path) -> None:
    with Capture(p) as c:
        c.runs()
        c.probes()
        c.processes()
        c.stats()
        c.count()
        list(c.events())


def _edit(p: Path, *sql: str) -> None:
    c = sqlite3.connect(p)
    c.execute("PRAGMA writable_schema = ON")
    for s in sql:
        c.execute(s)
    c.commit()
    c.close()


# ------------------------------------------------------------------ targeted damage

DAMAGE: dict[str, tuple[str, ...]] = {
    "blob start_time": ("UPDATE runs SET start_time = X'00ff'",),
    "null start_time by type": ("UPDATE runs SET start_time = 'soon'",),
    "text lost_per_cpu": ("UPDATE runs SET lost_per_cpu = '[1, 2]'",),
    "not utf-8 host": ("UPDATE runs SET host = CAST(X'ff41' AS TEXT)",),
    "not utf-8 comm": ("UPDATE event_rows SET comm = CAST(X'c328' AS TEXT) WHERE id = 5",),
    "blob comm": ("UPDATE event_rows SET comm = X'41' WHERE id = 7",),
    "fields a list": ("UPDATE event_rows SET fields = '[1, 2]' WHERE id = 3",),
    "fields not json": ("UPDATE event_rows SET fields = '{\"a\": ' WHERE id = 3",),
    "fields a number": ("UPDATE event_rows SET fields = 7 WHERE id = 3",),
    "ts text": ("UPDATE event_rows SET ts = 'x' WHERE id = 9",),
    "type missing": ("UPDATE event_rows SET type_id = 99 WHERE id = 2",),
    "probe spec blob": ("UPDATE probes SET spec = X'00'",),
    "hex_fields not a list": ("UPDATE event_types SET hex_fields = '{\"a\": 1}'",),
    "process exe blob": ("UPDATE processes SET exe = X'ff'",),
    "column renamed": ("UPDATE sqlite_master SET sql = replace(sql, 'target ', 'targex ')"
                       " WHERE name = 'probes'",),
    "meta format": ("UPDATE meta SET value = 'other' WHERE key = 'format'",),
    "meta gone": ("DELETE FROM meta",),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_damage_is_one_documented_error(cap: Path, name: str) -> None:
    _edit(cap, *DAMAGE[name])
    with pytest.raises(TruncatedCaptureError, match="damaged capture") as ei:
        _read_all(cap)
    assert "\n" not in str(ei.value) and str(cap) in str(ei.value)
    for argv in (["stats", str(cap)], ["report", str(cap)], ["export", str(cap), "--jsonl", "-"],
                 ["stats", str(cap), "--json"]):
        rc, _, err = _cli(*argv)
        if rc == 0:
            continue  # this reader does not look at the damaged part
        assert rc == 1, (argv, err)
        assert err.count("\n") == 1 and err.startswith("probewatch: error: "), err
        assert "damaged capture" in err, err


def test_report_and_export_see_the_damage(cap: Path) -> None:
    _edit(cap, "UPDATE event_rows SET fields = '[1]' WHERE id = 150")
    rc, out, err = _cli("report", str(cap), "--json")
    assert rc == 1 and "damaged capture: " in err, err
    assert "event fields are not an object" in err, err
    rc, _, err = _cli("query", str(cap), "select count(*) from events")
    assert rc == 0, err  # SQL reads rows, not what they mean


def test_query_on_text_that_is_not_utf8(cap: Path) -> None:
    _edit(cap, "UPDATE event_rows SET comm = CAST(X'ff' AS TEXT) WHERE id = 4")
    rc, _, err = _cli("query", str(cap), "select comm from events")
    assert rc == 1 and "damaged capture: " in err and "UTF-8" in err, err
    assert err.count("\n") == 1


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_raises_only_capture_errors(
    good: Path, tmp_path: Path, data: st.DataObject
) -> None:
    raw = bytearray(good.read_bytes())
    for _ in range(data.draw(st.integers(1, 30), label="bytes changed")):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    m = tmp_path / "m.db"
    m.write_bytes(bytes(raw))
    try:
        _read_all(m)
    except CaptureError as e:
        assert "\n" not in str(e)
    except NotFound:
        pytest.fail("an existing file is reported missing")


# ------------------------------------------------------------------ query


@pytest.mark.parametrize("sql", [
    "ATTACH DATABASE '{d}/a.db' AS a",
    "VACUUM INTO '{d}/v.db'",
    "PRAGMA user_version = 3",
    "PRAGMA writable_schema = 1",
    "CREATE TEMP VIEW v AS SELECT 1",
    "SELECT load_extension('{d}/x.so')",
])
def test_query_refuses_what_touches_files_or_writes(cap: Path, tmp_path: Path, sql: str) -> None:
    before = sorted(os.listdir(tmp_path))
    with Capture(cap) as c, pytest.raises(QueryRefused, match="query refused"):
        list(c.query(sql.format(d=tmp_path)).rows)
    assert sorted(os.listdir(tmp_path)) == before


def test_query_allows_reading(cap: Path) -> None:
    with Capture(cap) as c:
        assert list(c.query("SELECT count(*) FROM events").rows) == [(200,)]
        assert ("filename",) in [
            (r[0],) for r in c.query("SELECT key FROM json_each("
                                     "(SELECT fields FROM events LIMIT 1))").rows]
        names = [r[1] for r in c.query("PRAGMA table_info(events)").rows]
        assert "fields" in names
        assert list(c.query("PRAGMA user_version").rows) == [(SCHEMA_VERSION,)]


# ------------------------------------------------------------------ capture outputs


def _make(kind: str, d: Path) -> str:
    p = d / kind
    makers: dict[str, Callable[[], None]] = {
        "fifo": lambda: os.mkfifo(p),
        "dir": lambda: p.mkdir(),
        "symlink": lambda: os.symlink(d / "target.db", p),
        "socket": lambda: _socket(p),
    }
    makers[kind]()
    return str(p)


def _socket(p: Path) -> None:
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()


@pytest.mark.parametrize("kind", ["fifo", "dir", "symlink", "socket"])
def test_outputs_that_are_not_regular_files_are_refused(tmp_path: Path, kind: str) -> None:
    path = _make(kind, tmp_path)
    before = sorted(os.listdir(tmp_path))
    for force in (False, True):
        with pytest.raises(CaptureWriteError, match="not a regular file"):
            check_output_path(path, force)
        with pytest.raises(CaptureWriteError, match="not a regular file"):
            CaptureWriter(path, force=force)
    assert sorted(os.listdir(tmp_path)) == before


def test_device_nodes_are_refused() -> None:
    for dev in ("/dev/null", "/dev/full", "/dev/zero"):
        with pytest.raises(CaptureWriteError, match="is a character device"):
            check_output_path(dev, True)


def test_replace_keeps_the_old_file_until_finish(cap: Path) -> None:
    data = cap.read_bytes()
    w = CaptureWriter(str(cap), force=True)
    assert w.replacing and w.file != str(cap)
    assert os.path.dirname(w.file) == str(cap.parent)
    assert os.path.basename(w.file).startswith(".c.db.")
    w.begin_run(RunInfo(backend="test"), [ProbeInfo(SPEC)])
    assert cap.read_bytes() == data  # the old capture, as it was
    w.finish()
    assert os.listdir(cap.parent) == ["c.db"]
    with Capture(cap) as c:
        assert c.count() == 0 and c.runs()[0].backend == "test"


def test_abandoned_replace_keeps_the_old_file(cap: Path) -> None:
    data = cap.read_bytes()
    w = CaptureWriter(str(cap), force=True)
    w.abandon()
    assert cap.read_bytes() == data and os.listdir(cap.parent) == ["c.db"]


def test_new_file_ignores_stale_wal(tmp_path: Path, good: Path) -> None:
    # a -wal left by a deleted capture must not be taken as the new file's journal
    p = tmp_path / "n.db"
    (tmp_path / "n.db-wal").write_bytes(b"\0" * 5000)
    _write(p, 10)
    with Capture(p) as c:
        assert c.count() == 10


def test_non_utf8_metadata_is_stored(tmp_path: Path) -> None:
    p = tmp_path / "u.db"
    bad = os.fsdecode(b"\xff\xfe")
    w = CaptureWriter(str(p))
    w.begin_run(RunInfo(backend="test", argv=["probewatch", "-c", bad], command=[bad],
                        comm=bad, filter=f'comm == "{bad}"'), [ProbeInfo(SPEC)])
    w.note_process(5, comm=bad, exe="/tmp/" + bad, argv=[bad], source="command")
    assert w.finish().error is None
    with Capture(p) as c:
        r = c.runs()[0]
        assert r.comm == "\\xff\\xfe" and r.command == ["\\xff\\xfe"]
        assert c.processes()[0]["exe"] == "/tmp/\\xff\\xfe"


# ------------------------------------------------------------------ ELF inputs


def test_open_regular(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "empty").write_bytes(b"")
    cases = {str(fifo): "is a FIFO", str(tmp_path): "is a directory",
             "/dev/zero": "is a character device", "/proc/self/mem": "is empty",
             str(tmp_path / "empty"): "is empty", str(tmp_path / "nothing"): "no such file"}
    for path, msg in cases.items():
        with pytest.raises(NotFound, match=msg):
            open_regular(path)
    with open_regular("/proc/self/exe") as f:
        assert f.read(4) == b"\x7fELF"
