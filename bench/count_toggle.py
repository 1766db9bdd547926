#!/usr/bin/env python3
"""Counting overhead per event on a busy machine: tracers toggled on one running workload.

bench/syscall_firehose.py runs the workload once per tracer: on a machine shared with
other work the load drifts between runs by more than the few tens of nanoseconds being
measured. Here ONE workload (``workloads/getppid_batches.c``: getppid in batches of
4096 calls, each batch timed) runs for the whole measurement while the driver attaches
and detaches one counting tracer after another, round after round, each for a phase of
``--phase`` seconds, with untraced phases between them. Every batch is put down to the
phase it ran in (wholly inside it), so drifts hit all tracers alike, and the overhead
per event is a low percentile (p1, p10) and the median of a phase's batches minus the
same of the untraced ones.

Tracers: ``trace --count`` on the bpf backend with each count path (tp_btf, raw_tp, the
generic tracepoint program), scoped to the workload's pid as ``-p`` does, and bpftrace's
count map on the tracepoint (``/pid == PID/``) and on raw_syscalls (``args->id``).

    python bench/count_toggle.py [--seconds 90] [--phase 0.6] [--pin-workload 1]

Prints a table and writes bench/out/count_toggle.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
SRC = BENCH / "workloads" / "getppid_batches.c"
BIN = OUT / "getppid_batches"
SPEC = "t:syscalls:sys_enter_getppid"
BATCH = 4096
GETPPID_NR = {"x86_64": 110, "aarch64": 173}.get(platform.machine(), 110)
PW_KINDS = ("tp_btf", "raw_tp", "tracepoint")


def build() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if not BIN.exists() or BIN.stat().st_mtime < SRC.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(BIN), str(SRC)], check=True)


def pw_phase(kind: str, pid: int, phase: float) -> tuple[int, int, dict[str, Any]]:
    """Count with probewatch's bpf backend for ``phase`` s -> (t_on, t_off, summary)."""
    from probewatch.bpf_trace import BpfTraceSession

    os.environ["PROBEWATCH_BPF_COUNT"] = kind
    with BpfTraceSession(pids=[pid]) as s:
        s.add(SPEC)
        s.start(count_only=True)
        t_on = time.monotonic_ns()
        time.sleep(phase)
        t_off = time.monotonic_ns()
        s.stop()
        s.count(duration=0)
        return t_on, t_off, s.summary().to_dict()


