"""probewatch syscount: syscalls counted in the kernel, by syscall or by process (BPF)."""

from __future__ import annotations

import argparse
from typing import Any

from ..decode.escape import escape_text
from ..sinks.jsonl import obj_json
from .args import top_arg
from .syscalls import add_bpf_common, controlled, require_bpf, run_tool, session_kwargs, stdout

EXAMPLES = """examples:
  probewatch syscount -d 5                     top syscalls system-wide for 5 s
  probewatch syscount -- ./workload            count the syscalls of a command
  probewatch syscount -P -d 5                  top processes by syscall count
  probewatch syscount -L -t 20 -p 1234         with time spent, top 20
  probewatch syscount --json -- make -s        one JSON document on stdout

Counting happens in the kernel (per-CPU maps): nothing is lost, however fast.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "syscount",
        help="count syscalls in the kernel: top syscalls or processes (BPF)",
        description="Count syscalls per syscall (or per process) in kernel maps (BPF).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-P", "--process", action="store_true", help="count per process")
    p.add_argument("-L", "--latency", action="store_true", help="show time spent")
    p.add_argument("-t", "--top", type=top_arg, default=10, help="rows to show (0: all)")
    p.add_argument("-x", "--failures", action="store_true", help="show the error counts")
    add_bpf_common(p)
    p.set_defaults(func=run)


@controlled
def run(args: argparse.Namespace) -> int:
    from ..bpf_session import BpfSession

    require_bpf(args, "syscount")
    s = BpfSession("syscalls", emit=False, count=not args.process, count_procs=args.process,
                   **session_kwargs(args))
    out = stdout()
    result: dict[str, Any] = {}

    def collect() -> None:
        if args.process:
            comms = _comms(s.proc_counts())
            result["rows"] = [
                {"pid": pid, "comm": comms.get(pid, "?"), "count": c, "errors": e,
                 "time_ns": t}
                for pid, (c, e, t) in s.proc_counts().items()
            ]
        else:
            result["rows"] = [
                {"syscall": name, "count": c, "errors": e, "time_ns": t}
                for name, (c, e, t) in s.syscall_counts().items()
            ]
        rows = sorted(result["rows"], key=lambda r: (-r["count"], str(r.get("syscall", ""))))
        if args.top:
            rows = rows[: args.top]
        if args.json:
            out.write(obj_json({"rows": rows}) + "\n")
            return
        key = "PID    COMM" if args.process else "SYSCALL"
        head = f"{key:<24} {'COUNT':>10}"
        if args.failures:
            head += f" {'ERRORS':>8}"
        if args.latency:
            head += f" {'TIME (us)':>12}"
        out.write(head + "\n")
        for r in rows:
            label = (f"{r['pid']:<6} {escape_text(r['comm'])}" if args.process
                     else r["syscall"])
            line = f"{label:<24} {r['count']:>10}"
            if args.failures:
                line += f" {r['errors']:>8}"
            if args.latency:
                line += f" {r['time_ns'] / 1000:>12.1f}"
            out.write(line + "\n")

    return run_tool(args, s, None, out, after=collect)


def _comms(counts: dict[int, Any]) -> dict[int, str]:
    out = {}
    for pid in counts:
        try:
            with open(f"/proc/{pid}/comm", encoding="utf-8", errors="surrogateescape") as f:
                out[pid] = f.read().strip()
        except OSError:
            out[pid] = "[exited]"
    return out
