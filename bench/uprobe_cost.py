#!/usr/bin/env python3
"""What one uprobe / uretprobe hit costs the traced program: probewatch vs bpftrace.

The workload, ``bench/workloads/uprobe_loop.c`` (built with ``gcc -O2`` into
``bench/out/uprobe_loop`` on first use), calls a tiny non-inlined function
``pw_bench_fn`` N times (default 1,000,000) and times its own loop with
CLOCK_MONOTONIC, writing a report file (stdout belongs to the tracer). Each
configuration runs the same workload R times (median reported):

====================  =====================================================================
untraced              the workload alone: the baseline
probewatch-u          ``probewatch trace --count 'u:BIN:pw_bench_fn' -- BIN N REPORT``
probewatch-ur         the same with ``ur:`` (a uretprobe: entry hijack + return trampoline)
probewatch-u+ur       both probes at once
bpftrace-u            ``bpftrace -e 'uprobe:BIN:pw_bench_fn { @c = count(); }' -c '...'``
bpftrace-ur           ``uretprobe:`` instead
bpftrace-u+ur         both, counted in two maps
====================  =====================================================================

Columns: **ns/call** the workload's loop time / N; **slowdown x** against untraced;
**probe ns** ns/call minus the untraced ns/call (what the probe(s) add to one call);
**sys ns/call** the workload's own system CPU per call (the kernel's uprobe handling is
charged there); **delivered** the tool's count of hits (probewatch's JSON summary,
bpftrace's ``@c``); **lost** N (or 2N for u+ur) minus delivered; **start-up s** from
launching the tool to the first call.

Run as root, on a quiet machine::

    python bench/uprobe_cost.py                  # N=1,000,000, R=3, every configuration
    python bench/uprobe_cost.py --quick          # N=200,000, R=1
    python bench/uprobe_cost.py --only probewatch-u,bpftrace-u --repeat 5

Writes the table and every run to ``bench/out/uprobe_cost.json``. After each run the
script checks that nothing of the tool is left: probewatch's ``instances/probewatch-PID-*``
and ``uprobe_events`` group ``probewatch_PID`` (bpftrace attaches fd-based perf uprobes,
which the kernel removes when it exits); leftovers are reported, never silently removed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
WORKLOAD_SRC = BENCH / "workloads" / "uprobe_loop.c"
WORKLOAD_BIN = OUT / "uprobe_loop"
JSON_OUT = OUT / "uprobe_cost.json"
FUNC = "pw_bench_fn"
TRACEFS = "/sys/kernel/tracing"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def read_text(path: str | Path) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def build_workload() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    if (not WORKLOAD_BIN.exists()
            or WORKLOAD_BIN.stat().st_mtime < WORKLOAD_SRC.stat().st_mtime):
        cc = shutil.which("gcc") or shutil.which("cc")
        if not cc:
            sys.exit("uprobe_cost: gcc is needed to build the workload")
        subprocess.run([cc, "-O2", "-o", str(WORKLOAD_BIN), str(WORKLOAD_SRC)], check=True)
    return WORKLOAD_BIN


def cpu_busy(interval: float = 1.0) -> float:
    """Share of all CPUs that the rest of the machine used over ``interval`` seconds."""
    def busy() -> int:
        v = [int(x) for x in (read_text("/proc/stat") or "cpu 0 0 0 0").split("\n")[0]
             .split()[1:]]
        return sum(v[:8]) - v[3] - v[4]

    a = busy()
    time.sleep(interval)
    b = busy()
    return (b - a) / (interval * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1))


# ------------------------------------------------------------------- configurations


@dataclass
class Config:
    name: str
    tool: str  # untraced | probewatch | bpftrace
    probes: tuple[str, ...]  # "u" and/or "ur"
    backend: str = ""  # probewatch: --backend (empty: auto)


CONFIGS = [
    Config("untraced", "untraced", ()),
    Config("probewatch-u", "probewatch", ("u",)),
    Config("probewatch-ur", "probewatch", ("ur",)),
    Config("probewatch-u+ur", "probewatch", ("u", "ur")),
    # the same hit on each backend (issue 11): tracefs uprobe, uprobe PMU, BPF program
    *[Config(f"pw-{b}-{k}", "probewatch", (k,), b)
      for b in ("ftrace", "perf", "bpf") for k in ("u", "ur")],
    Config("bpftrace-u", "bpftrace", ("u",)),
    Config("bpftrace-ur", "bpftrace", ("ur",)),
    Config("bpftrace-u+ur", "bpftrace", ("u", "ur")),
]


def command(cfg: Config, binary: Path, n: int, report: Path, pw: list[str]) -> list[str]:
    wl = [str(binary), str(n), str(report)]
    if cfg.tool == "untraced":
        return wl
    if cfg.tool == "probewatch":
        specs = [f"{k}:{binary}:{FUNC}" for k in cfg.probes]
        be = ["--backend", cfg.backend] if cfg.backend else []
        return [*pw, "trace", "--count", "--json", *be, *specs, "--", *wl]
    kinds = {"u": "uprobe", "ur": "uretprobe"}
    prog = " ".join(f"{kinds[k]}:{binary}:{FUNC} {{ @{k} = count(); }}" for k in cfg.probes)
    return ["bpftrace", "-e", prog, "-c", shlex.join(wl)]


@dataclass
class Run:
    ns_per_call: float
    sys_ns_per_call: float
    delivered: int | None
    startup_s: float | None
    wall_s: float
    cpu: str
    leftovers: list[str] = field(default_factory=list)
    stderr_tail: str = ""


def delivered_count(cfg: Config, out: str, err: str) -> int | None:
    if cfg.tool == "probewatch":
        for line in reversed(err.splitlines()):
            if line.startswith('{"summary"'):
                return int(json.loads(line)["summary"]["total"])
        return None
    if cfg.tool == "bpftrace":
        counts = [int(m) for m in re.findall(r"^@\w+: (\d+)$", out, re.M)]
        return sum(counts) if counts else None
    return None


def leftovers(cfg: Config, pid: int) -> list[str]:
    left: list[str] = []
    if cfg.tool != "probewatch":
        return left
    inst = os.path.join(TRACEFS, "instances")
    left += [f"instance {n}" for n in os.listdir(inst) if n.startswith(f"probewatch-{pid}-")]
    text = read_text(os.path.join(TRACEFS, "uprobe_events")) or ""
    left += [f"uprobe {ln}" for ln in text.splitlines() if f":probewatch_{pid}/" in ln]
    return left


def run_once(cfg: Config, binary: Path, n: int, pw: list[str], timeout: float,
             pin: int | None) -> Run:
    report = OUT / f"uprobe_loop-{os.getpid()}.report"
    report.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}:{os.environ.get('PYTHONPATH', '')}")
    if pin is not None:
        env["UPROBE_LOOP_CPU"] = str(pin)
    argv = command(cfg, binary, n, report, pw)
    t_launch = time.monotonic_ns()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        raise RuntimeError(f"{cfg.name}: timed out after {timeout}s") from None
    t_end = time.monotonic_ns()
    if p.returncode != 0:
        raise RuntimeError(f"{cfg.name}: exit {p.returncode}: {err.strip()[-500:]}")
    rep = {}
    for line in (read_text(report) or "").splitlines():
        k, _, v = line.partition(" ")
        rep[k] = v
    report.unlink(missing_ok=True)
    if "ns_per_call" not in rep:
        raise RuntimeError(f"{cfg.name}: the workload wrote no report; stderr: {err[-500:]}")
    calls = int(rep["calls"])
    cpu = rep["cpu_start"] if rep["cpu_start"] == rep["cpu_end"] else (
        f"{rep['cpu_start']}->{rep['cpu_end']}")
    return Run(
        ns_per_call=float(rep["ns_per_call"]),
        sys_ns_per_call=int(rep["stime_ns"]) / calls,
        delivered=delivered_count(cfg, out, err),
        startup_s=(int(rep["t_loop_start"]) - t_launch) / 1e9 if cfg.tool != "untraced"
        else None,
        wall_s=(t_end - t_launch) / 1e9,
        cpu=cpu,
        leftovers=leftovers(cfg, p.pid),
        stderr_tail=" | ".join(err.strip().splitlines()[-2:])[-300:],
    )


# --------------------------------------------------------------------------- report


def fmt(v: float | int | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[dict[str, Any]]) -> str:
    head = ["config", "ns/call", "slowdown x", "probe ns", "sys ns/call", "delivered", "lost",
            "start-up s", "wl CPU"]
    body = [[
        r["name"], fmt(r["ns_per_call"], ".1f"), fmt(r["slowdown"], ".1f"),
        fmt(r["probe_ns"], ".0f"), fmt(r["sys_ns_per_call"], ".0f"),
        fmt(r["delivered"], "d"), fmt(r["lost"], "d"), fmt(r["startup_s"], ".2f"),
        ",".join(r["cpus"]),
    ] for r in rows]
    w = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(row))
             for row in [head, *body]]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="N=200,000, one run each")
    ap.add_argument("--only", help="comma-separated configuration names (untraced always runs)")
    ap.add_argument("--list", action="store_true", help="print the configuration names")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    ap.add_argument("--pin-workload", type=int, metavar="CPU")
    ap.add_argument("--probewatch", default=None,
                    help="probewatch command (default: this Python -m probewatch)")
    ap.add_argument("--json-out", default=str(JSON_OUT))
    a = ap.parse_args()
    if a.list:
        print("\n".join(c.name for c in CONFIGS))
        return 0
    if os.geteuid() != 0:
        sys.exit("uprobe_cost: run as root (uprobes, bpftrace)")
    n, repeat = (200_000, 1) if a.quick else (a.calls, a.repeat)
    names = set(a.only.split(",")) if a.only else {c.name for c in CONFIGS}
    unknown = names - {c.name for c in CONFIGS}
    if unknown:
        sys.exit(f"uprobe_cost: unknown configuration(s): {', '.join(sorted(unknown))}")
    configs = [c for c in CONFIGS if c.name in names or c.tool == "untraced"]
    if not shutil.which("bpftrace"):
        log("bpftrace not installed (apt-get install bpftrace): its rows are skipped")
        configs = [c for c in configs if c.tool != "bpftrace"]
    binary = build_workload()
    pw = shlex.split(a.probewatch) if a.probewatch else [sys.executable, "-m", "probewatch"]
    busy = cpu_busy()
    u = os.uname()
    title = (f"uprobe cost: N={n:,} calls of {FUNC}, median of {repeat}; kernel {u.release}"
             f" {u.machine}, {os.cpu_count()} CPUs; machine busy {busy:.0%} before start")
    log(title)
    if busy > 0.15:
        log("warning: the machine is busy; numbers will be noisy")
    rows: list[dict[str, Any]] = []
    base: float | None = None
    for cfg in configs:
        runs: list[Run] = []
        for i in range(repeat):
            log(f"[{cfg.name}] run {i + 1}/{repeat}")
            try:
                runs.append(run_once(cfg, binary, n, pw, a.timeout, a.pin_workload))
            except RuntimeError as e:
                log(f"[{cfg.name}] failed: {e}")
                break
        if not runs:
            continue
        ns = statistics.median(r.ns_per_call for r in runs)
        if cfg.tool == "untraced":
            base = ns
        expected = n * len(cfg.probes)
        delivered = [r.delivered for r in runs]
        med_deliv = (int(statistics.median(d for d in delivered if d is not None))
                     if any(d is not None for d in delivered) else None)
        row = {
            "name": cfg.name,
            "command": shlex.join(command(cfg, binary, n, Path("REPORT"), pw)),
            "ns_per_call": ns,
            "slowdown": ns / base if base else None,
            "probe_ns": ns - base if base is not None and cfg.tool != "untraced" else None,
            "sys_ns_per_call": statistics.median(r.sys_ns_per_call for r in runs),
            "delivered": med_deliv if cfg.probes else None,
            "lost": expected - med_deliv if cfg.probes and med_deliv is not None else None,
            "startup_s": statistics.median(r.startup_s for r in runs if r.startup_s is not None)
            if cfg.tool != "untraced" else None,
            "cpus": [r.cpu for r in runs],
            "runs": [r.__dict__ for r in runs],
        }
        for r in runs:
            for left in r.leftovers:
                log(f"note: {cfg.name} left behind: {left}")
        rows.append(row)
    print(title)
    print(table(rows))
    Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.json_out, "w") as f:
        json.dump({
            "title": title,
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "kernel": u.release, "machine": platform.machine(), "calls": n,
            "repeat": repeat, "busy_before": busy, "rows": rows,
        }, f, indent=2)
    log(f"wrote {a.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