def bpftrace_phase(prog: str, phase: float) -> tuple[int, int, dict[str, Any]]:
    p = subprocess.Popen(["bpftrace", "-e", prog], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()  # "Attaching 1 probe..."
    time.sleep(0.5)  # the attach itself follows the line (a late one only flatters bpftrace)
    t_on = time.monotonic_ns()
    time.sleep(phase)
    t_off = time.monotonic_ns()
    for _ in range(15):  # a SIGINT that lands while bpftrace still attaches is lost
        p.send_signal(signal.SIGINT)
        try:
            out, err = p.communicate(timeout=2)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        p.kill()
        out, err = p.communicate()
    return t_on, t_off, {"first_line": line.strip(), "out": out.strip()[-200:]}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=90.0, help="workload run time")
    ap.add_argument("--phase", type=float, default=0.6, help="seconds per tracer phase")
    ap.add_argument("--pin-workload", type=int, metavar="CPU")
    ap.add_argument("--no-bpftrace", action="store_true")
    a = ap.parse_args()
    sys.path.insert(0, str(BENCH.parent / "src"))
    build()
    out_file = OUT / "count_toggle-batches.txt"
    env = dict(os.environ)
    if a.pin_workload is not None:
        env["GETPPID_LOOP_CPU"] = str(a.pin_workload)
    load0 = Path("/proc/loadavg").read_text().split()[:3]
    wl = subprocess.Popen([str(BIN), str(a.seconds), str(out_file)], env=env)
    t_end = time.monotonic_ns() + int((a.seconds - 3) * 1e9)
    modes: list[str] = [f"pw-count-{k}" for k in PW_KINDS]
    if not a.no_bpftrace and shutil.which("bpftrace"):
        modes += ["bpftrace-count", "bpftrace-count-rawsys"]
    windows: dict[str, list[tuple[int, int]]] = {m: [] for m in ["untraced", *modes]}
    notes: dict[str, Any] = {}
    try:
        while time.monotonic_ns() < t_end:
            for m in modes:
                if time.monotonic_ns() >= t_end:
                    break
                t0 = time.monotonic_ns()
                time.sleep(a.phase)
                windows["untraced"].append((t0, time.monotonic_ns()))
                if m.startswith("pw-count-"):
                    t_on, t_off, info = pw_phase(m.removeprefix("pw-count-"), wl.pid, a.phase)
                elif m == "bpftrace-count":
                    t_on, t_off, info = bpftrace_phase(
                        f"tracepoint:syscalls:sys_enter_getppid /pid == {wl.pid}/ "
                        "{ @c = count(); }", a.phase)
                else:
                    t_on, t_off, info = bpftrace_phase(
                        f"tracepoint:raw_syscalls:sys_enter /pid == {wl.pid} && "
                        f"args->id == {GETPPID_NR}/ {{ @c = count(); }}", a.phase)
                windows[m].append((t_on, t_off))
                notes[m] = info
    finally:
        wl.wait()
    lines = out_file.read_text().splitlines()[1:]
    batches = [(int(e), int(d)) for e, d in (ln.split() for ln in lines)]
    per: dict[str, list[float]] = {m: [] for m in windows}
    for m, ws in windows.items():
        ws.sort()
        for end, dur in batches:
            start = end - dur
            for w0, w1 in ws:
                if w0 <= start and end <= w1:
                    per[m].append(dur / BATCH)
                    break
    base = per["untraced"]
    b1, b10, b50 = pct(base, 0.01), pct(base, 0.10), statistics.median(base)
    rows = []
    load1 = Path("/proc/loadavg").read_text().split()[:3]
    print(f"getppid batches of {BATCH}, tracers toggled every {a.phase}s for {a.seconds:.0f}s; "
          f"load {' '.join(load0)} -> {' '.join(load1)}")
    print(f"{'config':24s} {'batches':>8s} {'p1 ns':>8s} {'p10 ns':>8s} {'median':>8s} "
          f"{'ovh p1':>8s} {'ovh p10':>8s} {'ovh med':>8s} {'p10/bpftrace':>12s}")
    ref = None
    for m, xs in per.items():
        if not xs:
            continue
        p1, p10, med = pct(xs, 0.01), pct(xs, 0.10), statistics.median(xs)
        row = {"config": m, "batches": len(xs), "p1_ns_per_call": p1, "p10_ns_per_call": p10,
               "overhead_p1_ns": p1 - b1,
               "median_ns_per_call": med, "overhead_p10_ns": p10 - b10,
               "overhead_median_ns": med - b50, "phases": len(windows[m])}
        if m == "bpftrace-count":
            ref = row["overhead_p10_ns"]
        rows.append(row)
    for row in rows:
        ratio = row["overhead_p10_ns"] / ref if ref and row["config"] != "untraced" else None
        row["overhead_p10_vs_bpftrace_count"] = ratio
        print(f"{row['config']:24s} {row['batches']:8d} {row['p1_ns_per_call']:8.1f} "
              f"{row['p10_ns_per_call']:8.1f} "
              f"{row['median_ns_per_call']:8.1f} {row['overhead_p1_ns']:8.1f} "
              f"{row['overhead_p10_ns']:8.1f} "
              f"{row['overhead_median_ns']:8.1f} "
              f"{'-' if ratio is None else format(ratio, '.2f'):>12s}")
    result = {"load_start": load0, "load_end": load1, "seconds": a.seconds, "phase": a.phase,
              "rows": rows, "notes": notes}
    (OUT / "count_toggle.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
