"""Event formats: parse ``events/SYSTEM/NAME/format`` and decode records with them.

The kernel describes every trace event's binary layout in its ``format`` file. This
module turns that text into an :class:`EventFormat` whose :meth:`EventFormat.decode`
is a function generated for that one layout: a single precompiled ``struct.Struct``
reads every fixed-size field at once (pad bytes skip the gaps) and only strings and
dynamic (``__data_loc`` / ``__rel_loc``) fields are post-processed.

Fields are decoded by their declared C type, not by size alone: syscall tracepoints
declare ``int dfd; offset:16; size:8; signed:0;`` (every argument is widened to a
``long`` slot), so ``dfd`` is read as a signed 32-bit int from the low four bytes and
``AT_FDCWD`` comes out as ``-100``.

Records are little-endian (x86-64, arm64, riscv64: the hosts probewatch supports).

Example::

    fmt = load_format("/sys/kernel/tracing", "sched", "sched_process_exec")
    fmt.decode(record, 0, len(record))
    # {'filename': '/usr/bin/true', 'pid': 4242, 'old_pid': 4242}
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from ..errors import DecodeError, NotFound, TracefsError
from ..event import Event

__all__ = [
    "Field",
    "EventFormat",
    "PageLayout",
    "DEFAULT_LAYOUT",
    "parse_format",
    "load_format",
    "parse_page_layout",
    "parse_header_layout",
    "load_page_layout",
    "KIND_INT",
    "KIND_POINTER",
    "KIND_STRING",
    "KIND_BYTES",
    "KIND_ARRAY",
    "KIND_DATA_LOC",
    "KIND_REL_LOC",
    "KIND_TAIL",
]

# ---------------------------------------------------------------------------------
# field kinds

KIND_INT = "int"  #: integer scalar (incl. bool, enums, typedefs); decodes to int
KIND_POINTER = "pointer"  #: ``TYPE *``: unsigned int of the declared size
KIND_STRING = "string"  #: ``char NAME[N]``: str up to the first NUL
KIND_BYTES = "bytes"  #: ``u8 NAME[N]`` or an opaque struct/union by value: bytes
KIND_ARRAY = "array"  #: ``TYPE NAME[N]`` of integers: tuple of ints
KIND_DATA_LOC = "data_loc"  #: ``__data_loc TYPE[] NAME``: offset from record start
KIND_REL_LOC = "rel_loc"  #: ``__rel_loc TYPE[] NAME``: offset from the field's end
KIND_TAIL = "tail"  #: ``TYPE NAME[]`` with size 0: runs to the end of the record

# element kinds of arrays and dynamic fields
ELEM_STRING = "string"
ELEM_BYTES = "bytes"
ELEM_INT = "int"

_MAX_OFFSET = 1 << 24  # no record is anywhere near this; guards absurd input
_MAX_DIM = 1 << 24

# Well-known kernel integer types: name -> (natural size, signed). Size 0 means
# "word sized" (long): the declared size is used. Plain ``char`` is absent on purpose:
# its signedness is the kernel's (-funsigned-char since 6.2), so the signed flag wins.
_INT_TYPES: dict[str, tuple[int, bool]] = {
    "signed char": (1, True),
    "unsigned char": (1, False),
    "short": (2, True),
    "unsigned short": (2, False),
    "int": (4, True),
    "unsigned int": (4, False),
    "long": (0, True),
    "unsigned long": (0, False),
    "long long": (8, True),
    "unsigned long long": (8, False),
    "bool": (1, False),
    "_Bool": (1, False),
    # fixed-width
    "s8": (1, True), "u8": (1, False), "__s8": (1, True), "__u8": (1, False),
    "s16": (2, True), "u16": (2, False), "__s16": (2, True), "__u16": (2, False),
    "s32": (4, True), "u32": (4, False), "__s32": (4, True), "__u32": (4, False),
    "s64": (8, True), "u64": (8, False), "__s64": (8, True), "__u64": (8, False),
    "int8_t": (1, True), "uint8_t": (1, False), "u_int8_t": (1, False),
    "int16_t": (2, True), "uint16_t": (2, False), "u_int16_t": (2, False),
    "int32_t": (4, True), "uint32_t": (4, False), "u_int32_t": (4, False),
    "int64_t": (8, True), "uint64_t": (8, False), "u_int64_t": (8, False),
    "__le16": (2, False), "__be16": (2, False), "__le32": (4, False), "__be32": (4, False),
    "__le64": (8, False), "__be64": (8, False),
    "uchar": (1, False), "u_char": (1, False), "ushort": (2, False), "u_short": (2, False),
    "uint": (4, False), "u_int": (4, False), "ulong": (0, False), "u_long": (0, False),
    # process / file typedefs
    "pid_t": (4, True), "tid_t": (4, False), "uid_t": (4, False), "gid_t": (4, False),
    "qid_t": (4, False), "projid_t": (4, False), "prid_t": (4, False),
    "umode_t": (2, False), "mode_t": (4, False), "fmode_t": (4, False),
    "dev_t": (4, False), "nlink_t": (4, False), "ino_t": (0, False),
    "off_t": (0, True), "loff_t": (8, True), "size_t": (0, False), "ssize_t": (0, True),
    "sector_t": (8, False), "blkcnt_t": (8, False), "blk_opf_t": (4, False),
    "time_t": (0, True), "time64_t": (8, True), "ktime_t": (8, True),
    "clock_t": (0, True), "clockid_t": (4, True), "timer_t": (4, True),
    "key_t": (4, True), "key_serial_t": (4, True), "mqd_t": (4, True),
    "rwf_t": (4, True), "gfp_t": (4, False), "slab_flags_t": (4, False),
    "aio_context_t": (0, False), "vm_flags_t": (0, False), "errseq_t": (4, False),
    "resource_size_t": (0, False), "phys_addr_t": (0, False), "dma_addr_t": (8, False),
    "uintptr_t": (0, False), "intptr_t": (0, True), "ptrdiff_t": (0, True),
    "__kernel_ulong_t": (0, False), "__kernel_long_t": (0, True),
    "__kernel_size_t": (0, False), "__kernel_ssize_t": (0, True),
    "__kernel_pid_t": (4, True), "__kernel_uid32_t": (4, False), "__kernel_gid32_t": (4, False),
    "__kernel_old_time_t": (0, True), "__kernel_time64_t": (8, True),
}

_QUALIFIERS = frozenset(
    {
        "const", "volatile", "restrict", "__restrict", "__user", "__kernel", "__iomem",
        "__percpu", "__rcu", "__force", "__seg_gs", "__seg_fs", "__nocast", "__bitwise",
        "static", "register", "__aligned", "__packed",
    }
)
_C_BASE = frozenset({"signed", "unsigned", "char", "short", "int", "long", "_Bool"})
_U8_NAMES = frozenset({"unsigned char", "u8", "__u8", "uint8_t", "u_int8_t", "uchar", "u_char"})

_IDENT = re.compile(r"[A-Za-z_]\w*\Z")
_DECL = re.compile(r"^(?P<type>.*?)(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(?:\[[^\[\]]*\]\s*)*)$")
_FIELD_LINE = re.compile(
    r"^\s*field:(?P<decl>[^;]*);\s*offset:(?P<off>[^;]*);\s*size:(?P<size>[^;]*);"
    r"(?:\s*signed:(?P<signed>[^;]*);)?\s*$"
)

_CODES = {(1, True): "b", (1, False): "B", (2, True): "h", (2, False): "H",
          (4, True): "i", (4, False): "I", (8, True): "q", (8, False): "Q"}


@dataclass(frozen=True, slots=True)
class Field:
    """One field of an event format, as the kernel declares it.

    ``ctype`` is the declared type without the name (``"const char *"``, ``"char"``
    for ``char comm[16]``, ``"__data_loc char[]"``); ``kind`` says how it decodes
    (one of the ``KIND_*`` constants). For integers ``elem_size`` / ``elem_signed``
    are the width and signedness actually used (``int dfd`` in an 8-byte slot: 4,
    True); for arrays and dynamic fields they describe one element, ``elem_kind``
    says what the whole decodes to (``"string"``, ``"bytes"`` or ``"int"`` = tuple)
    and ``count`` is the fixed element count (0 when dynamic).

    Example::

        f = fmt.field("dfd")
        (f.kind, f.offset, f.size, f.elem_size, f.elem_signed)  # ('int', 16, 8, 4, True)
    """

    name: str
    ctype: str
    offset: int
    size: int
    signed: bool
    kind: str
    elem_size: int = 0
    elem_signed: bool = False
    elem_kind: str = ELEM_INT
    count: int = 0

    @property
    def is_common(self) -> bool:
        return self.name.startswith("common_")


@dataclass(eq=False)
class EventFormat:
    """A parsed ``format`` file with a decoder compiled for it.

    ``fields`` are the event's own fields (what :meth:`decode` returns),
    ``common_fields`` the ``common_*`` header every event starts with.

    Example::

        fmt = parse_format(open(".../sched_switch/format").read(), "sched")
        fmt.decode(buf, start, end)["next_comm"]   # 'swapper/0'
    """

    id: int
    system: str
    name: str
    fields: list[Field]
    common_fields: list[Field]
    print_fmt: str = ""
    long_size: int = 8
    # the generated decoders, built on first use (parsing every format of a kernel
    # stays cheap; only the events actually traced pay for code generation)
    _decode: Callable[[Any, int, int], dict[str, Any]] | None = dc_field(
        init=False, repr=False, default=None
    )
    _make: Callable[[Any, int, int, int, int], Event] | None = dc_field(
        init=False, repr=False, default=None
    )
    _min_size: int = dc_field(init=False, repr=False, default=-1)

    def _build(self) -> None:
        self._decode, self._make, self._min_size = _compile(self)

    @property
    def min_size(self) -> int:
        """Smallest record (bytes, common header included) this format can decode."""
        if self._min_size < 0:
            self._build()
        return self._min_size

    @property
    def maker(self) -> Callable[[Any, int, int, int, int], Event]:
        """The generated ``make(buf, start, end, ts, cpu) -> Event`` (no bounds check
        against ``len(buf)``: callers guarantee ``0 <= start <= end <= len(buf)``)."""
        if self._make is None:
            self._build()
        assert self._make is not None
        return self._make

    @property
    def event_name(self) -> str:
        """``"system:name"`` (the form Event.event carries)."""
        return f"{self.system}:{self.name}"

    @property
    def all_fields(self) -> list[Field]:
        """Common fields then the event's own, in record order."""
        return self.common_fields + self.fields

    def field(self, name: str) -> Field:
        """The field called ``name`` (common fields included); NotFound if absent."""
        for f in self.common_fields + self.fields:
            if f.name == name:
                return f
        raise NotFound(f"event {self.event_name} has no field {name!r}")

    def common(self, name: str) -> Field | None:
        """The common field ``name`` (``common_pid``, ...) or None."""
        for f in self.common_fields:
            if f.name == name:
                return f
        return None

    def decode(self, buf: Any, start: int = 0, end: int | None = None) -> dict[str, Any]:
        """Decode the record ``buf[start:end]`` into ``{field: value}`` (non-common fields).

        Raises DecodeError when the record is shorter than the format needs or a
        dynamic field points outside it.
        """
        if end is None:
            end = len(buf)
        if self._decode is None:
            self._build()
        assert self._decode is not None
        return self._decode(buf, start, end)

    def make_event(self, buf: Any, start: int, end: int, ts: int, cpu: int) -> Event:
        """Decode one record straight into an Event (pid = tid = common_pid, comm "")."""
        if start < 0 or end > len(buf) or start > end:
            _raise_bounds(self.event_name, start, end, len(buf))
        return self.maker(buf, start, end, ts, cpu)


