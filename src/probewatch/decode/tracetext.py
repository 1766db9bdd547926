"""Parse the text ``trace_pipe`` of an ftrace instance into Events (the fallback reader).

The ftrace backend reads binary pages from ``per_cpu/cpuN/trace_pipe_raw``
(:mod:`probewatch.decode.ringbuf`). When it cannot, it reads the instance's text
``trace_pipe`` instead: one stream for all CPUs, already merged in time order by the
kernel. The collector sets the instance options so that every line has one shape
(``fields`` on, ``record-tgid`` on, ``irq-info`` off, ``raw``/``hex``/``bin`` off)::

    <comm>-<tid> (<tgid>) [<cpu>] <secs>.<usecs>: <name>: <f1>=<v1> <f2>=<v2> ...
    CPU:<cpu> [LOST <n> EVENTS]

``comm`` is right-aligned in 16 columns, ``tgid`` is ``-------`` when the kernel did
not record it (the idle task). With the ``fields`` option (Linux 6.1+) the kernel
prints every non-common field of the event by name, in declaration order, whatever
the event's ``print fmt`` says; how it prints a field depends only on its declared
type and size (``print_fields()`` in ``kernel/trace/trace_output.c``, 6.18)::

    size 1                        'c'(99)  or  (7)            unsigned char
    size 2                        0x1f (31)                   unsigned short
    size 4                        0xffffff9c (-100)           int (32-bit print)
    size 8                        0xffff88810 (-1313...)      %pS then the value (%lld)
    char NAME[N] (static)         text up to the first NUL
    __data_loc / __rel_loc char[] text up to the first NUL
    __data_loc TYPE[] (other)     01,02,ff (every byte, hex)
    char * / const char *         (0xADDR) or (0xADDR:text)   ADDR is *not* the value
    other sizes                   <INVALID-SIZE>
    cpumask_t                     <INVALID-TYPE>
    past the record's end         <OVERFLOW>

Numbers are taken from the decimal in parentheses (for 8-byte fields the text before
it is a symbol when the value is a kernel address). The parser rebuilds the binary
record from the printed values and decodes it with the event's own
:class:`~probewatch.decode.format.EventFormat`, so every field comes out with the same
Python type and value as on the binary path: ``int dfd`` in an 8-byte syscall slot is
``-100``, ``u8 saddr[4]`` is bytes, ``__data_loc u64[]`` a tuple.

What the text cannot give (documented gaps):

* timestamps: the kernel prints nanoseconds rounded to the nearest microsecond, so
  ``Event.ts`` is a multiple of 1000 and up to 500 ns off (clocks that do not count in
  ns, e.g. ``counter``, print the raw value, which is kept as is);
* ``char *`` / ``const char *`` pointer fields are ``None``: the kernel prints the
  address of the field inside its own buffer instead of the pointer value;
* fields printed as ``<INVALID-SIZE>`` / ``<INVALID-TYPE>`` / ``<OVERFLOW>`` (arrays
  of other sizes than 1, 2, 4, 8 bytes that are not ``char``, cpumasks, flexible
  ``TYPE name[]`` tails) are ``None``;
* a static ``char`` array or ``unsigned char`` array is printed as text: bytes after
  its first NUL are lost (zeros on decode);
* a string that contains a newline splits its line (both halves count as bad lines);
  a line longer than the kernel's page-sized print buffer is not complete.

The event line shows only the event's name, not its system: names map to the
formats the session enabled; when two systems have an event of the same name, the
candidate whose field names match the line wins (identical field lists cannot be
told apart: the first is taken and :attr:`TextDecoder.ambiguous` counts it).

Example::

    dec = TextDecoder({f.id: f for f in formats})
    out: list[Event] = []
    dec.feed(os.read(pipe_fd, 65536), out)
    dec.lost_per_cpu      # {0: 2244} from "CPU:0 [LOST 2244 EVENTS]" lines
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from fnmatch import fnmatchcase
from typing import NamedTuple

from ..errors import DecodeError
from ..event import Event
from .format import (
    KIND_ARRAY,
    KIND_BYTES,
    KIND_DATA_LOC,
    KIND_REL_LOC,
    KIND_STRING,
    KIND_TAIL,
    EventFormat,
    Field,
)

__all__ = ["TextDecoder", "LostEvents", "print_kind"]

# how print_fields() renders a field (see the module docstring)
P_NUM1 = "num1"  #: size 1: 'c'(99) or (99)
P_NUM = "num"  #: sizes 2, 4, 8: ... (decimal)
P_SSTR = "static-string"  #: char NAME[N]
P_DSTR = "dynamic-string"  #: __data_loc / __rel_loc char[]
P_HEX = "hex-bytes"  #: __data_loc / __rel_loc of anything else: aa,bb,cc
P_PTRSTR = "char-pointer"  #: char *: the kernel prints the field's own address
P_NONE = "unavailable"  #: <INVALID-SIZE>, <INVALID-TYPE>, empty (tails)

MAX_LINE = 1 << 16  #: longer "lines" are not the kernel's (its print buffer is a page)

_NUM_SIZES = (1, 2, 4, 8)
_MASK = {n: (1 << (8 * n)) - 1 for n in _NUM_SIZES}

_HEAD = re.compile(
    rb"\s*(?P<comm>.*?)-(?P<tid>\d{1,10})\s+"
    rb"(?:\((?P<tgid>\s*\d{1,10}|-------)\)\s+)?"
    rb"\[(?P<cpu>\d{1,6})\]\s+"
    rb"(?:[^\s\[\]():]{4,6}\s+)?"  # irq-info flags (d..1.) when that option is on
    rb"(?P<secs>\d{1,20})(?:\.(?P<usecs>\d{6}))?:\s"
    rb"(?P<name>[\w.+-]{1,256}):(?P<rest>.*)"
)
_LOST = re.compile(rb"CPU:(?P<cpu>\d{1,6}) \[LOST (?:(?P<n>\d{1,20}) )?EVENTS\]")

_PATTERNS = {
    P_NUM1: rb"(?:'.')?\(\d{1,3}\)|<OVERFLOW>",
    P_NUM: rb"[^()]*\(-?\d{1,20}\)|<OVERFLOW>",
    P_DSTR: rb".*?",
    P_HEX: rb"(?:[0-9a-f]{2}(?:,[0-9a-f]{2})*)?|<OVERFLOW>",
    P_PTRSTR: rb".*?",
    P_NONE: rb".*?",
}

_PTR_STRING_TYPES = ("char *", "const char *")
_PTR_STRING_GLOBS = ("char __attribute(*) [*]", "const char __attribute(*) [*]")


class LostEvents(NamedTuple):
    """A ``CPU:N [LOST M EVENTS]`` line; ``events`` is -1 for ``[LOST EVENTS]``."""

    cpu: int
    events: int


def print_kind(f: Field) -> str:
    """How the kernel's ``fields`` option prints field ``f`` (one of the ``P_*`` names).

    Mirrors the kernel's ``filter_assign_type()`` on the declared type and the size
    switch of ``print_fields()``.

    Example::

        print_kind(fmt.field("filename"))   # 'char-pointer' for sys_enter_openat
    """
    t = f.ctype
    if f.kind in (KIND_DATA_LOC, KIND_REL_LOC):
        if "char" in t:
            return P_DSTR
        if "cpumask_t" in t:
            return P_NONE
        return P_HEX
    # KIND_BYTES is also an odd-sized scalar or a struct by value: only the "char"
    # test below tells them apart, and a struct is never a string
    is_array = f.kind in (KIND_STRING, KIND_ARRAY, KIND_TAIL) or (
        f.kind == KIND_BYTES and (t.split() or [""])[0] not in ("struct", "union")
    )
    if is_array:
        if "char" in t:
            return P_SSTR
        if "cpumask_t" in t:
            return P_NONE
    else:
        norm = " ".join(t.replace("*", " *").split()).replace("* *", "**")
        if norm in _PTR_STRING_TYPES or any(fnmatchcase(norm, g) for g in _PTR_STRING_GLOBS):
            return P_PTRSTR
    if f.size == 1:
        return P_NUM1
    if f.size in _NUM_SIZES:
        return P_NUM
    return P_NONE


class _Plan:
    """One format's line pattern and how each printed value goes back into a record."""

    __slots__ = ("fmt", "regex", "steps", "size", "event", "always_none")

    def __init__(self, fmt: EventFormat) -> None:
        self.fmt = fmt
        self.event = fmt.event_name
        parts: list[bytes] = []
        steps: list[tuple[int, str, Field]] = []
        none: list[str] = []
        size = 0
        for i, f in enumerate(fmt.fields):
            pk = print_kind(f)
            if pk == P_SSTR:
                n = max(f.size, 0)
                pat = rb".{0,%d}?" % n + (rb"|<OVERFLOW>" if n < 10 else b"")
            else:
                pat = _PATTERNS[pk]
            parts.append(b" " + re.escape(f.name.encode()) + b"=(" + pat + b")")
            if pk in (P_PTRSTR, P_NONE) or (pk == P_SSTR and f.size == 0):
                none.append(f.name)
            else:
                steps.append((i + 1, pk, f))
            size = max(size, f.offset + f.size)
        self.steps = steps
        self.always_none = tuple(none)
        self.size = max(size, fmt.min_size)
        if fmt.fields:
            self.regex = re.compile(b"".join(parts))
        else:  # the kernel prints "name:No fields found"
            self.regex = re.compile(rb"(?:No fields found)?")

    def fields(self, rest: bytes) -> dict[str, object] | None:
        """Decoded fields of the text after ``name:``, or None when it does not fit."""
        m = self.regex.fullmatch(rest)
        if m is None:
            return None
        rec = bytearray(self.size)
        dyn = bytearray()
        none = list(self.always_none)
        for gi, pk, f in self.steps:
            v = m.group(gi)
            if pk == P_NUM or pk == P_NUM1:
                if v == b"<OVERFLOW>":
                    none.append(f.name)
                    continue
                n = int(v[v.rindex(b"(") + 1 : -1])
                sz = f.size
                rec[f.offset : f.offset + sz] = (n & _MASK[sz]).to_bytes(sz, "little")
            elif pk == P_SSTR:
                if len(v) > f.size:  # only "<OVERFLOW>" can be longer than the field
                    none.append(f.name)
                    continue
                rec[f.offset : f.offset + len(v)] = v
            else:  # P_DSTR, P_HEX: into the dynamic area after the fixed part
                if pk == P_HEX:
                    if v == b"<OVERFLOW>":
                        none.append(f.name)
                        continue
                    data = bytes.fromhex(v.replace(b",", b"").decode("ascii"))
                else:
                    data = v + b"\0"
                pos = self.size + len(dyn)
                rel = pos if f.kind == KIND_DATA_LOC else pos - (f.offset + f.size)
                if pos > 0xFFFF or len(data) > 0xFFFF:
                    raise DecodeError(f"{self.event}: field {f.name!r} is too long "
                                      f"({len(data)} bytes) for a trace record")
                rec[f.offset : f.offset + 4] = ((len(data) << 16) | rel).to_bytes(4, "little")
                dyn += data
        out = self.fmt.decode(bytes(rec + dyn))
        for name in none:
            out[name] = None
        return out


