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

On the function tracer of a private tracefs instance (set_ftrace_filter takes the glob;
function names from /proc/kallsyms) where the kernel allows it, else on kprobes (a glob
expands against available_filter_functions, at most 64 functions); --via chooses.
Where neither works, one line says so and names the tracepoints that can answer
instead. Ctrl-C ends the count early.
"""


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--pid", type=live_pid_arg, action="append", default=[],
                   help="only this process (and its children); repeatable")
    p.add_argument("-d", "--duration", type=duration_arg, metavar="SECS",
                   help="stop after SECS seconds")
    p.add_argument("--via", choices=["auto", "function", "kprobe"], default="auto",
                   help="the function tracer or kprobes (auto: the function tracer "
                   "where the kernel allows it)")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(accepts_command=True)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("funccount", help="count kernel function calls",
                       description="Count calls of kernel functions matching PATTERN.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pattern", metavar="PATTERN", help="kernel function name or glob")
    add_common(p)
    p.set_defaults(func=run)


class Functions:
    """A Session tracing the kernel functions of ``args.pattern`` and how to read
    its events: :meth:`func` names the function of an event, :meth:`role` says
    ``entry``, ``exit`` or ``call`` (the function tracer's one event per call)."""

    def __init__(self, args: argparse.Namespace, what: str, graph: bool) -> None:
        from ..errors import FeatureUnavailable
        from ..kernel.features import check
        from ..kernel.tracefs import tracefs_root
        from ..session import FtraceSession
        from ..sources.kfunc import require_kernel_functions

        root = tracefs_root()
        self.via = require_kernel_functions(root, args.pattern, what, args.via)
        self.session = s = FtraceSession(pids=args.pid or None)
        self.funcs: dict[str, str] = {}
        self.entry_probe = f"k:{args.pattern}"
        try:
            if self.via == "function":
                try:
                    s.add_functions(args.pattern, graph=graph)
                except FeatureUnavailable:
                    # e.g. function_graph not allowed in instances (before Linux 6.12)
                    if args.via != "auto" or not check("kprobe_events", root).available:
                        raise
                    s.close()
                    self.via = "kprobe"
                    self.session = s = FtraceSession(pids=args.pid or None)
            if self.via == "kprobe":
                s.add(self.entry_probe)
                if graph:
                    s.add(f"kr:{args.pattern}")
                self.funcs = {f"{dp.group}:{dp.name}": dp.symbol or dp.name
                              for dp in s.dynamic_probes}
        except BaseException:
            s.close()
            raise

    def func(self, ev: Any) -> str | None:
        if self.via == "function":
            f = ev.fields.get("func")
            return str(f) if f is not None else None
        return self.funcs.get(ev.event)

    def role(self, ev: Any) -> str:
        if self.via == "function":
            return {"ftrace:funcgraph_entry": "entry",
                    "ftrace:funcgraph_exit": "exit"}.get(ev.event, "call")
        return "entry" if ev.probe == self.entry_probe else "exit"


def run(args: argparse.Namespace) -> int:
    cmd = list(getattr(args, "command_argv", None) or [])
    fx = Functions(args, "count", graph=False)
    s = fx.session
    counts: dict[str, int] = {f: 0 for f in fx.funcs.values()}
    rc = 0
    with s:
        if cmd:
            s.trace_command(cmd)
        try:
            for ev in s.events(duration=args.duration):
                f = fx.func(ev)
                if f is not None:
                    counts[f] = counts.get(f, 0) + 1
        except KeyboardInterrupt:
            s.stop()
        summ = s.summary().to_dict()
        if cmd:
            s.close()
            rc = s.wait_command() or 0
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if args.json:
        print(json.dumps({"counts": dict(rows), "via": fx.via,
                          "lost": summ.get("lost", 0)}))
    else:
        w = max([len("FUNC")] + [len(f) for f, _ in rows])
        print(f"{'FUNC':<{w}}  COUNT")
        for f, n in rows:
            print(f"{f:<{w}}  {n}")
        print(f"{sum(counts.values())} calls of {len(counts)} functions ({fx.via}), lost "
              f"{summ.get('lost', 0)}", file=sys.stderr)
    return rc
