"""probewatch tcpconnect: active TCP connections (connect), IPv4 and IPv6 (BPF)."""

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
  probewatch tcpconnect                        every outgoing TCP connection
  probewatch tcpconnect -x                     include failed connects (refused, timeout)
  probewatch tcpconnect -- curl -s example.org the connections of one command
  probewatch tcpconnect --json -d 10 | jq -r '.fields.daddr'

Built on the sock:inet_sock_set_state tracepoint: one line per connect, when the
socket leaves SYN_SENT (source port known). RESULT is ok or failed.
"""

TCP_ESTABLISHED = 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tcpconnect",
        help="trace outgoing TCP connections, IPv4 and IPv6 (BPF)",
        description="Trace active TCP opens: pid, comm, saddr:sport -> daddr:dport (BPF).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-x", "--failed", action="store_true", help="include failed connects")
    add_bpf_common(p)
    p.set_defaults(func=run)


def _ep(addr: str, port: int, fam: int) -> str:
    return f"[{addr}]:{port}" if fam == 10 else f"{addr}:{port}"


@controlled
def run(args: argparse.Namespace) -> int:
    from ..bpf_session import BpfSession

    require_bpf(args, "tcpconnect")
    s = BpfSession("tcpconnect", **session_kwargs(args))
    out = stdout()
    header = "" if args.json else (f"{'PID':<7} {'COMM':<16} {'IP':<2} {'SADDR:SPORT':<40} "
                                   f"{'DADDR:DPORT':<40} RESULT\n")

    def show(ev: Event) -> bool:
        f = ev.fields
        ok = f.get("state") == TCP_ESTABLISHED
        if not ok and not args.failed:
            return False  # not shown: not counted
        if args.json:
            emit_json(out, ev)
            return True
        fam = f["family"]
        out.write(f"{ev.pid:<7} {escape_text(ev.comm):<16} {4 if fam == 2 else 6:<2} "
                  f"{_ep(f['saddr'], f['sport'], fam):<40} "
                  f"{_ep(f['daddr'], f['dport'], fam):<40} {'ok' if ok else 'failed'}\n")
        return True

    return run_tool(args, s, show, out, header=header)
