#!/usr/bin/env python3
"""Process churn: the process table and the mapper under N short processes.

A shell loop runs ``/bin/true`` N times (default 100,000) while this process runs the
watch chain on every Event — BPF ``syscalls`` program with lifecycle and exec
info plus the watch syscalls (``detect.mapping.WATCH_SYSCALLS``), ``ProcessTable``,
``Mapper`` and, unless ``--mapper-only``, the engine with the shipped rules behind the
watch ``Detector`` (alerts counted, not printed) — and records this process's RSS and
CPU time as the churn goes on. The table must stay
bounded (grace period, cap) and RSS flat; the issue asks RSS <= 150 MB after 100,000.

Run as root::

    python bench/proc_churn.py                    # 100,000 processes, all watch syscalls
    python bench/proc_churn.py -n 20000 --syscalls execve
    python bench/proc_churn.py --mapper-only      # table + mapper, no rules
    python bench/proc_churn.py --grace 30 --max-entries 32768 --ringbuf-kb 65536

Prints one line per 10% of the churn (processes seen, table size, RSS, events/s) and a
JSON summary (also written to bench/out/proc_churn.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from probewatch.analyze.proctable import ProcessTable  # noqa: E402
from probewatch.detect.mapping import Mapper, open_watch_session  # noqa: E402


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--count", type=int, default=100_000, help="processes to run")
    ap.add_argument("--syscalls", default="watch",
                    help="'watch' (WATCH_SYSCALLS) or a comma list (e.g. execve)")
    ap.add_argument("--grace", type=float, default=30.0, help="seconds exited procs stay")
    ap.add_argument("--max-entries", type=int, default=32768)
    ap.add_argument("--ringbuf-kb", type=int, default=16384,
                    help="ring buffer size (mapped twice: counts 2x in RSS)")
    ap.add_argument("--mapper-only", action="store_true",
                    help="only the table and the mapper (no engine, no rules)")
    ap.add_argument("--json-out", default=str(Path(__file__).parent / "out" /
                                              "proc_churn.json"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("proc_churn: needs root (BPF)", file=sys.stderr)
        return 2
    table = ProcessTable(grace_ns=int(a.grace * 1e9), max_entries=a.max_entries)
    seeded = table.seed()
    mapper = Mapper(table)
    feed = None
    det = None
    if not a.mapper_only:
        from probewatch.detect.engine import Engine, RuleSet
        from probewatch.detect.pipeline import Detector

        det = Detector(Engine(RuleSet.load([], default=True)), table=table, mapper=mapper)
        feed = det.feed
    cpu0 = time.process_time()
    syscalls = None if a.syscalls == "watch" else a.syscalls.split(",")
    loop = (f"i=0; while [ $i -lt {a.count} ]; do /bin/true; i=$((i+1)); done")
    rows = []
    rss0 = rss_kb()
    events = sevs = execs = 0
    step = max(1, a.count // 10)
    t0 = time.monotonic()
    with open_watch_session(command=["sh", "-c", loop], syscalls=syscalls,
                            ringbuf_kb=a.ringbuf_kb) as s:
        s.start()
        t0 = time.monotonic()
        for ev in s.events():
            events += 1
            if feed is not None:
                feed(ev)
            else:
                sevs += len(mapper.map(ev))
            if ev.event == "sched:sched_process_exec":
                execs += 1
                if execs % step == 0:
                    dt = time.monotonic() - t0
                    row = {"processes": execs, "table": len(table), "rss_mb": rss_kb() / 1024,
                           "events": events, "seconds": round(dt, 1),
                           "events_per_s": round(events / dt)}
                    rows.append(row)
                    print(f"{execs:>8} processes  table {row['table']:>6}  "
                          f"RSS {row['rss_mb']:7.1f} MB  {events:>9} events  "
                          f"{row['events_per_s']:>7} ev/s  {dt:6.1f} s", flush=True)
        summary = s.summary()
    wall = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    if det is not None:
        st = det.finish()
        sevs = st.sigma_events
    out = {
        "count": a.count,
        "syscalls": a.syscalls,
        "seeded": seeded,
        "execs_seen": execs,
        "events": events,
        "sigma_events": sevs,
        "lost": summary.lost,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "chain": "mapper" if a.mapper_only else "detector (shipped rules)",
        "alerts": det.stats.alerts if det is not None else None,
        "rss_start_mb": round(rss0 / 1024, 1),
        "rss_end_mb": round(rss_kb() / 1024, 1),
        "rss_max_mb": round(max([r["rss_mb"] for r in rows] or [0]), 1),
        "table_end": len(table),
        "table_dropped_by_cap": table.dropped,
        "grace_s": a.grace,
        "max_entries": a.max_entries,
        "steps": rows,
    }
    print(json.dumps({k: v for k, v in out.items() if k != "steps"}))
    Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json_out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
