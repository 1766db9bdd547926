#!/usr/bin/env python3
"""Per-event delivery: probewatch ``trace --json`` against ``trace-cmd record``, one run.

The workload is ``bench/workloads/getppid_loop.c`` (N ``syscall(SYS_getppid)`` calls in a
tight loop; it times its own loop). In one run, round by round (so drift in the load of a
shared machine hits every configuration alike), it runs:

- ``untraced``: the loop alone;
- ``trace-cmd``: ``trace-cmd record -k -d -b 4096 -e syscalls:sys_enter_getppid`` (4 MiB
  per-CPU buffers), counted with ``trace-cmd report``;
- ``pw-json``: ``probewatch trace --json --buffer-kb 4096 t:syscalls:sys_enter_getppid
  -- W`` with stdout to /dev/null;
- ``pw-json-file``: the same with stdout to a file (bench/out/delivery.jsonl; the lines
  are counted and checked to parse);
- ``pw-raw`` (``--raw``): ``t:raw_syscalls:sys_enter --filter 'id == 110'``, every
  syscall's event filtered in the kernel;
- ``pw-json@REF`` (``--baseline SRC``): ``pw-json`` with another checkout's ``src/`` on
  PYTHONPATH (e.g. ``/work/main/src``): before/after in the same run.

Columns: ns/call (median of the workload's own loop time / N), x untraced, x trace-cmd
(ns/call divided by trace-cmd's: the target is <= 1.1); wl cpu ns (the workload's own
user + system CPU time per call, and its two ratios: less sensitive to other load on a
shared machine than the loop's wall time, which counts time the loop was preempted);
consumer CPU us/event (user +
system CPU of the tracer and every process it started, from ``wait4``'s rusage, minus the
workload's own; per delivered event; interpreter start-up and teardown included),
delivered (events of the workload's pid in the tool's output or summary), lost (N minus
delivered) and the tool's own reported loss.

Run as root on a quiet machine::

    python bench/delivery.py                          # N=1,000,000, 3 rounds
    python bench/delivery.py --rounds 5 --baseline /work/main/src --raw
    python bench/delivery.py --calls 200000 --rounds 1

Writes bench/out/delivery.json too.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
import syscall_firehose as sf  # noqa: E402  (workload, tool runner, top-level restore)

SPEC = sf.SPEC
JSONL = sf.OUT / "delivery.jsonl"


def pw_cfg(extra: list[str], spec: str, src: str | None = None,
           to_file: bool = False, more_env: dict[str, str] | None = None
           ) -> Callable[[sf.Ctx, dict[str, Any]], sf.Run]:
    def cfg(ctx: sf.Ctx, before: dict[str, Any]) -> sf.Run:
        env = dict(ctx.env)
        env.update(more_env or {})
        if src is not None:
            env["PYTHONPATH"] = src
        JSONL.unlink(missing_ok=True)

        def collect(r: sf.Run, rep: dict[str, float], out: str, err: str) -> None:
            s = sf.parse_pw_summary(out, err)
            ev = s.get("events", {})
            r.delivered = int(sum(ev.values()))
            r.reported_lost = int(s.get("lost", 0))
            r.extra["summary"] = s
            if to_file:
                n = 0
                pid = int(rep["pid"])
                with open(JSONL, "rb") as f:
                    for line in f:
                        if json.loads(line)["pid"] == pid:
                            n += 1
                r.extra["lines"] = n
                r.delivered = n

        return sf.run_tool(
            ctx, lambda w: [*ctx.probewatch, "trace", *extra, spec, "--", *w],
            JSONL if to_file else None, collect, before, env=env,
        )

    return cfg


def tc_cfg(ctx: sf.Ctx, before: dict[str, Any]) -> sf.Run:
    return sf.run_trace_cmd(ctx, ["-b", "4096"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3, help="runs of every configuration")
    ap.add_argument("--baseline", metavar="SRC", help="also run pw-json with this src/ dir")
    ap.add_argument("--raw", action="store_true", help="also t:raw_syscalls:sys_enter")
    ap.add_argument("--no-file", action="store_true", help="skip pw-json-file")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL:K=V[,K=V]",
                    help="also pw-json with these environment variables (repeatable)")
    ap.add_argument("--pin-workload", metavar="CPU", type=int)
    ap.add_argument("--json-out", default=str(sf.OUT / "delivery.json"))
    a = ap.parse_args(argv)
    root = sf.find_tracefs()
    sf.build_workload(os.environ.get("CC", "gcc"))
    if not shutil.which("trace-cmd"):
        sys.exit("delivery: trace-cmd is not installed (bench/install-anchors.sh)")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src")
    env.pop("GETPPID_LOOP_CPU", None)
    if a.pin_workload is not None:
        env["GETPPID_LOOP_CPU"] = str(a.pin_workload)
    ctx = sf.Ctx(calls=a.calls, root=root, timeout=60 + a.calls * 300e-6,
                 probewatch=[sys.executable, "-m", "probewatch"], env=env)
    json_args = ["--json", "--buffer-kb", "4096"]
    configs: list[tuple[str, Callable[[sf.Ctx, dict[str, Any]], sf.Run]]] = [
        ("untraced", sf.cfg_untraced),
        ("trace-cmd", tc_cfg),
        ("pw-json", pw_cfg(json_args, SPEC)),
    ]
    if not a.no_file:
        configs.append(("pw-json-file", pw_cfg(json_args, SPEC, to_file=True)))
    if a.raw:
        configs.append(("pw-raw", pw_cfg([*json_args, "--filter", "id == 110"],
                                         "t:raw_syscalls:sys_enter")))
    for v in a.variant:
        label, _, kvs = v.partition(":")
        more = dict(kv.split("=", 1) for kv in kvs.split(",") if kv)
        configs.append((f"pw-json[{label}]", pw_cfg(json_args, SPEC, more_env=more)))
    if a.baseline:
        configs.append((f"pw-json@{a.baseline}", pw_cfg(json_args, SPEC, src=a.baseline)))
    busy, who = sf.cpu_busy()
    if busy > 0.15:
        sf.log(f"delivery: warning: others keep the machine {busy:.0%} busy ({who})")
    runs: dict[str, list[sf.Run]] = {n: [] for n, _ in configs}
    for rnd in range(a.rounds):
        for name, fn in configs:
            r = fn(ctx, sf.snapshot(root))
            sf.log(f"[{rnd + 1}/{a.rounds}] {name}: " + (
                f"{r.ns_per_call:.0f} ns/call, delivered {r.delivered}, lost "
                f"{r.reported_lost}, cpu "
                f"{r.tracer_cpu_ns}, others {r.extra.get('others_cpu_share', 0):.0%}"
                if r.ok else f"failed: {r.error}"))
            for x in r.leftovers:
                sf.log(f"  leftover: {x}")
            runs[name].append(r)

    def med(xs: list[Any]) -> Any:
        xs = [x for x in xs if x is not None]
        return statistics.median(xs) if xs else None

    rows = []
    for name, _ in configs:
        good = [r for r in runs[name] if r.ok]
        ns = med([r.ns_per_call for r in good])
        cpu = [r.tracer_cpu_ns / r.delivered for r in good
               if r.tracer_cpu_ns is not None and r.delivered]
        rows.append({
            "config": name, "ok": len(good), "runs": len(runs[name]),
            "ns_per_call": ns,
            "cpu_ns_per_call": med([r.workload_cpu_ns / a.calls for r in good
                                    if r.workload_cpu_ns is not None]),
            "ns_per_call_all": [r.ns_per_call for r in good],
            "cpu_ns_per_event": med(cpu),
            "delivered": med([r.delivered for r in good]),
            "lost": None if name in ("untraced",) or not good else
            a.calls - int(med([r.delivered for r in good])),
            "reported_lost": med([r.reported_lost for r in good]),
            "others_cpu_share": max([float(r.extra.get("others_cpu_share", 0)) for r in good],
                                    default=None),
            "errors": [r.error for r in runs[name] if not r.ok],
            "argv": good[0].extra.get("argv") if good else None,
            "per_run": [{"ns_per_call": r.ns_per_call, "delivered": r.delivered,
                         "reported_lost": r.reported_lost, "tracer_cpu_ns": r.tracer_cpu_ns,
                         "summary": r.extra.get("summary"),
                         "others_cpu_share": r.extra.get("others_cpu_share")} for r in good],
        })
    base = rows[0]["ns_per_call"]
    tc = rows[1]["ns_per_call"]
    cbase = rows[0]["cpu_ns_per_call"]
    ctc = rows[1]["cpu_ns_per_call"]
    print(f"delivery: N={a.calls:,} getppid calls, {a.rounds} round(s), medians; "
          f"{busy:.0%} busy before start")
    head = f"{'config':28s} {'ns/call':>8s} {'x untr':>7s} {'x tc':>6s} " \
           f"{'wl cpu ns':>9s} {'x untr':>7s} {'x tc':>6s} {'cpu us/ev':>9s} " \
           f"{'delivered':>10s} {'lost':>8s} {'rep.lost':>8s} {'others':>6s}"
    print(head)
    print("-" * len(head))

    def f(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    for row in rows:
        ns = row["ns_per_call"]
        row["x_untraced"] = ns / base if ns and base else None
        row["x_trace_cmd"] = ns / tc if ns and tc else None
        wc = row["cpu_ns_per_call"]
        row["cpu_x_untraced"] = wc / cbase if wc and cbase else None
        row["cpu_x_trace_cmd"] = wc / ctc if wc and ctc else None
        cpu = row["cpu_ns_per_event"]
        print(f"{row['config'][:28]:28s} {f(ns, '.0f'):>8s} {f(row['x_untraced'], '.2f'):>7s} "
              f"{f(row['x_trace_cmd'], '.2f'):>6s} {f(wc, '.0f'):>9s} "
              f"{f(row['cpu_x_untraced'], '.2f'):>7s} {f(row['cpu_x_trace_cmd'], '.2f'):>6s} "
              f"{f(None if cpu is None else cpu / 1000, '.2f'):>9s} "
              f"{f(row['delivered'], ',.0f'):>10s} {f(row['lost'], ',d'):>8s} "
              f"{f(row['reported_lost'], ',.0f'):>8s} "
              f"{f(row['others_cpu_share'], '.0%'):>6s}")
        for e in row["errors"]:
            print(f"  failed run: {e}")
    Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.json_out, "w") as fo:
        json.dump({"calls": a.calls, "rounds": a.rounds, "rows": rows,
                   "argv": shlex.join(sys.argv)}, fo, indent=2, default=str)
        fo.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