# ---------------------------------------------------------------------------------
# type analysis


def _int_arg(text: str, what: str, line: str) -> int:
    try:
        v = int(text.strip(), 0)
    except ValueError:
        raise DecodeError(f"bad {what} {text.strip()!r} in format line {line.strip()!r}") from None
    if v < 0 or v > _MAX_OFFSET:
        raise DecodeError(f"{what} {v} out of range in format line {line.strip()!r}")
    return v


def _tokens(ctype: str) -> list[str]:
    return [t for t in ctype.replace("*", " * ").split() if t not in _QUALIFIERS]


def _canonical(tokens: list[str]) -> str:
    """'unsigned long int' -> 'unsigned long'; typedef names pass through."""
    if tokens and all(t in _C_BASE for t in tokens):
        if "_Bool" in tokens:
            return "_Bool"
        uns = "unsigned" in tokens
        if "char" in tokens:
            if uns:
                return "unsigned char"
            return "signed char" if "signed" in tokens else "char"
        n_long = tokens.count("long")
        if "short" in tokens:
            base = "short"
        elif n_long >= 2:
            base = "long long"
        elif n_long == 1:
            base = "long"
        else:
            base = "int"
        return f"unsigned {base}" if uns else base
    return " ".join(tokens)


def _scalar(tokens: list[str], size: int, signed: bool, long_size: int) -> tuple[str, int, bool]:
    """-> (kind, natural size, signed) for a non-array type of declared ``size``.

    kind is KIND_INT, KIND_POINTER or KIND_BYTES (opaque / odd-sized).
    """
    if "*" in tokens:
        return KIND_POINTER, size, False
    if tokens and tokens[0] in ("struct", "union"):
        return KIND_BYTES, size, False
    name = _canonical(tokens)
    if name == "char":
        return KIND_INT, 1 if size >= 1 else size, signed
    known = _INT_TYPES.get(name)
    if known is not None:
        nat, sgn = known
        if nat == 0:
            nat = size if size in (4, 8) else long_size
        if size and nat > size:  # declared narrower than we think: trust the kernel
            nat = size
        return KIND_INT, nat, sgn
    # unknown typedef or enum: the declared size and signed flag are the truth
    return KIND_INT, size, signed


