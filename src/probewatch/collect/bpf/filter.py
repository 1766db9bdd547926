"""The tracefs event-filter language, evaluated in user space (for the BPF backend).

ftrace runs ``--filter`` in the kernel; the BPF backend cannot, so it compiles the
same text into a Python predicate with the kernel's semantics
(``kernel/trace/trace_events_filter.c``): fields compare by their declared size and
signedness (the constant is parsed as s64 for signed fields, u64 for unsigned ones,
then cast to the field's type), ``&`` is "any bit set", ``~`` is a glob on string
fields, ``==``/``!=`` on strings compare whole strings; ``comm`` and ``cpu`` are
the task's comm and the CPU; ``&&``, ``||``, ``!`` and parentheses combine.

Errors name the problem the way the kernel's ``error_log`` does ("Field not found",
"Illegal integer value", ...) with a caret under the offending character.

Example::

    f = compile_filter('dfd == 0xffffff9c && comm ~ "ca*"', fields)
    f({"dfd": 0xffffff9c}, "cat", 0)    # True
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...errors import SpecError

__all__ = ["FilterField", "compile_filter", "FilterError", "Predicate"]

#: (raw field values by name, comm, cpu) -> keep?
Predicate = Callable[[dict[str, Any], str, int], bool]


class FilterError(SpecError):
    """A filter the kernel would refuse; the text points at the offending place."""


@dataclass(frozen=True)
class FilterField:
    """What the filter needs to know of a field: numeric (size, signed) or string."""

    name: str
    size: int = 8
    signed: bool = False
    is_string: bool = False
    is_pointer: bool = False


_OPS = ("==", "!=", "<=", ">=", "<", ">", "&", "~")
_TOKEN = re.compile(r"\s*(\|\||&&|==|!=|<=|>=|[<>&~!()]|\"(?:[^\"\\]|\\.)*\"|'[^']*'"
                    r"|[^\s()&|<>=!~\"']+)")


def _err(msg: str, text: str, pos: int) -> FilterError:
    return FilterError(f"event filter parse error: {msg}", text, pos)


def _parse_int(s: str, signed: bool) -> int | None:
    neg = s.startswith("-")
    body = s[1:] if neg else s
    if neg and not signed:
        return None
    try:
        if body[:2].lower() == "0x":
            v = int(body[2:], 16)
        elif len(body) > 1 and body.startswith("0"):
            v = int(body[1:], 8)
        else:
            v = int(body, 10)
    except ValueError:
        return None
    return -v if neg else v


def _cast(v: int, size: int, signed: bool) -> int:
    bits = size * 8
    v &= (1 << bits) - 1
    if signed and v >> (bits - 1):
        v -= 1 << bits
    return v


class _Parser:
    def __init__(self, text: str, fields: dict[str, FilterField]) -> None:
        self.text = text
        self.fields = fields
        self.toks: list[tuple[str, int]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m or not m.group(1):
                raise _err("Unexpected character", text, pos)
            self.toks.append((m.group(1), m.start(1)))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, int]:
        return self.toks[self.i] if self.i < len(self.toks) else ("", len(self.text))

    def take(self) -> tuple[str, int]:
        t = self.peek()
        self.i += 1
        return t

    def parse(self) -> Predicate:
        if not self.toks:
            raise _err("Missing field name and/or value", self.text, 0)
        p = self.or_()
        tok, pos = self.peek()
        if tok:
            raise _err("Meaningless filter expression" if tok != ")"
                       else "Unbalanced parens", self.text, pos)
        return p

    def or_(self) -> Predicate:
        left = self.and_()
        while self.peek()[0] == "||":
            self.take()
            right = self.and_()
            left = (lambda a, b: lambda f, c, u: a(f, c, u) or b(f, c, u))(left, right)
        return left

    def and_(self) -> Predicate:
        left = self.unary()
        while self.peek()[0] == "&&":
            self.take()
            right = self.unary()
            left = (lambda a, b: lambda f, c, u: a(f, c, u) and b(f, c, u))(left, right)
        return left

    def unary(self) -> Predicate:
        tok, pos = self.peek()
        if tok == "!":
            self.take()
            inner = self.unary()
            return lambda f, c, u: not inner(f, c, u)
        if tok == "(":
            self.take()
            inner = self.or_()
            t, p = self.take()
            if t != ")":
                raise _err("Unbalanced parens", self.text, p)
            return inner
        return self.pred()

    def pred(self) -> Predicate:
        name, npos = self.take()
        if not name or name in _OPS or name in ("&&", "||", ")"):
            raise _err("Missing field name and/or value", self.text, npos)
        op, opos = self.take()
        if op not in _OPS:
            raise _err("Invalid operator" if op else "Missing field name and/or value",
                       self.text, opos)
        val, vpos = self.take()
        if not val or val in _OPS or val in ("&&", "||", "(", ")", "!"):
            raise _err("Missing field name and/or value", self.text, vpos)
        special = name.lower() in ("comm", "cpu") and name not in self.fields
        fld = self.fields.get(name)
        if fld is None and not special:
            raise _err("Field not found", self.text, npos)
        quoted = val[0] in "\"'"
        sval = val[1:-1] if quoted else val
        if quoted and val[0] == '"':
            sval = re.sub(r"\\(.)", r"\1", sval)
        if special and name.lower() == "comm" or (fld is not None and fld.is_string):
            if op not in ("==", "!=", "~"):
                raise _err("Invalid operator", self.text, opos)
            return self._string(name, special, op, sval)
        if fld is not None and fld.is_pointer and (quoted or op == "~"):
            raise _err("string comparison on a pointer field needs the kernel (it reads"
                       " the memory); use --backend ftrace", self.text, npos)
        if op == "~":
            raise _err("Expecting string field", self.text, opos)
        if quoted:
            raise _err("Expecting numeric field", self.text, vpos)
        size, signed = (4, True) if special else (fld.size, fld.signed)  # type: ignore[union-attr]
        num = _parse_int(sval, signed)
        if num is None:
            raise _err("Illegal integer value", self.text, vpos)
        num = _cast(num, size if size in (1, 2, 4, 8) else 8, signed)
        key = name
        cmp = _NUM_OPS[op]
        if special:
            return lambda f, c, u: cmp(u, num)
        return lambda f, c, u: cmp(f.get(key, 0), num)

    def _string(self, name: str, special: bool, op: str, sval: str) -> Predicate:
        if op == "~":
            def match(s: str) -> bool:
                return fnmatch.fnmatchcase(s, sval)
        else:
            def match(s: str) -> bool:
                return s == sval
        neg = op == "!="
        if special:
            return lambda f, c, u: match(c) != neg
        return lambda f, c, u: match(f.get(name, "")) != neg


_NUM_OPS: dict[str, Callable[[int, int], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "&": lambda a, b: (a & b) != 0,
}


def compile_filter(text: str, fields: list[FilterField]) -> Predicate:
    """Compile a tracefs filter for an event with ``fields`` (FilterError if invalid).

    The predicate takes the *raw* field values (integers as the kernel stores them:
    the field's size and signedness; strings as str), the task's comm and the CPU.
    """
    return _Parser(text, {f.name: f for f in fields}).parse()
