"""probewatch ltrace against ltrace and bpftrace on the same library-call workload.

The workload (tests/integration/progs/lcalls.c, ``count N``) makes N malloc/free pairs
through its PLT. Each configuration runs it once (median of --repeat runs) and reports
the wall time, the slowdown against the untraced run, the time per traced call and
how many calls the tracer saw (2N expected: N malloc + N free).

    python bench/ltrace_cost.py                 # N = 200,000
    python bench/ltrace_cost.py --calls 50000 --repeat 3

Configurations:
  untraced    the workload alone
  ltrace      ltrace -e malloc+free -o /dev/null (ptrace: two stops per call)
  probewatch  probewatch ltrace -e malloc+free -o FILE (uprobe + uretprobe per stub)
  bpftrace    bpftrace counting uprobes on libc's malloc and free for the workload
              (the in-kernel floor: no record leaves the kernel)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
SRC = ROOT / "tests" / "integration" / "progs" / "lcalls.c"
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"


def build() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    exe = OUT / "lcalls"
    if not exe.exists() or exe.stat().st_mtime < SRC.stat().st_mtime:
        subprocess.run(["gcc", "-O0", "-fno-builtin", "-o", str(exe), str(SRC)], check=True)
    return exe


def timed(cmd: list[str], **kw: object) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    return time.monotonic() - t0, r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    exe = build()
    n = a.calls
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    tmp = Path(tempfile.mkdtemp(prefix="pw-ltrace-bench-"))
    results: dict[str, list[tuple[float, int]]] = {}

    def run(name: str, n: int = n, key: str = "") -> None:
        work = [str(exe), "count", str(n)]
        seen = 2 * n
        if name == "untraced":
            t, r = timed(work)
        elif name == "ltrace":
            out = tmp / "lt.txt"
            t, r = timed(["ltrace", "-e", "malloc+free", "-o", str(out), *work])
            seen = sum(1 for line in out.open() if "malloc(" in line or "free(" in line)
        elif name == "probewatch":
            out = tmp / "pw.txt"
            t, r = timed([sys.executable, "-m", "probewatch", "ltrace", "-e", "malloc+free",
                          "-o", str(out), "--", *work], env=env)
            seen = sum(1 for line in out.open() if "malloc(" in line or "free(" in line)
        else:  # bpftrace
            prog = (f'uprobe:{LIBC}:malloc /pid == cpid/ {{ @c = count(); }} '
                    f'uprobe:{LIBC}:free /pid == cpid/ {{ @c = count(); }}')
            t, r = timed(["bpftrace", "-e", prog, "-c", " ".join(work)])
            m = re.search(r"@c: (\d+)", r.stdout)
            seen = int(m.group(1)) if m else -1
        if r.returncode != 0:
            print(f"{name}: exit {r.returncode}: {r.stderr[-400:]}", file=sys.stderr)
        results.setdefault(name + key, []).append((t, seen))

    names = ["untraced", "ltrace", "probewatch"]
    if shutil.which("bpftrace"):
        names.append("bpftrace")
    for _ in range(a.repeat):
        for name in names:
            run(name)
            run(name, 0, "@0")
    base = statistics.median(t for t, _ in results["untraced"])
    print(f"workload: {n} malloc/free pairs ({2 * n} traced calls), median of {a.repeat}")
    print("us/call: (wall(N) - wall(0)) / 2N, the cost per traced call without the tracer's"
          " start-up and exit")
    print(f"{'config':<12} {'wall s':>8} {'start+exit s':>12} {'us/call':>8} {'vs ltrace':>9}"
          f" {'calls seen':>11}")
    per: dict[str, float] = {}
    for name in names:
        t = statistics.median(x for x, _ in results[name])
        t0 = statistics.median(x for x, _ in results[name + "@0"])
        seen = results[name][-1][1]
        per[name] = (t - t0) / (2 * n) * 1e6
        ratio = per[name] / per["ltrace"] if per.get("ltrace") else float("nan")
        print(f"{name:<12} {t:8.2f} {t0:12.2f} {per[name]:8.2f} {ratio:8.2f}x {seen:>11}")
    print(f"(untraced: {base:.3f} s)")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
