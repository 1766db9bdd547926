"""Plain text: one aligned line per event, perf-tools style.

Everything a traced process controls (comm, string fields, argv) goes through
:func:`probewatch.decode.escape.escape_text`: control characters, line breaks and
undecodable bytes are printed as escapes, so a line is always one event.

Example::

    sink = TextSink(sys.stdout, hex_fields={"syscalls:sys_enter_openat": {"filename"}})
    sink.write(ev)
    #   12.345678 [001] ls              1234/1234   syscalls:sys_enter_openat dfd=-100 ...
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..decode.escape import escape_text, quote_text
from ..event import Event
from .writer import TextOut


def hex_fields(formats: Iterable[Any]) -> dict[str, set[str]]:
    """Per "system:name", the fields shown in hex: pointers and probe addresses."""
    return {
        f"{f.system}:{f.name}": {
            fl.name for fl in f.fields if "*" in fl.ctype or fl.name.startswith("__probe")
        }
        for f in formats
    }


def _fmt(v: Any, as_hex: bool) -> str:
    if isinstance(v, int) and as_hex:
        return hex(v)
    if isinstance(v, str):
        return quote_text(v) if (" " in v or not v) else escape_text(v)
    if isinstance(v, bytes | bytearray):
        return v.hex()
    if v is None:
        return "(null)"
    if isinstance(v, list | tuple) and any(isinstance(x, str) for x in v):
        inner = ", ".join(quote_text(x) if isinstance(x, str) else _fmt(x, False) for x in v)
        return f"({inner})" if isinstance(v, tuple) else f"[{inner}]"
    return escape_text(str(v))


def frame_line(f: Any) -> str:
    """One stack frame as ``perf script`` prints it: ``\\t    55d0c0de1139
    st_f2+0x0 (/usr/bin/x)``; ``[unknown]`` where no symbol covers the address."""
    if not isinstance(f, dict):
        return f"\t{escape_text(str(f))}"
    addr = f.get("addr")
    a = f"{addr:16x}" if isinstance(addr, int) else f"{escape_text(str(addr)):>16}"
    sym = f.get("symbol")
    name = "[unknown]" if sym is None else f"{escape_text(str(sym))}+0x{f.get('offset') or 0:x}"
    mod = f.get("module")
    return f"\t{a} {name} ({escape_text(str(mod)) if mod else 'unknown'})"


class TextSink:
    HEADER = f"{'TIME(s)':>15} {'CPU':5} {'COMM':16} {'PID/TID':13} EVENT"

    def __init__(self, out: TextOut, hex_fields: dict[str, set[str]] | None = None) -> None:
        self.out = out
        self.hex_fields = hex_fields or {}
        self.header_done = False

    def line(self, ev: Event) -> str:
        """The event's line; with a stack (``fields["stack"]``, a list of frames), the
        frames follow it one per line, as ``perf script`` prints callchains."""
        hx = self.hex_fields.get(ev.event, ())
        fields = ev.fields
        stack = fields.get("stack")
        if isinstance(stack, list):
            fields = {k: v for k, v in fields.items() if k != "stack"}
        args = " ".join(f"{k}={_fmt(v, k in hx)}" for k, v in fields.items())
        pidtid = f"{ev.pid}/{ev.tid}"
        comm = escape_text(ev.comm)
        text = (
            f"{ev.ts / 1e9:15.6f} [{ev.cpu:03d}] {comm:<16} {pidtid:13} "
            f"{escape_text(ev.event)} {args}"
        )
        if isinstance(stack, list):
            text += "".join("\n" + frame_line(f) for f in stack)
        return text

    def write(self, ev: Event) -> None:
        if not self.header_done:
            self.out.write(self.HEADER + "\n")
            self.header_done = True
        self.out.write(self.line(ev) + "\n")
