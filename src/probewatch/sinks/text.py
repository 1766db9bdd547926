"""Plain text: one aligned line per event, perf-tools style.

Example::

    sink = TextSink(sys.stdout, hex_fields={"syscalls:sys_enter_openat": {"filename"}})
    sink.write(ev)
    #   12.345678 [001] ls              1234/1234   syscalls:sys_enter_openat dfd=-100 ...
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any

from ..event import Event


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
        return repr(v) if (" " in v or not v) else v
    if isinstance(v, bytes | bytearray):
        return v.hex()
    return str(v)


class TextSink:
    HEADER = f"{'TIME(s)':>15} {'CPU':5} {'COMM':16} {'PID/TID':13} EVENT"

    def __init__(self, out: IO[str], hex_fields: dict[str, set[str]] | None = None) -> None:
        self.out = out
        self.hex_fields = hex_fields or {}
        self.header_done = False

    def line(self, ev: Event) -> str:
        hx = self.hex_fields.get(ev.event, ())
        args = " ".join(f"{k}={_fmt(v, k in hx)}" for k, v in ev.fields.items())
        pidtid = f"{ev.pid}/{ev.tid}"
        return (
            f"{ev.ts / 1e9:15.6f} [{ev.cpu:03d}] {ev.comm:16.16} {pidtid:13} {ev.event} {args}"
        )

    def write(self, ev: Event) -> None:
        if not self.header_done:
            self.out.write(self.HEADER + "\n")
            self.header_done = True
        self.out.write(self.line(ev) + "\n")
