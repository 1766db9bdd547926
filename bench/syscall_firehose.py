#!/usr/bin/env python3
"""Syscall firehose: what tracing one very hot tracepoint costs, probewatch vs the anchors.

One workload, ``bench/workloads/getppid_loop.c`` (N ``syscall(SYS_getppid)`` calls in a
tight loop, ~120 ns each untraced), run untraced and under each tracer configuration,
R times each (median reported). The workload times its own loop with CLOCK_MONOTONIC and
reports its own rusage, so tracer start-up/teardown and tracer CPU are kept apart from
the loop. A separate part measures the probewatch page decoder alone on saved raw pages.

Run as root (tracefs, bpftrace, trace-cmd)::

    bench/install-anchors.sh                       # bpftrace, trace-cmd, strace, perf
    python bench/syscall_firehose.py               # everything, N=1,000,000, R=3
    python bench/syscall_firehose.py --quick       # N=200,000, R=1
    python bench/syscall_firehose.py --only trace-cmd,bpftrace-count --repeat 5
    python bench/syscall_firehose.py --list        # configuration names

Prints a table and writes the same as JSON to bench/out/syscall_firehose.json.
See bench/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import errno
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
WORKLOAD_SRC = BENCH / "workloads" / "getppid_loop.c"
WORKLOAD_BIN = OUT / "getppid_loop"
JSON_OUT = OUT / "syscall_firehose.json"

SYSTEM, EVENT = "syscalls", "sys_enter_getppid"
SPEC = f"t:{SYSTEM}:{EVENT}"
# named like probewatch instances, so "probewatch cleanup" removes it after a SIGKILL
BENCH_INSTANCE = f"probewatch-{os.getpid()}-900"

# --------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def tail(text: str, lines: int = 3, width: int = 300) -> str:
    """The last few non-empty lines of a tool's output, on one line."""
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-lines:]
    s = " | ".join(kept) or "(no output)"
    return s if len(s) <= width else "..." + s[-width:]


def find_tracefs() -> str:
    for c in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.isdir(os.path.join(c, "events")):
            return c
    try:
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"syscall_firehose: tracefs is not mounted and mounting failed: {e}")
    return "/sys/kernel/tracing"


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def write_text(path: str, text: str, append: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC))
    try:
        if text:
            os.write(fd, text.encode())
    finally:
        os.close(fd)


