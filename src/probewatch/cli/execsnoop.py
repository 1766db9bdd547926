"""probewatch execsnoop: new programs (execve/execveat): ppid, argv, return (BPF)."""

from __future__ import annotations

import argparse
import shlex

from ..decode.escape import escape_text
from ..event import Event
from .args import MAX_ARG_LEN, MAX_ARGS, arg_len_arg, max_args_arg
from .syscalls import (
    add_bpf_common,
    controlled,
    emit_json,
    require_bpf,
    run_tool,
    session_kwargs,
    stdout,
)

EXAMPLES = """examples:
  probewatch execsnoop                         every exec on the system
  probewatch execsnoop -x                      include failed execs
  probewatch execsnoop -- make                 the commands a build runs
  probewatch execsnoop --max-args 128 --arg-len 1024
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
    p.add_argument("--max-args", type=max_args_arg, default=64,
                   help=f"argv entries to read (1..{MAX_ARGS}; default 64)")
    p.add_argument("--arg-len", type=arg_len_arg, default=256,
                   help=f"bytes per argv entry to read, with its NUL (2..{MAX_ARG_LEN}; "
                   "default 256)")
    add_bpf_common(p)
    p.set_defaults(func=run)


@controlled
def run(args: argparse.Namespace) -> int:
    from ..bpf_session import BpfSession
    from ..decode.syscalls import errno_name

    require_bpf(args, "execsnoop")
    s = BpfSession("syscalls", syscalls=["execve", "execveat"], argv_max=args.max_args,
                   arg_max=args.arg_len, **session_kwargs(args))
    out = stdout()
    header = "" if args.json else f"{'PCOMM':<16} {'PID':<7} {'PPID':<7} {'RET':>4} ARGS\n"

    def show(ev: Event) -> bool:
        f = ev.fields
        ret = f.get("ret")
        if not isinstance(ret, int) or (ret < 0 and not args.failed):
            return False  # not shown: not counted
        if args.json:
            emit_json(out, ev)
            return True
        argv = f.get("argv")
        if argv is None:  # execve(path, NULL, ...): the kernel runs it with argc 0
            argv = ["(null)"]
        elif not isinstance(argv, list):
            argv = [f"<unreadable argv {f.get('argv_ptr', 0):#x}>"]
        text = " ".join(_word(a) for a in argv)
        if "argv" in f.get("truncated", ()):
            text += " ..."
        r = str(ret) if ret >= 0 else errno_name(-ret)
        out.write(f"{escape_text(ev.comm):<16} {ev.pid:<7} {f.get('ppid', 0):<7} {r:>4} {text}\n")
        return True

    return run_tool(args, s, show, out, header=header)


def _word(a: str) -> str:
    """One argv entry as text: escaped (no control characters, one line), and quoted
    when empty or holding spaces."""
    e = escape_text(a)
    return shlex.quote(e) if e == "" or " " in e else e