def _elem(tokens: list[str], signed: bool, long_size: int) -> tuple[str, int, bool]:
    """Element kind/size/signedness for arrays whose element size is not declared."""
    if "*" in tokens:
        return ELEM_INT, long_size, False
    name = _canonical(tokens)
    if name == "char":
        return ELEM_STRING, 1, signed
    if name in _U8_NAMES:
        return ELEM_BYTES, 1, False
    known = _INT_TYPES.get(name)
    if known is not None:
        nat, sgn = known
        return ELEM_INT, nat or long_size, sgn
    return ELEM_BYTES, 1, False


def _classify(decl: str, size: int, signed: bool, offset: int, line: str, long_size: int) -> Field:
    decl = " ".join(decl.split())
    m = _DECL.match(decl)
    if not m:
        raise DecodeError(f"cannot find a field name in {decl!r} (format line {line.strip()!r})")
    ctype = m.group("type").strip()
    name = m.group("name")
    dims_text = m.group("dims").strip()
    if not ctype:
        raise DecodeError(f"field {name!r} has no type (format line {line.strip()!r})")
    words = ctype.split()
    if words[0] in ("__data_loc", "__rel_loc"):
        kind = KIND_DATA_LOC if words[0] == "__data_loc" else KIND_REL_LOC
        if dims_text:
            raise DecodeError(f"{words[0]} field {name!r} has array dimensions after its name")
        if size != 4:
            raise DecodeError(f"{words[0]} field {name!r} has size {size}, expected 4")
        inner = " ".join(words[1:]).replace(" ", "")
        is_array = inner.endswith("[]")
        inner_tokens = _tokens(" ".join(words[1:]).replace("[]", " ").strip())
        if not inner_tokens:
            raise DecodeError(f"{words[0]} field {name!r} has no element type")
        if is_array:
            ek, es, esg = _elem(inner_tokens, signed, long_size)
        else:  # e.g. "__data_loc cpumask_t": an opaque blob
            ek, es, esg = ELEM_BYTES, 1, False
        return Field(name, ctype, offset, size, signed, kind, es, esg, ek, 0)
    if "[" in ctype or "]" in ctype:
        raise DecodeError(f"misplaced brackets in type {ctype!r} of field {name!r}")
    tokens = _tokens(ctype)
    if not tokens:
        raise DecodeError(f"field {name!r} has only qualifiers as type {ctype!r}")
    if dims_text:
        dims = re.findall(r"\[([^\[\]]*)\]", dims_text)
        if size == 0:  # flexible array member: runs to the end of the record
            ek, es, esg = _elem(tokens, signed, long_size)
            return Field(name, ctype, offset, 0, signed, KIND_TAIL, es, esg, ek, 0)
        count = 1
        numeric = True
        for d in dims:
            d = d.strip()
            if d.isdigit() or (d[:2].lower() == "0x" and len(d) > 2):
                try:
                    n = int(d, 0)
                except ValueError:
                    raise DecodeError(f"bad array dimension [{d}] of field {name!r}") from None
                if n > _MAX_DIM:
                    raise DecodeError(f"array dimension [{d}] of field {name!r} too large")
                count *= n
            else:
                numeric = False
        ek, es, esg = _elem(tokens, signed, long_size)
        if not numeric or count == 0:
            # symbolic dimension (older kernels print [TASK_COMM_LEN]): derive it
            count = size // es if es else 0
        if count <= 0 or size % count:
            if ek == ELEM_STRING:
                return Field(name, ctype, offset, size, signed, KIND_STRING, 1, signed,
                             ELEM_STRING, size)
            return Field(name, ctype, offset, size, signed, KIND_BYTES, 1, False,
                         ELEM_BYTES, size)
        es = size // count
        if ek == ELEM_STRING:
            if es == 1:
                return Field(name, ctype, offset, size, signed, KIND_STRING, 1, esg,
                             ELEM_STRING, count)
            ek = ELEM_INT
        if ek == ELEM_BYTES and es == 1:
            return Field(name, ctype, offset, size, signed, KIND_BYTES, 1, False, ELEM_BYTES,
                         count)
        kind0, _nat, sgn = _scalar(tokens, es, signed, long_size)
        if kind0 == KIND_BYTES or (es, sgn) not in _CODES:
            return Field(name, ctype, offset, size, signed, KIND_BYTES, 1, False, ELEM_BYTES,
                         size)
        return Field(name, ctype, offset, size, signed, KIND_ARRAY, es, sgn, ELEM_INT, count)
    kind, nat, sgn = _scalar(tokens, size, signed, long_size)
    if size == 0 or kind == KIND_BYTES or (nat, sgn) not in _CODES:
        return Field(name, ctype, offset, size, signed, KIND_BYTES, 1, False, ELEM_BYTES, size)
    return Field(name, ctype, offset, size, signed, kind, nat, sgn, ELEM_INT, 0)