def cmd_version(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    for line in (p.stdout + p.stderr).splitlines():
        if line.strip():
            return line.strip()
    return "?"


def _proc_ticks() -> dict[int, int]:
    ticks = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = read_text(f"/proc/{d}/stat")
            if st:
                f = st.rsplit(")", 1)[-1].split()
                ticks[int(d)] = int(f[11]) + int(f[12])  # utime + stime
    return ticks


def cpu_busy(interval: float = 1.0) -> tuple[float, str]:
    """Share of all CPUs that other processes used over ``interval`` seconds, and the
    busiest of them (its command line)."""
    me = os.getpid()
    a = _proc_ticks()
    time.sleep(interval)
    b = _proc_ticks()
    deltas = {p: t - a[p] for p, t in b.items() if p != me and p in a}
    hz = os.sysconf("SC_CLK_TCK")
    share = sum(deltas.values()) / (interval * hz * (os.cpu_count() or 1))
    top = max(deltas, key=lambda p: deltas[p], default=0)
    cmd = (read_text(f"/proc/{top}/cmdline") or "").replace("\0", " ").strip()
    return share, f"pid {top}: {cmd[:120]}" if top else ""


def busy_ticks() -> int:
    """Non-idle CPU time of the whole machine so far, in clock ticks (/proc/stat)."""
    v = [int(x) for x in (read_text("/proc/stat") or "cpu 0 0 0 0").split("\n")[0].split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: inside user/nice]
    return sum(v[:8]) - v[3] - v[4]


def wait_quiet(limit: float, name: str) -> None:
    """Wait (up to ``limit`` seconds) until other processes use under 10% of the CPUs."""
    deadline = time.monotonic() + limit
    busy, who = cpu_busy(0.5)
    if busy < 0.1:
        return
    log(f"[{name}] waiting for a quiet machine ({busy:.0%} busy, busiest {who})")
    while time.monotonic() < deadline:
        busy, who = cpu_busy(0.5)
        if busy < 0.1:
            return
    log(f"[{name}] still {busy:.0%} busy after {limit:.0f}s; running anyway")


def session_pids(sid: int) -> list[int]:
    """Live processes in session ``sid`` (every tracer we start leads its own session)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = read_text(f"/proc/{d}/stat")
        if not st:
            continue
        fields = st.rsplit(")", 1)[-1].split()
        # after "pid (comm)": state ppid pgrp session ...
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(d))
    return out


# --------------------------------------------------------------------------- tracefs state

# top-level files whose value trace-cmd (or anything else using the global buffer) changes
STATE_FILES = (
    "set_event",
    "set_event_pid",
    "set_event_notrace_pid",
    "tracing_on",
    "current_tracer",
    "buffer_size_kb",
    "buffer_percent",
    "trace_clock",
    f"events/{SYSTEM}/{EVENT}/filter",
)
INSTANCE_RE = re.compile(r"^probewatch-(\d+)-(\d+)$")


def snapshot(root: str) -> dict[str, Any]:
    st: dict[str, Any] = {}
    for f in STATE_FILES:
        v = read_text(os.path.join(root, f))
        if v is not None:
            st[f] = v.strip()
    opts = os.path.join(root, "options")
    for o in sorted(os.listdir(opts)) if os.path.isdir(opts) else []:
        v = read_text(os.path.join(opts, o))
        if v is not None:
            st[f"options/{o}"] = v.strip()
    for f in ("dynamic_events", "kprobe_events", "uprobe_events"):
        v = read_text(os.path.join(root, f))
        if v is not None:
            st[f] = v.strip()
    try:
        st["instances"] = sorted(os.listdir(os.path.join(root, "instances")))
    except OSError:
        st["instances"] = []
    return st


def _selected(v: str) -> str:
    m = re.search(r"\[(\S+)\]", v)
    return m.group(1) if m else v


def _kb(v: str) -> str:
    m = re.search(r"expanded:\s*(\d+)", v)
    return m.group(1) if m else v.split()[0]


DYN_GROUP_RE = re.compile(r"^[^\s/]*?:(probewatch_(\d+)\w*)/")


def diff_state(before: dict[str, Any], after: dict[str, Any], owner_pid: int,
               top_level: bool) -> tuple[list[str], list[str]]:
    """Changes in tracefs between two snapshots: (ours, not attributable to the run).

    Other engineers' tests and tools use the same tracefs at the same time, so only what
    a run can own counts as its leftover: instances ``probewatch-<tracer pid>-*`` and
    dynamic events in groups ``probewatch_<tracer pid>*`` (probewatch's naming rule), and
    the top-level state when the tool works in the top-level buffer (``top_level``).
    Everything else that changed is returned second, for the record.
    """
    ours, others = [], []
    for k in sorted(set(before) | set(after)):
        if k == "instances" or before.get(k) == after.get(k):
            continue
        change = f"{k}: {before.get(k)!r} -> {after.get(k)!r}"
        if k in ("dynamic_events", "kprobe_events", "uprobe_events"):
            old = set(str(before.get(k, "")).splitlines())
            new_lines = [ln for ln in str(after.get(k, "")).splitlines() if ln not in old]
            mine = [ln for ln in new_lines if (m := DYN_GROUP_RE.match(ln))
                    and int(m.group(2)) == owner_pid]
            if mine:
                ours += [f"{k}: {ln}" for ln in mine]
            if len(mine) != len(new_lines) or not new_lines:
                others.append(change)
        elif top_level and (k in TC_CHANGES or k == "set_event"):
            ours.append(change)
        else:
            others.append(change)
    for name in sorted(set(after.get("instances", [])) - set(before.get("instances", []))):
        if name == BENCH_INSTANCE:
            continue  # the bench's own, removed by the configuration that made it
        m = INSTANCE_RE.match(name)
        if m and int(m.group(1)) == owner_pid:
            ours.append(f"instance {name} left behind")
        else:
            others.append(f"instance {name} appeared")
    return ours, others


# what `trace-cmd record -k -d -e EVENT -- CMD` changes in the top level and leaves so
TC_CHANGES = ("tracing_on", "buffer_size_kb", "options/function-trace", "current_tracer",
              "trace_clock")


def restore_top_level(root: str, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Undo what trace-cmd record -k -d changed in the top-level instance.

    Only the settings trace-cmd itself changes (TC_CHANGES, and our event in set_event),
    and only where they differ from the snapshot taken right before the run: anything
    else that changed was somebody else (tests run trace-cmd too) and is not touched.
    Returns what was restored.
    """
    done = []
    ev = f"{SYSTEM}:{EVENT}"
    old_ev = set(filter(None, before.get("set_event", "").splitlines()))
    new_ev = set(filter(None, after.get("set_event", "").splitlines()))
    if ev in new_ev and ev not in old_ev:
        try:
            write_text(os.path.join(root, "set_event"), f"!{ev}\n", append=True)
            done.append(f"disabled event {ev}")
        except OSError as e:
            done.append(f"could not disable {ev}: {e.strerror}")
    for k in TC_CHANGES:
        old = before.get(k)
        if old is None or after.get(k) == old:
            continue
        val = old
        if k == "trace_clock":
            val = _selected(old)
        elif k == "buffer_size_kb":
            val = _kb(old)
        try:
            write_text(os.path.join(root, k), val + "\n" if val else "")
            done.append(f"{k} -> {val!r}")
        except OSError as e:
            done.append(f"could not restore {k}: {e.strerror}")
    return done


def top_level_busy(root: str) -> str:
    """Why the top-level buffer is not ours to use right now ('' when it is free)."""
    why = []
    for f, free in (("set_event", ""), ("set_event_pid", ""), ("current_tracer", "nop")):
        v = (read_text(os.path.join(root, f)) or "").strip()
        if v != free:
            why.append(f"{f}={v!r}")
    tc = [d for d in os.listdir("/proc") if d.isdigit()
          and (read_text(f"/proc/{d}/comm") or "").strip() == "trace-cmd"]
    if tc:
        why.append(f"trace-cmd running (pid {', '.join(tc)})")
    return "; ".join(why)


def remove_instance(root: str, name: str) -> None:
    path = os.path.join(root, "instances", name)
    if not os.path.isdir(path):
        return
    for rel, val in (("tracing_on", "0"), ("events/enable", "0")):
        try:
            write_text(os.path.join(path, rel), val)
        except OSError:
            pass
    for _ in range(100):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.02)
    os.rmdir(path)


# --------------------------------------------------------------------------- workload


def build_workload(cc: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if WORKLOAD_BIN.exists() and WORKLOAD_BIN.stat().st_mtime >= WORKLOAD_SRC.stat().st_mtime:
        return
    cmd = [cc, "-O2", "-Wall", "-o", str(WORKLOAD_BIN), str(WORKLOAD_SRC)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"syscall_firehose: building the workload failed:\n{shlex.join(cmd)}\n"
                 f"{p.stderr}")


def parse_report(path: Path) -> dict[str, float]:
    rep: dict[str, float] = {}
    for line in path.read_text().splitlines():
        k, _, v = line.partition(" ")
        rep[k] = float(v)
    return rep


# --------------------------------------------------------------------------- one run


@dataclass
class Run:
    ok: bool
    error: str | None = None
    ns_per_call: float | None = None
    delivered: int | None = None
    reported_lost: int | None = None
    tracer_cpu_ns: int | None = None
    workload_cpu_ns: int | None = None
    startup_s: float | None = None
    teardown_s: float | None = None
    wall_s: float | None = None
    exit_status: int | None = None
    leftovers: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Ctx:
    calls: int
    root: str
    timeout: float
    probewatch: list[str]
    env: dict[str, str]
    busy_wait: float = 60.0


class Spawned:
    """A tracer started in its own session, waited for with wait4 (its rusage)."""

    def __init__(self, argv: list[str], stdout: Any, stderr: Any, env: dict[str, str]) -> None:
        self.argv = argv
        self.t_launch = time.monotonic_ns()
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                  env=env, start_new_session=True)
        self.pid = self.p.pid
        self.timed_out = False

    def wait(self, timeout: float) -> tuple[int, Any, int]:
        timer = threading.Timer(timeout, self._timeout)
        timer.start()
        try:
            while True:
                try:
                    _, status, ru = os.wait4(self.pid, 0)
                    break
                except InterruptedError:
                    continue
        finally:
            timer.cancel()
        t_exit = time.monotonic_ns()
        self.p.returncode = os.waitstatus_to_exitcode(status)
        return self.p.returncode, ru, t_exit

    def _timeout(self) -> None:
        self.timed_out = True
        self.kill()

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass


_current: list[Spawned] = []


def run_tool(
    ctx: Ctx,
    argv_for: Callable[[list[str]], list[str]],
    stdout_path: Path | None,
    collect: Callable[[Run, dict[str, float], str, str], None] | None,
    before_state: dict[str, Any],
    global_buffer: bool = False,
    env: dict[str, str] | None = None,
) -> Run:
    """Run one tracer configuration once; ``argv_for(workload_argv)`` builds its command."""
    report = OUT / "workload-report.txt"
    errf = OUT / "tool-stderr.txt"
    report.unlink(missing_ok=True)
    workload = [str(WORKLOAD_BIN), str(ctx.calls), str(report)]
    argv = argv_for(workload)
    out_target: Any = subprocess.DEVNULL
    fo = open(stdout_path, "wb") if stdout_path else None
    if fo:
        out_target = fo
    with open(errf, "wb") as fe:
        b0 = busy_ticks()
        try:
            sp = Spawned(argv, out_target, fe, env or ctx.env)
        except OSError as e:
            if fo:
                fo.close()
            return Run(False, f"cannot start {argv[0]}: {e.strerror}")
        _current.append(sp)
        try:
            rc, ru, t_exit = sp.wait(ctx.timeout)
        except BaseException:  # interrupted: still put the top level back as it was
            sp.kill()
            if global_buffer:
                restore_top_level(ctx.root, before_state, snapshot(ctx.root))
            raise
        finally:
            b1 = busy_ticks()
            _current.remove(sp)
            if fo:
                fo.close()
            # anything of the run still alive (orphaned recorders, the workload) is ours
            strays = session_pids(sp.pid)
            if strays:
                sp.kill()
    err = errf.read_text(errors="replace")
    out = stdout_path.read_text(errors="replace") if stdout_path and stdout_path.stat().st_size < (
        1 << 20) else ""
    r = Run(True, exit_status=rc)
    if strays:
        r.leftovers.append(f"processes left running (killed): {strays}")
    after = snapshot(ctx.root)
    if global_buffer:
        restored = restore_top_level(ctx.root, before_state, after)
        if restored:
            r.extra["restored_top_level"] = restored
        after = snapshot(ctx.root)
    ours, others = diff_state(before_state, after, sp.pid, global_buffer)
    r.leftovers += ours
    if others:
        r.extra["tracefs_changed_by_others"] = others
    for name in after.get("instances", []):
        m = INSTANCE_RE.match(name)
        if m and int(m.group(1)) == sp.pid:
            try:  # the tracer's own instance outlived it: clean up after it
                remove_instance(ctx.root, name)
                r.leftovers.append(f"removed instance {name} (left by pid {sp.pid})")
            except OSError as e:
                r.leftovers.append(f"cannot remove instance {name}: {e.strerror}")
    if sp.timed_out:
        return Run(False, f"timed out after {ctx.timeout:.0f}s: {tail(err)}",
                   leftovers=r.leftovers)
    if rc != 0 or not report.exists():
        why = f"exit {rc}" if rc != 0 else "workload wrote no report"
        return Run(False, f"{why}: {tail(err or out)}", exit_status=rc, leftovers=r.leftovers)
    rep = parse_report(report)
    r.ns_per_call = rep["ns_per_call"]
    if "best_batch_ns_per_call" in rep:
        r.extra["best_ns_per_call"] = rep["best_batch_ns_per_call"]
    r.workload_cpu_ns = int(rep["utime_ns"] + rep["stime_ns"])
    total_ns = int((ru.ru_utime + ru.ru_stime) * 1e9)
    r.tracer_cpu_ns = total_ns - r.workload_cpu_ns
    r.startup_s = (rep["t_loop_start"] - sp.t_launch) / 1e9
    r.teardown_s = (t_exit - rep["t_loop_end"]) / 1e9
    r.wall_s = (t_exit - sp.t_launch) / 1e9
    # CPU the rest of the machine used meanwhile: everything busy minus the run's own
    others_s = max(0.0, (b1 - b0) / os.sysconf("SC_CLK_TCK") - total_ns / 1e9)
    r.extra["others_cpu_share"] = round(others_s / (r.wall_s * (os.cpu_count() or 1)), 3)
    r.extra["workload_pid"] = int(rep["pid"])
    if "cpu_start" in rep:
        r.extra["workload_cpu"] = f"{int(rep['cpu_start'])}" + (
            f"->{int(rep['cpu_end'])}" if rep["cpu_end"] != rep["cpu_start"] else "")
    r.extra["argv"] = shlex.join(argv)
    if collect:
        try:
            collect(r, rep, out, err)
        except Exception as e:  # a counting problem is a failed row, not a crash
            return Run(False, f"counting failed: {type(e).__name__}: {e}",
                       leftovers=r.leftovers)
    return r


# --------------------------------------------------------------------------- configurations


def cfg_untraced(ctx: Ctx, before: dict[str, Any]) -> Run:
    r = run_tool(ctx, lambda w: w, None, None, before)
    if r.ok:
        r.tracer_cpu_ns = None
    return r


_SUMMARY_TEXT = re.compile(r"(\d+) events \((.*)\) in [\d.]+s, lost (\d+)")


def parse_pw_summary(out: str, err: str) -> dict[str, Any]:
    """probewatch's summary: one JSON line {"summary": ...}, or its one-line text form."""
    for line in reversed((err + "\n" + out).splitlines()):
        line = line.strip()
        if line.startswith("{") and '"summary"' in line:
            try:
                return dict(json.loads(line)["summary"])
            except (ValueError, KeyError):
                continue
    m = None
    for line in reversed(err.splitlines()):
        m = _SUMMARY_TEXT.search(line)
        if m:
            break
    if m:
        events = {}
        for part in m.group(2).split(", "):
            k, _, v = part.rpartition(": ")
            if v.isdigit():
                events[k] = int(v)
        return {"events": events, "total": int(m.group(1)), "lost": int(m.group(3))}
    raise ValueError(f"no probewatch summary on stderr: {tail(err)}")


def make_probewatch(extra: list[str], env: dict[str, str] | None = None
                    ) -> Callable[[Ctx, dict[str, Any]], Run]:
    """probewatch trace EXTRA SPEC -- WORKLOAD (env: variables added to its environment)."""

    def cfg(ctx: Ctx, before: dict[str, Any]) -> Run:
        def collect(r: Run, rep: dict[str, float], out: str, err: str) -> None:
            s = parse_pw_summary(out, err)
            ev = s.get("events", {})
            r.delivered = int(ev[SPEC]) if SPEC in ev else int(sum(ev.values()))
            r.reported_lost = int(s.get("lost", 0))
            r.extra["summary"] = s
            if s.get("counted_by"):
                r.extra["counted_by"] = s["counted_by"]

        stdout = None if "--json" in extra else OUT / "probewatch-stdout.txt"
        return run_tool(
            ctx,
            lambda w: [*ctx.probewatch, "trace", *extra, SPEC, "--", *w],
            stdout, collect, before, env={**ctx.env, **env} if env else None,
        )

    return cfg


def cfg_trace_cmd(ctx: Ctx, before: dict[str, Any]) -> Run:
    return run_trace_cmd(ctx, [])


def run_trace_cmd(ctx: Ctx, extra: list[str]) -> Run:
    """``trace-cmd record -k -d EXTRA -e EVENT -o bench/out/tc.dat -- WORKLOAD`` once,
    its events counted with ``trace-cmd report`` (e.g. EXTRA = ["-b", "4096"])."""
    dat = OUT / "tc.dat"
    dat.unlink(missing_ok=True)
    # trace-cmd records in the top-level buffer: share it with nobody (a test running
    # trace-cmd -F at the same time leaves set_event_pid to its own child, and our
    # workload's events would be filtered out)
    deadline = time.monotonic() + ctx.busy_wait
    while busy := top_level_busy(ctx.root):
        if time.monotonic() >= deadline:
            return Run(False, f"top-level tracefs is in use by someone else ({busy}); "
                       "not running trace-cmd there")
        time.sleep(0.5)
    before = snapshot(ctx.root)

    def collect(r: Run, rep: dict[str, float], out: str, err: str) -> None:
        pid = int(rep["pid"])
        mine = total = 0
        needle = f"-{pid} ".encode()
        p = subprocess.Popen(["trace-cmd", "report", "-i", str(dat)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        assert p.stdout
        for line in p.stdout:
            if b"sys_enter_getppid" in line:
                total += 1
                if needle in line:
                    mine += 1
        p.wait()
        if p.returncode != 0 and total == 0:
            raise RuntimeError(f"trace-cmd report exited {p.returncode}")
        if total == 0:
            raise RuntimeError("trace-cmd recorded no sys_enter_getppid events; top level "
                               f"now: {top_level_busy(ctx.root) or 'free'}")
        r.delivered = mine
        r.extra["events_all_pids"] = total
        st = subprocess.run(["trace-cmd", "report", "--stat", "-i", str(dat)],
                            capture_output=True, text=True)
        lost = 0
        for _k, v in re.findall(r"^(overrun|dropped events):\s*(\d+)", st.stdout, re.M):
            lost += int(v)
        r.reported_lost = lost

    argv = ["trace-cmd", "record", "-k", "-d", *extra, "-e", f"{SYSTEM}:{EVENT}", "-o", str(dat),
            "--"]
    return run_tool(ctx, lambda w: argv + w, OUT / "trace-cmd-stdout.txt", collect, before,
                    global_buffer=True)


def _bpftrace_lost(text: str) -> int:
    return sum(int(n) for n in re.findall(r"Lost (\d+) events", text))


def cfg_bpftrace_count(ctx: Ctx, before: dict[str, Any]) -> Run:
    prog = f"tracepoint:{SYSTEM}:{EVENT} /pid == cpid/ {{ @c = count(); }}"

    def collect(r: Run, rep: dict[str, float], out: str, err: str) -> None:
        m = re.search(r"^@c:\s*(\d+)", out, re.M)
        r.delivered = int(m.group(1)) if m else 0
        r.reported_lost = _bpftrace_lost(out + err)

    return run_tool(ctx, lambda w: ["bpftrace", "-e", prog, "-c", shlex.join(w)],
                    OUT / "bpftrace-count.txt", collect, before)


def make_probewatch_all(kind: str) -> Callable[[Ctx, dict[str, Any]], Run]:
    """probewatch trace --count SPEC with no pid scope (every process but itself),
    started 3 s before the workload and stopped by SIGTERM after it (sh starts
    background jobs with SIGINT ignored): what the pid bitmap lookup costs, by
    difference with the -- WORKLOAD row."""

    def cfg(ctx: Ctx, before: dict[str, Any]) -> Run:
        def collect(r: Run, rep: dict[str, float], out: str, err: str) -> None:
            s = parse_pw_summary(out, err)
            r.delivered = None  # every process's getppid: not the workload's alone
            r.reported_lost = int(s.get("lost", 0))
            r.extra["summary"] = s
            r.extra["counted_by"] = s.get("counted_by")

        def argv(w: list[str]) -> list[str]:
            pw = shlex.join([*ctx.probewatch, "trace", "--backend", "bpf", "--count",
                             "--json", SPEC, "-d", "600"])
            return ["sh", "-c", f"{pw} & p=$!; sleep 3; {shlex.join(w)}; kill -TERM $p; "
                                "wait $p; [ $? = 143 ]"]  # 143: ended by the SIGTERM

        return run_tool(ctx, argv, OUT / "probewatch-stdout.txt", collect, before,
                        env={**ctx.env, "PROBEWATCH_BPF_COUNT": kind})

    return cfg


#: getppid's number, for bpftrace on raw_syscalls (which sees every syscall; bpftrace
#: 0.17's own rawtracepoint: probes fail here with "Invalid probe type")
GETPPID_NR = {"x86_64": 110, "aarch64": 173}.get(platform.machine(), 110)


def make_bpftrace_count(prog: str, out_name: str) -> Callable[[Ctx, dict[str, Any]], Run]:
    """bpftrace -e PROG (a count() into @c) -c WORKLOAD."""

    def cfg(ctx: Ctx, before: dict[str, Any]) -> Run:
        def collect(r: Run, rep: dict[str, float], out: str, err: str) -> None:
            m = re.search(r"^@c:\s*(\d+)", out, re.M)
            r.delivered = int(m.group(1)) if m else 0
            r.reported_lost = _bpftrace_lost(out + err)

        return run_tool(ctx, lambda w: ["bpftrace", "-e", prog, "-c", shlex.join(w)],
                        OUT / out_name, collect, before)

    return cfg


def cfg_bpftrace_printf(ctx: Ctx, before: dict[str, Any]) -> Run:
    prog = f'tracepoint:{SYSTEM}:{EVENT} /pid == cpid/ {{ printf("%d\\n", pid); }}'
    path = OUT / "bpftrace-printf.txt"

    def collect(r: Run, rep: dict[str, float], out: str, err: str) -> None:
        want = f"{int(rep['pid'])}\n".encode()
        n = 0
        with open(path, "rb") as f:
            for line in f:
                if line == want:
                    n += 1
        r.delivered = n
        r.reported_lost = _bpftrace_lost(err + _head_tail(path))

    return run_tool(ctx, lambda w: ["bpftrace", "-e", prog, "-c", shlex.join(w)],
                    path, collect, before)


def _head_tail(path: Path, n: int = 8192) -> str:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(n)
        f.seek(max(0, size - n))
        return (head + b"\n" + f.read()).decode(errors="replace")


def cfg_strace_all(ctx: Ctx, before: dict[str, Any]) -> Run:
    return run_tool(ctx, lambda w: ["strace", "-f", "-o", "/dev/null", *w],
                    OUT / "strace-stdout.txt", None, before)


def cfg_strace_getppid(ctx: Ctx, before: dict[str, Any]) -> Run:
    path = OUT / "strace-getppid.txt"

    def collect(r: Run, rep: dict[str, float], out: str, err: str) -> None:
        n = 0
        with open(path, "rb") as f:
            for line in f:
                if b"getppid(" in line:
                    n += 1
        r.delivered = n
        r.reported_lost = 0  # ptrace stops the tracee: nothing can be dropped

    return run_tool(ctx, lambda w: ["strace", "-f", "-e", "trace=getppid", "-o", str(path), *w],
                    OUT / "strace-stdout.txt", collect, before)


def cfg_ftrace_floor(ctx: Ctx, before: dict[str, Any]) -> Run:
    """The event enabled in a private instance, nobody reading: the cost of writing it."""
    inst = os.path.join(ctx.root, "instances", BENCH_INSTANCE)
    os.mkdir(inst)
    try:
        write_text(os.path.join(inst, f"events/{SYSTEM}/{EVENT}/enable"), "1")
        r = run_tool(ctx, lambda w: w, None, None, before)
        write_text(os.path.join(inst, "tracing_on"), "0")
        written = 0
        for cpu_dir in sorted(os.listdir(os.path.join(inst, "per_cpu"))):
            st = read_text(os.path.join(inst, "per_cpu", cpu_dir, "stats")) or ""
            for _k, v in re.findall(r"^(entries|overrun):\s*(\d+)", st, re.M):
                written += int(v)
        r.extra["events_written_all_pids"] = written
        r.tracer_cpu_ns = None
    finally:
        remove_instance(ctx.root, BENCH_INSTANCE)
    return r


CONFIGS: list[tuple[str, str, Callable[[Ctx, dict[str, Any]], Run]]] = [
    ("untraced", "the workload alone", cfg_untraced),
    ("ftrace-floor", "event enabled in a private instance, no reader", cfg_ftrace_floor),
    ("probewatch-json", f"probewatch trace {SPEC} --json > /dev/null",
     make_probewatch(["--json"])),
    ("probewatch-json-8m", f"probewatch trace {SPEC} --json --buffer-kb 8192 > /dev/null",
     make_probewatch(["--json", "--buffer-kb", "8192"])),
    ("probewatch-count", f"probewatch trace --count {SPEC}", make_probewatch(["--count"])),
    # the three backends side by side (issue 11): streaming JSON and counting
    *[(f"pw-json-{b}", f"probewatch trace --backend {b} {SPEC} --json > /dev/null",
       make_probewatch(["--backend", b, "--json"])) for b in ("ftrace", "perf", "bpf")],
    *[(f"pw-count-{b}", f"probewatch trace --backend {b} --count {SPEC}",
       make_probewatch(["--backend", b, "--count"])) for b in ("ftrace", "perf", "bpf")],
    ("trace-cmd", f"trace-cmd record -k -d -e {SYSTEM}:{EVENT}", cfg_trace_cmd),
    # in-kernel counting at the limit (issue 11 section 5): the raw tracepoint path of
    # collect/bpf/count.py with either program type, and the generic tracepoint program
    *[(f"pw-count-{k}", f"probewatch trace --count {SPEC} (PROBEWATCH_BPF_COUNT={k})",
       make_probewatch(["--backend", "bpf", "--count"], {"PROBEWATCH_BPF_COUNT": k}))
      for k in ("tp_btf", "raw_tp", "tracepoint")],
    ("pw-count-tp_btf-all", f"probewatch trace --count {SPEC} -d (no pid scope), tp_btf",
     make_probewatch_all("tp_btf")),
    ("bpftrace-count", "bpftrace, @c = count() in a map", cfg_bpftrace_count),
    ("bpftrace-count-rawsys", "bpftrace tracepoint:raw_syscalls:sys_enter, id == nr, count()",
     make_bpftrace_count(f"tracepoint:raw_syscalls:sys_enter /pid == cpid && args->id == "
                         f"{GETPPID_NR}/ {{ @c = count(); }}", "bpftrace-count-rawsys.txt")),
    ("bpftrace-printf", "bpftrace, printf per event to a file", cfg_bpftrace_printf),
    ("strace-all", "strace -f -o /dev/null (every syscall)", cfg_strace_all),
    ("strace-getppid", "strace -f -e trace=getppid -o FILE", cfg_strace_getppid),
]
ANCHORS = ["untraced", "ftrace-floor", "trace-cmd", "bpftrace-count", "bpftrace-count-rawsys",
           "bpftrace-printf",
           "strace-all", "strace-getppid"]


# --------------------------------------------------------------------------- aggregation


def median(xs: list[float | int | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def disturbed(r: Run, limit: float) -> bool:
    return float(r.extra.get("others_cpu_share", 0.0)) > limit


def summarize(name: str, desc: str, runs: list[Run], calls: int,
              base_ns: float | None, max_others: float = 1.0) -> dict[str, Any]:
    good = [r for r in runs if r.ok]
    # medians over the runs other load left alone, when there are any
    clean = [r for r in good if not disturbed(r, max_others)]
    row_disturbed = len(good) - len(clean)
    if clean:
        good = clean
    row: dict[str, Any] = {"config": name, "description": desc, "repeats": len(runs),
                           "succeeded": len(good)}
    leftovers = sorted({x for r in runs for x in r.leftovers})
    if leftovers:
        row["leftovers"] = leftovers
    if not good:
        row["ok"] = False
        row["error"] = runs[0].error if runs else "not run"
        return row
    row["ok"] = True
    row["disturbed_runs"] = row_disturbed
    row["median_of"] = len(good)
    if len(good) < len(runs):
        row["partial_errors"] = [r.error for r in runs if not r.ok]
    ns = median([r.ns_per_call for r in good])
    row["workload_ns_per_call"] = ns
    row["slowdown"] = ns / base_ns if ns and base_ns else None
    delivered = median([r.delivered for r in good])
    row["delivered"] = None if delivered is None else int(delivered)
    if delivered is not None:
        lost = max(0, calls - int(delivered))
        row["lost"] = lost
        row["lost_pct"] = 100.0 * lost / calls
        row["reported_lost"] = median([r.reported_lost for r in good])
    else:
        row["lost"] = row["lost_pct"] = row["reported_lost"] = None
    row["best_ns_per_call"] = median([r.extra.get("best_ns_per_call") for r in good])
    cpu = median([r.tracer_cpu_ns for r in good])
    row["tracer_cpu_ns"] = cpu
    # per delivered event; a tool that delivers nothing countable (strace-all) or cannot
    # lose anything is charged per generated event
    per = delivered if delivered else calls
    row["tracer_cpu_ns_per_event"] = cpu / per if cpu is not None and per else None
    row["startup_s"] = median([r.startup_s for r in good])
    row["teardown_s"] = median([r.teardown_s for r in good])
    row["workload_cpu_ns"] = median([r.workload_cpu_ns for r in good])
    row["others_cpu_share"] = max(float(r.extra.get("others_cpu_share", 0.0)) for r in good)
    row["workload_cpus"] = ",".join(str(r.extra.get("workload_cpu", "?")) for r in good)
    row["runs"] = [_run_dict(r) for r in runs]
    return row


def add_overheads(rows: list[dict[str, Any]], calls: int) -> None:
    """Each row's overhead per event (one event per call), and as a ratio of
    bpftrace-count's: ``overhead_ns_per_event``, its median ns/call (wall clock) minus
    the untraced median; ``overhead_cpu_ns_per_event``, the same from the workload's
    own CPU time (user + system per call), which preemption does not inflate; and
    ``overhead_best_ns_per_event``, from the fastest batch of 4096 calls of each run
    (median over the runs), the least disturbed by a loaded machine."""
    base = next((r for r in rows if r.get("config") == "untraced" and r.get("ok")), None)
    if base is None:
        return
    bwall = base.get("median_ns_per_call")
    bcpu = base.get("workload_cpu_ns")
    bbest = base.get("best_ns_per_call")
    for r in rows:
        if not r.get("ok") or r["config"] == "untraced":
            continue
        if bwall is not None and r["workload_ns_per_call"]:
            r["overhead_ns_per_event"] = r["workload_ns_per_call"] - bwall
        if bcpu is not None and r.get("workload_cpu_ns") is not None:
            r["overhead_cpu_ns_per_event"] = (r["workload_cpu_ns"] - bcpu) / calls
        if bbest is not None and r.get("best_ns_per_call") is not None:
            r["overhead_best_ns_per_event"] = r["best_ns_per_call"] - bbest
    ref = next((r for r in rows if r.get("config") == "bpftrace-count"), None)
    for key in ("overhead_ns_per_event", "overhead_cpu_ns_per_event",
                "overhead_best_ns_per_event"):
        o_ref = ref.get(key) if ref else None
        for r in rows:
            o = r.get(key)
            if o is not None and o_ref:
                r[key.replace("_per_event", "_vs_bpftrace_count")] = o / o_ref


def _run_dict(r: Run) -> dict[str, Any]:
    d = {k: v for k, v in r.__dict__.items() if k != "extra"}
    d.update(r.extra)
    return d


def fmt_row(row: dict[str, Any]) -> list[str]:
    def f(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    if not row["ok"]:
        return [row["config"], "failed: " + (row.get("error") or "?")]
    return [
        row["config"],
        f(row["workload_ns_per_call"], ".0f"),
        f(row["slowdown"], ".2f"),
        f(row["delivered"], ",d"),
        f(row["lost"], ",d"),
        f(row["lost_pct"], ".1f"),
        f(row["tracer_cpu_ns_per_event"], ".0f"),
        f(row.get("best_ns_per_call"), ".1f"),
        f(row.get("overhead_ns_per_event"), ".1f"),
        f(row.get("overhead_cpu_ns_per_event"), ".1f"),
        f(row.get("overhead_best_ns_per_event"), ".1f"),
        f(row.get("overhead_best_ns_vs_bpftrace_count"), ".2f"),
        f(row["startup_s"], ".3f"),
        f(row["teardown_s"], ".3f"),
        row.get("workload_cpus") or "-",
    ]


HEAD = ["config", "ns/call", "slowdown x", "delivered", "lost", "lost %", "tracer CPU ns/ev",
        "best ns/call", "ovh ns/ev", "ovh CPU ns/ev", "ovh best ns/ev", "best ovh/bpftrace",
        "start-up s", "teardown s", "wl CPU"]


def print_table(rows: list[dict[str, Any]]) -> None:
    cells = [fmt_row(r) for r in rows]
    full = [c for c in cells if len(c) == len(HEAD)]
    widths = [max(len(HEAD[i]), *(len(c[i]) for c in full)) if full else len(HEAD[i])
              for i in range(len(HEAD))]
    line = "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(HEAD, widths,
                                                                                    strict=True)))
    print(line)
    print("-" * len(line))
    for c in cells:
        if len(c) == len(HEAD):
            print("  ".join(v.rjust(w) if i else v.ljust(w)
                            for i, (v, w) in enumerate(zip(c, widths, strict=True))))
        else:
            print(c[0].ljust(widths[0]) + "  " + c[1])


# --------------------------------------------------------------------------- decoder alone


@dataclass
class HeaderInfo:
    page_size: int
    data_off: int
    commit_off: int
    commit_size: int
    padding: int = 29
    time_extend: int = 30
    time_stamp: int = 31
    data_max: int = 28


def header_info(root: str) -> HeaderInfo:
    hp = read_text(os.path.join(root, "events/header_page")) or ""
    he = read_text(os.path.join(root, "events/header_event")) or ""
    fields = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in re.finditer(
        r"field:\s*[\w ]*?\s(\w+);\s*offset:(\d+);\s*size:(\d+);", hp)}
    data_off, data_size = fields["data"]
    commit_off, commit_size = fields["commit"]
    hi = HeaderInfo(data_off + data_size, data_off, commit_off, commit_size)
    for name, val in re.findall(r"(\w+)\s*:\s*type\s*==\s*(\d+)", he):
        if name in ("padding", "time_extend", "time_stamp"):
            setattr(hi, name, int(val))
    m = re.search(r"data max type_len\s*==\s*(\d+)", he)
    if m:
        hi.data_max = int(m.group(1))
    return hi


def page_len(page: bytes, hi: HeaderInfo) -> int:
    """Bytes of event data in a ring-buffer page (commit without the missed-events flags)."""
    commit = int.from_bytes(page[hi.commit_off:hi.commit_off + hi.commit_size], "little")
    return commit & ((1 << 30) - 1)  # bits 30/31: RB_MISSED_EVENTS / RB_MISSED_STORED


def count_raw_events(page: bytes, hi: HeaderInfo) -> int:
    """Data records in one ring-buffer page (a cross-check for the decoder's count)."""
    end = min(hi.data_off + page_len(page, hi), len(page))
    off, n = hi.data_off, 0
    u32 = struct.Struct("<I")
    while off + 4 <= end:
        w = u32.unpack_from(page, off)[0]
        tl = w & 0x1F
        if tl == 0:
            off += 4 + u32.unpack_from(page, off + 4)[0]
            n += 1
        elif tl <= hi.data_max:
            off += 4 + 4 * tl
            n += 1
        elif tl == hi.padding:
            if (w >> 5) == 0:
                break
            off += 4 + u32.unpack_from(page, off + 4)[0]
        else:  # time extend / absolute time stamp
            off += 8
    return n


def record_pages(ctx: Ctx, buffer_kb: int) -> tuple[list[tuple[int, bytes]], dict[str, Any]]:
    """Run the workload with the event enabled in a private instance; keep every raw page."""
    root = ctx.root
    inst = os.path.join(root, "instances", BENCH_INSTANCE)
    hi = header_info(root)
    os.mkdir(inst)
    pages: list[tuple[int, bytes]] = []
    info: dict[str, Any] = {"instance": BENCH_INSTANCE, "buffer_kb": buffer_kb}
    fds: list[tuple[int, int]] = []
    try:
        write_text(os.path.join(inst, "buffer_size_kb"), str(buffer_kb))
        for d in sorted(os.listdir(os.path.join(inst, "per_cpu"))):
            fd = os.open(os.path.join(inst, "per_cpu", d, "trace_pipe_raw"),
                         os.O_RDONLY | os.O_NONBLOCK)
            fds.append((int(d[3:]), fd))
        write_text(os.path.join(inst, f"events/{SYSTEM}/{EVENT}/enable"), "1")
        report = OUT / "workload-report.txt"
        report.unlink(missing_ok=True)
        p = subprocess.Popen([str(WORKLOAD_BIN), str(ctx.calls), str(report)], env=ctx.env)
        read_size = max(hi.page_size, 65536)

        def drain(final: bool = False) -> int:
            got = 0
            for cpu, fd in fds:
                while True:
                    try:
                        b = os.read(fd, read_size)
                    except BlockingIOError:
                        break
                    if not b:
                        break
                    pages.append((cpu, b))
                    got += 1
                    if not final and page_len(b, hi) < hi.page_size - hi.data_off - 64:
                        break  # caught up with the writer: a partly filled page
            return got

        try:
            # drain every 10 ms, not continuously: a read while the writer is on the page
            # returns that page partly filled, and spinning would save mostly near-empty
            # pages (the buffer is sized to hold far more than 10 ms of events)
            while p.poll() is None:
                drain()
                time.sleep(0.01)
        finally:
            if p.poll() is None:
                p.kill()
            p.wait()
        write_text(os.path.join(inst, f"events/{SYSTEM}/{EVENT}/enable"), "0")
        write_text(os.path.join(inst, "tracing_on"), "0")
        drain(final=True)
        lost = 0
        for cpu, _ in fds:
            st = read_text(os.path.join(inst, "per_cpu", f"cpu{cpu}", "stats")) or ""
            for _k, v in re.findall(r"^(overrun|dropped events):\s*(\d+)", st, re.M):
                lost += int(v)
        info["lost_while_recording"] = lost
        if report.exists():
            info["workload_ns_per_call_while_recording"] = parse_report(report)["ns_per_call"]
    finally:
        for _, fd in fds:
            os.close(fd)
        write_text(os.path.join(inst, "events/enable"), "0")
        remove_instance(root, BENCH_INSTANCE)
    info["pages"] = len(pages)
    info["raw_events"] = sum(count_raw_events(pg, hi) for _, pg in pages)
    info["bytes"] = sum(len(pg) for _, pg in pages)
    info["events_per_page"] = info["raw_events"] / len(pages) if pages else 0
    # keep them: bench/out/getppid-pages.bin = records of <cpu u16><len u32><page bytes>
    path = OUT / "getppid-pages.bin"
    with open(path, "wb") as f:
        for cpu, pg in pages:
            f.write(struct.pack("<HI", cpu, len(pg)))
            f.write(pg)
    for name in ("header_page", "header_event"):
        shutil.copyfile(os.path.join(root, "events", name), OUT / f"getppid-{name}.txt")
    shutil.copyfile(os.path.join(root, "events", SYSTEM, EVENT, "format"),
                    OUT / "getppid-format.txt")
    info["saved"] = str(path.relative_to(REPO))
    return pages, info


def bench_decoder(ctx: Ctx, repeat: int) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "src"))
    try:
        from probewatch.decode import format as dformat  # type: ignore[import-not-found]
        from probewatch.decode import ringbuf  # type: ignore[import-not-found]
    except ImportError as e:
        return {"ok": False, "error": f"skipped: probewatch.decode is not importable ({e})"}
    pages, info = record_pages(ctx, buffer_kb=max(8192, ctx.calls * 40 // 1024 + 4096))
    out: dict[str, Any] = {"recording": info}
    root = ctx.root
    hp = read_text(os.path.join(root, "events/header_page")) or ""
    he = read_text(os.path.join(root, "events/header_event")) or ""
    try:
        # the layout constructor's name has moved while decode/ was written; take any
        parse = (getattr(dformat, "parse_page_layout", None)
                 or getattr(dformat, "parse_header_layout", None)
                 or getattr(getattr(ringbuf, "PageLayout", None), "parse", None))
        if parse is None:
            return {"ok": False, **out, "error": "skipped: probewatch.decode.format has no "
                    "parse_page_layout / parse_header_layout (PageLayout from header_page)"}
        layout = parse(hp, he)
        fmt = dformat.load_format(root, SYSTEM, EVENT)
        dec = ringbuf.PageDecoder(layout, {fmt.id: fmt})
    except Exception as e:
        return {"ok": False, **out, "error": f"skipped: building the decoder failed: "
                f"{type(e).__name__}: {e}"}

    def timed(fn: Callable[[], int]) -> tuple[int, float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        n = fn()
        return n, time.process_time() - c0, time.perf_counter() - t0

    def decode_all() -> int:
        n = 0
        buf: list[Any] = []
        decode = dec.decode_page
        for cpu, pg in pages:
            decode(pg, cpu, buf)
            n += len(buf)
            buf.clear()  # a consumer hands each page's events on; keep memory flat
        return n

    def count_all() -> int:
        n = 0
        cp = dec.count_page
        for _, pg in pages:
            c = cp(pg)
            n += sum(c.values()) if isinstance(c, dict) else int(c or 0)
        return n

    for label, fn in (("decode_page", decode_all), ("count_page", count_all)):
        if label == "count_page" and not hasattr(dec, "count_page"):
            continue
        results = []
        try:
            for _ in range(repeat):
                results.append(timed(fn))
        except Exception as e:
            out[label] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            continue
        n = results[0][0]
        cpu = statistics.median(r[1] for r in results)
        wall = statistics.median(r[2] for r in results)
        out[label] = {
            "ok": True, "events": n, "cpu_s": cpu, "wall_s": wall,
            "events_per_s_per_core": n / cpu if cpu else None,
            "ns_per_event": cpu * 1e9 / n if n else None,
            "matches_raw_count": n == info["raw_events"],
        }
    out["ok"] = any(isinstance(v, dict) and v.get("ok") for v in out.values())
    return out


def print_decoder(d: dict[str, Any]) -> None:
    print()
    print("decoder alone (probewatch.decode.ringbuf.PageDecoder on saved raw pages, 1 core):")
    rec = d.get("recording")
    if rec:
        print(f"  recorded {rec['pages']} pages, {rec['raw_events']:,} events "
              f"({rec['events_per_page']:.0f}/page), lost while recording: "
              f"{rec.get('lost_while_recording')}; saved to {rec.get('saved')}")
    if not d.get("ok") and d.get("error"):
        print(f"  {d['error']}")
    for label in ("decode_page", "count_page"):
        r = d.get(label)
        if not r:
            continue
        if not r.get("ok"):
            print(f"  {label}: failed: {r['error']}")
            continue
        check = "" if r["matches_raw_count"] else (
            f"  (!= {rec['raw_events']:,} records counted in the raw pages)" if rec else "")
        print(f"  {label}: {r['events_per_s_per_core'] / 1e6:.2f} M events/s per core "
              f"({r['ns_per_event']:.0f} ns/event, {r['events']:,} events){check}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    names = [c[0] for c in CONFIGS]
    ap = argparse.ArgumentParser(
        description="Syscall firehose: tracer overhead on N getppid() calls "
                    "(probewatch vs trace-cmd, bpftrace, strace).",
        epilog="configurations: " + ", ".join(names) + ", decode\n"
               "anchors (no probewatch): --only anchors",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1_000_000, help="getppid calls per run (N)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration (median)")
    ap.add_argument("--only", help="comma-separated configuration names ('anchors' = the "
                                   "non-probewatch ones); untraced always runs")
    ap.add_argument("--quick", action="store_true", help="N=200,000, R=1")
    ap.add_argument("--list", action="store_true", help="list configurations and exit")
    ap.add_argument("--timeout", type=float, help="seconds per run before it is killed "
                                                  "(default 60 + 300 us per call)")
    ap.add_argument("--probewatch", default=f"{shlex.quote(sys.executable)} -m probewatch",
                    help="how to run probewatch (default: this python -m probewatch, src/ "
                         "first on PYTHONPATH)")
    ap.add_argument("--pin-workload", metavar="CPU", type=int,
                    help="pin the workload (not the tracer) to this CPU; the cost of a "
                         "tracepoint can differ between CPUs")
    ap.add_argument("--wait-quiet", metavar="SECS", type=float, default=0.0,
                    help="before each run, wait up to SECS for other processes to use "
                         "under 10%% of the machine (a shared box)")
    ap.add_argument("--max-others", metavar="SHARE", type=float, default=0.10,
                    help="a run during which other processes used more than this share of "
                         "the machine is 'disturbed': left out of the medians when "
                         "undisturbed runs exist (default 0.10)")
    ap.add_argument("--interleave", action="store_true",
                    help="run the configurations round-robin (round r runs each once) "
                         "instead of R runs of one, then R of the next; --retry-busy is off")
    ap.add_argument("--retry-busy", metavar="K", type=int, default=0,
                    help="redo up to K disturbed runs per configuration")
    ap.add_argument("--cc", default=os.environ.get("CC", "gcc"))
    ap.add_argument("--json-out", default=str(JSON_OUT))
    a = ap.parse_args(argv)
    if a.list:
        for n, d, _ in CONFIGS:
            print(f"{n:20s} {d}")
        print(f"{'decode':20s} PageDecoder alone on raw pages saved from a private instance")
        return 0
    if a.quick:
        a.calls, a.repeat = 200_000, 1
    selected = names + ["decode"]
    if a.only:
        want: list[str] = []
        for w in a.only.split(","):
            w = w.strip()
            if w == "anchors":
                want += ANCHORS
            elif w in selected:
                want.append(w)
            else:
                ap.error(f"unknown configuration {w!r} (known: {', '.join(selected)})")
        selected = ["untraced"] + [n for n in names + ["decode"] if n in want and n != "untraced"]
    if os.geteuid() != 0:
        log("syscall_firehose: warning: not root; tracefs and the tracers will fail")

    root = find_tracefs()
    build_workload(a.cc)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"),
                                                      env.get("PYTHONPATH")]))
    env.pop("GETPPID_LOOP_CPU", None)
    if a.pin_workload is not None:
        env["GETPPID_LOOP_CPU"] = str(a.pin_workload)
    ctx = Ctx(calls=a.calls, root=root,
              timeout=a.timeout or 60 + a.calls * 300e-6,
              probewatch=shlex.split(a.probewatch), env=env,
              busy_wait=max(60.0, a.wait_quiet))

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    meta = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "pin_workload": a.pin_workload,
        "calls": a.calls,
        "repeat": a.repeat,
        "python": platform.python_version(),
        "tools": {
            "trace-cmd": cmd_version(["trace-cmd", "--version"]),
            "bpftrace": cmd_version(["bpftrace", "--version"]),
            "strace": cmd_version(["strace", "--version"]),
        },
        "loadavg_start": (read_text("/proc/loadavg") or "").strip(),
    }
    busy, busiest = cpu_busy()
    meta["cpu_busy_before"] = round(busy, 3)
    meta["busiest_other_process"] = busiest
    if busy > 0.15:
        log(f"syscall_firehose: warning: other processes keep the machine {busy:.0%} busy "
            f"(busiest: {busiest}); numbers will be skewed")
    rows: list[dict[str, Any]] = []
    decoder: dict[str, Any] | None = None
    base_ns: float | None = None
    def run_once(name: str, fn: Callable[[Ctx, dict[str, Any]], Run], n: int) -> Run:
        if a.wait_quiet > 0:
            wait_quiet(a.wait_quiet, name)
        log(f"[{name}] run {n} ...")
        before = snapshot(root)
        r = fn(ctx, before)
        log(f"[{name}]   " + (f"{r.ns_per_call:.0f} ns/call, delivered {r.delivered}, "
                              f"others {r.extra.get('others_cpu_share', 0):.0%}"
                              if r.ok else f"failed: {r.error}"))
        for x in r.leftovers:
            log(f"[{name}]   leftover: {x}")
        return r

    try:
        todo: list[tuple[str, str, Callable[[Ctx, dict[str, Any]], Run]]] = []
        for name, desc, fn in CONFIGS:
            if name not in selected:
                continue
            tool = next((t for t in ("trace-cmd", "bpftrace", "strace") if name.startswith(t)),
                        None)
            if tool and not shutil.which(tool):
                rows.append({"config": name, "description": desc, "ok": False,
                             "error": "not installed (run bench/install-anchors.sh)"})
                continue
            todo.append((name, desc, fn))
        runs_of: dict[str, list[Run]] = {name: [] for name, _, _ in todo}
        if a.interleave:
            # round r runs every configuration once: slow drifts of a shared machine's
            # load hit all of them alike instead of whichever ran during the busy minute
            for rnd in range(a.repeat):
                for name, _, fn in todo:
                    runs_of[name].append(run_once(name, fn, rnd + 1))
        for name, desc, fn in todo:
            runs = runs_of[name]
            # R runs, plus one more for each run disturbed by other load (up to --retry-busy)
            while not a.interleave and len(runs) < a.repeat + min(a.retry_busy, sum(
                    1 for r in runs if r.ok and disturbed(r, a.max_others))):
                runs.append(run_once(name, fn, len(runs) + 1))
            row = summarize(name, desc, runs, a.calls, base_ns, a.max_others)
            if name == "untraced" and row["ok"]:
                # the baseline is the fastest undisturbed untraced run: nothing but
                # interference can slow that loop down, and every slowdown divides by it
                clean = [r for r in runs if r.ok and not disturbed(r, a.max_others)]
                base_ns = min(r.ns_per_call or 0.0 for r in (clean or [r for r in runs
                                                                        if r.ok]))
                row["median_ns_per_call"] = row["workload_ns_per_call"]
                row["workload_ns_per_call"] = base_ns
                row["baseline"] = "fastest run"
                row["slowdown"] = 1.0
            rows.append(row)
        add_overheads(rows, a.calls)
        if "decode" in selected:
            log("[decode] recording raw pages, then decoding ...")
            decoder = bench_decoder(ctx, a.repeat)
    except KeyboardInterrupt:
        for sp in list(_current):
            sp.kill()
        remove_instance(root, BENCH_INSTANCE)
        log("syscall_firehose: interrupted")
        return 130
    meta["loadavg_end"] = (read_text("/proc/loadavg") or "").strip()

    print(f"syscall firehose: N={a.calls:,} getppid() calls, median of {a.repeat} run(s), "
          f"kernel {meta['kernel']}, {meta['cpus']} CPUs, "
          f"{meta['cpu_busy_before']:.0%} busy before start")
    print()
    print_table(rows)
    notes = []
    for r in rows:
        if r.get("ok") and r.get("reported_lost") is not None and r.get("lost") is not None:
            if int(r["reported_lost"]) < r["lost"]:
                notes.append(f"{r['config']}: {r['lost']:,} events missing but the tool "
                             f"reported {int(r['reported_lost']):,} lost")
        if r.get("disturbed_runs"):
            notes.append(f"{r['config']}: {r['disturbed_runs']} run(s) disturbed by other load "
                         f"(> {a.max_others:.0%} of the machine)" + (
                             "; median over the undisturbed ones" if
                             r["others_cpu_share"] <= a.max_others else
                             f"; none undisturbed: median of all, up to "
                             f"{r['others_cpu_share']:.0%} busy"))
        for x in r.get("leftovers", []):
            notes.append(f"{r['config']}: leftover: {x}")
        for x in r.get("partial_errors", []) or []:
            notes.append(f"{r['config']}: a run failed: {x}")
    if notes:
        print()
        for n in notes:
            print("note: " + n)
    if decoder is not None:
        print_decoder(decoder)
    result = {"meta": meta, "rows": rows, "decoder": decoder}
    Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.json_out, "w") as f:
        json.dump(result, f, indent=2, default=str)
        f.write("\n")
    print(f"\nJSON: {os.path.relpath(a.json_out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
