"""probewatch opensnoop: files opened, with flags and the fd or error (BPF)."""

from __future__ import annotations

import argparse

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
  probewatch opensnoop                         every open on the system
  probewatch opensnoop -x                      only failed opens
  probewatch opensnoop -p 1234                 one process (and its children)
  probewatch opensnoop -- cat /etc/hostname    run a command and show its opens
  probewatch opensnoop --json -d 5 | jq -r .fields.filename
"""

OPEN_SYSCALLS = ("open", "openat", "openat2", "creat")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "opensnoop",
        help="trace open()s: path, flags, fd or error (BPF)",
        description="Trace open/openat/openat2/creat system-wide or for a command (BPF).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-x", "--failed", action="store_true", help="only failed opens")
    p.add_argument("-T", "--timestamp", action="store_true", help="print a timestamp column")
    add_bpf_common(p)
    p.set_defaults(func=run)


@controlled
def run(args: argparse.Namespace) -> int:
    from ..bpf_session import BpfSession
    from ..decode.syscalls import errno_name, open_flags

    require_bpf(args, "opensnoop")
    s = BpfSession("syscalls", **session_kwargs(args))
    names = [n for n in OPEN_SYSCALLS if n in s.table.by_name and _has_tp(n)]
    s.close()
    s = BpfSession("syscalls", syscalls=names, **session_kwargs(args))
    out = stdout()
    t0: list[int] = []
    header = "" if args.json else (("TIME(s)   " if args.timestamp else "")
                                   + f"{'PID':<7} {'COMM':<16} {'FD':>4} {'ERR':<7} "
                                   f"{'FLAGS':<24} PATH\n")

    def show(ev: Event) -> bool:
        f = ev.fields
        ret = f.get("ret")
        if not isinstance(ret, int):
            return False  # not shown: not counted
        if args.failed and ret >= 0:
            return False
        if args.json:
            emit_json(out, ev)
            return True
        fd, err = (str(ret), "") if ret >= 0 else ("-1", errno_name(-ret))
        raw = f.get("filename", f.get("pathname"))
        if "faults" in f:
            ptr = f.get("filename_ptr", f.get("pathname_ptr", 0))
            path = f"<unreadable {ptr:#x}>"
        elif raw is None:
            path = "(null)"
        else:
            path = escape_text(str(raw))
            if "filename" in f.get("truncated", ()) or "pathname" in f.get("truncated", ()):
                path += "..."
        fl = f.get("flags", 0) if ev.event != "syscalls:creat" else 0o1101
        if ev.event == "syscalls:openat2":
            fl = 0
        ts = ""
        if args.timestamp:
            if not t0:
                t0.append(ev.ts)
            ts = f"{(ev.ts - t0[0]) / 1e9:<9.6f} "
        out.write(f"{ts}{ev.pid:<7} {escape_text(ev.comm):<16} {fd:>4} {err:<7} "
                  f"{open_flags(int(fl)):<24} {path}\n")
        return True

    return run_tool(args, s, show, out, header=header)


def _has_tp(name: str) -> bool:
    import os

    from ..kernel.tracefs import tracefs_root

    return os.path.isdir(os.path.join(tracefs_root(), "events", "syscalls", f"sys_enter_{name}"))
