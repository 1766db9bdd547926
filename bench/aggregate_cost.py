#!/usr/bin/env python3
"""Aggregations: probewatch trace --hist / --by against bpftrace's hist() / count().

Two workloads of bench/workloads (built into bench/out on first use), each timing its
own loop with CLOCK_MONOTONIC into a report file:

- ``hist``: ``uprobe_loop N`` calls ``pw_bench_fn(i)`` N times; a log2 histogram of
  its argument: ``probewatch trace --hist x 'u:BIN:pw_bench_fn x=arg0:s64'`` against
  ``bpftrace -e 'uprobe:BIN:pw_bench_fn { @x = hist(arg0); }'``.
- ``count``: ``getppid_loop N`` makes N getppid syscalls; a count per comm:
  ``probewatch trace --by comm t:syscalls:sys_enter_getppid`` against
  ``bpftrace -e 'tracepoint:syscalls:sys_enter_getppid { @[comm] = count(); }'``.
- ``count-probe``: the same workload counted per probe (``--by probe``: the session's
  counting path, in the kernel on bpf and perf) against bpftrace's ``@[probe] = count()``.
- ``latency``: ``uprobe_loop N``; the duration of every ``pw_bench_fn`` call as a log2
  histogram (``--latency 'u:BIN:pw_bench_fn'``, uprobe + uretprobe per call) against
  bpftrace's ``@s[tid] = nsecs`` / ``hist(nsecs - @s[tid])`` (``same``: the call count).

bpftrace's programs take only the workload (``/pid == cpid/``), as probewatch's
``-- COMMAND`` does. probewatch runs on each backend: ftrace, perf and
``bpf-user`` (``--agg-in user``) aggregate the events in user space, ``bpf`` aggregates
in the kernel (BPF maps, as bpftrace does); ``--by probe`` counts in the kernel on bpf
and perf. Column **where**: where probewatch aggregated (from its summary).
Columns: **ns/call** the workload's loop time / N,
**slowdown x** against the untraced workload, **tool CPU ns/ev** the tracer's own CPU
(user + system of the tool and its children, minus the workload's) per event, less
what the same tool spends on a run of one event (start-up, tear-down: **fixed CPU s**),
**wall s** launch to exit, **same** whether the aggregation equals bpftrace's (the
histogram lines, or the count for the workload's comm).

Run as root::

    python bench/aggregate_cost.py              # N = 200,000 (hist) and 1,000,000 (count)
    python bench/aggregate_cost.py --quick      # N / 10

Writes the table and the runs to ``bench/out/aggregate_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
BACKENDS = ("ftrace", "perf", "bpf-user", "bpf")


def build(name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    src = BENCH / "workloads" / f"{name}.c"
    out = OUT / name
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        cc = shutil.which("gcc") or shutil.which("cc")
        if not cc:
            sys.exit("aggregate_cost: gcc is needed to build the workloads")
        subprocess.run([cc, "-O2", "-o", str(out), str(src)], check=True)
    return out


def argv_of(job: str, tool: str, backend: str, wl: list[str]) -> list[str]:
    binary = wl[0]
    pw = [sys.executable, "-m", "probewatch", "trace"]
    pw += ["--backend", "bpf", "--agg-in", "user"] if backend == "bpf-user" else \
        ["--backend", backend]
    if job == "latency":
        if tool == "probewatch":
            return [*pw, "--latency", f"u:{binary}:pw_bench_fn", "--", *wl]
        if tool == "bpftrace":
            return ["bpftrace", "-e",
                    f"uprobe:{binary}:pw_bench_fn /pid == cpid/ {{ @s[tid] = nsecs; }} "
                    f"uretprobe:{binary}:pw_bench_fn /@s[tid]/ "
                    "{ @ns = hist(nsecs - @s[tid]); @n = count(); delete(@s[tid]); }",
                    "-c", shlex.join(wl)]
    if job == "hist":
        if tool == "probewatch":
            return [*pw, "--hist", "x", f"u:{binary}:pw_bench_fn x=arg0:s64", "--", *wl]
        if tool == "bpftrace":
            return ["bpftrace", "-e",
                    f"uprobe:{binary}:pw_bench_fn /pid == cpid/ {{ @x = hist(arg0); }}",
                    "-c", shlex.join(wl)]
    elif job == "count-probe":
        if tool == "probewatch":
            return [*pw, "--by", "probe", "t:syscalls:sys_enter_getppid", "--", *wl]
        if tool == "bpftrace":
            return ["bpftrace", "-e",
                    "tracepoint:syscalls:sys_enter_getppid /pid == cpid/ { @[probe] = count(); }",
                    "-c", shlex.join(wl)]
    else:
        if tool == "probewatch":
            return [*pw, "--by", "comm", "t:syscalls:sys_enter_getppid", "--", *wl]
        if tool == "bpftrace":
            return ["bpftrace", "-e",
                    "tracepoint:syscalls:sys_enter_getppid /pid == cpid/ { @[comm] = count(); }",
                    "-c", shlex.join(wl)]
    return wl


def result_of(job: str, tool: str, out: str, comm: str) -> Any:
    """The aggregation a tool printed, in one comparable form."""
    if tool == "untraced":
        return None
    if job == "latency":  # the durations differ run to run: the number of calls
        if tool == "bpftrace":
            m = re.search(r"^@n: (\d+)$", out, re.M)
            return int(m.group(1)) if m else None
        lines = [ln for ln in out.splitlines() if ln.startswith(("[", "("))]
        return sum(int(ln.split("|")[0].split()[-1]) for ln in lines) if lines else None
    if job == "hist":
        return [ln.rstrip() for ln in out.splitlines() if ln.startswith(("[", "("))]
    if job == "count-probe":
        m = re.search(r"sys_enter_getppid\]?:?\s+(\d+)$", out, re.M)
        return int(m.group(1)) if m else None
    if tool == "bpftrace":
        m = re.search(rf"^@\[{re.escape(comm)}\]: (\d+)$", out, re.M)
        return int(m.group(1)) if m else None
    m = re.search(rf"^{re.escape(comm)}\s+(\d+)$", out, re.M)
    return int(m.group(1)) if m else None


def run_once(job: str, tool: str, backend: str, binary: Path, n: int) -> dict[str, Any]:
    report = OUT / f"agg-{os.getpid()}.report"
    report.unlink(missing_ok=True)
    wl = [str(binary), str(n), str(report)]
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}:{os.environ.get('PYTHONPATH', '')}")
    argv = argv_of(job, tool, backend, wl)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise RuntimeError(f"{job}/{tool}/{backend}: exit {p.returncode}: {p.stderr[-400:]}")
    rep = dict(line.split(" ", 1) for line in report.read_text().splitlines() if " " in line)
    report.unlink(missing_ok=True)
    wl_cpu = (int(rep["utime_ns"]) + int(rep["stime_ns"])) / 1e9
    all_cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {
        "job": job, "tool": tool, "backend": backend if tool == "probewatch" else "",
        "n": n, "ns_per_call": float(rep["ns_per_call"]),
        "tool_cpu_s": max(0.0, all_cpu - wl_cpu), "wall_s": wall,
        "result": result_of(job, tool, p.stdout, binary.name[:15]),
        "where": ("" if tool != "probewatch" else "kernel"
                  if "aggregated in the kernel" in p.stderr or job == "count-probe"
                  and backend in ("perf", "bpf") else "user"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="N / 10")
    ap.add_argument("--only", choices=["hist", "count", "count-probe", "latency"],
                    help="one job")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("aggregate_cost: run as root")
    jobs = {"hist": (build("uprobe_loop"), 200_000), "count": (build("getppid_loop"), 1_000_000),
            "count-probe": (build("getppid_loop"), 1_000_000),
            "latency": (build("uprobe_loop"), 200_000)}
    rows = []
    for job, (binary, n) in jobs.items():
        if a.only and job != a.only:
            continue
        n = n // 10 if a.quick else n
        configs = [("untraced", ""), *[("probewatch", b) for b in BACKENDS
                                       if not (job == "count-probe" and b == "bpf-user")],
                   ("bpftrace", "")]
        runs = []
        for tool, b in configs:
            fixed = run_once(job, tool, b, binary, 1)  # start-up and tear-down alone
            r = run_once(job, tool, b, binary, n)
            r["fixed_cpu_s"] = fixed["tool_cpu_s"]
            r["tool_cpu_s"] = max(0.0, r["tool_cpu_s"] - fixed["tool_cpu_s"])
            runs.append(r)
        base = runs[0]["ns_per_call"]
        ref = runs[-1]["result"]
        for r in runs:
            r["slowdown"] = r["ns_per_call"] / base
            r["tool_cpu_ns_per_event"] = r["tool_cpu_s"] * 1e9 / n
            r["same"] = None if r["tool"] == "untraced" else r["result"] == ref
            rows.append(r)
    head = ["job", "config", "where", "ns/call", "slowdown x", "tool CPU ns/ev",
            "fixed CPU s", "wall s", "same"]
    body = [[r["job"], r["tool"] + (f"-{r['backend']}" if r["backend"] else ""),
             r["where"] or "-", f"{r['ns_per_call']:.0f}", f"{r['slowdown']:.1f}",
             f"{r['tool_cpu_ns_per_event']:.0f}", f"{r.get('fixed_cpu_s', 0):.2f}",
             f"{r['wall_s']:.2f}",
             "-" if r["same"] is None else "yes" if r["same"] else "NO"] for r in rows]
    w = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    for row in [head, *body]:
        print("  ".join(c.ljust(w[i]) if i < 3 else c.rjust(w[i]) for i, c in enumerate(row)))
    (OUT / "aggregate_cost.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if all(r["same"] in (None, True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
