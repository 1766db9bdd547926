#!/usr/bin/env python3
"""What taking a stack costs per event: ``trace --stack`` against the same trace without.

The workload is bench/uprobe_cost.py's ``uprobe_loop`` (``pw_bench_fn`` called N times
in a loop, timing itself), built here with frame pointers (``-O2
-fno-omit-frame-pointer`` into ``bench/out/uprobe_loop_fp``) so the kernel's user
unwinder walks pw_bench_fn < main < libc. Every configuration streams the events
(``trace --json``, stdout thrown away) of ``u:BIN:pw_bench_fn`` on one backend:

==================  ================================================================
untraced            the workload alone
perf                ``--backend perf``, no stack
perf-user           ``--backend perf --stack user`` (PERF_SAMPLE_CALLCHAIN, user part)
perf-kernel         ``--stack kernel`` (the uprobe trap path)
perf-both           ``--stack both``
bpf, bpf-user, ...  the same on ``--backend bpf`` (bpf_get_stack: user ips plus the
                    same stack as build-id frames; kernel ips)
ftrace, ftrace-kernel   ``--backend ftrace`` without / with the stacktrace option
==================  ================================================================

Columns: **ns/call** the workload's loop time / N (median of R runs); **stack ns** the
ns/call minus that of the same backend without a stack: what taking the stack adds to
each event in the traced program; **sys ns/call** the workload's own system CPU per
call (the probe handler, the unwinding and the copy run there, in the kernel, on the
traced thread: the least noisy measure on a shared machine) and **stack sys ns** the
same difference of it; **tracer us/ev** the CPU the tracer spent (user +
system, the workload's own CPU taken out) per delivered event: decoding and
symbolizing the stacks; **delivered** / **lost** (N minus delivered).

Run as root::

    python bench/stack_cost.py                 # N=100,000, R=3
    python bench/stack_cost.py --quick         # N=20,000, R=1
    python bench/stack_cost.py --only perf,perf-user --repeat 5

Writes the table and every run to ``bench/out/stack_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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
SRC = BENCH / "workloads" / "uprobe_loop.c"
BIN = OUT / "uprobe_loop_fp"
FUNC = "pw_bench_fn"

#: name -> (backend or "" for untraced, stack or None)
CONFIGS: dict[str, tuple[str, str | None]] = {"untraced": ("", None)}
for _b in ("perf", "bpf"):
    CONFIGS[_b] = (_b, None)
    for _k in ("user", "kernel", "both"):
        CONFIGS[f"{_b}-{_k}"] = (_b, _k)
CONFIGS["ftrace"] = ("ftrace", None)
CONFIGS["ftrace-kernel"] = ("ftrace", "kernel")


def build() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    if not BIN.exists() or BIN.stat().st_mtime < SRC.stat().st_mtime:
        cc = shutil.which("gcc") or shutil.which("cc")
        if not cc:
            sys.exit("stack_cost: gcc is needed to build the workload")
        subprocess.run([cc, "-O2", "-fno-omit-frame-pointer", "-o", str(BIN), str(SRC)],
                       check=True)
    return BIN


def run_once(name: str, n: int, timeout: float) -> dict[str, Any]:
    backend, stack = CONFIGS[name]
    report = OUT / f"stack_cost-{os.getpid()}.report"
    report.unlink(missing_ok=True)
    wl = [str(BIN), str(n), str(report)]
    argv = wl
    if backend:
        argv = [sys.executable, "-m", "probewatch", "trace", "--json", "--backend", backend,
                *(["--stack", stack] if stack else []), f"u:{BIN}:{FUNC}", "--", *wl]
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}:{os.environ.get('PYTHONPATH', '')}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env=env)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise RuntimeError(f"{name}: timed out after {timeout}s") from None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise RuntimeError(f"{name}: exit {p.returncode}: {err.strip()[-500:]}")
    rep = dict(line.partition(" ")[::2] for line in report.read_text().splitlines())
    report.unlink(missing_ok=True)
    wl_cpu = (int(rep["utime_ns"]) + int(rep["stime_ns"])) / 1e9
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    delivered = None
    for line in reversed(err.splitlines()):
        if line.startswith('{"summary"'):
            delivered = int(json.loads(line)["summary"]["total"])
            break
    return {"ns_per_call": float(rep["ns_per_call"]), "delivered": delivered,
            "sys_ns_per_call": int(rep["stime_ns"]) / n,
            "tracer_cpu_s": max(0.0, total - wl_cpu) if backend else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="N=20,000, one run each")
    ap.add_argument("--only", help="comma-separated configuration names")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--json-out", default=str(OUT / "stack_cost.json"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("stack_cost: run as root")
    n, rep = (20_000, 1) if a.quick else (a.calls, a.repeat)
    names = list(CONFIGS) if not a.only else ["untraced", *[
        x for x in a.only.split(",") if x != "untraced"]]
    for x in names:
        if x not in CONFIGS:
            sys.exit(f"stack_cost: unknown configuration {x!r} (have: {', '.join(CONFIGS)})")
    build()
    runs: dict[str, list[dict[str, Any]]] = {x: [] for x in names}
    for _ in range(rep):  # interleaved: drift of the shared machine hits all alike
        for x in names:
            runs[x].append(run_once(x, n, a.timeout))
            time.sleep(0.2)
    rows = []
    for x in names:
        rs = runs[x]
        ns = statistics.median(r["ns_per_call"] for r in rs)
        dl = [r["delivered"] for r in rs if r["delivered"] is not None]
        cpu = [r["tracer_cpu_s"] for r in rs if r["tracer_cpu_s"] is not None]
        delivered = int(statistics.median(dl)) if dl else None
        sys_ns = statistics.median(r["sys_ns_per_call"] for r in rs)
        rows.append({"name": x, "ns_per_call": ns, "delivered": delivered,
                     "sys_ns_per_call": sys_ns,
                     "lost": None if delivered is None else n - delivered,
                     "tracer_us_per_event": (statistics.median(cpu) * 1e6 / delivered
                                             if cpu and delivered else None)})
    base = {r["name"]: r for r in rows}
    for r in rows:
        be, stack = CONFIGS[r["name"]]
        b = base.get(be) if stack else None
        r["stack_ns"] = None if b is None else r["ns_per_call"] - b["ns_per_call"]
        r["stack_sys_ns"] = None if b is None else r["sys_ns_per_call"] - b["sys_ns_per_call"]
    head = ["config", "ns/call", "stack ns", "sys ns/call", "stack sys ns", "tracer us/ev",
            "delivered", "lost"]

    def f(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    body = [[r["name"], f(r["ns_per_call"], ".0f"), f(r["stack_ns"], ".0f"),
             f(r["sys_ns_per_call"], ".0f"), f(r["stack_sys_ns"], ".0f"),
             f(r["tracer_us_per_event"], ".1f"), f(r["delivered"], "d"), f(r["lost"], "d")]
            for r in rows]
    w = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    print(f"stack_cost: N={n}, R={rep}, {platform.release()}, {os.cpu_count()} CPUs")
    for row in [head, *body]:
        print("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(row)))
    Path(a.json_out).write_text(json.dumps({"calls": n, "repeat": rep, "rows": rows,
                                            "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
