"""probewatch bashreadline: commands typed into bash (uretprobe on readline, BPF)."""

from __future__ import annotations

import argparse
import time

from ..decode.escape import escape_text
from ..event import Event
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
  probewatch bashreadline                      every interactive bash on the system
  probewatch bashreadline -p 1234              one shell
  probewatch bashreadline --bash /usr/local/bin/bash
  probewatch bashreadline --json | jq -r .fields.line
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bashreadline",
        help="commands typed into bash (BPF uretprobe on readline)",
        description="Print lines bash reads through readline(), system-wide (BPF).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bash", default="/bin/bash", help="the bash binary (default /bin/bash)")
    add_bpf_common(p)
    p.set_defaults(func=run)


@controlled
def run(args: argparse.Namespace) -> int:
    from ..bpf_session import BpfSession

    require_bpf(args, "bashreadline")
    s = BpfSession("bashreadline", bash_path=args.bash, **session_kwargs(args))
    out = stdout()
    header = "" if args.json else f"{'TIME':<9} {'PID':<7} COMMAND\n"

    def show(ev: Event) -> bool:
        if args.json:
            emit_json(out, ev)
            return True
        line = escape_text(str(ev.fields.get("line", "")))
        if "faults" in ev.fields:
            line = "<unreadable>"
        out.write(f"{time.strftime('%H:%M:%S'):<9} {ev.pid:<7} {line}\n")
        out.flush()
        return True

    return run_tool(args, s, show, out, header=header)
