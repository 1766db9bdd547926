"""probewatch sslsniff: TLS plaintext at the library API (OpenSSL, GnuTLS, Go; BPF)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..decode.escape import escape_text
from ..event import Event
from .syscalls import (
    add_bpf_common,
    command_of,
    controlled,
    emit_json,
    require_bpf,
    run_tool,
    session_kwargs,
    stdout,
)

EXAMPLES = """examples:
  probewatch sslsniff                              every process using libssl/libgnutls
  probewatch sslsniff -- curl -s https://host/     one command (and its children)
  probewatch sslsniff -p 1234 --hexdump            a running process, data as hex
  probewatch sslsniff --binary ./goserver          also a Go program (crypto/tls)
  probewatch sslsniff --json --max-bytes 1M | jq -r .fields.data
  probewatch sslsniff -o tls.db -- ./client        also store the records in a capture

Caught at the library's API: OpenSSL 1.1/3 SSL_write/SSL_read(_ex), GnuTLS
gnutls_record_send/recv, Go crypto/tls (*Conn).Write/Read (uprobes on its RETs).
Up to --max-bytes of each call are copied (default 16 KiB); the rest is counted
("cut") and never shown as if whole. The connection (fd and addresses) comes from
the read/write syscall the library makes on the same thread.
With --json, data that is valid UTF-8 is a string; other bytes are {"b64": ...}.
"""


def size_arg(text: str) -> int:
    """A byte count: 16384, 16K, 1M (at most 4 MiB)."""
    t = text.strip().upper().removesuffix("B")
    mult = 1
    if t.endswith("K"):
        mult, t = 1024, t[:-1]
    elif t.endswith("M"):
        mult, t = 1 << 20, t[:-1]
    try:
        n = int(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 16384, 64K, 1M)")\
            from None
    if n < 0 or n > 4 << 20:
        raise argparse.ArgumentTypeError(f"size {text!r} out of range (0 .. 4M)")
    return n


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sslsniff",
        help="TLS plaintext of OpenSSL, GnuTLS and Go programs (BPF uprobes)",
        description="Show the plaintext processes send and receive through TLS "
        "libraries, with the connection it belongs to (BPF).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--hexdump", action="store_true", help="show data as a hex dump")
    p.add_argument("--no-data", action="store_true",
                   help="headers only: no data copied in the kernel (--max-bytes 0)")
    p.add_argument("--max-bytes", type=size_arg, default=16384, metavar="N",
                   help="bytes copied per call (default 16384; up to 4M; K/M suffixes)")
    p.add_argument("--binary", action="append", default=[], metavar="PATH",
                   help="also probe this executable or library (Go, static OpenSSL); "
                   "repeatable")
    p.add_argument("--no-system-libs", action="store_true",
                   help="do not probe the ld.so cache's libssl/libgnutls")
    p.add_argument("--rescan", type=float, default=None, metavar="SECS",
                   help="look for TLS libraries mapped later (dlopen from a path not "
                   "probed yet) this often (default: 1 with -p or a command, 5 for the "
                   "whole machine; 0: never)")
    p.add_argument("-o", "--output", metavar="CAPTURE",
                   help="also store the records in this capture file")
    p.add_argument("--force", action="store_true", help="overwrite CAPTURE if it exists")
    add_bpf_common(p)
    p.set_defaults(func=run)


def hexdump(data: bytes) -> list[str]:
    """16 bytes a line: offset, hex, printable ASCII."""
    out = []
    for i in range(0, len(data), 16):
        chunk = data[i : i + 16]
        hx = " ".join(f"{b:02x}" for b in chunk)
        asc = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        out.append(f"{i:08x}  {hx:<47}  |{asc}|")
    return out


def conn_text(f: dict[str, Any]) -> str:
    fd = f.get("fd", -1)
    if fd is None or fd < 0:
        return "fd ?"
    if "daddr" in f:
        sa, da = f["saddr"], f["daddr"]
        if ":" in sa:
            sa, da = f"[{sa}]", f"[{da}]"
        return f"fd {fd} {sa}:{f['sport']} -> {da}:{f['dport']}"
    return f"fd {fd}"


def format_event(ev: Event, t0: int, hexd: bool, data: bool) -> list[str]:
    """The text lines of one record: a header, then the data between markers."""
    f = ev.fields
    fn = "WRITE/SEND" if f.get("direction") == "write" else "READ/RECV"
    lat = f.get("latency_ns", 0) / 1e6
    head = (f"{fn:<12} {(ev.ts - t0) / 1e9:<14.9f} {escape_text(ev.comm):<16} {ev.pid:<7} "
            f"{ev.tid:<7} {f.get('len', 0):<7} {lat:<9.3f} {escape_text(str(f.get('function')))}"
            f"  {conn_text(f)}")
    lines = [head]
    if not data:
        return lines
    raw = str(f.get("data", "")).encode("utf-8", "surrogateescape")
    lines.append("----- DATA -----")
    if "faults" in f:
        lines.append("<unreadable: the buffer could not be read>")
    elif hexd:
        lines.extend(hexdump(raw))
    else:
        text = raw.decode("utf-8", "surrogateescape")
        parts = text.split("\n")
        if parts and parts[-1] == "":
            parts.pop()
        lines.extend(escape_text(p) for p in parts)
    end = "----- END DATA"
    notes = []
    if f.get("cut"):
        notes.append(f"{f['cut']} of {f['len']} bytes not captured: beyond --max-bytes")
    if f.get("lost_bytes"):
        notes.append(f"{f['lost_bytes']} captured bytes lost (ring buffer full)")
    if notes:
        end += " (" + "; ".join(notes) + ")"
    lines.append(end + " -----")
    return lines


@controlled
def run(args: argparse.Namespace) -> int:
    from ..ssl_session import SslSession

    require_bpf(args, "sslsniff")
    s = SslSession(data_max=0 if args.no_data else args.max_bytes, binaries=args.binary,
                   system_libs=not args.no_system_libs,
                   rescan_s=None if args.rescan is None else max(args.rescan, 0.0),
                   **session_kwargs(args))
    out = stdout()
    writer = None
    if args.output:
        from ..sinks.capture import CaptureWriter

        writer = CaptureWriter(args.output, force=args.force)
    header = "" if args.json else (
        f"{'FUNC':<12} {'TIME(s)':<14} {'COMM':<16} {'PID':<7} {'TID':<7} {'LEN':<7} "
        f"{'LAT(ms)':<9} FUNCTION  CONNECTION\n")
    t0: list[int] = []
    begun = [False]

    def show(ev: Event) -> bool:
        if not begun[0]:
            _begin(args, s, writer)
            begun[0] = True
        if writer is not None:
            writer.add(ev)
        if args.json:
            emit_json(out, ev)
            return True
        if not t0:
            t0.append(ev.ts)
        for line in format_event(ev, t0[0], args.hexdump, not args.no_data):
            out.write(line + "\n")
        out.flush()
        return True

    def after() -> None:
        for n in s.notes:
            print(f"probewatch: sslsniff: {escape_text(n)}", file=sys.stderr)
        if not s.probed and not s.notes:
            print("probewatch: sslsniff: no TLS library found (searched the ld.so cache for "
                  "libssl.so.3, libssl.so.1.1, libgnutls.so.30)", file=sys.stderr)
        copied, cut = s.byte_counts()
        if not args.json:
            print(f"probewatch: sslsniff: {copied} plaintext bytes captured, {cut} bytes cut "
                  f"at --max-bytes; probed: {len(s.probed)} file(s)", file=sys.stderr)

    rc = 1
    status = "complete"
    try:
        rc = run_tool(args, s, show, out, after=after, header=header)
    except BaseException:
        status = "error"
        raise
    finally:
        if writer is not None:
            if not begun[0]:
                _begin(args, s, writer)
            res = writer.finish(status=status,
                                exit_status=rc if command_of(args) else None,
                                lost_per_cpu=s.losses().lost_per_cpu)
            if res.error is not None:
                print(f"probewatch: error: {res.error}", file=sys.stderr)
                rc = rc or 1
    return rc


def _begin(args: argparse.Namespace, s: Any, writer: Any) -> None:
    if writer is None:
        return
    from ..sinks.capture import ProbeInfo, RunInfo

    writer.begin_run(
        RunInfo(backend="bpf", clock="mono", argv=["probewatch", *sys.argv[1:]],
                command=command_of(args) or None, pids=list(args.pid) or None,
                comm=args.comm),
        [ProbeInfo("bpf:sslsniff", kind="bpf", backend="bpf",
                   events=["tls:write", "tls:read"])],
    )


__all__ = ["register", "run", "format_event", "hexdump", "size_arg"]
