"""probewatch record / report / stats / query / export on the live kernel."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import kernel_lacks, missing, require_bpf  # tests/conftest.py
from probewatch.capture import Capture
from probewatch.sinks.perfetto import check_trace_events

from .helpers import CLI, json_lines, our_instances, run_cli, summary_of, wait_armed, wait_for

pytestmark = pytest.mark.integration

GETPPID = "t:syscalls:sys_enter_getppid"


def _shape(e: dict[str, Any]) -> dict[str, Any]:
    """An event without what differs between two runs of the same target."""
    return {k: v for k, v in e.items() if k not in ("ts", "cpu", "pid", "tid")}


def test_record_then_report_equals_trace(tracefs: str, getppid_n: Path, tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    t = run_cli("trace", GETPPID, "--json", "--", str(getppid_n), "500")
    assert t.returncode == 0, t.stderr
    r = run_cli("record", GETPPID, "-o", str(db), "--", str(getppid_n), "500")
    assert r.returncode == 0, r.stderr
    assert f"recorded 500 events ({GETPPID}: 500)" in r.stderr and str(db) in r.stderr
    assert "lost 0" in r.stderr
    rep = run_cli("report", str(db), "--json")
    assert rep.returncode == 0, rep.stderr
    traced, reported = json_lines(t.stdout), json_lines(rep.stdout)
    assert len(traced) == len(reported) == 500
    assert [_shape(e) for e in reported] == [_shape(e) for e in traced]
    assert len({e["pid"] for e in reported}) == 1
    assert all(e["tid"] == e["pid"] for e in reported)
    ts = [e["ts"] for e in reported]
    assert ts == sorted(ts)
    assert summary_of(rep.stderr)["events"] == {GETPPID: 500}
    # the text form is trace's too: same columns, same event text after PID/TID
    txt = run_cli("report", str(db))
    lines = txt.stdout.splitlines()
    assert lines[0].split() == ["TIME(s)", "CPU", "COMM", "PID/TID", "EVENT"]
    assert len(lines) == 501
    assert lines[1].split()[2:] == ["getppid_n", f"{reported[0]['pid']}/{reported[0]['tid']}",
                                    "syscalls:sys_enter_getppid", "__syscall_nr=110"]


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_report_reproduces_the_events_record_saw(
    tracefs: str, tmp_path: Path, as_json: bool
) -> None:
    """Within one capture: report prints exactly what record was fed (record --echo
    prints each event as it hands it to the store)."""
    db = tmp_path / "echo.db"
    fmt = ["--json"] if as_json else []
    r = run_cli("record", "t:raw_syscalls:sys_enter", "t:syscalls:sys_enter_openat",
                "t:sched:sched_process_exec", "--echo", *fmt, "-o", str(db), "--",
                "sh", "-c", "cat /etc/hostname >/dev/null; /bin/true")
    assert r.returncode == 0, r.stderr
    rep = run_cli("report", str(db), *fmt)
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == r.stdout
    assert rep.stdout.count("\n") > 50
    if as_json:
        evs = json_lines(rep.stdout)
        raw = [e for e in evs if e["event"] == "raw_syscalls:sys_enter"]
        assert raw and all(len(e["fields"]["args"]) == 6 for e in raw)
        execs = [e["fields"]["filename"] for e in evs
                 if e["event"] == "sched:sched_process_exec"]
        # sh found by PATH, cat found by sh on PATH, /bin/true by its path
        assert execs == [shutil.which("sh"), shutil.which("cat"), "/bin/true"]
    else:
        lines = rep.stdout.splitlines()
        raw = [ln for ln in lines if " raw_syscalls:sys_enter " in ln]
        assert raw and all(re.search(r" args=\((\d+, ){5}\d+\)", ln) for ln in raw)
        opens = [ln for ln in lines if " syscalls:sys_enter_openat " in ln]
        # pointer fields in hex, as trace prints them
        assert opens and all(re.search(r" filename=0x[0-9a-f]+ ", ln) for ln in opens)


def test_exit_status_processes_and_json_summary(
    tracefs: str, getppid_n: Path, tmp_path: Path
) -> None:
    db = tmp_path / "rc.db"
    r = run_cli("record", "--json", GETPPID, "t:sched:sched_process_exit", "-o", str(db),
                "--", str(getppid_n), "10", "0", "7")
    assert r.returncode == 7, r.stderr
    s = summary_of(r.stderr)
    assert s["file"] == str(db) and s["written"] == s["total"] and s["status"] == "complete"
    assert s["events"][GETPPID] == 10
    with Capture(db) as cap:
        [run] = cap.runs()
        assert run.exit_status == 7 and run.command == [str(getppid_n), "10", "0", "7"]
        assert run.backend == "ftrace" and run.clock == "mono" and run.lost == 0
        assert run.argv is not None and run.argv[:2] == ["probewatch", "record"]
        procs = {p["pid"]: p for p in cap.processes()}
        [pid] = {e.pid for e in cap.events(event="sys_enter_getppid")}
        p = procs[pid]
        assert p["exit_code"] == 7 and p["exe"] == str(getppid_n.resolve())
        assert p["ppid"] and "command" in p["source"]
        assert p["exit_ts"] is not None  # from sched_process_exit
        [pr] = [x for x in cap.probes() if x["spec"] == GETPPID]
        assert pr["kind"] == "tracepoint" and pr["count"] == 10
        assert pr["events"] == ["syscalls:sys_enter_getppid"]
    q = run_cli("query", str(db), "SELECT count(*) AS n FROM events WHERE probe = '"
                + GETPPID + "'", "--json")
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout) == {"n": 10}


def test_max_events_and_duration(tracefs: str, getppid_n: Path, tmp_path: Path) -> None:
    r = run_cli("record", GETPPID, "-n", "100", "-o", str(tmp_path / "n.db"), "--",
                str(getppid_n), "500")
    assert r.returncode == 0, r.stderr
    with Capture(tmp_path / "n.db") as cap:
        assert cap.count() == 100
    r = run_cli("record", "t:sched:sched_switch", "-d", "0.5", "-o", str(tmp_path / "d.db"))
    assert r.returncode == 0, r.stderr
    with Capture(tmp_path / "d.db") as cap:
        [run] = cap.runs()
        assert run.status == "complete" and 0.4 < run.duration < 10
        assert cap.count() > 0 and run.command is None and run.exit_status is None


def test_processes_from_exec_fork_exit(tracefs: str, getppid_n: Path, tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    r = run_cli("record", "t:sched:sched_process_fork", "t:sched:sched_process_exec",
                "t:sched:sched_process_exit", "-o", str(db), "--",
                "sh", "-c", f"{getppid_n} 1 1000; true")
    assert r.returncode == 0, r.stderr
    with Capture(db) as cap:
        procs = {p["pid"]: p for p in cap.processes()}
        [top] = [p for p in procs.values() if p["source"] and "command" in p["source"]]
        kids = [p for p in procs.values() if p["ppid"] == top["pid"]]
    assert top["argv"][0] == "sh" and top["exit_code"] == 0
    [kid] = [k for k in kids if k["exe"] == str(getppid_n)]
    assert kid["start_ts"] and kid["exec_ts"] and kid["exit_ts"]
    assert kid["start_ts"] <= kid["exec_ts"] <= kid["exit_ts"]
    assert kid["argv"] == [str(getppid_n), "1", "1000"]  # read from /proc after its exec
    assert kid["comm"] == "getppid_n"


def test_default_file_name(tracefs: str, getppid_n: Path, tmp_path: Path) -> None:
    r = run_cli("record", GETPPID, "--", str(getppid_n), "3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    [f] = os.listdir(tmp_path)
    assert f.startswith("probewatch-") and f.endswith(".db") and len(f) == len(
        "probewatch-20250101-120000.db")
    assert oct(os.stat(tmp_path / f).st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("argv", [
    ["t:nosuch:event", "-d", "1"],
    [GETPPID, "-p", "999999999", "-d", "1"],
    [GETPPID, "--", "/nonexistent/cmd"],
], ids=["spec", "pid", "command"])
def test_failures_before_recording_leave_no_file(
    tracefs: str, tmp_path: Path, argv: list[str]
) -> None:
    db = tmp_path / "bad.db"
    r = run_cli("record", "-o", str(db), *argv)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and r.stderr.startswith("probewatch: error:")
    assert not db.exists() and os.listdir(tmp_path) == []


_WORKLOAD = textwrap.dedent("""
    import os, signal, sys, time
    stamps = []
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    print(os.getpid(), flush=True)
    while not stop:
        os.getppid()
        stamps.append(time.monotonic_ns())
        time.sleep(0.001)
    with open(sys.argv[1], "w") as f:
        f.write("\\n".join(map(str, stamps)))
