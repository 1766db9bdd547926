"""probewatch audit: who else watches or hooks this kernel (probes, BPF, ptrace, preloads)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..errors import ProbewatchError

EXAMPLES = """examples:
  probewatch audit                         every observer and hook, one table
  probewatch audit --json | jq '.findings[] | select(.kind == "bpf_prog")'
  probewatch audit --alerts                only what the shipped audit rules flag
  probewatch audit --baseline base.json    save this state
  probewatch audit --diff base.json        what changed since (exit status 3 if anything)
  probewatch watch --audit 5               audit at start and every 5 s, alerts for news

Listed (this run's own objects left out): dynamic events (uprobe, kprobe, eprobe,
synthetic) with group, target and owner (probewatch_<PID>, bcc, libbpf, perf probe
naming); enabled events, filters and triggers in the top level and every instance;
current_tracer; instances; BPF programs (type, name, tag, load time, uid, maps) with
where they are attached (links: tracepoint, uprobe path:symbol, kprobe, cgroup, netdev,
LSM; perf events via BPF_TASK_FD_QUERY) and the processes holding them; perf events
held by processes; ptrace tracers (TracerPid); LD_PRELOAD/LD_AUDIT in process
environments and /etc/ld.so.preload; kernel taint flags and tainting modules.
Kinds: dynamic_event instance tracer enabled_event event_filter event_trigger bpf_prog
bpf_link perf_event ptrace preload ld_so_preload taint module.
Each finding is also a Sigma event (logsource category: audit, fields in
docs/detection.md); --alerts runs the shipped audit rules (and --rules) over them.
Text other tools and processes control is escaped. Needs root for BPF and /proc of
other users' processes.
exit status: 0; with --diff 3 when something changed; 1 on an error; 2 usage.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="who else watches or hooks this kernel: probes, BPF, perf, ptrace, preloads",
        description="List every observer and hook on this machine that is not this run's "
        "own: tracefs probes and events, BPF programs and links, perf events, ptrace, "
        "preloads, kernel taint.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="one JSON object")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--baseline", metavar="FILE", help="save this audit to FILE (JSON)")
    g.add_argument("--diff", metavar="FILE",
                   help="report what changed since the audit saved in FILE")
    g.add_argument("--alerts", action="store_true",
                   help="only the findings the audit rules flag, as alerts")
    p.add_argument("--rules", metavar="PATH", action="append", default=[],
                   help="with --alerts: more Sigma rules (category audit); repeatable")
    p.add_argument("--kind", action="append", default=[], metavar="KIND",
                   help="only findings of this kind; repeatable")
    p.add_argument("--quick", action="store_true",
                   help="filters and triggers of enabled events only (not of all ~2500)")
    p.add_argument("--force", action="store_true", help="overwrite the --baseline FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..audit.scan import KINDS, Report, Scanner

    for k in args.kind:
        if k not in KINDS:
            raise ProbewatchError(f"--kind {k}: unknown (choose from {', '.join(KINDS)})")
    old: Report | None = None
    if args.diff:
        old = load_report(args.diff)
    if args.baseline and os.path.exists(args.baseline) and not args.force:
        raise ProbewatchError(f"--baseline {args.baseline}: file exists (--force to "
                              "overwrite)")
    rep = Scanner(full=not args.quick).scan()
    if args.kind:
        rep.findings = [f for f in rep.findings if f.kind in args.kind]
        if old is not None:
            old.findings = [f for f in old.findings if f.kind in args.kind]
    if args.baseline:
        from ..decode.escape import obj_json

        try:
            with open(args.baseline, "w") as f:
                f.write(obj_json(rep.to_dict()) + "\n")
        except OSError as e:
            raise ProbewatchError(f"--baseline {args.baseline}: {e.strerror}") from None
        print(f"probewatch: saved {len(rep.findings)} findings to {args.baseline}",
              file=sys.stderr)
    if old is not None:
        return _print_diff(old, rep, args.json)
    if args.alerts:
        return _print_alerts(rep, args)
    if args.json:
        from ..decode.escape import obj_json

        print(obj_json(rep.to_dict()))
    elif not args.baseline:
        from ..audit.diff import table

        print(table(rep.findings, rep.notes))
    return 0


def load_report(path: str) -> Any:
    """A report saved by --baseline (or printed by --json); ProbewatchError if not one."""
    from ..audit.scan import Report
    from ..decode.escape import from_json

    try:
        with open(path, "rb") as f:
            data = from_json(json.loads(f.read()))
        if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
            raise ValueError("no 'findings' list")
        return Report.from_dict(data)
    except OSError as e:
        raise ProbewatchError(f"--diff {path}: {e.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ProbewatchError(f"--diff {path}: not an audit saved by --baseline ({e})") \
            from None


def _print_diff(old: Any, new: Any, as_json: bool) -> int:
    from ..audit.diff import diff, diff_lines
    from ..decode.escape import obj_json

    changes = diff(old, new)
    if as_json:
        print(obj_json({"since": old.time, "changes": [c.to_dict() for c in changes]}))
    else:
        print(diff_lines(changes))
    return 3 if changes else 0


def _print_alerts(rep: Any, args: argparse.Namespace) -> int:
    from ..audit.events import alerts_for
    from ..decode.escape import obj_json

    for a in alerts_for(rep, extra_rules=args.rules):
        print(obj_json(a) if args.json else a["line"])
    return 0
