#!/usr/bin/env python3
"""What ``probewatch watch`` costs a syscall-heavy benign workload.

The workload is ``tar czf OUT -C DIR .`` (default DIR: /usr/share; many opens,
reads, writes, stats and a gzip's CPU). It runs R times in each configuration,
interleaved, and the medians are reported:

- ``untraced``: the workload alone (the baseline);
- ``watch``: ``probewatch watch --json -- WORKLOAD`` with the shipped rules (alerts
  to a file: a benign workload should raise none);
- ``syscalls``: ``probewatch syscalls -f -- WORKLOAD`` (strace-style text of every
  syscall to /dev/null), for comparison.

The workload times itself (a small wrapper writes its wall time to a file), so the
tracer's start-up (loading BPF programs, compiling the rules, seeding the process
table) is not counted in "workload s"; "tool s" is the whole command. Columns:
workload s, ratio to untraced, tool s, tool cpu (the CPU seconds of the tool's own
process: the whole command's, from wait4, minus the workload's, which the timer
reports; start-up included), events (what the tool delivered), lost (what the
kernel dropped), alerts (watch only). On a machine shared with other work the
wall ratio is noisy; the tool's CPU seconds are what it takes from the workload
on a small machine. Target: watch within 10% of untraced with 0 lost.

Run as root on a quiet machine::

    python bench/watch_overhead.py                  # DIR=/usr/share, R=3
    python bench/watch_overhead.py --quick          # DIR=/usr/share/doc, R=1
    python bench/watch_overhead.py --dir /usr/include --repeat 5
    python bench/watch_overhead.py --workload cbuild --only watch,system
                                                    # a C build; system: machine-wide watch

Prints a table and writes the same as JSON to bench/out/watch_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
CONFIGS = ["untraced", "watch", "syscalls"]
# ``system``: ``probewatch watch`` of the whole machine (no command) started before the
# workload and stopped (SIGINT) after it: what a deployed monitor costs the work beside it
ALL_CONFIGS = [*CONFIGS, "system"]

TIMER = (
    "import resource, subprocess, sys, time\n"
    "t = time.monotonic()\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "w = time.monotonic() - t\n"
    "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "open(sys.argv[1], 'w').write(f'{w!r} {r.ru_utime + r.ru_stime!r}')\n"
    "sys.exit(rc)\n"
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def probewatch_cmd() -> list[str]:
    return [sys.executable, "-m", "probewatch"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    src = str(REPO / "src")
    e["PYTHONPATH"] = src + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def make_cproject(root: Path, n: int = 40) -> Path:
    """A C project of N translation units (each including stdio/stdlib/string) and a Makefile."""
    src = root / "cproj"
    src.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (src / f"u{i}.c").write_text(
            "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
            f"int f{i}(const char *s) {{ char b[64]; snprintf(b, sizeof b, \"%s{i}\", s); "
            f"return (int)strlen(b) + atoi(s); }}\n")
    calls = " + ".join(f"f{i}(v[0])" for i in range(n))
    decls = "".join(f"int f{i}(const char *);\n" for i in range(n))
    (src / "main.c").write_text(f"#include <stdio.h>\n{decls}"
                                f"int main(int c, char **v) {{ printf(\"%d\\n\", {calls}); "
                                "return c - 1; }\n")
    (src / "Makefile").write_text(
        "SRC := $(wildcard *.c)\nOBJ := $(SRC:.c=.o)\napp: $(OBJ)\n\t$(CC) -o $@ $^\n"
        "%.o: %.c\n\t$(CC) -O2 -g -Wall -c -o $@ $<\nclean:\n\trm -f *.o app\n")
    return src


def workload_cmd(kind: str, directory: str, tmp: Path, timing: Path) -> list[str]:
    if kind == "tar":
        archive = tmp / "a.tgz"
        if archive.exists():
            archive.unlink()
        return [sys.executable, "-c", TIMER, str(timing),
                "tar", "czf", str(archive), "-C", directory, "."]
    # cbuild: a clean make -j2 of the C project, then run the program
    src = tmp / "cproj"
    return [sys.executable, "-c", TIMER, str(timing), "sh", "-c",
            f"cd {src} && make -s clean && make -s -j2 && ./app > /dev/null"]


def run_system(workload: list[str], tmp: Path) -> tuple[float, subprocess.CompletedProcess[str],
                                                        Any]:
    """System-wide watch around one workload run: (tool seconds, workload, watch rusage)."""
    out = open(tmp / "alerts.txt", "w")  # noqa: SIM115
    errf = open(tmp / "watch.err", "w+")  # noqa: SIM115
    t0 = time.monotonic()
    w = subprocess.Popen([*probewatch_cmd(), "watch"], stdout=out, stderr=errf, text=True,
                         env=env())
    deadline = time.monotonic() + 120
    while "watching every process" not in (tmp / "watch.err").read_text():
        if w.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"system: watch did not start\n{(tmp / 'watch.err').read_text()}")
        time.sleep(0.1)
    r = subprocess.run(workload, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    w.send_signal(2)
    _, _status, ru = os.wait4(w.pid, 0)
    tool = time.monotonic() - t0
    out.close()
    errf.close()
    return tool, r, ru


def run_one(config: str, directory: str, tmp: Path, kind: str = "tar") -> dict[str, Any]:
    timing = tmp / "t"
    if timing.exists():
        timing.unlink()
    workload = workload_cmd(kind, directory, tmp, timing)
    alerts_file = tmp / "alerts.jsonl"
    if config == "system":
        tool, r, ru = run_system(workload, tmp)
        if r.returncode not in (0, 1):
            raise SystemExit(f"system: workload exit {r.returncode}\n{r.stderr[-2000:]}")
        wall_s, work_cpu = (float(x) for x in timing.read_text().split())
        err = (tmp / "watch.err").read_text()
        m = re.search(r"(\d+) events, (\d+) alerts.*?lost (\d+)", err)
        return {"config": config, "tool_s": tool, "workload_s": wall_s,
                "workload_cpu_s": work_cpu,
                # watch's own CPU for the whole time it ran (start-up, the machine's
                # other processes' events included)
                "tool_cpu_s": ru.ru_utime + ru.ru_stime, "tool_rss_mb": ru.ru_maxrss / 1024,
                "events": int(m.group(1)) if m else None,
                "alerts": int(m.group(2)) if m else None,
                "lost": int(m.group(3)) if m else None}
    if config == "untraced":
        cmd = workload
        stdout: Any = subprocess.DEVNULL
    elif config == "watch":
        cmd = [*probewatch_cmd(), "watch", "--json", "--", *workload]
        stdout = open(alerts_file, "w")  # noqa: SIM115
    elif config == "syscalls":
        cmd = [*probewatch_cmd(), "syscalls", "-f", "--", *workload]
        stdout = subprocess.DEVNULL
    else:
        raise SystemExit(f"unknown configuration {config}")
    t0 = time.monotonic()
    errf = tempfile.TemporaryFile("w+")
    child = subprocess.Popen(cmd, stdout=stdout, stderr=errf, text=True, env=env())
    _, status, ru = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    tool = time.monotonic() - t0
    errf.seek(0)
    stderr = errf.read()
    errf.close()
    if stdout not in (subprocess.DEVNULL,):
        stdout.close()
    if child.returncode not in (0, 1):  # tar: 1 = "some files changed while read"
        raise SystemExit(f"{config}: exit {child.returncode}\n{stderr[-2000:]}")
    wall_s, work_cpu = (float(x) for x in timing.read_text().split())
    # CPU of the whole command (its reaped descendants included) minus the
    # workload's own: what the tracer itself spent (for untraced: the timer)
    res: dict[str, Any] = {"config": config, "tool_s": tool, "workload_s": wall_s,
                           "workload_cpu_s": work_cpu,
                           "tool_cpu_s": ru.ru_utime + ru.ru_stime - work_cpu,
                           "tool_rss_mb": ru.ru_maxrss / 1024,
                           "events": None, "lost": None, "alerts": None}
    if config == "watch":
        for line in stderr.splitlines():
            if line.startswith('{"summary"'):
                s = json.loads(line)["summary"]
                res.update(events=s["events"], lost=s["lost"], alerts=s["alerts"],
                           rule_errors=s.get("rule_errors"))
        res["alert_titles"] = sorted({json.loads(x)["rule"]["title"]
                                      for x in alerts_file.read_text().splitlines()})
    elif config == "syscalls":
        m = re.search(r"(\d+) events in [\d.]+s, lost (\d+)", stderr)
        if m:
            res.update(events=int(m.group(1)), lost=int(m.group(2)))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="/usr/share", help="directory to archive")
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration")
    ap.add_argument("--only", help="comma list of configurations (untraced always runs): "
                    + ", ".join(ALL_CONFIGS))
    ap.add_argument("--workload", choices=["tar", "cbuild"], default="tar",
                    help="tar czf of DIR (default), or cbuild: make -j2 of a generated "
                         "41-file C project")
    ap.add_argument("--quick", action="store_true", help="/usr/share/doc, one run each")
    ap.add_argument("--json-out", default=str(OUT / "watch_overhead.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        log("watch_overhead: needs root (BPF)")
        return 2
    if args.quick:
        args.dir, args.repeat = "/usr/share/doc", 1
    configs = CONFIGS if not args.only else ["untraced"] + [
        c for c in args.only.split(",") if c != "untraced"]
    OUT.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    load = os.getloadavg()[0]
    what = f"tar czf of {args.dir}" if args.workload == "tar" else "make -j2 of a C project"
    log(f"watch_overhead: {what}, {args.repeat} runs each, "
        f"load average {load:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="pw-bench-") as td:
        tmp = Path(td)
        if args.workload == "cbuild":
            make_cproject(tmp)
        for i in range(args.repeat):
            for c in configs:
                r = run_one(c, args.dir, tmp, args.workload)
                log(f"  run {i + 1} {c:9} workload {r['workload_s']:.2f}s tool "
                    f"{r['tool_s']:.2f}s tool cpu {r['tool_cpu_s']:.2f}s events {r['events']} "
                    f"lost {r['lost']}")
                runs[c].append(r)
    base = statistics.median(r["workload_s"] for r in runs["untraced"])
    table = []
    for c in configs:
        rs = runs[c]
        w = statistics.median(r["workload_s"] for r in rs)
        row = {
            "config": c,
            "workload_s": round(w, 3),
            "ratio": round(w / base, 3),
            "tool_s": round(statistics.median(r["tool_s"] for r in rs), 3),
            "tool_cpu_s": round(statistics.median(r["tool_cpu_s"] for r in rs), 3),
            "tool_cpu_min_s": round(min(r["tool_cpu_s"] for r in rs), 3),
            "tool_rss_mb": round(max(r["tool_rss_mb"] for r in rs), 1),
            "events": rs[-1]["events"],
            "lost": max((r["lost"] or 0) for r in rs) if c != "untraced" else None,
            "alerts": rs[-1].get("alerts"),
            "alert_titles": rs[-1].get("alert_titles"),
            "runs": rs,
        }
        table.append(row)
    print(f"{'config':10} {'workload s':>10} {'ratio':>6} {'tool s':>8} {'tool cpu':>8} "
          f"{'events':>10} {'lost':>6} {'alerts':>6}")
    for row in table:
        print(f"{row['config']:10} {row['workload_s']:10.2f} {row['ratio']:6.3f} "
              f"{row['tool_s']:8.2f} {row['tool_cpu_s']:8.2f} {str(row['events'] or '-'):>10} "
              f"{str(row['lost'] if row['lost'] is not None else '-'):>6} "
              f"{str(row['alerts'] if row['alerts'] is not None else '-'):>6}")
    Path(args.json_out).write_text(json.dumps({"dir": args.dir, "workload": args.workload,
                                               "repeat": args.repeat,
                                               "load": load, "results": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