# ---------------------------------------------------------------------------------
# parsing


def parse_format(text: str, system: str = "", long_size: int = 8) -> EventFormat:
    """Parse the text of an ``events/SYSTEM/NAME/format`` file.

    ``long_size`` is the kernel's ``sizeof(long)`` (8 on 64-bit; see
    :attr:`PageLayout.long_size`), used only for word-sized elements of dynamic
    arrays. Raises DecodeError naming the problem on any malformed input.

    Example::

        fmt = parse_format(text, "syscalls")
        fmt.id, fmt.name, [f.name for f in fmt.fields]
        # (782, 'sys_enter_openat', ['__syscall_nr', 'dfd', 'filename', 'flags', 'mode'])
    """
    if not isinstance(text, str):
        raise DecodeError(f"format text must be str, not {type(text).__name__}")
    if long_size not in (4, 8):
        raise DecodeError(f"long_size must be 4 or 8, not {long_size!r}")
    name: str | None = None
    ev_id: int | None = None
    print_fmt = ""
    fields: list[Field] = []
    seen: set[str] = set()
    in_format = False
    lines = text.split("\n")
    for i, line in enumerate(lines):
        s = line.strip()
        if not s:
            continue
        if s.startswith("print fmt:"):
            print_fmt = "\n".join([s[len("print fmt:"):].strip()] + lines[i + 1:]).strip()
            break
        if s.startswith("field:") or s.startswith("field "):
            m = _FIELD_LINE.match(line)
            if not m:
                raise DecodeError(f"malformed field line in format: {s!r}")
            off = _int_arg(m.group("off"), "offset", line)
            size = _int_arg(m.group("size"), "size", line)
            sg = m.group("signed")
            signed = bool(_int_arg(sg, "signed flag", line)) if sg is not None else False
            f = _classify(m.group("decl"), size, signed, off, line, long_size)
            if f.name in seen:
                raise DecodeError(f"duplicate field {f.name!r} in format")
            seen.add(f.name)
            fields.append(f)
            continue
        key, sep, value = s.partition(":")
        if not sep:
            raise DecodeError(f"unexpected line in format: {s!r}")
        key = key.strip()
        value = value.strip()
        if key == "name":
            if name is not None:
                raise DecodeError("format has two 'name:' lines")
            if not value or not re.fullmatch(r"[\w.+-]+", value):
                raise DecodeError(f"bad event name {value!r} in format")
            name = value
        elif key == "ID":
            if ev_id is not None:
                raise DecodeError("format has two 'ID:' lines")
            try:
                ev_id = int(value)
            except ValueError:
                raise DecodeError(f"bad event ID {value!r} in format") from None
            if not 0 <= ev_id <= 0xFFFF:
                raise DecodeError(f"event ID {ev_id} out of range (0..65535)")
        elif key == "format":
            if value:
                raise DecodeError(f"unexpected text after 'format:': {value!r}")
            in_format = True
        elif in_format:
            raise DecodeError(f"unexpected line in format fields: {s!r}")
        # other header keys (future kernels) are ignored
    if name is None:
        raise DecodeError("format has no 'name:' line")
    if ev_id is None:
        raise DecodeError(f"format of {name!r} has no 'ID:' line")
    if not fields:
        raise DecodeError(f"format of {name!r} declares no fields")
    common = [f for f in fields if f.is_common]
    own = [f for f in fields if not f.is_common]
    return EventFormat(ev_id, system, name, own, common, print_fmt, long_size)


