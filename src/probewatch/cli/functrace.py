"""probewatch functrace: kernel function calls with their durations (kprobe pairs)."""

from __future__ import annotations

import argparse
import json
import sys

from .funccount import add_common, open_functions

EXAMPLES = """examples:
  probewatch functrace do_sys_openat2 -- cat /etc/hostname
  probewatch functrace 'tcp_v4_*' -d 5 --json

One line per call that returned: time, process, function and duration (a kprobe at the
entry and a kretprobe at the return, paired per thread; recursion nests). On kprobes;
where the kernel has none, one line says so and names the tracepoints that can answer
instead.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("functrace", help="kernel function calls with durations (kprobes)",
                       description="Trace calls of kernel functions matching PATTERN with "
                       "their durations.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pattern", metavar="PATTERN", help="kernel function name or glob")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cmd = list(getattr(args, "command_argv", None) or [])
    s, funcs = open_functions(args, [f"k:{args.pattern}", f"kr:{args.pattern}"], "trace")
    entry_probe = f"k:{args.pattern}"
    open_calls: dict[tuple[int, str], list[int]] = {}
    calls = 0
    rc = 0
    out = sys.stdout
    if not args.json:
        out.write(f"{'TIME(s)':>15} {'COMM':<16} {'PID/TID':<13} {'FUNC':<24} DURATION(us)\n")
    with s:
        if cmd:
            s.trace_command(cmd)
        try:
            for ev in s.events(duration=args.duration):
                f = funcs.get(ev.event)
                if f is None:
                    continue
                key = (ev.tid, f)
                if ev.probe == entry_probe:
                    open_calls.setdefault(key, []).append(ev.ts)
                    continue
                stack = open_calls.get(key)
                if not stack:
                    continue  # its entry came before tracing started
                t0 = stack.pop()
                calls += 1
                dur = (ev.ts - t0) / 1000.0
                if args.json:
                    out.write(json.dumps({"ts": t0, "pid": ev.pid, "tid": ev.tid,
                                          "comm": ev.comm, "func": f,
                                          "duration_us": round(dur, 3),
                                          "depth": len(stack)}) + "\n")
                else:
                    out.write(f"{t0 / 1e9:15.6f} {ev.comm:<16} "
                              f"{f'{ev.pid}/{ev.tid}':<13} {'  ' * len(stack) + f:<24} "
                              f"{dur:.3f}\n")
        except KeyboardInterrupt:
            s.stop()
        summ = s.summary().to_dict()
        if cmd:
            s.close()
            rc = s.wait_command() or 0
    print(f"{calls} calls, lost {summ.get('lost', 0)}", file=sys.stderr)
    return rc
