"""probewatch funccount: how often kernel functions run (perf-tools' funccount)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .args import duration_arg, live_pid_arg

EXAMPLES = """examples:
  probewatch funccount 'tcp_*' -d 5             tcp_* kernel functions, 5 seconds
  probewatch funccount 'vfs_*' -- cat /etc/hostname
  probewatch funccount do_sys_openat2 -p 1234 --json

On kprobes (tracefs kprobe_events): a glob expands against available_filter_functions
(at most 64 functions). Where the kernel has no kprobes, one line says so and names the
tracepoints that can answer instead. Ctrl-C ends the count early.
"""


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--pid", type=live_pid_arg, action="append", default=[],
                   help="only this process (and its children); repeatable")
    p.add_argument("-d", "--duration", type=duration_arg, metavar="SECS",
                   help="stop after SECS seconds")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(accepts_command=True)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("funccount", help="count kernel function calls (kprobes)",
                       description="Count calls of kernel functions matching PATTERN.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pattern", metavar="PATTERN", help="kernel function name or glob")
    add_common(p)
    p.set_defaults(func=run)


def open_functions(args: argparse.Namespace, specs: list[str], what: str) -> Any:
    """A Session with ``specs`` armed (after the kernel was asked whether it can);
    the map 'group:event' -> kernel function."""
    from ..kernel.tracefs import tracefs_root
    from ..session import Session
    from ..sources.kfunc import require_kernel_functions

    root = tracefs_root()
    require_kernel_functions(root, args.pattern, what)
    s = Session(pids=args.pid or None)
    try:
        for sp in specs:
            s.add(sp)
        funcs = {f"{dp.group}:{dp.name}": dp.symbol or dp.name for dp in s.dynamic_probes}
    except BaseException:
        s.close()
        raise
    return s, funcs


def run(args: argparse.Namespace) -> int:
    cmd = list(getattr(args, "command_argv", None) or [])
    s, funcs = open_functions(args, [f"k:{args.pattern}"], "count")
    counts: dict[str, int] = {f: 0 for f in funcs.values()}
    rc = 0
    with s:
        if cmd:
            s.trace_command(cmd)
        try:
            for ev in s.events(duration=args.duration):
                f = funcs.get(ev.event)
                if f is not None:
                    counts[f] += 1
        except KeyboardInterrupt:
            s.stop()
        summ = s.summary().to_dict()
        if cmd:
            s.close()
            rc = s.wait_command() or 0
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if args.json:
        print(json.dumps({"counts": dict(rows), "lost": summ.get("lost", 0)}))
    else:
        w = max([len("FUNC")] + [len(f) for f, _ in rows])
        print(f"{'FUNC':<{w}}  COUNT")
        for f, n in rows:
            print(f"{f:<{w}}  {n}")
        print(f"{sum(counts.values())} calls of {len(counts)} functions, lost "
              f"{summ.get('lost', 0)}", file=sys.stderr)
    return rc
