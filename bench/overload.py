#!/usr/bin/env python3
"""Overload: wall time, peak memory and counted loss under a sustained syscall firehose.

The workload is ``bench/workloads/getppid_loop.c`` (N ``syscall(SYS_getppid)`` calls
flat out; N = SECS x --rate, so "a 2 s firehose" is about 2 s of the loop under a
tracer). Every configuration runs in its own memory cgroup (v2 ``memory.max``, or v1
``memory.limit_in_bytes`` where the memory controller is on v1) capped at --cap-mb, so
an unbounded tracer is OOM-killed inside that cgroup instead of taking the machine:

- ``trace-json``: ``probewatch trace SPEC --json -- W`` with stdout to /dev/null;
- ``record``: ``probewatch record SPEC -o FILE -- W`` (FILE in --dir);
- ``trace-cmd``: ``trace-cmd record -k -d -b 4096 -e SPEC -F -o FILE W`` (the
  top-level buffer, restored afterwards as bench/syscall_firehose.py does; delivered =
  the events ``trace-cmd report`` shows).

Columns: wall s (tool start to exit), peak MiB (the cgroup's memory high-water mark:
processes, the in-memory spool and page cache charged to it), maxrss MiB (the largest
RSS of one process of the tool, from wait4), generated (N), delivered, lost (what the
tool reported), unaccounted (N - delivered - lost), OOM (kills in the cgroup).

Run as root::

    python bench/overload.py                       # 2 s and 10 s, all configurations
    python bench/overload.py --secs 2 --only trace-json
    PYTHONPATH=/path/to/old/src python bench/overload.py --label before --secs 2

Prints a table and writes JSON to bench/out/overload.json (--json-out to change).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
WORKLOAD_SRC = BENCH / "workloads" / "getppid_loop.c"
WORKLOAD_BIN = OUT / "getppid_loop"
SPEC = "t:syscalls:sys_enter_getppid"
CONFIGS = ["trace-json", "record", "trace-cmd"]
ROOT = "/sys/kernel/tracing"
sys.path.insert(0, str(BENCH))
import syscall_firehose as sf  # noqa: E402  (top-level tracefs snapshot/restore)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_workload() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if WORKLOAD_BIN.exists() and WORKLOAD_BIN.stat().st_mtime >= WORKLOAD_SRC.stat().st_mtime:
        return
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        sys.exit("overload: gcc is needed to build the workload")
    subprocess.run([cc, "-O2", "-o", str(WORKLOAD_BIN), str(WORKLOAD_SRC)], check=True)


class MemCgroup:
    """A child memory cgroup with a limit: enter it from a child (preexec), read its
    high-water mark and OOM kills, remove it."""

    def __init__(self, limit: int, name: str) -> None:
        self.v2 = False
        self.path = ""
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hid, ctrls, rel = line.split(":", 2)
            if hid == "0" and ctrls == "":
                for mnt in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                    base = Path(mnt + rel)
                    try:
                        have = (base / "cgroup.controllers").read_text().split()
                    except OSError:
                        continue
                    if "memory" in have:
                        self.v2, self.path = True, str(base / name)
            elif "memory" in ctrls.split(","):
                base = Path("/sys/fs/cgroup/memory" + rel)
                if base.is_dir() and not self.path:
                    self.path = str(base / name)
        if not self.path:
            raise RuntimeError("no memory cgroup controller (v1 or v2) is available")
        if self.v2:
            parent = os.path.dirname(self.path)
            try:
                with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
                    f.write("+memory")
            except OSError:
                pass
        os.makedirs(self.path, exist_ok=False)
        self._write("memory.max" if self.v2 else "memory.limit_in_bytes", str(limit))

    def _write(self, name: str, value: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def _read(self, name: str) -> str:
        with open(os.path.join(self.path, name)) as f:
            return f.read()

    def enter(self) -> None:
        """In a child before exec: move it (and its future children) here."""
        self._write("cgroup.procs", str(os.getpid()))

    def peak(self) -> int:
        return int(self._read("memory.peak" if self.v2 else "memory.max_usage_in_bytes"))

    def oom_kills(self) -> int:
        text = self._read("memory.events" if self.v2 else "memory.oom_control")
        m = re.search(r"^oom_kill (\d+)", text, re.M)
        return int(m.group(1)) if m else 0

    def remove(self) -> None:
        for _ in range(600):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)  # the last process of it is still exiting (OOM-killed)
        log(f"overload: could not remove the cgroup {self.path}; rmdir it by hand")


def parse_report(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def summary(err: str) -> dict[str, Any]:
    for line in reversed(err.splitlines()):
        if line.startswith('{"summary"'):
            return dict(json.loads(line)["summary"])
    return {}


def run_one(cfg: str, n: int, a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    report = tmp / f"{cfg}.report"
    report.unlink(missing_ok=True)
    w = [str(WORKLOAD_BIN), str(n), str(report)]
    pw = [sys.executable, "-m", "probewatch"]
    spool = ["--spool-mb", str(a.spool_mb)] if a.spool_mb else []
    dat = tmp / f"{cfg}.out"
    stdout: Any = subprocess.DEVNULL
    if cfg == "trace-json":
        argv = [*pw, "trace", SPEC, "--json", *spool, "--", *w]
    elif cfg == "record":
        argv = [*pw, "record", SPEC, "--json", "-o", str(dat), "--force", *spool, "--", *w]
    else:
        # the top-level buffer (trace-cmd 3.1 fails to record an instance here): wait
        # until nobody else uses it, undo what trace-cmd changes there afterwards
        deadline = time.monotonic() + 300
        while busy := sf.top_level_busy(ROOT):
            if time.monotonic() > deadline:
                return {"config": cfg, "label": a.label, "secs": n / a.rate, "generated": n,
                        "error": f"top-level tracefs busy: {busy}"}
            time.sleep(1)
        tc_before = sf.snapshot(ROOT)
        argv = ["trace-cmd", "record", "-k", "-d", "-b", "4096",
                "-e", SPEC.split(":", 1)[1], "-F", "-o", str(dat), *w]
    cg = MemCgroup(a.cap_mb << 20, f"pw-overload-{os.getpid()}-{cfg}")
    errf = tmp / f"{cfg}.stderr"
    try:
        t0 = time.monotonic()
        with open(errf, "w") as ef:
            p = subprocess.Popen(argv, stdout=stdout, stderr=ef, preexec_fn=cg.enter,
                                 cwd=tmp)
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        peak, ooms = cg.peak(), cg.oom_kills()
    finally:
        cg.remove()
        if cfg == "trace-cmd":
            sf.restore_top_level(ROOT, tc_before, sf.snapshot(ROOT))
            try:
                with open(os.path.join(ROOT, "set_event_pid"), "w") as f:
                    f.write("")
            except OSError:
                pass
    err = errf.read_text(errors="replace")
    rep = parse_report(report)
    r: dict[str, Any] = {
        "config": cfg, "label": a.label, "secs": n / a.rate, "generated": n,
        "loop_s": round((rep["t_loop_end"] - rep["t_loop_start"]) / 1e9, 3)
        if "t_loop_end" in rep else None,
        "wall_s": round(wall, 2), "peak_mib": round(peak / 2**20, 1),
        "maxrss_mib": round(ru.ru_maxrss / 1024, 1), "oom_kills": ooms,
        "exit": p.returncode, "delivered": None, "lost": None,
    }
    if cfg in ("trace-json", "record"):
        s = summary(err)
        if s:
            r["delivered"] = s.get("written", s.get("total"))
            r["lost"] = s.get("lost")
            r["spool"] = s.get("spool")
    elif p.returncode == 0:
        r["delivered"], r["lost"] = trace_cmd_counts(dat)
    if r["delivered"] is not None and r["lost"] is not None:
        r["unaccounted"] = n - r["delivered"] - r["lost"]
    if r["delivered"] is None:
        r["error"] = err.strip().splitlines()[-1:] or [f"exit {p.returncode}"]
    for f in (dat, Path(str(dat) + "-wal"), Path(str(dat) + "-shm")):
        f.unlink(missing_ok=True)
    return r


def trace_cmd_counts(dat: Path) -> tuple[int, int]:
    n = 0
    with subprocess.Popen(["trace-cmd", "report", "-i", str(dat)], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL) as p:
        assert p.stdout is not None
        while chunk := p.stdout.read(1 << 20):
            n += chunk.count(b"sys_enter_getppid")
    st = subprocess.run(["trace-cmd", "report", "--stat", "-i", str(dat)],
                        capture_output=True, text=True)
    lost = sum(int(v) for _k, v in
               re.findall(r"^(overrun|dropped events):\s*(\d+)", st.stdout, re.M))
    return n, lost


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--secs", type=float, action="append",
                    help="firehose length(s), repeatable (default: 2 and 10)")
    ap.add_argument("--rate", type=float, default=5e6,
                    help="traced getppid calls per second, N = SECS x RATE (default 5e6)")
    ap.add_argument("--only", action="append", choices=CONFIGS)
    ap.add_argument("--cap-mb", type=int, default=6144,
                    help="memory cgroup limit of each run (default 6144)")
    ap.add_argument("--spool-mb", type=int, help="pass --spool-mb to probewatch")
    ap.add_argument("--label", default="", help="a name for this set (e.g. before/after)")
    ap.add_argument("--dir", default=str(OUT), help="where captures and trace.dat go")
    ap.add_argument("--json-out", default=str(OUT / "overload.json"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("overload: run as root")
    build_workload()
    Path(a.dir).mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=a.dir, prefix="overload-") as d:
        for secs in a.secs or [2.0, 10.0]:
            for cfg in a.only or CONFIGS:
                log(f"overload: {cfg}, {secs:g} s firehose ...")
                for _ in range(3):
                    r = run_one(cfg, int(secs * a.rate), a, Path(d))
                    # trace-cmd 3.1 fails now and then when /proc/kallsyms changes size
                    # while it copies it (BPF programs loaded by others): run it again
                    if cfg != "trace-cmd" or r.get("delivered") is not None:
                        break
                log(f"  {r}")
                rows.append(r)
    hdr = (f"{'config':11} {'label':7} {'secs':>4} {'loop s':>6} {'wall s':>7} "
           f"{'peak MiB':>9} {'maxrss':>7} {'generated':>10} {'delivered':>10} "
           f"{'lost':>9} {'unacc':>6} OOM")
    print(hdr)
    for r in rows:
        def f(k: str, r: dict[str, Any] = r) -> str:
            v = r.get(k)
            return "-" if v is None else str(v)
        print(f"{r['config']:11} {r['label']:7} {r['secs']:4g} {f('loop_s'):>6} "
              f"{r['wall_s']:7.2f} {r['peak_mib']:9.1f} {r['maxrss_mib']:7.1f} "
              f"{r['generated']:10} {f('delivered'):>10} {f('lost'):>9} "
              f"{f('unaccounted'):>6} {r['oom_kills']}")
    Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json_out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