def load_format(root: str, system: str, name: str, long_size: int = 8) -> EventFormat:
    """Read and parse ``ROOT/events/SYSTEM/NAME/format`` (root: tracefs or an instance).

    Example::

        load_format("/sys/kernel/tracing", "syscalls", "sys_enter_openat").id  # 782
    """
    path = os.path.join(root, "events", system, name, "format")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        raise NotFound(f"no such event {system}:{name} ({path} does not exist)") from None
    except PermissionError:
        raise TracefsError(f"{path}: permission denied (probewatch needs root)") from None
    except OSError as e:
        raise TracefsError(f"cannot read {path}: {e.strerror}") from None
    try:
        return parse_format(text, system, long_size)
    except DecodeError as e:
        raise DecodeError(f"{path}: {e}") from None


# ---------------------------------------------------------------------------------
# decoder generation


def _raise_short(ev: str, need: int, have: int) -> None:
    raise DecodeError(f"{ev}: record is {have} bytes, the format needs {need}")


def _raise_dyn(ev: str, fname: str, off: int, ln: int, have: int) -> None:
    raise DecodeError(
        f"{ev}: dynamic field {fname!r} (offset {off}, length {ln}) runs past the "
        f"{have}-byte record"
    )


def _raise_bounds(ev: str, start: int, end: int, n: int) -> None:
    raise DecodeError(f"{ev}: record bounds [{start}:{end}] outside a {n}-byte buffer")


