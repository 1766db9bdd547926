"""The capture store and the Capture API on Event records made here (no kernel needed)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import missing, need_module, need_root  # tests/conftest.py
from probewatch.capture import Capture, MissingDependency
from probewatch.cli.main import main
from probewatch.errors import NotFound, ProbewatchError
from probewatch.event import Event
from probewatch.sinks.capture import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    CaptureError,
    CaptureVersionError,
    CaptureWriteError,
    CaptureWriter,
    NotACaptureError,
    ProbeInfo,
    RunInfo,
    TruncatedCaptureError,
)
from probewatch.sinks.jsonl import event_json

SRC = Path(__file__).resolve().parents[2] / "src"

GETPPID = "t:syscalls:sys_enter_getppid"
OPENAT = "t:syscalls:sys_enter_openat"
RAW = "t:raw_syscalls:sys_enter"
SCHED = "t:sched:sched_process_*"
HEX = {"syscalls:sys_enter_openat": {"filename"}}


def make_events() -> list[Event]:
    """A mix of every value type a backend produces, three probes, three processes."""
    evs = []
    ts = 1_000_000_000
    for i in range(300):
        ts += 1000
        evs.append(Event(ts, i % 2, 100, 100, "getppid_n", "syscalls:sys_enter_getppid",
                         GETPPID, {"__syscall_nr": 110}))
    for i in range(20):
        ts += 1000
        evs.append(Event(ts, 1, 200, 201 + i % 2, "cät thread", "syscalls:sys_enter_openat",
                         OPENAT, {"__syscall_nr": 257, "dfd": -100,
                                  "filename": 0x7FFD0000 + i, "flags": 0, "mode": 0}))
        ts += 1000
        evs.append(Event(ts, 0, 300, 300, "raw", "raw_syscalls:sys_enter", RAW,
                         {"id": 0, "args": (3, 140000000000 + i, 4096, 0, 0, 0),
                          "blob": bytes([i, 255, 0]), "name": "", "big": 2**64 - 1,
                          "neg": -(2**63)}))
    ts += 1000
    evs.append(Event(ts, 0, 400, 400, "sh", "sched:sched_process_fork", SCHED,
                     {"parent_comm": "sh", "parent_pid": 400, "child_comm": "sh",
                      "child_pid": 999_991}))
    ts += 1000
    evs.append(Event(ts, 1, 999_991, 999_991, "true", "sched:sched_process_exec", SCHED,
                     {"filename": "/bin/true", "pid": 999_991, "old_pid": 999_991}))
    ts += 1000
    evs.append(Event(ts, 1, 999_991, 999_991, "true", "sched:sched_process_exit", SCHED,
                     {"comm": "true", "pid": 999_991, "prio": 120, "group_dead": True}))
    ts += 1000
    evs.append(Event(ts, 0, 100, 100, "getppid_n", "syscalls:sys_enter_getppid", GETPPID, {}))
    return evs


PROBES = [
    ProbeInfo(GETPPID, kind="tracepoint", backend="test", events=["syscalls:sys_enter_getppid"],
              target="syscalls:sys_enter_getppid"),
    ProbeInfo(OPENAT, kind="tracepoint", backend="test", events=["syscalls:sys_enter_openat"]),
    ProbeInfo(RAW, kind="tracepoint", backend="test", events=["raw_syscalls:sys_enter"]),
    ProbeInfo(SCHED, kind="tracepoint", backend="test",
              events=["sched:sched_process_fork", "sched:sched_process_exec",
                      "sched:sched_process_exit"]),
]


def write_capture(path: Path, evs: list[Event], **finish: Any) -> None:
    w = CaptureWriter(str(path))
    w.begin_run(RunInfo(backend="test", clock="mono", argv=["probewatch", "record", "x"],
                        command=["getppid_n", "300"]), PROBES, hex_fields=HEX)
    for ev in evs:
        w.add(ev)
    finish.setdefault("lost_per_cpu", {0: 0, 1: 7})
    finish.setdefault("exit_status", 0)
    res = w.finish(**finish)
    assert res.error is None
    assert res.events == len(evs)


@pytest.fixture()
def events() -> list[Event]:
    return make_events()


@pytest.fixture()
def cap_path(tmp_path: Path, events: list[Event]) -> Path:
    p = tmp_path / "run.db"
    write_capture(p, events)
    return p


# ------------------------------------------------------------------ round trip


def test_round_trip_is_exact(cap_path: Path, events: list[Event]) -> None:
    with Capture(cap_path) as cap:
        back = list(cap.events())
    assert back == events  # Event.__eq__: every slot, bytes and tuples included
    assert [type(v) for e in back for v in e.fields.values()] == [
        type(v) for e in events for v in e.fields.values()
    ]
    assert [event_json(e) for e in back] == [event_json(e) for e in events]


def test_report_json_equals_what_the_store_was_fed(
    cap_path: Path, events: list[Event], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(cap_path), "--json"]) == 0
    out, err = capsys.readouterr()

    def plain(v: Any) -> Any:  # the documented JSON forms: bytes and tuples as lists
        return list(v) if isinstance(v, bytes | tuple) else v

    assert [json.loads(x) for x in out.splitlines()] == [
        {"ts": e.ts, "cpu": e.cpu, "pid": e.pid, "tid": e.tid, "comm": e.comm,
         "event": e.event, "probe": e.probe, "fields": {k: plain(v) for k, v in e.fields.items()}}
        for e in events
    ]
    # one line written out by hand: key order, compact separators, no escaping of ä
    assert out.splitlines()[300] == (
        '{"ts":1000301000,"cpu":1,"pid":200,"tid":201,"comm":"cät thread",'
        '"event":"syscalls:sys_enter_openat","probe":"t:syscalls:sys_enter_openat",'
        '"fields":{"__syscall_nr":257,"dfd":-100,"filename":2147287040,"flags":0,"mode":0}}')
    assert out.splitlines()[301] == (
        '{"ts":1000302000,"cpu":0,"pid":300,"tid":300,"comm":"raw",'
        '"event":"raw_syscalls:sys_enter","probe":"t:raw_syscalls:sys_enter",'
        '"fields":{"id":0,"args":[3,140000000000,4096,0,0,0],"blob":[0,255,0],"name":"",'
        '"big":18446744073709551615,"neg":-9223372036854775808}}')
    summary = json.loads(err.strip().splitlines()[-1])["summary"]
    assert summary["total"] == len(events)
    assert summary["lost"] == 7
    assert summary["lost_per_cpu"] == {"0": 0, "1": 7}


def test_report_text_equals_trace_text(
    cap_path: Path, events: list[Event], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(cap_path)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    # expected lines written out by hand (what `trace` prints for the same events):
    # pointer fields in hex, bytes as hex, arrays as tuples, strings quoted when empty
    assert len(lines) == 1 + len(events)
    assert lines[0] == "        TIME(s) CPU   COMM             PID/TID       EVENT"
    assert lines[1] == ("       1.000001 [000] getppid_n        100/100       "
                        "syscalls:sys_enter_getppid __syscall_nr=110")
    assert lines[301] == ("       1.000301 [001] cät thread       200/201       "
                          "syscalls:sys_enter_openat __syscall_nr=257 dfd=-100 "
                          "filename=0x7ffd0000 flags=0 mode=0")
    assert lines[302] == ("       1.000302 [000] raw              300/300       "
                          "raw_syscalls:sys_enter id=0 args=(3, 140000000000, 4096, 0, 0, 0) "
                          "blob=00ff00 name='' big=18446744073709551615 "
                          "neg=-9223372036854775808")
    assert lines[-4:] == [
        "       1.000341 [000] sh               400/400       sched:sched_process_fork "
        "parent_comm=sh parent_pid=400 child_comm=sh child_pid=999991",
        "       1.000342 [001] true             999991/999991 sched:sched_process_exec "
        "filename=/bin/true pid=999991 old_pid=999991",
        "       1.000343 [001] true             999991/999991 sched:sched_process_exit "
        "comm=true pid=999991 prio=120 group_dead=True",
        "       1.000344 [000] getppid_n        100/100       syscalls:sys_enter_getppid ",
    ]
    assert err.startswith(
        "344 events (t:syscalls:sys_enter_getppid: 301, t:syscalls:sys_enter_openat: 20, "
        "t:raw_syscalls:sys_enter: 20, t:sched:sched_process_*: 3) in ")
    assert ", lost 7 (per CPU: cpu1=7)\n" in err


def test_report_filters(cap_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def lines(*args: str) -> list[dict[str, Any]]:
        assert main(["report", str(cap_path), "--json", *args]) == 0
        return [json.loads(x) for x in capsys.readouterr().out.splitlines()]

    assert len(lines("-p", "100")) == 301
    assert len(lines("-p", "100", "-p", "300")) == 321
    assert {e["comm"] for e in lines("-c", "cät thread")} == {"cät thread"}
    assert len(lines("-c", "cät*")) == 20
    assert len(lines("--event", "sys_enter_*")) == 321  # no ':' -> matches the name
    assert len(lines("--event", "syscalls:*")) == 321
    assert len(lines("--event", "sched:sched_process_e*")) == 2
    assert len(lines("--probe", RAW)) == 20
    assert len(lines("--event", "nosuch:*")) == 0
    assert len(lines("-n", "5")) == 5
    assert len(lines("-p", "100", "--event", "*openat")) == 0


def test_capture_api(cap_path: Path, events: list[Event]) -> None:
    with Capture(str(cap_path)) as cap:
        assert cap.count() == len(events)
        assert cap.count(pid=[200], tid=201) == 10
        assert [e.tid for e in cap.events(pid=200, limit=3)] == [201, 202, 201]
        [run] = cap.runs()
        assert run.status == "complete" and run.complete
        assert run.backend == "test" and run.clock == "mono"
        assert run.command == ["getppid_n", "300"]
        assert run.exit_status == 0
        assert run.lost == 7 and run.lost_per_cpu == {"0": 0, "1": 7}
        assert run.kernel == os.uname().release
        assert run.recorder_pid == os.getpid()
        assert run.events == len(events)
        assert run.first_ts == events[0].ts and run.last_ts == events[-1].ts
        d = json.loads(json.dumps(run.to_dict()))
        assert d["status"] == "complete" and d["backend"] == "test" and d["clock"] == "mono"
        assert d["command"] == ["getppid_n", "300"] and d["exit_status"] == 0
        assert d["events"] == 344 and d["lost"] == 7 and d["lost_per_cpu"] == {"0": 0, "1": 7}
        assert d["first_ts"] == 1_000_001_000 and d["last_ts"] == 1_000_344_000
        probes = cap.probes()
        assert [p["spec"] for p in probes] == [p.spec for p in PROBES]
        assert probes[3]["events"] == PROBES[3].events
        assert cap.hex_fields()["syscalls:sys_enter_openat"] == {"filename"}
        procs = {p["pid"]: p for p in cap.processes()}
        child = procs[999_991]
        assert child["ppid"] == 400 and child["exe"] == "/bin/true"
        assert child["start_ts"] == events[-4].ts
        assert child["exec_ts"] == events[-3].ts
        assert child["exit_ts"] == events[-2].ts
        assert "trace" in child["source"]
        assert set(procs) >= {100, 200, 300, 400, 999_991}


def test_stats(cap_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Capture(cap_path) as cap:
        st = cap.stats()
    assert st.events == 344
    assert st.per_probe == {GETPPID: 301, OPENAT: 20, RAW: 20, SCHED: 3}
    assert st.per_event["sched:sched_process_exec"] == 1
    assert [(p.pid, p.events) for p in st.per_process[:2]] == [(100, 301), (200, 20)]
    assert st.per_process[0].comm == "getppid_n"
    assert st.lost == 7 and st.status == "complete"
    assert st.span == pytest.approx((344 - 1) * 1000 / 1e9)
    assert main(["stats", str(cap_path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["per_probe"][GETPPID] == 301 and d["schema"] == SCHEMA_VERSION
    assert main(["stats", str(cap_path), "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "status     complete" in out and "4 more" in out
    assert f"{301:>10}  {GETPPID}" in out


def test_query(cap_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql = ("SELECT comm, count(*) AS n FROM events GROUP BY comm ORDER BY n DESC, comm")
    assert main(["query", str(cap_path), sql]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["comm", "n"]
    assert lines[2].split() == ["getppid_n", "301"]
    assert err.strip() == "(5 rows)"
    assert main(["query", str(cap_path), "SELECT json_extract(fields, '$.filename') AS f "
                 "FROM events WHERE event = 'sched:sched_process_exec'", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"f": "/bin/true"}


@pytest.mark.parametrize("sql", [
    "DELETE FROM event_rows",
    "INSERT INTO meta VALUES ('x', 'y')",
    "DROP TABLE runs",
    "PRAGMA user_version = 7",
])
def test_query_is_read_only(cap_path: Path, sql: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = cap_path.read_bytes()
    assert main(["query", str(cap_path), sql]) == 1
    err = capsys.readouterr().err
    assert err.startswith("probewatch: error: query refused:"), err
    assert "Traceback" not in err
    assert cap_path.read_bytes() == before
    with Capture(cap_path) as cap:
        assert cap.count() == 344


def test_query_errors_are_clear(cap_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", str(cap_path), "SELEC nonsense"]) == 1
    assert "syntax error" in capsys.readouterr().err


def test_reading_leaves_no_files_behind(cap_path: Path) -> None:
    with Capture(cap_path) as cap:
        list(cap.events())
    assert sorted(os.listdir(cap_path.parent)) == ["run.db"]


# ------------------------------------------------------------------ the file


def test_file_mode_schema_and_header(cap_path: Path) -> None:
    assert stat.S_IMODE(os.stat(cap_path).st_mode) == 0o600
    c = sqlite3.connect(cap_path)
    try:
        # the documented values (README: schema version 3, application_id 0x50574350
        # = "PWCP"), not the module's constants
        assert SCHEMA_VERSION == 3 and APPLICATION_ID == 0x50574350
        assert c.execute("PRAGMA user_version").fetchone()[0] == 3
        assert c.execute("PRAGMA application_id").fetchone()[0] == 0x50574350
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        meta = dict(c.execute("SELECT key, value FROM meta"))
        assert meta["format"] == "probewatch-capture" and meta["schema"] == "3"
        names = {r[0] for r in c.execute("SELECT name FROM sqlite_schema")}
        assert {"runs", "probes", "event_types", "event_rows", "events", "processes",
                "meta"} <= names
        row = c.execute("SELECT ts, cpu, pid, tid, comm, probe, event, fields FROM events "
                        "ORDER BY id LIMIT 1").fetchone()
        assert row[4:] == ("getppid_n", GETPPID, "syscalls:sys_enter_getppid",
                           '{"__syscall_nr":110}')
    finally:
        c.close()


def test_wal_while_recording_and_mode(tmp_path: Path) -> None:
    p = tmp_path / "live.db"
    w = CaptureWriter(str(p), interval=0.02)
    w.begin_run(RunInfo(backend="test"), PROBES[:1])
    try:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
        for ev in make_events()[:10]:
            w.add(ev)
        deadline = time.monotonic() + 5
        while w.written < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert w.written == 10
        assert (tmp_path / "live.db-wal").exists()
        assert stat.S_IMODE(os.stat(str(p) + "-wal").st_mode) == 0o600
        # a reader sees the committed events while the recording goes on
        with Capture(p) as cap:
            assert cap.count() == 10
            assert cap.runs()[0].status == "recording"  # its recorder (we) is alive
    finally:
        w.finish()
    assert sorted(os.listdir(tmp_path)) == ["live.db"]


def test_existing_file_needs_force(cap_path: Path) -> None:
    with pytest.raises(CaptureWriteError, match="exists.*--force"):
        CaptureWriter(str(cap_path))
    w = CaptureWriter(str(cap_path), force=True)
    w.begin_run(RunInfo(backend="test"), PROBES[:1])
    w.finish()
    with Capture(cap_path) as cap:
        assert cap.count() == 0


def test_abandon_removes_the_file(tmp_path: Path) -> None:
    p = tmp_path / "x.db"
    w = CaptureWriter(str(p))
    w.abandon()
    assert not p.exists() and os.listdir(tmp_path) == []


def test_cannot_create(tmp_path: Path) -> None:
    with pytest.raises(CaptureWriteError, match="cannot create .*nodir"):
        CaptureWriter(str(tmp_path / "nodir" / "x.db"))


# ------------------------------------------------------------------ bad files


def _cli_error(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    for cmd in (["report"], ["stats"], ["query", "SELECT 1"], ["export", "--jsonl", "-"]):
        argv = [cmd[0], str(path), *cmd[1:]]
        assert main(argv) == 1, argv
        out, err = capsys.readouterr()
        assert "Traceback" not in err and err.startswith("probewatch: error: "), err
        assert str(path) in err
    return err


def test_truncated_file(cap_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    size = cap_path.stat().st_size
    with open(cap_path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(TruncatedCaptureError, match="truncated") as ei:
        Capture(cap_path)
    assert ei.value.path == str(cap_path)
    assert "truncated" in _cli_error(cap_path, capsys)


def test_truncated_inside_the_header(cap_path: Path) -> None:
    with open(cap_path, "r+b") as f:
        f.truncate(60)
    with pytest.raises(TruncatedCaptureError, match="truncated"):
        Capture(cap_path)


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.db"
    p.write_bytes(b"")
    with pytest.raises(TruncatedCaptureError, match="empty"):
        Capture(p)


def test_damaged_pages(cap_path: Path) -> None:
    data = bytearray(cap_path.read_bytes())
    for off in range(8192, len(data), 4096):  # wreck every page header after page 2
        data[off : off + 8] = b"\xff" * 8
    cap_path.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match="truncated or damaged"):
        with Capture(cap_path) as cap:
            list(cap.events())


def test_not_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("this is not a capture\n" * 50)
    with pytest.raises(NotACaptureError, match="not an SQLite database"):
        Capture(p)
    assert "not a probewatch capture" in _cli_error(p, capsys)


def test_foreign_sqlite(tmp_path: Path) -> None:
    p = tmp_path / "other.sqlite"
    c = sqlite3.connect(p)
    c.execute("CREATE TABLE t (x)")
    c.commit()
    c.close()
    with pytest.raises(NotACaptureError, match="SQLite database but not a probewatch capture"):
        Capture(p)


def test_newer_schema(cap_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = sqlite3.connect(cap_path)
    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    c.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),))
    c.commit()
    c.close()
    with pytest.raises(CaptureVersionError, match="newer probewatch.*upgrade"):
        Capture(cap_path)
    assert "newer probewatch" in _cli_error(cap_path, capsys)


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(NotFound):
        Capture(tmp_path / "nope.db")
    assert main(["stats", str(tmp_path / "nope.db")]) == 1
    assert "no such capture file" in capsys.readouterr().err


def test_errors_are_distinct() -> None:
    kinds = [NotACaptureError, TruncatedCaptureError, CaptureVersionError]
    for k in kinds:
        assert issubclass(k, CaptureError) and issubclass(k, ProbewatchError)
        # none is a kind of another: `except TruncatedCaptureError` catches only that
        assert [o for o in kinds if o is not k and issubclass(k, o)] == []


# ------------------------------------------------------------------ crash safety

_WRITER = textwrap.dedent("""
    import os, sys, time
    from probewatch.event import Event
    from probewatch.sinks.capture import CaptureWriter, ProbeInfo, RunInfo
    w = CaptureWriter(sys.argv[1])
    w.begin_run(RunInfo(backend="test"), [ProbeInfo("t:x:y")])
    print("ready", flush=True)
    i = 0
    while True:
        for _ in range(100):
            w.add(Event(i, 0, 1, 1, "w", "x:y", "t:x:y", {"t": time.monotonic_ns()}))
            i += 1
        time.sleep(0.005)
