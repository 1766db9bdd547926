"""probewatch execsnoop: new programs (execve/execveat): ppid, argv, return (BPF)."""

from __future__ import annotations

import argparse
import shlex
import sys

from ..event import Event
from .syscalls import add_bpf_common, emit_json, require_bpf, run_tool, session_kwargs

EXAMPLES = """examples:
  probewatch execsnoop                         every exec on the system
  probewatch execsnoop -x                      include failed execs
  probewatch execsnoop -- make                 the commands a build runs
  probewatch execsnoop --max-args 200 --arg-len 1024
  probewatch execsnoop --json | jq -c '.fields.argv'

ARGS ends with '...' when argv was cut at --max-args or --arg-len.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "execsnoop",
        help="trace exec()s: ppid, argv, return value (BPF)",
        description="Trace execve/execveat with their argument vectors (BPF).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-x", "--failed", action="store_true", help="include failed execs")
    p.add_argument("--max-args", type=int, default=64, help="argv entries to read (<= 128)")
    p.add_argument("--arg-len", type=int, default=256, help="bytes per argv entry to read")
    add_bpf_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..bpf_session import BpfSession
    from ..decode.syscalls import errno_name

    require_bpf(args, "execsnoop")
    s = BpfSession("syscalls", syscalls=["execve", "execveat"], argv_max=args.max_args,
                   arg_max=args.arg_len, **session_kwargs(args))
    out = sys.stdout
    if not args.json:
        out.write(f"{'PCOMM':<16} {'PID':<7} {'PPID':<7} {'RET':>4} ARGS\n")

    def show(ev: Event) -> None:
        f = ev.fields
        ret = f.get("ret")
        if not isinstance(ret, int) or (ret < 0 and not args.failed):
            return
        if args.json:
            emit_json(out, ev)
            return
        argv = f.get("argv")
        if not isinstance(argv, list):
            argv = [f"<unreadable argv {f.get('argv_ptr', 0):#x}>"]
        text = " ".join(shlex.quote(a) if a == "" or any(c.isspace() for c in a) else a
                        for a in argv)
        if "argv" in f.get("truncated", ()):
            text += " ..."
        r = str(ret) if ret >= 0 else errno_name(-ret)
        out.write(f"{ev.comm:<16} {ev.pid:<7} {f.get('ppid', 0):<7} {r:>4} {text}\n")

    return run_tool(args, s, show, out)