def _cstr(b: bytes) -> str:
    # lossless: bytes that are not UTF-8 stay as surrogateescape surrogates (the sinks
    # escape them: decode/escape.py)
    return b.partition(b"\0")[0].decode("utf-8", "surrogateescape")


def _ints(buf: Any, pos: int, nbytes: int, code: str, es: int) -> tuple[int, ...]:
    n = nbytes // es
    if n <= 0:
        return ()
    return struct.unpack_from(f"<{n}{code}", buf, pos)


def _compile(fmt: EventFormat) -> tuple[Callable[..., dict[str, Any]], Callable[..., Event], int]:
    """Generate ``decode(buf, start, end)`` and ``make(buf, start, end, ts, cpu)``."""
    ev = fmt.event_name
    parts: list[str] = []  # struct codes
    outvars: list[str] = []  # variables produced by the struct
    pos = 0
    post: list[str] = []
    items: list[tuple[str, str]] = []  # (field name, expression)
    ns: dict[str, Any] = {
        "_DecodeError": DecodeError, "_short": _raise_short, "_dyn": _raise_dyn,
        "_bounds": _raise_bounds, "_cstr": _cstr, "_ints": _ints, "_EV": ev,
        "_Event": Event, "_len": len,
    }
    extra_structs = 0
    # common_pid goes into the same struct, so make() costs one unpack too
    pid = fmt.common("common_pid")
    order = sorted(fmt.fields, key=lambda f: f.offset)
    slots: list[tuple[Field, str]] = []
    if pid is not None and pid.kind == KIND_INT and (pid.elem_size, pid.elem_signed) in _CODES:
        slots.append((pid, "_pid"))
    for i, f in enumerate(order):
        slots.append((f, f"v{i}"))
    slots.sort(key=lambda t: t[0].offset)
    end_needed = 0
    for f, var in slots:
        if f.kind == KIND_TAIL:
            end_needed = max(end_needed, f.offset)
            continue
        end_needed = max(end_needed, f.offset + f.size)
        if f.kind in (KIND_INT, KIND_POINTER):
            code = _CODES[(f.elem_size, f.elem_signed)]
            width = f.elem_size
        elif f.kind in (KIND_DATA_LOC, KIND_REL_LOC):
            code, width = "I", 4
        elif f.kind in (KIND_STRING, KIND_BYTES):
            code, width = f"{f.size}s", f.size
        elif f.kind == KIND_ARRAY:
            # fixed arrays come out as one tuple from their own Struct
            sname = f"_s{extra_structs}"
            extra_structs += 1
            ns[sname] = struct.Struct(f"<{f.count}{_CODES[(f.elem_size, f.elem_signed)]}")
            post.append(f"{var} = {sname}.unpack_from(buf, start + {f.offset})")
            continue
        else:  # pragma: no cover - all kinds handled above
            raise DecodeError(f"{ev}: cannot decode field {f.name!r} of kind {f.kind}")
        if f.offset < pos:
            # overlaps the previous field (a union): read it on its own
            sname = f"_s{extra_structs}"
            extra_structs += 1
            ns[sname] = struct.Struct("<" + code)
            post.append(f"{var}, = {sname}.unpack_from(buf, start + {f.offset})")
            continue
        if f.offset > pos:
            parts.append(f"{f.offset - pos}x")
        parts.append(code)
        pos = f.offset + width
        outvars.append(var)
    # post-processing per field kind
    for i, f in enumerate(order):
        var = f"v{i}"
        fn = f.name
        if f.kind == KIND_STRING:
            post.append(f"{var} = _cstr({var})")
        elif f.kind in (KIND_DATA_LOC, KIND_REL_LOC):
            base = "start" if f.kind == KIND_DATA_LOC else f"start + {f.offset + f.size}"
            post.append(f"_o = {base} + ({var} & 0xffff)")
            post.append(f"_e = _o + ({var} >> 16)")
            post.append(f"if _e > end: _dyn(_EV, {fn!r}, _o - start, {var} >> 16, end - start)")
            if f.elem_kind == ELEM_STRING:
                post.append(f"{var} = _cstr(buf[_o:_e])")
            elif f.elem_kind == ELEM_BYTES:
                post.append(f"{var} = bytes(buf[_o:_e])")
            else:
                c = _CODES[(f.elem_size, f.elem_signed)]
                post.append(f"{var} = _ints(buf, _o, _e - _o, {c!r}, {f.elem_size})")
        elif f.kind == KIND_TAIL:
            post.append(f"_o = start + {f.offset}")
            if f.elem_kind == ELEM_STRING:
                post.append(f"{var} = _cstr(buf[_o:end])")
            elif f.elem_kind == ELEM_BYTES:
                post.append(f"{var} = bytes(buf[_o:end])")
            else:
                c = _CODES.get((f.elem_size, f.elem_signed), "B")
                post.append(f"{var} = _ints(buf, _o, end - _o, {c!r}, {f.elem_size or 1})")
        items.append((fn, var))
    ns["_unpack"] = struct.Struct("<" + "".join(parts)).unpack_from
    min_size = max(end_needed, struct.calcsize("<" + "".join(parts)))
    if outvars:
        unpack_line = f"{', '.join(outvars)}, = _unpack(buf, start)"
    else:
        unpack_line = "pass"
    body = [unpack_line] + post
    dict_expr = "{" + ", ".join(f"{n!r}: {v}" for n, v in items) + "}"
    has_pid = any(v == "_pid" for _, v in slots)
    pid_expr = "_pid" if has_pid else "-1"
    src = (
        "def decode(buf, start, end):\n"
        f"    if start < 0 or end > _len(buf) or start > end: _bounds(_EV, start, end, _len(buf))\n"
        f"    if end - start < {min_size}: _short(_EV, {min_size}, end - start)\n"
        + "".join(f"    {line}\n" for line in body)
        + f"    return {dict_expr}\n"
        "def make(buf, start, end, ts, cpu):\n"
        f"    if end - start < {min_size}: _short(_EV, {min_size}, end - start)\n"
        + "".join(f"    {line}\n" for line in body)
        + f"    return _Event(ts, cpu, {pid_expr}, {pid_expr}, '', _EV, '', {dict_expr})\n"
    )
    compiled = compile(src, f"<probewatch decoder {ev}>", "exec")
    exec(compiled, ns)
    return ns["decode"], ns["make"], min_size


