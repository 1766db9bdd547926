"""The probe-spec grammar shared by every backend.

A spec names one data source the way bpftrace spells it, optionally followed by
arguments to record, all in one string (or as separate CLI words joined by spaces)::

    t:syscalls:sys_enter_open*                  tracepoint:SYSTEM:NAME (globs allowed)
    u:libc:malloc size=arg0:u64                 uprobe:TARGET:SYMBOL[+OFFSET] NAME=EXPR[:TYPE]
    u:/bin/bash:0x4245c0                        uprobe at an address in the file
    ur:/bin/bash:readline line=+0(retval):string
    k:do_sys_openat2 dfd=arg0:s32 name=+0(arg1):ustring
    kr:do_sys_openat2 ret=retval:s64
    usdt:/usr/bin/python3:python:function__entry

EXPR is ``argN`` (0-based), ``retval`` (return probes only), a register (``%di``,
``%x0``) or a dereference ``+OFF(EXPR)`` / ``-OFF(EXPR)`` (nestable). TYPE is one of
u8..u64, s8..s64, x8..x64, string, ustring, or an array like ``u8[16]``.

Parsing is purely textual: nothing here touches files or the kernel. Every error is a
:class:`~probewatch.errors.SpecError` whose ``pos`` points at the offending character.

Example::

    spec = parse_spec("u:libc:malloc size=arg0:u64")
    spec.kind, spec.target, spec.symbol          # ('uprobe', 'libc', 'malloc')
    spec.args[0].expr, spec.args[0].type         # (ArgRef(index=0), 'u64')
    spec.canonical()                             # 'uprobe:libc:malloc size=arg0:u64'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from ..errors import SpecError

__all__ = [
    "KINDS",
    "RETURN_KINDS",
    "ArgRef",
    "Retval",
    "Register",
    "Deref",
    "Expr",
    "ArgType",
    "ArgSpec",
    "ProbeSpec",
    "parse_spec",
    "parse_spec_words",
    "parse_type",
    "has_glob",
    "TYPE_HELP",
]

#: spelling -> canonical kind
KINDS: dict[str, str] = {
    "tracepoint": "tracepoint",
    "t": "tracepoint",
    "uprobe": "uprobe",
    "u": "uprobe",
    "uretprobe": "uretprobe",
    "ur": "uretprobe",
    "kprobe": "kprobe",
    "k": "kprobe",
    "kretprobe": "kretprobe",
    "kr": "kretprobe",
    "usdt": "usdt",
    "U": "usdt",
}
SHORT: dict[str, str] = {
    "tracepoint": "t",
    "uprobe": "u",
    "uretprobe": "ur",
    "kprobe": "k",
    "kretprobe": "kr",
    "usdt": "U",
}
RETURN_KINDS = frozenset({"uretprobe", "kretprobe"})

KIND_HELP = (
    "expected probe kind (tracepoint/t, uprobe/u, uretprobe/ur, kprobe/k, kretprobe/kr, usdt/U)"
)
TYPE_HELP = "expected u8..u64, s8..s64, x8..x64, string, ustring or an array like u8[16]"

#: field names the kernel reserves in every probe event (traceprobe_conflict_field_name)
RESERVED_ARG_NAMES = frozenset(
    {
        "common_type",
        "common_flags",
        "common_preempt_count",
        "common_pid",
        "common_tgid",
        "__probe_ip",
        "__probe_ret_ip",
        "__probe_func",
    }
)
MAX_ARG_NAME_LEN = 32  # kernel MAX_ARG_NAME_LEN
MAX_ARGS = 128  # kernel MAX_TRACE_ARGS
MAX_ARRAY_LEN = 64  # kernel MAX_ARRAY_LEN
MAX_ARG_INDEX = 127
MAX_DEREF_DEPTH = 8
_NUMBER_TYPES = frozenset(f"{p}{b}" for p in "usx" for b in (8, 16, 32, 64))
_STRING_TYPES = frozenset({"string", "ustring"})
_GLOB_CHARS = frozenset("*?[")


def has_glob(s: str | None) -> bool:
    """True when ``s`` contains a shell-glob metacharacter (``*``, ``?``, ``[``)."""
    return bool(s) and any(c in _GLOB_CHARS for c in s or "")


# --------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class ArgRef:
    """``argN``: the N-th (0-based) function argument (or USDT probe argument)."""

    index: int
    pos: int = field(default=0, compare=False, repr=False)

    def __str__(self) -> str:
        return f"arg{self.index}"


@dataclass(frozen=True)
class Retval:
    """``retval``: the return value (uretprobe / kretprobe only)."""

    pos: int = field(default=0, compare=False, repr=False)

    def __str__(self) -> str:
        return "retval"


@dataclass(frozen=True)
class Register:
    """``%NAME``: a raw register, spelled as written (checked against the arch later)."""

    name: str
    pos: int = field(default=0, compare=False, repr=False)

    def __str__(self) -> str:
        return "%" + self.name


@dataclass(frozen=True)
class Deref:
    """``+OFF(EXPR)`` / ``-OFF(EXPR)``: the memory at EXPR + OFF."""

    offset: int
    inner: Expr
    pos: int = field(default=0, compare=False, repr=False)

    def __str__(self) -> str:
        sign = "-" if self.offset < 0 else "+"
        return f"{sign}{abs(self.offset)}({self.inner})"


Expr: TypeAlias = ArgRef | Retval | Register | Deref


@dataclass(frozen=True)
class ArgType:
    """A parsed TYPE: ``base`` is u8..x64/string/ustring, ``count`` the array length."""

    base: str
    count: int | None = None

    def __str__(self) -> str:
        return self.base if self.count is None else f"{self.base}[{self.count}]"

    @property
    def is_string(self) -> bool:
        return self.base in _STRING_TYPES

    @property
    def needs_memory(self) -> bool:
        """Strings and arrays are read from memory: the kernel needs a dereference."""
        return self.is_string or self.count is not None

    @property
    def bits(self) -> int:
        """Element width in bits (0 for strings)."""
        return 0 if self.is_string else int(self.base[1:])

    @property
    def signed(self) -> bool:
        return self.base.startswith("s")


@dataclass
class ArgSpec:
    """One ``NAME=EXPR[:TYPE]`` argument."""

    name: str
    expr: Expr
    type: str | None = None
    pos: int = field(default=0, compare=False, repr=False)
    type_pos: int | None = field(default=None, compare=False, repr=False)

    @property
    def arg_type(self) -> ArgType | None:
        return parse_type(self.type) if self.type else None

    def __str__(self) -> str:
        return f"{self.name}={self.expr}" + (f":{self.type}" if self.type else "")


@dataclass
class ProbeSpec:
    """A parsed probe spec.

    ``kind`` is one of tracepoint, uprobe, uretprobe, kprobe, kretprobe, usdt.

    - tracepoint: ``system``, ``name``
    - uprobe/uretprobe: ``target`` (path or library name), ``symbol`` + ``offset``,
      or ``address``
    - kprobe/kretprobe: ``symbol`` (kernel function) + ``offset``; ``target`` is the
      module when written ``k:MODULE:FUNC``
    - usdt: ``target``, ``provider`` (None when omitted), ``name``

    ``positions`` maps part names (``target``, ``symbol``, ``name``...) to their index
    in ``text`` so later stages can point a caret at them.
    """

    kind: str
    system: str | None = None
    name: str | None = None
    target: str | None = None
    symbol: str | None = None
    offset: int = 0
    address: int | None = None
    provider: str | None = None
    args: list[ArgSpec] = field(default_factory=list)
    text: str = field(default="", compare=False)
    positions: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_return(self) -> bool:
        return self.kind in RETURN_KINDS

    @property
    def is_glob(self) -> bool:
        if self.kind == "tracepoint":
            return has_glob(self.system) or has_glob(self.name)
        if self.kind == "usdt":
            return has_glob(self.provider) or has_glob(self.name)
        return has_glob(self.symbol)

    def pos(self, part: str) -> int | None:
        """Index in ``text`` of a part (``target``, ``symbol``...), when known."""
        return self.positions.get(part)

    def error(self, message: str, part: str | None = None, pos: int | None = None) -> SpecError:
        """A SpecError about this spec pointing at ``part`` (or at ``pos``)."""
        if pos is None and part is not None:
            pos = self.positions.get(part)
        return SpecError(message, self.text or self.canonical(), pos)

    def location(self) -> str:
        """The probe part alone (no arguments), canonical spelling."""
        k = self.kind
        if k == "tracepoint":
            return f"tracepoint:{self.system}:{self.name}"
        if k in ("uprobe", "uretprobe"):
            if self.address is not None:
                where = f"0x{self.address:x}"
            else:
                where = f"{self.symbol}" + (f"+0x{self.offset:x}" if self.offset else "")
            return f"{k}:{self.target}:{where}"
        if k in ("kprobe", "kretprobe"):
            mod = f"{self.target}:" if self.target else ""
            off = f"+0x{self.offset:x}" if self.offset else ""
            return f"{k}:{mod}{self.symbol}{off}"
        prov = f"{self.provider}:" if self.provider else ""
        return f"usdt:{self.target}:{prov}{self.name}"

    def canonical(self) -> str:
        """The normalised spec: long kind name, hex offsets, args in order.

        ``parse_spec(s.canonical())`` equals ``s``.
        """
        return " ".join([self.location()] + [str(a) for a in self.args])

    def __str__(self) -> str:
        return self.canonical()


# ------------------------------------------------------------------------- parser

_WORD = re.compile(r"\S+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUM = re.compile(r"0[xX][0-9A-Fa-f]+|[0-9]+")


def parse_spec_words(words: Sequence[str]) -> ProbeSpec:
    """Parse a spec given as CLI words (``['u:libc:malloc', 'size=arg0:u64']``)."""
    return parse_spec(" ".join(words))


def parse_spec(text: str) -> ProbeSpec:
    """Parse a probe spec (see the module docstring); raise SpecError on any mistake.

    Example::

        parse_spec("kr:do_sys_openat2 ret=retval:s64").args[0].type   # 's64'
    """
    if not isinstance(text, str):
        raise SpecError(f"a probe spec must be a string, not {type(text).__name__}")
    return _Parser(text).parse()


def parse_type(text: str, spec: str = "", pos: int = 0) -> ArgType:
    """Parse a TYPE (``u32``, ``string``, ``u8[16]``); SpecError points into ``spec``."""
    t, end = _parse_type_at(text, 0, spec or text, pos)
    if end != len(text):
        raise SpecError(f"unexpected {text[end]!r} after type", spec or text, pos + end)
    return t


def _parse_type_at(s: str, i: int, spec: str, base_pos: int) -> tuple[ArgType, int]:
    """Parse a type starting at s[i]; positions reported as base_pos + index."""
    m = re.compile(r"[A-Za-z0-9_]*").match(s, i)
    word = m.group() if m else ""
    j = i + len(word)
    if not word:
        raise SpecError(f"expected a type after ':' ({TYPE_HELP})", spec, base_pos + i)
    if word not in _NUMBER_TYPES and word not in _STRING_TYPES:
        raise SpecError(f"unknown type {word!r} ({TYPE_HELP})", spec, base_pos + i)
    count: int | None = None
    if j < len(s) and s[j] == "[":
        if word in _STRING_TYPES:
            raise SpecError(
                f"arrays take a number type (u8..u64, s8..s64, x8..x64), not {word}",
                spec,
                base_pos + i,
            )
        k = j + 1
        dm = re.compile(r"[0-9]+").match(s, k)
        if not dm:
            raise SpecError(
                f"expected an array size (1..{MAX_ARRAY_LEN}) after '['", spec, base_pos + k
            )
        n = int(dm.group())
        if not 1 <= n <= MAX_ARRAY_LEN:
            raise SpecError(
                f"array size must be 1..{MAX_ARRAY_LEN}, not {n}", spec, base_pos + k
            )
        e = dm.end()
        if e >= len(s) or s[e] != "]":
            raise SpecError("expected ']' to close the array size", spec, base_pos + e)
        count = n
        j = e + 1
    return ArgType(word, count), j


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text

    def err(self, message: str, pos: int) -> SpecError:
        return SpecError(message, self.text, pos)

    # -- top level
    def parse(self) -> ProbeSpec:
        words = [(m.start(), m.group()) for m in _WORD.finditer(self.text)]
        if not words:
            raise self.err(f"empty probe spec: {KIND_HELP}", len(self.text))
        pos, word = words[0]
        colon = word.find(":")
        head = word if colon < 0 else word[:colon]
        if head not in KINDS:
            got = f", got {head!r}" if head else ""
            raise self.err(f"{KIND_HELP}{got}", pos)
        if colon < 0:
            raise self.err(
                f"expected ':' after probe kind {head!r} (e.g. {head}:...)", pos + len(word)
            )
        kind = KINDS[head]
        spec = ProbeSpec(kind=kind, text=self.text)
        spec.positions["kind"] = pos
        body, bpos = word[colon + 1 :], pos + colon + 1
        if kind == "tracepoint":
            self._tracepoint(spec, body, bpos)
        elif kind in ("uprobe", "uretprobe"):
            self._uprobe(spec, body, bpos, head)
        elif kind in ("kprobe", "kretprobe"):
            self._kprobe(spec, body, bpos, head)
        else:
            self._usdt(spec, body, bpos, head)
        seen: dict[str, int] = {}
        for apos, aword in words[1:]:
            if kind == "tracepoint":
                raise self.err(
                    "tracepoints take no NAME=EXPR arguments (their fields are recorded as"
                    " they are)",
                    apos,
                )
            if len(spec.args) >= MAX_ARGS:
                raise self.err(f"too many arguments (the kernel allows at most {MAX_ARGS})", apos)
            arg = self._arg(spec, aword, apos)
            if arg.name in seen:
                raise self.err(f"duplicate argument name {arg.name!r}", apos)
            seen[arg.name] = apos
            spec.args.append(arg)
        return spec

    # -- names and numbers
    def _check_name(
        self, s: str, pos: int, what: str, extra: str = "", glob: bool = True
    ) -> None:
        """Every char of s is alnum, '_', in ``extra``, or (glob) a glob construct."""
        i = 0
        while i < len(s):
            c = s[i]
            if c.isascii() and (c.isalnum() or c == "_" or c in extra):
                i += 1
                continue
            if glob and c in "*?":
                i += 1
                continue
            if glob and c == "[":
                end = s.find("]", i + 1)
                if end < 0:
                    raise self.err(f"unclosed '[' in {what} glob", pos + i)
                inner = s[i + 1 : end]
                if inner.startswith("!"):
                    inner = inner[1:]
                if not inner:
                    raise self.err(f"empty '[]' in {what} glob", pos + i)
                for k, ch in enumerate(inner):
                    if not (ch.isascii() and (ch.isalnum() or ch in "_-.")):
                        raise self.err(
                            f"unexpected {ch!r} in {what} glob", pos + end - len(inner) + k
                        )
                i = end + 1
                continue
            raise self.err(f"unexpected character {c!r} in {what}", pos + i)

    def _number(self, s: str, pos: int, what: str) -> int:
        m = _NUM.fullmatch(s)
        if not m:
            bad = 0
            if s[:2].lower() == "0x":
                bad = 2
                while bad < len(s) and s[bad] in "0123456789abcdefABCDEF":
                    bad += 1
            else:
                while bad < len(s) and s[bad].isdigit():
                    bad += 1
            raise self.err(f"expected a decimal or 0x-hex {what}", pos + bad)
        return int(s, 0) if s[:2].lower() == "0x" else int(s, 10)

    def _symbol_offset(
        self, spec: ProbeSpec, s: str, pos: int, head: str, what: str, extra: str
    ) -> None:
        """``SYMBOL[+OFFSET]`` into spec.symbol / spec.offset."""
        plus = s.find("+")
        sym = s if plus < 0 else s[:plus]
        if not sym:
            raise self.err(f"expected a {what} before '+'", pos)
        if sym[0].isdigit():
            raise self.err(
                f"a {what} cannot start with a digit (write an address as 0xADDRESS)", pos
            )
        self._check_name(sym, pos, what, extra=extra)
        spec.symbol = sym
        spec.positions["symbol"] = pos
        if plus >= 0:
            opos = pos + plus
            if spec.is_return:
                raise self.err(
                    f"{spec.kind} takes no +OFFSET (it fires when the function returns)", opos
                )
            if has_glob(sym):
                raise self.err("an offset needs one symbol, not a glob", opos)
            off_text = s[plus + 1 :]
            if not off_text:
                raise self.err("expected an offset after '+'", opos + 1)
            spec.offset = self._number(off_text, opos + 1, "offset")
            spec.positions["offset"] = opos + 1

    # -- kinds
    def _tracepoint(self, spec: ProbeSpec, body: str, pos: int) -> None:
        parts = body.split(":")
        if len(parts) < 2:
            raise self.err(
                "expected ':' between tracepoint system and name (t:SYSTEM:NAME)",
                pos + len(body),
            )
        if len(parts) > 2:
            raise self.err(
                "unexpected ':' in tracepoint name (t:SYSTEM:NAME)",
                pos + len(parts[0]) + 1 + len(parts[1]),
            )
        system, name = parts
        if not system:
            raise self.err("expected a tracepoint system (t:SYSTEM:NAME)", pos)
        npos = pos + len(system) + 1
        if not name:
            raise self.err("expected a tracepoint name after 'SYSTEM:' (t:SYSTEM:NAME)", npos)
        self._check_name(system, pos, "tracepoint system", extra="-.")
        self._check_name(name, npos, "tracepoint name", extra="-.")
        spec.system, spec.name = system, name
        spec.positions.update(system=pos, name=npos)

    def _uprobe(self, spec: ProbeSpec, body: str, pos: int, head: str) -> None:
        colon = body.rfind(":")
        if colon < 0:
            if not body:
                raise self.err(
                    f"expected a target (path or library name) after '{head}:'", pos
                )
            raise self.err(
                f"expected ':' after the target ({head}:TARGET:SYMBOL)", pos + len(body)
            )
        target, where = body[:colon], body[colon + 1 :]
        if not target:
            raise self.err(f"expected a target (path or library name) after '{head}:'", pos)
        spec.target = target
        spec.positions["target"] = pos
        wpos = pos + colon + 1
        if not where:
            raise self.err("expected a symbol or 0xADDRESS after the target", wpos)
        if where[:2].lower() == "0x":
            plus = where.find("+")
            if plus >= 0:
                raise self.err(
                    "an address takes no +OFFSET (add the offset to the address)", wpos + plus
                )
            spec.address = self._number(where, wpos, "address")
            spec.positions["address"] = wpos
            spec.positions["symbol"] = wpos
            return
        self._symbol_offset(spec, where, wpos, head, "symbol", extra=".$@")

    def _kprobe(self, spec: ProbeSpec, body: str, pos: int, head: str) -> None:
        if not body:
            raise self.err(f"expected a kernel function name after '{head}:'", pos)
        parts = body.split(":")
        if len(parts) > 2:
            raise self.err(
                f"unexpected ':' ({head}:FUNC or {head}:MODULE:FUNC)",
                pos + len(parts[0]) + 1 + len(parts[1]),
            )
        if len(parts) == 2:
            module, func = parts
            if not module:
                raise self.err(f"expected a module name before ':' ({head}:MODULE:FUNC)", pos)
            self._check_name(module, pos, "module name", extra="-", glob=False)
            spec.target = module
            spec.positions["target"] = pos
            fpos = pos + len(module) + 1
            if not func:
                raise self.err(f"expected a kernel function name after '{module}:'", fpos)
        else:
            func, fpos = body, pos
        self._symbol_offset(spec, func, fpos, head, "kernel function name", extra=".")

    def _usdt(self, spec: ProbeSpec, body: str, pos: int, head: str) -> None:
        parts = body.split(":")
        if len(parts) < 2:
            if not body:
                raise self.err(
                    f"expected a target (path or library name) after '{head}:'", pos
                )
            raise self.err(
                f"expected ':' after the target ({head}:TARGET:[PROVIDER:]NAME)",
                pos + len(body),
            )
        if len(parts) == 2:
            target, provider, name = parts[0], None, parts[1]
        else:
            target, provider, name = ":".join(parts[:-2]), parts[-2], parts[-1]
        if not target:
            raise self.err(f"expected a target (path or library name) after '{head}:'", pos)
        spec.target = target
        spec.positions["target"] = pos
        npos = pos + len(body) - len(name)
        if provider is not None:
            ppos = npos - 1 - len(provider)
            if not provider:
                raise self.err(
                    f"expected a USDT provider before ':' ({head}:TARGET:PROVIDER:NAME)", ppos
                )
            self._check_name(provider, ppos, "USDT provider")
            spec.provider = provider
            spec.positions["provider"] = ppos
        if not name:
            raise self.err("expected a USDT probe name", npos)
        self._check_name(name, npos, "USDT probe name")
        spec.name = name
        spec.positions["name"] = npos

    # -- arguments
    def _arg(self, spec: ProbeSpec, word: str, pos: int) -> ArgSpec:
        eq = word.find("=")
        if eq < 0:
            raise self.err("expected NAME=EXPR[:TYPE] (e.g. size=arg0:u64)", pos)
        name = word[:eq]
        if not name:
            raise self.err("expected an argument name before '='", pos)
        m = _IDENT.match(name)
        if not m or m.end() != len(name):
            bad = m.end() if m else 0
            raise self.err(
                "an argument name must be a C identifier (letters, digits, '_', not"
                " starting with a digit)",
                pos + bad,
            )
        if len(name) > MAX_ARG_NAME_LEN:
            raise self.err(
                f"argument name {name!r} is too long (at most {MAX_ARG_NAME_LEN} characters)",
                pos,
            )
        if name in RESERVED_ARG_NAMES:
            raise self.err(f"argument name {name!r} is reserved by the kernel", pos)
        epos = pos + eq + 1
        s = word[eq + 1 :]
        if not s:
            raise self.err(
                "expected an expression after '=' (argN, retval, %REG, +OFF(EXPR))", epos
            )
        expr, i = self._expr(spec, s, 0, epos, 0)
        type_str: str | None = None
        tpos: int | None = None
        if i < len(s):
            if s[i] != ":":
                raise self.err(
                    f"unexpected {s[i]!r} after the expression (expected ':TYPE' or the end"
                    " of the argument)",
                    epos + i,
                )
            tpos = epos + i + 1
            t, j = _parse_type_at(s, i + 1, self.text, epos)
            if j < len(s):
                raise self.err(f"unexpected {s[j]!r} after type", epos + j)
            type_str = str(t)
        return ArgSpec(name=name, expr=expr, type=type_str, pos=pos, type_pos=tpos)

    def _expr(self, spec: ProbeSpec, s: str, i: int, base: int, depth: int) -> tuple[Expr, int]:
        p = base + i
        if s.startswith("arg", i):
            m = re.compile(r"[0-9]+").match(s, i + 3)
            if m and not _continues_ident(s, m.end()):
                n = int(m.group())
                if n > MAX_ARG_INDEX:
                    raise self.err(f"argument index too large (at most arg{MAX_ARG_INDEX})", p)
                if spec.is_return:
                    raise self.err(
                        f"arg{n} is not available in uretprobe/kretprobe (the registers no"
                        " longer hold the arguments at return); use retval",
                        p,
                    )
                return ArgRef(n, pos=p), m.end()
        if s.startswith("retval", i) and not _continues_ident(s, i + 6):
            if not spec.is_return:
                raise self.err("retval is only available in uretprobe/kretprobe", p)
            return Retval(pos=p), i + 6
        if i < len(s) and s[i] == "%":
            m = re.compile(r"[A-Za-z0-9_]+").match(s, i + 1)
            if not m:
                raise self.err("expected a register name after '%' (e.g. %di, %x0)", p + 1)
            return Register(m.group().lower(), pos=p), m.end()
        if i < len(s) and s[i] in "+-":
            if depth >= MAX_DEREF_DEPTH:
                raise self.err(
                    f"dereferences nested too deeply (at most {MAX_DEREF_DEPTH})", p
                )
            m = _NUM.match(s, i + 1)
            if not m:
                raise self.err(f"expected an offset after {s[i]!r} (e.g. +8(arg0))", p + 1)
            j = m.end()
            if j < len(s) and (s[j].isalnum() or s[j] == "_"):
                raise self.err("expected a decimal or 0x-hex offset", base + j)
            if j >= len(s) or s[j] != "(":
                raise self.err("expected '(' after the dereference offset", base + j)
            txt = m.group()
            off = int(txt, 16) if txt[:2].lower() == "0x" else int(txt, 10)
            if off >= 1 << 31:
                raise self.err("dereference offset too large (at most 2^31-1)", p + 1)
            if s[i] == "-":
                off = -off
            inner, k = self._expr(spec, s, j + 1, base, depth + 1)
            if k >= len(s) or s[k] != ")":
                raise self.err(
                    "expected ')' to close the dereference",
                    base + k,
                )
            return Deref(off, inner, pos=p), k + 1
        raise self.err(
            "expected argN, retval, %REG, +OFF(EXPR) or -OFF(EXPR)",
            p,
        )


def _continues_ident(s: str, i: int) -> bool:
    return i < len(s) and (s[i].isalnum() or s[i] == "_")