class TextDecoder:
    """Turn ``trace_pipe`` text (fed in chunks of any size) into Events.

    ``formats``: id -> EventFormat of every enabled event. Counters: ``lost_per_cpu``
    (sum of ``[LOST N EVENTS]`` per CPU), ``lost_unknown`` (``[LOST EVENTS]`` lines
    without a count), ``unknown`` (well-formed lines of events not in ``formats``),
    ``bad`` (lines that are not the kernel's; the first few kept in ``bad_samples``),
    ``ambiguous`` (lines that fit two formats of the same name).

    Example::

        dec = TextDecoder(formats)
        ev = dec.parse_line(b"   getppid_n-42 (   42) [001]  12.000001: "
                            b"sys_enter_getppid: __syscall_nr=0x6e (110)")
        ev.ts, ev.fields     # (12000001000, {'__syscall_nr': 110})
    """

    def __init__(self, formats: Mapping[int, EventFormat]) -> None:
        self._by_name: dict[bytes, list[EventFormat]] = {}
        for fmt in sorted(formats.values(), key=lambda f: (f.system, f.name, f.id)):
            self._by_name.setdefault(fmt.name.encode(), []).append(fmt)
        self._plans: dict[int, _Plan] = {}
        self._rest = b""
        self.lost_per_cpu: dict[int, int] = {}
        self.lost_unknown = 0
        self.unknown = 0
        self.bad = 0
        self.bad_samples: list[bytes] = []
        self.ambiguous = 0

    @property
    def lost(self) -> int:
        """Events the stream said were lost (lines with a count)."""
        return sum(self.lost_per_cpu.values())

    def duplicate_names(self) -> list[list[str]]:
        """Groups of enabled events ("system:name") that share a name."""
        return [[f.event_name for f in fl] for fl in self._by_name.values() if len(fl) > 1]

    def _plan(self, fmt: EventFormat) -> _Plan:
        p = self._plans.get(fmt.id)
        if p is None:
            p = self._plans[fmt.id] = _Plan(fmt)
        return p

    # -- one line
    def parse_line(self, line: bytes) -> Event | LostEvents | None:
        """Parse one line (without its newline).

        Returns an Event (probe ""), a :class:`LostEvents`, or None for an empty
        line or a well-formed line of an event that is not in the formats. Raises
        DecodeError for anything else.
        """
        if not isinstance(line, bytes | bytearray):
            raise DecodeError(f"trace_pipe line must be bytes, not {type(line).__name__}")
        if len(line) > MAX_LINE:
            raise DecodeError(f"trace_pipe line of {len(line)} bytes (limit {MAX_LINE})")
        if not line.strip():
            return None
        if line[:4] == b"CPU:":
            lm = _LOST.fullmatch(line)
            if lm is not None:
                n = lm.group("n")
                return LostEvents(int(lm.group("cpu")), int(n) if n is not None else -1)
        m = _HEAD.fullmatch(line)
        if m is None:
            raise DecodeError(f"not a trace_pipe event line: {_show(line)}")
        cands = self._by_name.get(m.group("name"))
        if not cands:
            return None
        rest = m.group("rest")
        fields: dict[str, object] | None = None
        fmt = cands[0]
        for c in cands:
            got = self._plan(c).fields(rest)
            if got is None:
                continue
            if fields is None:
                fields, fmt = got, c
                if len(cands) == 1:
                    break
            else:
                self.ambiguous += 1
                break
        if fields is None:
            raise DecodeError(
                f"fields of {m.group('name').decode(errors='replace')} do not match the "
                f"format of {', '.join(c.event_name for c in cands)}: {_show(rest)}"
            )
        return Event(
            _ts(m), int(m.group("cpu")), _tgid(m.group("tgid")), int(m.group("tid")),
            m.group("comm").decode("utf-8", "replace"), fmt.event_name, "", fields,
        )

    # -- streams
    def _lines(self, data: bytes) -> Iterator[bytes]:
        buf = self._rest + data if self._rest else data
        lines = buf.split(b"\n")
        self._rest = lines.pop()
        if len(self._rest) > MAX_LINE:  # no newline for far too long: not the kernel's
            self._bad(self._rest[:200])
            self._rest = b""
        yield from lines

    def _bad(self, line: bytes) -> None:
        self.bad += 1
        if len(self.bad_samples) < 5:
            self.bad_samples.append(bytes(line[:300]))

    def _take(self, line: bytes, out: list[Event]) -> None:
        try:
            r = self.parse_line(line)
        except DecodeError:
            self._bad(line)
            return
        if r is None:
            if line.strip():
                self.unknown += 1
        elif isinstance(r, Event):
            out.append(r)
        else:
            self._lost(r)

    def _lost(self, r: LostEvents) -> None:
        if r.events < 0:
            self.lost_unknown += 1
        else:
            self.lost_per_cpu[r.cpu] = self.lost_per_cpu.get(r.cpu, 0) + r.events

    def feed(self, data: bytes, out: list[Event]) -> None:
        """Parse the complete lines of ``data`` (plus what was left over) into ``out``.

        A trailing partial line is kept for the next call (or :meth:`flush`).
        """
        for line in self._lines(data):
            self._take(line, out)

    def flush(self, out: list[Event]) -> None:
        """Parse what is left of an unterminated last line."""
        rest, self._rest = self._rest, b""
        if rest:
            self._take(rest, out)

    def count(self, data: bytes) -> dict[int, int]:
        """Like :meth:`feed` but only count events per format id (no field decoding,
        except to tell apart events that share a name)."""
        per: dict[int, int] = {}
        for line in self._lines(data):
            if not line.strip():
                continue
            m = _HEAD.fullmatch(line) if len(line) <= MAX_LINE else None
            if m is None:
                if line[:4] == b"CPU:" and (lm := _LOST.fullmatch(line)) is not None:
                    n = lm.group("n")
                    self._lost(LostEvents(int(lm.group("cpu")), int(n) if n else -1))
                else:
                    self._bad(line)
                continue
            cands = self._by_name.get(m.group("name"))
            if not cands:
                self.unknown += 1
                continue
            fmt: EventFormat | None = cands[0]
            if len(cands) > 1:
                fmt = next((c for c in cands if self._plan(c).regex.fullmatch(m.group("rest"))),
                           None)
                if fmt is None:
                    self._bad(line)
                    continue
            assert fmt is not None
            per[fmt.id] = per.get(fmt.id, 0) + 1
        return per


def _ts(m: re.Match[bytes]) -> int:
    us = m.group("usecs")
    secs = int(m.group("secs"))
    if us is None:  # a clock that does not count in ns: the raw counter
        return secs
    return secs * 1_000_000_000 + int(us) * 1000


def _tgid(text: bytes | None) -> int:
    if text is None or text == b"-------":
        return -1
    return int(text)


def _show(b: bytes) -> str:
    s = repr(bytes(b[:120]))
    return s + ("..." if len(b) > 120 else "")
