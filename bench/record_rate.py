#!/usr/bin/env python3
"""Recording rate: how fast ``probewatch record`` stores the getppid firehose.

The workload is ``bench/workloads/getppid_loop.c`` (N ``syscall(SYS_getppid)`` calls in
a tight loop; built into ``bench/out/getppid_loop`` on first use). Each configuration
runs it R times under the tool and reports the median:

- ``trace-json``: ``probewatch trace t:syscalls:sys_enter_getppid --json -- W`` with
  stdout to /dev/null: every event decoded and printed (the reference);
- ``record``: ``probewatch record t:syscalls:sys_enter_getppid -o FILE -- W``: every
  event decoded and stored in the capture (SQLite, WAL, writer thread);
- ``record-8m``: the same with ``--buffer-kb 8192``;
- ``store``: no kernel: N ready-made Event records pushed through CaptureWriter, then
  read back with Capture.events() (the store's own ceiling, one process).

Columns: wall s (tool start to exit), events/s (events stored, or printed, divided by
the time from the workload's first call to the tool's exit: the sustained rate, the
drain after the workload ended included), delivered and lost (N minus what reached the
file / stdout), B/event (capture size / events stored), tool CPU ns/event (user+system
of the tool and its helpers, the workload's own CPU subtracted), ns/call (the
workload's loop, i.e. what tracing cost the traced program), and slowdown (wall and
sustained rate against trace-json).

Run as root on an idle machine::

    python bench/record_rate.py                 # N=1,000,000, R=3
    python bench/record_rate.py --quick         # N=200,000, R=1
    python bench/record_rate.py --only record --repeat 5 --keep
    python bench/record_rate.py --wait-quiet 600   # first wait for other load to end

Prints a table and writes the same as JSON to bench/out/record_rate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
WORKLOAD_SRC = BENCH / "workloads" / "getppid_loop.c"
WORKLOAD_BIN = OUT / "getppid_loop"
JSON_OUT = OUT / "record_rate.json"
SPEC = "t:syscalls:sys_enter_getppid"
CONFIGS = ["trace-json", "record", "record-8m", "store"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_workload() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if WORKLOAD_BIN.exists() and WORKLOAD_BIN.stat().st_mtime >= WORKLOAD_SRC.stat().st_mtime:
        return
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        sys.exit("record_rate: gcc is needed to build the workload")
    subprocess.run([cc, "-O2", "-o", str(WORKLOAD_BIN), str(WORKLOAD_SRC)], check=True)


def parse_report(path: Path) -> dict[str, float]:
    out = {}
    for line in path.read_text().splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def machine_busy(interval: float = 1.0) -> float:
    """Share of all CPUs busy over ``interval`` seconds (/proc/stat)."""

    def ticks() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        return sum(v[:8]) - idle, sum(v[:8])

    b0, t0 = ticks()
    time.sleep(interval)
    b1, t1 = ticks()
    return (b1 - b0) / max(1, t1 - t0)


def probewatch_cmd() -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return [sys.executable, "-m", "probewatch"], env


def summary_of(stderr: str) -> dict[str, Any]:
    for line in reversed(stderr.splitlines()):
        if line.startswith('{"summary"'):
            return dict(json.loads(line)["summary"])
    raise RuntimeError(f"no JSON summary in: {stderr[-500:]!r}")


def run_tool(name: str, calls: int, timeout: float) -> dict[str, Any]:
    """One run of a kernel configuration; returns its measurements."""
    pw, env = probewatch_cmd()
    report = OUT / "record-rate-workload.txt"
    report.unlink(missing_ok=True)
    db = OUT / "record_rate.db"
    workload = [str(WORKLOAD_BIN), str(calls), str(report)]
    if name == "trace-json":
        argv = [*pw, "trace", SPEC, "--json", "--", *workload]
    else:
        extra = ["--buffer-kb", "8192"] if name == "record-8m" else []
        argv = [*pw, "record", SPEC, "--json", "--force", "-o", str(db), *extra, "--",
                *workload]
    t_start = time.monotonic_ns()
    with open(os.devnull, "w") as devnull, open(OUT / "record-rate-stderr.txt", "w+") as err:
        p = subprocess.Popen(argv, stdout=devnull, stderr=err, env=env)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                raise RuntimeError(f"{name}: timed out after {timeout}s")
            time.sleep(0.01)
        t_end = time.monotonic_ns()
        err.seek(0)
        stderr = err.read()
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0 or not report.exists():
        raise RuntimeError(f"{name}: exit {rc}: {stderr[-500:]}")
    rep = parse_report(report)
    s = summary_of(stderr)
    stored = int(s.get("written", s.get("total", 0)))
    tool_cpu = (ru.ru_utime + ru.ru_stime) * 1e9 - (rep["utime_ns"] + rep["stime_ns"])
    sustained = (t_end - rep["t_loop_start"]) / 1e9
    row: dict[str, Any] = {
        "wall_s": (t_end - t_start) / 1e9,
        "sustained_s": sustained,
        "events": stored,
        "events_per_s": stored / sustained if sustained > 0 else None,
        "lost": calls - stored,
        "reported_lost": s.get("lost"),
        "tool_cpu_ns_per_event": tool_cpu / stored if stored else None,
        "ns_per_call": rep["ns_per_call"],
        "teardown_s": (t_end - rep["t_loop_end"]) / 1e9,
    }
    if name != "trace-json":
        row["bytes"] = int(s.get("bytes", 0))
        row["bytes_per_event"] = row["bytes"] / stored if stored else None
        row["status"] = s.get("status")
    return row


def run_store(calls: int, keep: bool) -> dict[str, Any]:
    """The store alone: CaptureWriter fed ready Events, then Capture.events() reads."""
    sys.path.insert(0, str(REPO / "src"))
    from probewatch.capture import Capture
    from probewatch.event import Event
    from probewatch.sinks.capture import CaptureWriter, ProbeInfo, RunInfo

    db = OUT / "record_rate_store.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    pid = os.getpid()
    evs = [Event(1_000_000 + i * 90, i & 1, pid, pid, "getppid_loop",
                 "syscalls:sys_enter_getppid", SPEC, {"__syscall_nr": 110})
           for i in range(calls)]
    c0 = time.process_time()
    t0 = time.monotonic()
    w = CaptureWriter(str(db), max_backlog=1 << 62)
    w.begin_run(RunInfo(backend="bench"), [ProbeInfo(SPEC, kind="tracepoint")])
    t_fed0 = time.monotonic()
    add = w.add
    for ev in evs:
        add(ev)
    t_fed = time.monotonic() - t_fed0
    res = w.finish()
    t_write = time.monotonic() - t0
    cpu_write = time.process_time() - c0
    del evs
    t1 = time.monotonic()
    n = 0
    with Capture(str(db)) as cap:
        for _ in cap.events():
            n += 1
    t_read = time.monotonic() - t1
    if not keep:
        db.unlink(missing_ok=True)
    return {
        "events": res.events,
        "wall_s": t_write,
        "events_per_s": res.events / t_write,
        "hot_loop_ns_per_event": t_fed / calls * 1e9,
        "tool_cpu_ns_per_event": cpu_write / calls * 1e9,
        "bytes": res.bytes,
        "bytes_per_event": res.bytes / res.events,
        "read_events_per_s": n / t_read,
        "lost": calls - res.events,
    }


def median(xs: list[Any]) -> Any:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="N=200,000, one run each")
    ap.add_argument("--only", help="comma-separated configurations: " + ", ".join(CONFIGS))
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--keep", action="store_true", help="keep the capture files in bench/out")
    ap.add_argument("--json-out", default=str(JSON_OUT))
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECS",
                    help="first wait up to SECS for the machine to be under 15%% busy")
    a = ap.parse_args()
    if a.quick:
        a.calls, a.repeat = 200_000, 1
    names = a.only.split(",") if a.only else CONFIGS
    for n in names:
        if n not in CONFIGS:
            sys.exit(f"record_rate: unknown configuration {n!r} (have {', '.join(CONFIGS)})")
    if any(n != "store" for n in names) and os.geteuid() != 0:
        sys.exit("record_rate: run as root (tracefs)")
    build_workload()
    busy = machine_busy()
    end = time.monotonic() + a.wait_quiet
    while busy > 0.15 and time.monotonic() < end:
        log(f"waiting for a quiet machine ({busy:.0%} busy)")
        busy = machine_busy(2.0)
    title = (f"record_rate: N={a.calls:,} getppid calls, median of {a.repeat}, "
             f"{os.cpu_count()} CPUs, kernel {os.uname().release}, machine busy {busy:.0%} "
             "before start")
    log(title)
    if busy > 0.15:
        log("warning: the machine is busy: the numbers will be low and noisy")
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        runs = []
        for i in range(a.repeat):
            log(f"  {name} run {i + 1}/{a.repeat} ...")
            try:
                runs.append(run_store(a.calls, a.keep) if name == "store"
                            else run_tool(name, a.calls, a.timeout))
            except RuntimeError as e:
                log(f"  {name}: failed: {e}")
        if runs:
            keys = sorted({k for r in runs for k in r})
            row = {k: median([r.get(k) for r in runs]) if not isinstance(runs[0].get(k), str)
                   else runs[0].get(k) for k in keys}
            row["runs"] = runs
            rows[name] = row
    db = OUT / "record_rate.db"
    if not a.keep:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    ref = rows.get("trace-json")
    for name, row in rows.items():
        if ref and name.startswith("record"):
            row["slowdown_wall"] = row["wall_s"] / ref["wall_s"]
            if row.get("events_per_s") and ref.get("events_per_s"):
                row["slowdown_rate"] = ref["events_per_s"] / row["events_per_s"]

    def f(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    hdr = (f"{'config':11} {'wall s':>7} {'events/s':>10} {'stored':>9} {'lost':>8} "
           f"{'B/event':>8} {'CPU ns/ev':>9} {'ns/call':>8} {'teardown':>8} {'x trace':>7}")
    print(title)
    print(hdr)
    print("-" * len(hdr))
    for name, r in rows.items():
        print(f"{name:11} {f(r.get('wall_s'), '7.2f')} {f(r.get('events_per_s'), '10,.0f')} "
              f"{f(r.get('events'), '9,.0f')} {f(r.get('lost'), '8,.0f')} "
              f"{f(r.get('bytes_per_event'), '8.1f')} {f(r.get('tool_cpu_ns_per_event'), '9.0f')} "
              f"{f(r.get('ns_per_call'), '8.0f')} {f(r.get('teardown_s'), '8.2f')} "
              f"{f(r.get('slowdown_wall'), '7.2f')}")
    if "store" in rows:
        s = rows["store"]
        print(f"store alone: hot loop {s['hot_loop_ns_per_event']:.0f} ns/event (enqueue), "
              f"writer {s['events_per_s']:,.0f} events/s, read back "
              f"{s['read_events_per_s']:,.0f} events/s")
    Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.json_out, "w") as fh:
        json.dump({"title": title, "calls": a.calls, "repeat": a.repeat, "busy_before": busy,
                   "rows": rows}, fh, indent=1)
    log(f"wrote {a.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