# ---------------------------------------------------------------------------------
# ring-buffer page layout (events/header_page + events/header_event)


@dataclass(frozen=True, slots=True)
class PageLayout:
    """Where things are in a ring-buffer page and in an event header.

    From ``events/header_page`` (page timestamp, commit word, data) and
    ``events/header_event`` (type_len / time_delta bit widths and the special
    type_len values). ``page_size`` is ``data_offset + data_size`` (the sub-buffer
    size of the instance the header was read from).

    Example::

        layout = load_page_layout("/sys/kernel/tracing")
        layout.page_size, layout.padding_type   # (4096, 29)
    """

    ts_offset: int = 0
    ts_size: int = 8
    commit_offset: int = 8
    commit_size: int = 8
    data_offset: int = 16
    data_size: int = 4080
    overwrite_offset: int = 8
    type_len_bits: int = 5
    time_delta_bits: int = 27
    array_bits: int = 32
    padding_type: int = 29
    time_extend_type: int = 30
    time_stamp_type: int = 31
    data_max_type_len: int = 28

    @property
    def page_size(self) -> int:
        return self.data_offset + self.data_size

    @property
    def long_size(self) -> int:
        """sizeof(long) of the kernel: the commit word is a local_t (a long)."""
        return self.commit_size


DEFAULT_LAYOUT = PageLayout()

_HDR_BITS = re.compile(r"^\s*(\w+)\s*:\s*([0-9]{1,6})\s*bits\s*$")
_HDR_TYPE = re.compile(r"^\s*(\w+)\s*:\s*type\s*==\s*([0-9]{1,6})\s*$")
_HDR_MAX = re.compile(r"^\s*data\s+max\s+type_len\s*==\s*([0-9]{1,6})\s*$")


