"""probewatch functrace: kernel function calls with their durations."""

from __future__ import annotations

import argparse
import json
import sys

from .funccount import Functions, add_common

EXAMPLES = """examples:
  probewatch functrace do_sys_openat2 -- cat /etc/hostname
  probewatch functrace 'tcp_v4_*' -d 5 --json

One line per call that returned: time, process, function and duration. On the
function_graph tracer of a private tracefs instance where the kernel allows it (its
calltime/rettime), else on a kprobe at the entry and a kretprobe at the return, paired
per thread (recursion nests); --via chooses. Where neither works, one line says so and
names the tracepoints that can answer instead.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("functrace", help="kernel function calls with durations",
                       description="Trace calls of kernel functions matching PATTERN with "
                       "their durations.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pattern", metavar="PATTERN", help="kernel function name or glob")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cmd = list(getattr(args, "command_argv", None) or [])
    fx = Functions(args, "trace", graph=True)
    s = fx.session
    open_calls: dict[tuple[int, str], list[int]] = {}
    calls = 0
    rc = 0
    out = sys.stdout
    if not args.json:
        out.write(f"{'TIME(s)':>15} {'COMM':<16} {'PID/TID':<13} {'FUNC':<24} DURATION(us)\n")

    def line(ts: int, ev: object, f: str, dur_ns: int, depth: int) -> None:
        pid, tid, comm = ev.pid, ev.tid, ev.comm  # type: ignore[attr-defined]
        if args.json:
            out.write(json.dumps({"ts": ts, "pid": pid, "tid": tid, "comm": comm,
                                  "func": f, "duration_us": round(dur_ns / 1000, 3),
                                  "depth": depth}) + "\n")
        else:
            out.write(f"{ts / 1e9:15.6f} {comm:<16} {f'{pid}/{tid}':<13} "
                      f"{'  ' * depth + f:<24} {dur_ns / 1000:.3f}\n")

    with s:
        if cmd:
            s.trace_command(cmd)
        try:
            for ev in s.events(duration=args.duration):
                f = fx.func(ev)
                if f is None:
                    continue
                role = fx.role(ev)
                if fx.via == "function":
                    if role == "exit":  # function_graph: the exit carries both times
                        ct, rt = ev.fields.get("calltime"), ev.fields.get("rettime")
                        if isinstance(ct, int) and isinstance(rt, int):
                            calls += 1
                            line(ev.ts - (rt - ct), ev, f, rt - ct,
                                 int(ev.fields.get("depth") or 0))
                    continue
                key = (ev.tid, f)
                if role == "entry":
                    open_calls.setdefault(key, []).append(ev.ts)
                    continue
                stack = open_calls.get(key)
                if not stack:
                    continue  # its entry came before tracing started
                t0 = stack.pop()
                calls += 1
                line(t0, ev, f, ev.ts - t0, len(stack))
        except KeyboardInterrupt:
            s.stop()
        summ = s.summary().to_dict()
        if cmd:
            s.close()
            rc = s.wait_command() or 0
    print(f"{calls} calls ({fx.via}), lost {summ.get('lost', 0)}", file=sys.stderr)
    return rc
