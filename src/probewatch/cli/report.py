"""probewatch report: print the events of a capture as probewatch trace printed them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..sinks.jsonl import JsonLinesSink
from ..sinks.text import TextSink
from .args import count_arg, pid_arg, refuse
from .trace import print_summary

EXAMPLES = """examples:
  probewatch report run.db                         every event, as trace prints it
  probewatch report run.db --json | jq .fields     JSON lines, as trace --json
  probewatch report run.db -p 1234 -c bash         one process, one comm
  probewatch report run.db --event 'sys_enter_open*'
  probewatch report run.db --event 'sched:*' -n 20
  probewatch report run.db --alerts                the alerts probewatch watch -o stored
  probewatch report run.db --alerts --json | jq -c '{rule: .rule.title, count}'

--event is a glob over "system:name"; without ':' it matches the name only.
-c is an exact comm, or a glob when it has * ? or [. -p matches the process (thread
group) id and is repeatable. The summary goes to stderr like trace's (with --json as
one line {"summary": {...}}), with the kernel's losses of the recording: "unknown"
(JSON null) while a run is still being recorded or when its recorder was killed.
"""


def add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--pid", type=pid_arg, action="append", default=[],
                   help="only events of this process id; repeatable")
    p.add_argument("-c", "--comm", help="only events of this comm (glob if it has * ? [)")
    p.add_argument("--event", metavar="GLOB", help="only events whose system:name matches")
    p.add_argument("--probe", metavar="SPEC", help="only events of this probe spec")
    p.add_argument("--host", metavar="NAME",
                   help="only this host's events (a fleet capture of probewatch collect)")


def filters(args: argparse.Namespace) -> dict[str, Any]:
    return {"pid": args.pid or None, "comm": args.comm, "event": args.event,
            "probe": args.probe, "host": getattr(args, "host", None)}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="print the events of a capture as trace would",
        description="Print the events of a capture file as probewatch trace printed them.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="capture file written by probewatch record")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout")
    add_filters(p)
    p.add_argument("-n", "--max-events", type=count_arg, help="stop after MAX events")
    p.add_argument("--alerts", action="store_true",
                   help="the alerts (probewatch watch -o) instead of the events, as watch "
                   "prints them (-p filters by the alert's process)")
    p.set_defaults(func=run)


def run_alerts(args: argparse.Namespace) -> int:
    """probewatch report FILE --alerts: one line (or JSON object) per stored alert."""
    from ..capture import Capture
    from ..detect.alerts import alert_from_dict, alert_line
    from ..sinks.jsonl import obj_json

    bad = [o for o, v in (("-c", args.comm), ("--event", args.event), ("--probe", args.probe))
           if v is not None]
    refuse(bool(bad), f"--alerts: {', '.join(bad)} select events, not alerts (-p and -n "
           "apply to alerts)")
    out = sys.stdout
    with Capture(args.file) as cap:
        alerts = cap.alerts()
        if getattr(args, "host", None) is not None:
            runs = cap.host_runs(args.host)
            alerts = [a for a in alerts if a.get("run_id") in runs]
    if args.pid:
        alerts = [a for a in alerts if (a.get("process") or {}).get("pid") in args.pid]
    if args.max_events is not None:
        alerts = alerts[: args.max_events]
    per_level: dict[str, int] = {}
    for a in alerts:
        per_level[a.get("level", "?")] = per_level.get(a.get("level", "?"), 0) + 1
        a.pop("run_id", None)
        if args.json:  # the line watch --json printed (with the final count)
            out.write(obj_json(a) + "\n")
        else:
            out.write(alert_line(alert_from_dict(a)) + "\n")
    out.flush()
    total = sum(int(a.get("count") or 1) for a in alerts)
    if args.json:
        print(json.dumps({"summary": {"alerts": len(alerts), "occurrences": total,
                                      "per_level": per_level}}), file=sys.stderr)
    else:
        levels = ", ".join(f"{k} {v}" for k, v in sorted(per_level.items()))
        print(f"{len(alerts)} alerts ({total} with repeats){': ' + levels if levels else ''}",
              file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    from ..capture import Capture

    if args.alerts:
        return run_alerts(args)

    out = sys.stdout
    with Capture(args.file) as cap:
        counts: dict[str, int] = {p["spec"]: 0 for p in cap.probes()}
        evs = cap.events(limit=args.max_events, **filters(args))
        if args.json:
            jsink = JsonLinesSink(out)
            for ev in evs:
                jsink.write(ev)
                counts[ev.probe] = counts.get(ev.probe, 0) + 1
        else:
            tsink = TextSink(out, hex_fields=cap.hex_fields())
            for ev in evs:
                tsink.write(ev)
                counts[ev.probe] = counts.get(ev.probe, 0) + 1
        out.flush()
        runs = cap.runs()
    # a run that did not end (still recording, or its recorder was killed) has no loss
    # count yet: "unknown", as stats says, not 0
    lost: int | None = None if any(r.lost is None for r in runs) else sum(
        r.lost or 0 for r in runs)
    per_cpu: dict[str, int] = {}
    for r in runs:
        for c, n in (r.lost_per_cpu or {}).items():
            per_cpu[c] = per_cpu.get(c, 0) + n
    d: dict[str, Any] = {
        "events": counts,
        "total": sum(counts.values()),
        "lost": lost,
        "lost_per_cpu": per_cpu,
        "page_missed": sum(r.page_missed or 0 for r in runs),
        "duration": round(sum(r.duration for r in runs), 6),
    }
    unfinished = [r for r in runs if not r.complete or r.status != "complete"]
    if args.json:
        d["status"] = ",".join(r.status for r in runs) or "empty"
        print(json.dumps({"summary": d}), file=sys.stderr)
        return 0
    for r in unfinished:
        if r.status == "recording":
            why = (f"still being recorded (recorder pid {r.recorder_pid} is running); "
                   "events up to its last commit are shown")
        else:
            why = r.message or ("the recorder stopped before closing the run (killed?); "
                                "events up to its last commit are shown")
        print(f"note: {args.file}: run {r.id} is {r.status}: {why}", file=sys.stderr)
    if lost is None:
        per = ", ".join(f"{k}: {v}" for k, v in d["events"].items())
        why = ("still recording" if any(r.status == "recording" for r in runs)
               else "the run did not finish")
        print(f"{d['total']} events ({per}) in {d['duration']:.2f}s, lost unknown ({why})",
              file=sys.stderr)
    else:
        print_summary(d, False)
    return 0
