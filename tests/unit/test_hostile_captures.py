"""Hostile captures given to the watch readers: ``report --alerts``, ``watch --replay``,
``report``, ``export``. A capture is a file anyone may hand over (an SQLite file is
easy to edit), so its ``alerts.alert`` and ``process_snapshot.info`` JSON can hold any
shape: every reader must answer with ``probewatch: error: ...`` (exit 1) or its normal
output, never a traceback (hypothesis writes the shapes)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probewatch.cli.main import main
from probewatch.event import Event

SHADOW = str(Path(__file__).resolve().parent.parent / "watch" / "shadow.yml")

ALERT = {
    "type": "alert", "id": 1, "time": "2026-12-07T17:50:04.745424Z", "ts": 5, "last_ts": 5,
    "count": 1, "level": "high",
    "rule": {"id": "r1", "title": "Read of /etc/shadow", "techniques": ["T1003.008"],
             "tags": [], "description": "d"},
    "process": {"pid": 20, "ppid": 1, "image": "/usr/bin/cat", "command_line": "cat x"},
    "lineage": "init(1) > cat(20)", "ancestry": [{"pid": 1, "name": "init"},
                                                 {"pid": 20, "name": "cat"}],
    "matched": {"TargetFilename": "/etc/shadow"}, "events": [{"kind": "syscall"}],
}
SNAP = [{"pid": 1, "ppid": 0, "exe": "/sbin/init", "argv": ["/sbin/init"]},
        {"pid": 20, "ppid": 1, "exe": "/usr/bin/cat", "argv": ["cat", "/etc/shadow"]}]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from probewatch.sinks.capture import CaptureWriter, RunInfo

    path = tmp_path_factory.mktemp("hostile") / "base.db"
    w = CaptureWriter(str(path))
    w.begin_run(RunInfo(backend="bpf", clock="mono"), [])
    w.note_snapshot(SNAP)
    w.add(Event(2, 0, 1, 1, "init", "sched:sched_process_fork", "bpf:syscalls",
                {"child_pid": 20, "child_tid": 20, "ppid": 0, "start_boottime": 9}))
    w.add(Event(3, 0, 20, 20, "cat", "sched:sched_process_exec", "bpf:syscalls",
                {"filename": "/usr/bin/cat", "argv": ["cat", "/etc/shadow"], "cwd": "/",
                 "env": {"LD_PRELOAD": "/x.so"}, "ppid": 1, "uid": 0,
                 "start_boottime": 9, "truncated": ["cwd"]}))
    w.add(Event(5, 0, 20, 20, "cat", "syscalls:openat", "bpf:syscalls",
                {"dfd": -100, "filename": "/etc/shadow", "flags": 0, "mode": 0, "ret": 3,
                 "ppid": 1, "uid": 0}))
    w.add_alert({"id": 1, "ts": 5, "last_ts": 5, "time": 1.0, "count": 1, "level": "high",
                 "rule_id": "r1", "title": "t", "techniques": "[]", "pid": 20,
                 "image": "/usr/bin/cat", "command_line": "cat x", "lineage": "",
                 "matched": "{}", "alert": json.dumps(ALERT)})
    assert w.finish().error is None
    return path


def _run(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    out = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(list(argv))
    return rc, err.getvalue()


def _mutated(base: Path, tmp: Path, sql: str, *params: Any) -> Path:
    path = tmp / "m.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    shutil.copyfile(base, path)
    c = sqlite3.connect(path)
    c.execute(sql, params)
    c.commit()
    c.close()
    return path


def test_base_capture_reads(base: Path) -> None:
    rc, err = _run("report", str(base), "--alerts")
    assert rc == 0 and "1 alerts" in err, err
    rc, err = _run("watch", "--replay", str(base), "--no-default-rules", "--rules", SHADOW)
    assert rc == 0 and "watch: 3 events, 1 alerts" in err, err


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                               max_size=4),
    max_leaves=12)

ALERT_KEYS = sorted(ALERT) + ["raw_events", "group"]
RULE_KEYS = ["id", "title", "techniques", "tags", "description", "path"]
PROC_KEYS = ["pid", "ppid", "exe", "argv", "env", "cwd", "fds", "truncated", "uid",
             "start", "exit_ts", "exec_ts", "comm", "cgroup", "container", "exit_code"]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(ALERT_KEYS), rkey=st.sampled_from(RULE_KEYS),
       value=json_values, whole=st.booleans())
def test_hostile_alert_json_gives_an_error_not_a_traceback(
        base: Path, tmp_path: Path, key: str, rkey: str, value: Any, whole: bool) -> None:
    if whole:
        a: Any = value
    else:
        a = json.loads(json.dumps(ALERT))
        if key == "rule":
            a["rule"][rkey] = value
        else:
            a[key] = value
    try:
        text = json.dumps(a)
    except ValueError:
        return
    path = _mutated(base, tmp_path, "UPDATE alerts SET alert = ?", text)
    for argv in (("report", str(path), "--alerts"), ("report", str(path), "--alerts",
                                                      "--json")):
        rc, err = _run(*argv)
        assert rc in (0, 1), err
        if rc == 1:
            assert err.startswith("probewatch: error: ") and "damaged" in err, err
            assert "Traceback" not in err


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(PROC_KEYS), value=json_values, whole=st.booleans())
def test_hostile_snapshot_gives_an_error_not_a_traceback(
        base: Path, tmp_path: Path, key: str, value: Any, whole: bool) -> None:
    info: Any = value if whole else {**SNAP[1], key: value}
    try:
        text = json.dumps(info)
    except ValueError:
        return
    path = _mutated(base, tmp_path, "UPDATE process_snapshot SET info = ? WHERE pid = 20",
                    text)
    rc, err = _run("watch", "--replay", str(path), "--no-default-rules", "--rules", SHADOW)
    assert rc in (0, 1), err
    if rc == 1:
        assert err.startswith("probewatch: error: ") and "damaged" in err, err


@pytest.mark.parametrize("sql", [
    "UPDATE alerts SET count = 'many'",
    "UPDATE alerts SET last_ts = 'x'",
    "UPDATE process_snapshot SET info = '[1, 2]'",
    "UPDATE alerts SET alert = '{\"rule\": 5, \"process\": [1], \"matched\": 3}'",
])
def test_known_hostile_rows(base: Path, tmp_path: Path, sql: str) -> None:
    """The rows that gave tracebacks before (AttributeError in the readers)."""
    path = _mutated(base, tmp_path, sql)
    cmd = (("watch", "--replay", str(path), "--no-default-rules", "--rules", SHADOW)
           if "snapshot" in sql else ("report", str(path), "--alerts"))
    rc, err = _run(*cmd)
    assert rc == 1 and err.startswith("probewatch: error: ") and "damaged" in err, err


EXEC_KEYS = ["filename", "argv", "cwd", "env", "ppid", "uid", "gid", "euid", "loginuid",
             "start_boottime", "parent_start_boottime", "truncated", "faults", "cgroup",
             "cgroup_name", "exe_name", "child_pid", "dfd", "ret", "flags"]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.sampled_from([1, 2, 3]), key=st.sampled_from(EXEC_KEYS), value=json_values)
def test_hostile_event_fields_never_stop_a_replay(
        base: Path, tmp_path: Path, row: int, key: str, value: Any) -> None:
    """Any JSON value in any field of the fork, exec or openat record: the replay
    runs to its end (a malformed record is counted and skipped), or says the capture
    is damaged."""
    c = sqlite3.connect(base)
    (text,) = c.execute("SELECT fields FROM event_rows ORDER BY id LIMIT 1 OFFSET ?",
                        (row - 1,)).fetchone()
    c.close()
    fields = json.loads(text)
    fields[key] = value
    try:
        new = json.dumps(fields)
    except ValueError:
        return
    path = _mutated(base, tmp_path, "UPDATE event_rows SET fields = ? WHERE id = "
                    "(SELECT id FROM event_rows ORDER BY id LIMIT 1 OFFSET ?)", new, row - 1)
    rc, err = _run("watch", "--replay", str(path), "--no-default-rules", "--rules", SHADOW)
    assert rc in (0, 1), err
    if rc == 1:
        assert err.startswith("probewatch: error: ") and "damaged" in err, err
    else:
        assert "watch: 3 events" in err, err