def parse_page_layout(header_page: str, header_event: str) -> PageLayout:
    """Parse the text of ``events/header_page`` and ``events/header_event``.

    Example::

        parse_page_layout(open(root + "/events/header_page").read(),
                          open(root + "/events/header_event").read()).data_offset  # 16
    """
    if not isinstance(header_page, str) or not isinstance(header_event, str):
        raise DecodeError("header_page / header_event text must be str")
    pf: dict[str, tuple[int, int]] = {}
    for line in header_page.split("\n"):
        if not line.strip():
            continue
        m = _FIELD_LINE.match(line)
        if not m:
            raise DecodeError(f"malformed line in header_page: {line.strip()!r}")
        decl = m.group("decl").split()
        if len(decl) < 2:
            raise DecodeError(f"header_page field without a type: {line.strip()!r}")
        fname = decl[-1]
        if not _IDENT.match(fname):
            raise DecodeError(f"bad header_page field name {fname!r}")
        if fname in pf:
            raise DecodeError(f"header_page declares {fname!r} twice")
        pf[fname] = (_int_arg(m.group("off"), "offset", line), _int_arg(m.group("size"), "size",
                                                                        line))
    for need in ("timestamp", "commit", "data"):
        if need not in pf:
            raise DecodeError(f"header_page has no {need!r} field")
    ts_off, ts_size = pf["timestamp"]
    c_off, c_size = pf["commit"]
    d_off, d_size = pf["data"]
    if ts_size != 8:
        raise DecodeError(f"header_page timestamp size {ts_size}, expected 8")
    if c_size not in (4, 8):
        raise DecodeError(f"header_page commit size {c_size}, expected 4 or 8")
    if ts_off + 8 > d_off or c_off + c_size > d_off:
        raise DecodeError("header_page: timestamp/commit overlap the data area")
    if d_size < 8 or d_off % 4:
        raise DecodeError(f"header_page: implausible data area (offset {d_off}, size {d_size})")
    ow = pf.get("overwrite", (-1, 0))[0]

    bits: dict[str, int] = {}
    types: dict[str, int] = {}
    max_len: int | None = None
    for line in header_event.split("\n"):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = _HDR_BITS.match(s)
        if m:
            bits[m.group(1)] = int(m.group(2))
            continue
        m = _HDR_TYPE.match(s)
        if m:
            types[m.group(1)] = int(m.group(2))
            continue
        m = _HDR_MAX.match(s)
        if m:
            max_len = int(m.group(1))
            continue
        raise DecodeError(f"malformed line in header_event: {s!r}")
    if "type" in bits and "type_len" not in bits:
        raise DecodeError("header_event describes the pre-2.6.31 ring buffer; not supported")
    for need in ("type_len", "time_delta"):
        if need not in bits:
            raise DecodeError(f"header_event has no {need!r} bit width")
    for need in ("padding", "time_extend", "time_stamp"):
        if need not in types:
            raise DecodeError(f"header_event has no {need!r} type value")
    if max_len is None:
        raise DecodeError("header_event has no 'data max type_len' line")
    tl, td = bits["type_len"], bits["time_delta"]
    if tl + td != 32 or not 1 <= tl <= 8:
        raise DecodeError(f"header_event: type_len {tl} + time_delta {td} bits is not a u32")
    top = (1 << tl) - 1
    vals = (types["padding"], types["time_extend"], types["time_stamp"])
    if any(v > top for v in vals) or max_len > top or len(set(vals)) != 3 or max_len >= min(vals):
        raise DecodeError(
            f"header_event: type values {vals} / max type_len {max_len} do not fit {tl} bits"
        )
    return PageLayout(
        ts_offset=ts_off, ts_size=ts_size, commit_offset=c_off, commit_size=c_size,
        data_offset=d_off, data_size=d_size, overwrite_offset=ow,
        type_len_bits=tl, time_delta_bits=td, array_bits=bits.get("array", 32),
        padding_type=vals[0], time_extend_type=vals[1], time_stamp_type=vals[2],
        data_max_type_len=max_len,
    )


#: the same function under the name session.py uses
parse_header_layout = parse_page_layout


def load_page_layout(root: str) -> PageLayout:
    """Read ``ROOT/events/header_page`` and ``header_event`` (root: tracefs or instance)."""
    texts = []
    for fname in ("header_page", "header_event"):
        path = os.path.join(root, "events", fname)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                texts.append(f.read())
        except FileNotFoundError:
            raise NotFound(f"{path} does not exist (is {root} a tracefs mount?)") from None
        except OSError as e:
            raise TracefsError(f"cannot read {path}: {e.strerror}") from None
    return parse_page_layout(texts[0], texts[1])