""")


def test_sigkill_loses_at_most_the_last_batch(tmp_path: Path) -> None:
    p = tmp_path / "killed.db"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(p)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    killed_at = time.monotonic_ns()
    proc.kill()
    proc.wait()
    assert (tmp_path / "killed.db-wal").exists()
    with Capture(p) as cap:
        evs = list(cap.events())
        [run] = cap.runs()
        st = cap.stats()
    assert run.status == "unfinished" and "killed or crashed" in (run.message or "")
    assert run.end_time is None and run.lost is None
    assert len(evs) > 1000
    assert [e.ts for e in evs] == list(range(len(evs)))  # no gap: whole batches only
    assert evs[-1].fields["t"] >= killed_at - 1_000_000_000
    assert st.events == len(evs) and st.status == "unfinished"


# ------------------------------------------------------------------ full disk


@pytest.mark.integration  # mounts a tmpfs
def test_disk_full_keeps_what_was_written(tmp_path: Path) -> None:
    need_root("mounting a tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        missing(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        p = mnt / "full.db"
        w = CaptureWriter(str(p), interval=0.02, chunk=1000)
        errors: list[CaptureWriteError] = []
        w.on_error = errors.append
        w.begin_run(RunInfo(backend="test"), PROBES[:1])
        ev_fields = {"pad": "x" * 50}
        deadline = time.monotonic() + 30
        i = 0
        while w.error is None and time.monotonic() < deadline:
            for _ in range(1000):
                w.add(Event(i, 0, 1, 1, "w", "syscalls:sys_enter_getppid", GETPPID, ev_fields))
                i += 1
            time.sleep(0.005)
        assert w.error is not None and errors == [w.error]
        assert "disk full" in str(w.error) and str(p) in str(w.error)
        res = w.finish()
        assert res.status == "disk-full" and res.events > 0
        with Capture(p) as cap:
            [run] = cap.runs()
            assert run.status == "disk-full" and "disk full" in (run.message or "")
            assert cap.count() == res.events
            assert [e.ts for e in cap.events()] == list(range(res.events))
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# ------------------------------------------------------------------ pandas, help


def test_to_pandas_without_pandas(cap_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with Capture(cap_path) as cap, pytest.raises(MissingDependency, match="pip install pandas"):
        cap.to_pandas()


def test_to_pandas(cap_path: Path) -> None:
    need_module("pandas")
    with Capture(cap_path) as cap:
        df = cap.to_pandas(pid=100)
        assert list(df.columns) == ["ts", "cpu", "pid", "tid", "comm", "event", "probe",
                                    "fields"]
        assert len(df) == 301 and df["fields"].iloc[0] == {"__syscall_nr": 110}
        wide = cap.to_pandas(event="sys_enter_openat", expand_fields=True)
        assert "filename" in wide.columns and len(wide) == 20
        assert cap.to_pandas(event="nosuch").empty


@pytest.mark.parametrize("cmd", ["record", "report", "stats", "query", "export"])
def test_help_has_examples(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main([cmd, "-h"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"probewatch {cmd}" in out


def test_record_count_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["record", "--count", GETPPID, "-o", str(tmp_path / "x.db")]) == 1
    assert "--count does not apply" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()


def test_undecodable_strings_are_kept(tmp_path: Path) -> None:
    """Strings that carry undecodable bytes as lone surrogates (surrogateescape)."""
    odd = b"caf\xe9".decode("utf-8", "surrogateescape")
    evs = [Event(1, 0, 1, 1, "ok", "x:y", "t:x:y", {"s": "fine"}),
           Event(2, 0, 1, 1, odd, "x:y", "t:x:y", {"s": odd, "n": 1})]
    p = tmp_path / "odd.db"
    w = CaptureWriter(str(p))
    w.begin_run(RunInfo(backend="test"), [ProbeInfo("t:x:y")])
    for e in evs:
        w.add(e)
    assert w.finish().events == 2
    with Capture(p) as cap:
        back = list(cap.events())
    assert back[0] == evs[0]
    assert back[1].fields == {"s": odd, "n": 1}  # exact: the bytes survive
    assert back[1].comm == "caf\ufffd"