""")


def test_sigkill_keeps_all_but_the_last_batch(tracefs: str, tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    stamps_file = tmp_path / "stamps.txt"
    work = subprocess.Popen([sys.executable, "-c", _WORKLOAD, str(stamps_file)],
                            stdout=subprocess.PIPE, text=True)
    rec = None
    try:
        assert work.stdout is not None
        wpid = int(work.stdout.readline())
        rec = subprocess.Popen([*CLI, "record", GETPPID, "-p", str(wpid), "-o", str(db)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)

        def has_events() -> bool:
            try:
                with Capture(db) as cap:
                    return cap.count() > 0
            except Exception:
                return False

        def steady() -> bool:  # a few batches committed: the recorder is in its loop
            try:
                with Capture(db) as cap:
                    return cap.count() > 2000
            except Exception:
                return False

        assert wait_for(has_events, timeout=30), "the recorder wrote nothing"
        assert wait_for(steady, timeout=30), "the recorder stalled"
        killed_at = time.monotonic_ns()
        os.kill(rec.pid, signal.SIGKILL)
        rec.wait()
        assert rec.returncode == -signal.SIGKILL
    finally:
        work.send_signal(signal.SIGTERM)
        work.wait(timeout=30)
        if rec is not None and rec.poll() is None:
            rec.kill()
            rec.wait()
    stamps = [int(x) for x in stamps_file.read_text().split()]
    with Capture(db) as cap:
        evs = list(cap.events())
        [run] = cap.runs()
    assert run.status == "unfinished" and run.end_time is None
    assert evs and all(e.pid == wpid and e.event == "syscalls:sys_enter_getppid" for e in evs)
    assert evs[-1].ts <= killed_at
    # README and record -h: a transaction about every 0.1-0.4 s, "at most the last
    # uncommitted batch is lost to a SIGKILL": every call made between the first stored
    # event and 0.4 s before the kill is in the file (a call's stamp is taken right after
    # its event). A 0.1 s horizon failed once under load: the batch being committed when
    # the kill came had begun 0.15 s before it.
    horizon = killed_at - 400_000_000
    made = [s for s in stamps if evs[0].ts < s <= horizon]
    stored = [e for e in evs if e.ts <= horizon]
    assert len(made) > 500, len(made)
    assert len(stored) >= len(made), (len(stored), len(made))
    st = run_cli("stats", str(db), "--json")
    assert st.returncode == 0, st.stderr
    d = json.loads(st.stdout)
    assert d["status"] == "unfinished" and d["events"] == len(evs)
    assert d["per_probe"] == {GETPPID: len(evs)}
    txt = run_cli("stats", str(db))
    assert "killed or crashed" in txt.stdout
    rep = run_cli("report", str(db), "--json")
    assert rep.returncode == 0 and len(json_lines(rep.stdout)) == len(evs)
    assert "unfinished" in summary_of(rep.stderr)["status"]
    # the killed recorder's tracefs instance is swept because its pid is dead
    c = run_cli("cleanup")
    assert c.returncode == 0, c.stderr
    assert our_instances(tracefs, rec.pid) == []


def test_sigint_and_sigterm_close_the_capture(
    tracefs: str, getppid_n: Path, tmp_path: Path
) -> None:
    # ^C as a terminal sends it (to the whole group: the command dies of it too, and
    # its status is the exit status); SIGTERM to the recorder alone, passed on to it
    for sig, want in ((signal.SIGINT, 128 + signal.SIGINT),
                      (signal.SIGTERM, 128 + signal.SIGTERM)):
        db = tmp_path / f"sig{int(sig)}.db"
        rec = subprocess.Popen([*CLI, "record", GETPPID, "-o", str(db), "--",
                                str(getppid_n), "100", "2500"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
        assert wait_for(lambda db=db: db.exists() and os.path.exists(str(db) + "-wal"), 30)
        wait_armed(tracefs, rec)  # probes armed: the command is running under them
        if sig == signal.SIGINT:
            os.killpg(rec.pid, sig)
        else:
            rec.send_signal(sig)
        _, err = rec.communicate(timeout=60)
        assert rec.returncode == want, err
        assert "Traceback" not in err
        with Capture(db) as cap:
            [run] = cap.runs()
            assert run.status == "interrupted", (run.status, err)
            assert run.end_time is not None
            procs = [p for p in cap.processes() if p["source"] and "command" in p["source"]]
        assert len(procs) == 1, procs
        for p in procs:  # the command was stopped with the recorder
            assert p["exit_code"] == want, p
        assert our_instances(tracefs, rec.pid) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_at_any_point_leaves_a_valid_capture(
    tracefs: str, getppid_n: Path, tmp_path: Path, sig: int
) -> None:
    """A signal while record sets up (its instance exists), just after the command was
    released, or once the command made its events: the capture is there, opens, holds
    one run marked interrupted and every event that was recorded (all N at the last
    point). SIGINT goes to the whole group, as a terminal sends it."""
    n = 200
    for point in ("instance", "released", "events"):
        db = tmp_path / f"{point}-{int(sig)}.db"
        started, ready = tmp_path / f"{point}.started", tmp_path / f"{point}.ready"
        rec = subprocess.Popen(
            [*CLI, "record", GETPPID, "-o", str(db), "--", "sh", "-c",
             f": > {started}; {getppid_n} {n}; : > {ready}; exec sleep 60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        try:
            def reached(point: str = point, started: Path = started, ready: Path = ready,
                        rec: subprocess.Popen[str] = rec) -> bool:
                if rec.poll() is not None:
                    return True
                if point == "instance":
                    return our_instances(tracefs, rec.pid) != []
                return (started if point == "released" else ready).exists()

            assert wait_for(reached, 30, interval=0.001), point
            assert rec.poll() is None, rec.communicate()
            if sig == signal.SIGINT:
                os.killpg(rec.pid, sig)
            else:
                rec.send_signal(sig)
            _, err = rec.communicate(timeout=60)
        finally:
            if rec.poll() is None:
                os.killpg(rec.pid, signal.SIGKILL)
                rec.wait()
        assert rec.returncode == 128 + sig, (point, err)
        assert "Traceback" not in err, err
        assert db.exists(), (point, err)
        with Capture(db) as cap:
            [run] = cap.runs()
            assert run.status == "interrupted", (point, run.status, err)
            assert run.end_time is not None
            evs = list(cap.events())
            assert run.events == len(evs) == cap.count(), (point, run.events, len(evs))
        mine = [e for e in evs if e.comm == "getppid_n"]
        assert len(mine) <= n
        if point == "events":
            assert len(mine) == n, (len(mine), err)
        st = run_cli("stats", str(db), "--json")
        assert st.returncode == 0, st.stderr
        assert json.loads(st.stdout)["events"] == len(evs)
        assert our_instances(tracefs, rec.pid) == []


def test_a_signal_while_replacing_never_loses_the_old_capture(
    tracefs: str, getppid_n: Path, tmp_path: Path
) -> None:
    """--force and a SIGTERM while record sets up: either the old capture is left as it
    was (nothing recorded yet), or the new one replaced it, valid and interrupted; never
    an empty run in place of the old events, never no file."""
    db = tmp_path / "old.db"
    r = run_cli("record", GETPPID, "-o", str(db), "--", str(getppid_n), "10")
    assert r.returncode == 0, r.stderr
    old = db.read_bytes()
    rec = subprocess.Popen([*CLI, "record", "--force", GETPPID, "-o", str(db), "--", "sh",
                            "-c", f"{getppid_n} 20; exec sleep 60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        assert wait_for(lambda: rec.poll() is not None or our_instances(tracefs, rec.pid),
                        30, interval=0.001)
        rec.send_signal(signal.SIGTERM)
        _, err = rec.communicate(timeout=60)
    finally:
        if rec.poll() is None:
            os.killpg(rec.pid, signal.SIGKILL)
            rec.wait()
    assert rec.returncode == 143, err
    assert "Traceback" not in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["old.db"]  # no temporary file left
    if db.read_bytes() == old:
        assert f"{db} is left as it was" in err, err
        return
    with Capture(db) as cap:
        [run] = cap.runs()
        assert run.status == "interrupted" and run.events == cap.count(), err


@pytest.mark.parametrize("backend", ["ftrace", "perf"])
def test_capture_keeps_the_losses_per_probe(
    tracefs: str, getppid_n: Path, tmp_path: Path, backend: str
) -> None:
    """A firehose into a tiny ring buffer: the capture says what the probe lost, and
    delivered + lost = generated (N getppid calls) for it; stats shows it per probe.
    ftrace: every gap lies between this one probe's events, so all of the loss is its
    own, but the two events the session enables for itself (the command's exec and a
    rename) may fall in a gap too (as in test_trace_loss); perf counts exactly."""
    n = 150_000
    for attempt in range(3):  # an 8 KiB buffer overruns, but make sure it did
        db = tmp_path / f"loss{attempt}.db"
        r = run_cli("record", "--backend", backend, GETPPID, "--buffer-kb", "8", "-o",
                    str(db), "--", str(getppid_n), str(n), timeout=120)
        assert r.returncode == 0, r.stderr
        with Capture(db) as cap:
            [run] = cap.runs()
            delivered = cap.stats().per_probe[GETPPID]
            [probe] = cap.probes()
        if run.lost:
            break
    assert run.lost, "an 8 KiB buffer kept up with a firehose: nothing was tested"
    assert run.lost_per_probe == {GETPPID: run.lost}, run
    assert probe["count"] == delivered and probe["lost"] == run.lost, probe
    assert n <= delivered + run.lost <= n + (2 if backend == "ftrace" else 0), run
    assert f"lost {run.lost} ({GETPPID}: {run.lost})" in r.stderr, r.stderr
    st = run_cli("stats", str(db))
    assert st.returncode == 0, st.stderr
    assert f"\n  {run.lost:>10}  {GETPPID}\nper probe:\n  {delivered:>10}  {GETPPID}\n" \
        in st.stdout, st.stdout
    assert "not attributable" not in st.stdout
    js = json.loads(run_cli("stats", str(db), "--json").stdout)
    assert js["lost_per_probe"] == {GETPPID: run.lost} and js["lost"] == run.lost


def test_full_disk_stops_and_keeps_data(tracefs: str, getppid_n: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if m.returncode != 0:
        missing(f"cannot mount a tmpfs (needs root): {m.stderr.strip()}")
    try:
        db = mnt / "full.db"
        r = run_cli("record", GETPPID, "-o", str(db), "--", str(getppid_n), "400000")
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr
        assert f"probewatch: error: {db}: disk full after" in r.stderr
        assert "[disk-full]" in r.stderr
        st = run_cli("stats", str(db), "--json")
        assert st.returncode == 0, st.stderr
        d = json.loads(st.stdout)
        assert d["status"] == "disk-full" and d["events"] > 1000
        rep = run_cli("report", str(db), "--json")
        assert rep.returncode == 0, rep.stderr
        evs = json_lines(rep.stdout)
        assert len(evs) == d["events"]
        assert {e["event"] for e in evs} == {"syscalls:sys_enter_getppid"}
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _perfetto_capture(getppid_n: Path, tmp_path: Path) -> Path:
    db = tmp_path / "pf.db"
    r = run_cli("record", GETPPID, "t:syscalls:sys_exit_getppid", "-o", str(db), "--",
                str(getppid_n), "500")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "pf.json"
    e = run_cli("export", str(db), "--perfetto", str(out))
    assert e.returncode == 0, e.stderr
    assert "1000 events as 500 slices and 0 instants on 1 threads of 1 processes" in e.stderr
    return out


def test_perfetto_export_of_a_recording(tracefs: str, getppid_n: Path, tmp_path: Path) -> None:
    out = _perfetto_capture(getppid_n, tmp_path)
    doc = json.loads(out.read_text())
    slices = check_trace_events(doc)
    [(tid, ss)] = slices.items()
    assert len(ss) == 500 and {s["name"] for s in ss} == {"getppid"}
    assert all(s["args"]["exit"]["ret"] > 0 for s in ss)
    names = [e for e in doc["traceEvents"] if e["ph"] == "M"]
    assert {n["args"]["name"] for n in names} == {"getppid_n"}


def test_perfetto_trace_processor_loads_it(
    tracefs: str, getppid_n: Path, tmp_path: Path
) -> None:
    """Perfetto's own trace processor loads the export (opt-in: it is not in the test
    extra because it downloads a prebuilt binary, which CI cannot; set
    PERFETTO_TRACE_PROCESSOR to a trace_processor_shell). Once asked for, any import or
    load error FAILS. Without it the export is checked against a hand-written document
    (tests/unit/test_capture_perfetto.py)."""
    if not os.environ.get("PERFETTO_TRACE_PROCESSOR"):
        pytest.skip("opt-in: PERFETTO_TRACE_PROCESSOR is not set to a trace_processor_shell")
    from perfetto.trace_processor import (  # type: ignore[import-not-found]
        TraceProcessor,
        TraceProcessorConfig,
    )

    out = _perfetto_capture(getppid_n, tmp_path)
    tp = TraceProcessor(trace=str(out), config=TraceProcessorConfig(
        bin_path=os.environ["PERFETTO_TRACE_PROCESSOR"]))
    try:
        rows = list(tp.query("SELECT count(*) AS n FROM slice WHERE name = 'getppid'"))
        assert rows[0].n == 500
        threads = list(tp.query("SELECT name FROM thread WHERE name = 'getppid_n'"))
        assert [t.name for t in threads] == ["getppid_n"]
    finally:
        tp.close()


def test_uprobe_pairs_become_slices(tracefs: str, getppid_n: Path, tmp_path: Path) -> None:
    from probewatch.kernel.features import check

    feat = check("uprobe_events", tracefs)
    if not feat.available:
        kernel_lacks(f"uprobe_events: {feat.reason}")
    db = tmp_path / "u.db"
    # getppid_n calls libc's syscall() for each getppid: uprobe pairs around syscalls
    r = run_cli("record", "u:libc:syscall", "ur:libc:syscall", GETPPID,
                "t:syscalls:sys_exit_getppid", "-o", str(db), "--", str(getppid_n), "50")
    assert r.returncode == 0, r.stderr
    with Capture(db) as cap:
        probes = {p["spec"]: p for p in cap.probes()}
        up = probes["u:libc:syscall"]
        assert up["kind"] == "uprobe" and up["symbol"] == "syscall"
        assert up["target"].endswith("libc.so.6")
        [res] = up["resolved"]
        assert res["entry"] and res["offset"] > 0 and res["target"] == up["target"]
        assert cap.count(probe="ur:libc:syscall") == 50
    out = tmp_path / "u.json"
    e = run_cli("export", str(db), "--perfetto", str(out))
    assert e.returncode == 0, e.stderr
    slices = check_trace_events(json.loads(out.read_text()))
    [(tid, ss)] = slices.items()
    names = sorted(s["name"] for s in ss)
    assert names == ["getppid"] * 50 + ["syscall"] * 50
    outer = sorted((s for s in ss if s["name"] == "syscall"), key=lambda s: s["ts"])
    inner = sorted((s for s in ss if s["name"] == "getppid"), key=lambda s: s["ts"])
    for o, i in zip(outer, inner, strict=True):  # each getppid inside its syscall()
        assert o["ts"] <= i["ts"] and i["ts"] + i["dur"] <= o["ts"] + o["dur"] + 1e-6


def _record_on(backend: str, getppid_n: Path, tmp_path: Path) -> tuple[str, int, dict]:
    """record on BACKEND: every event of a tracepoint and of a uprobe (with an argument),
    the uprobe resolved to its file in the probes table, the run marked with the
    backend."""
    db = tmp_path / f"{backend}.db"
    main = f"u:{getppid_n}:main argc=arg0:s32"
    r = run_cli("record", "--backend", backend, GETPPID, main, "-o", str(db), "--",
                str(getppid_n), "300")
    assert r.returncode == 0, r.stderr
    with Capture(db) as cap:
        [run] = cap.runs()
        assert run.backend == backend and run.status == "complete"
        evs = list(cap.events())
        probes = {p["spec"]: p for p in cap.probes()}
    assert run.events == len(evs) == 301 and run.lost == 0, run
    assert sum(e.probe == GETPPID for e in evs) == 300
    [m] = [e for e in evs if e.probe == main]
    assert m.comm == "getppid_n" and m.fields["argc"] == 2, m
    up = probes[main]
    assert up["kind"] == "uprobe" and up["target"] == str(getppid_n), up
    assert up["resolved"][0]["symbol"] == "main" and up["resolved"][0]["offset"] > 0, up
    st = run_cli("stats", str(db), "--json")
    assert st.returncode == 0, st.stderr
    return run.backend, len(evs), json.loads(st.stdout)["per_probe"]


def test_record_backend_bpf(tracefs: str, getppid_n: Path, tmp_path: Path) -> None:
    require_bpf()
    main = f"u:{getppid_n}:main argc=arg0:s32"
    assert _record_on("bpf", getppid_n, tmp_path) == ("bpf", 301, {GETPPID: 300, main: 1})


def test_record_backend_perf(tracefs: str, getppid_n: Path, tmp_path: Path) -> None:
    main = f"u:{getppid_n}:main argc=arg0:s32"
    assert _record_on("perf", getppid_n, tmp_path) == ("perf", 301, {GETPPID: 300, main: 1})
