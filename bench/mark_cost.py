"""What one probewatch.mark() costs the calling thread, and what probewatch audit costs.

Marks: with a probewatch Session running in this process (marks go to its instance's
trace_marker; nothing reads the buffer during the loop, so the ring buffer just
overwrites): the best of --repeat runs of N calls each, in ns per call, for

- ``os.write``: the bare write(2) of a 16-byte mark on the cached fd (the floor);
- ``mark(name)``: a mark without fields;
- ``mark(name, 2 fields)``: ``mark("req", id=i, path="/index")`` (json encoding);
- ``span(name)``: a begin/end pair (two writes);
- ``mark_raw(8 bytes)``;
- ``C write(2)`` (tests/integration/progs/marks.c, when gcc is there): the same
  mark from C, per mark including its getppid().

Audit (``--audit``): wall time of a full ``Scanner().scan()`` and of the quick one
``watch --audit`` polls with (a second scan of the same Scanner: caches warm).

    sudo python bench/mark_cost.py [-n 100000] [--repeat 5] [--audit]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _best(fn: object, n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn(n)  # type: ignore[operator]
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


def marks(n: int, repeat: int) -> dict[str, float]:
    import probewatch
    from probewatch import marks as m
    from probewatch.session import Session

    out: dict[str, float] = {}
    with Session(buffer_kb=1024) as s:
        s.add("marker")
        s.start()
        fd = m._fd("trace_marker")
        data = b"req {\"id\":12345}"

        def bare(k: int) -> None:
            w = os.write
            for _ in range(k):
                w(fd, data)

        def plain(k: int) -> None:
            mk = probewatch.mark
            for _ in range(k):
                mk("tick")

        def fields(k: int) -> None:
            mk = probewatch.mark
            for i in range(k):
                mk("req", id=i, path="/index")

        def spans(k: int) -> None:
            sp = probewatch.span
            for _ in range(k):
                with sp("step"):
                    pass

        def raw(k: int) -> None:
            mr = probewatch.mark_raw
            payload = b"\x01" * 8
            for _ in range(k):
                mr(payload, 7)

        for name, fn in (("os.write (floor)", bare), ("mark(name)", plain),
                         ("mark(name, 2 fields)", fields), ("span(name) (2 writes)", spans),
                         ("mark_raw(8 bytes)", raw)):
            out[name] = _best(fn, n, repeat)
        cc = subprocess.run(["which", "gcc"], capture_output=True, text=True).stdout.strip()
        if cc:
            exe = ROOT / "bench" / "out" / "marks"
            exe.parent.mkdir(exist_ok=True)
            subprocess.run([cc, "-O2", "-o", str(exe),
                            str(ROOT / "tests" / "integration" / "progs" / "marks.c")],
                           check=True)
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter_ns()
                subprocess.run([str(exe), str(n)], check=True)
                best = min(best, (time.perf_counter_ns() - t0) / n)
            out["C write(2) + getppid"] = best
    return out


def audit() -> dict[str, float]:
    from probewatch.audit.scan import Scanner

    t0 = time.perf_counter()
    Scanner().scan()
    full = time.perf_counter() - t0
    sc = Scanner(full=False)
    sc.scan()
    t0 = time.perf_counter()
    rep = sc.scan()
    quick = time.perf_counter() - t0
    return {"full scan (s)": full, "quick rescan (s)": quick,
            "findings": float(len(rep.findings))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=100_000, help="calls per run (default 100000)")
    ap.add_argument("--repeat", type=int, default=5, help="runs; the best counts")
    ap.add_argument("--audit", action="store_true", help="also time probewatch audit")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (tracefs)", file=sys.stderr)
        return 1
    print(f"{'what':<26} ns per call (best of {a.repeat} x {a.n})")
    for k, v in marks(a.n, a.repeat).items():
        print(f"{k:<26} {v:8.0f}")
    if a.audit:
        for k, v in audit().items():
            print(f"{k:<26} {v:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
