"""Make what a traced process controls safe to print: one text escape, one JSON scheme.

Strings that come from traced processes (argv, environment, paths, comm, socket
data, lines typed into bash) are decoded from the kernel's bytes with
``surrogateescape``: a byte that is not valid UTF-8 becomes the lone surrogate
U+DC80+byte. Such a ``str`` cannot be written to a UTF-8 stream as it is, and its
control characters (newline, ESC, CR, ...) would forge lines or drive the terminal.

**Text** (every human-readable line probewatch prints): :func:`escape_text`.
Printable characters stay as they are; a backslash becomes ``\\\\``; ``\\n``,
``\\t``, ``\\r`` get their C escapes; other control characters and undecodable bytes
become ``\\xNN`` (the byte value; a control character below 0x80 is its own UTF-8
byte); any other non-printable character (C1 controls, U+2028, bidi overrides, other
lone surrogates) becomes ``\\uXXXX`` (or ``\\UXXXXXXXX``). The result is printable,
holds no line break, and is reversible with :func:`unescape_text`.

**JSON** (``--json`` of every front end, the JSON-lines sink): a string that is valid
Unicode stays a JSON string, unchanged. A string holding undecodable bytes (lone
surrogates) becomes the object ``{"b64": "<base64 of its raw bytes>"}``, anywhere a
string may appear (``comm``, field values, list items). Every line is then valid
UTF-8 JSON that any parser accepts, and lossless: :func:`from_json` turns the objects
back into the very same ``str`` (:func:`json_bytes` into the raw bytes).

Example::

    escape_text("x\\nsshd\\x1b[2K")           # 'x\\\\nsshd\\\\x1b[2K'
    v = to_json("/tmp/\\udcff")                # {'b64': 'L3RtcC//'}
    from_json(v) == "/tmp/\\udcff"              # True
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

_C_ESC = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _esc_char(c: str) -> str:
    e = _C_ESC.get(c)
    if e is not None:
        return e
    o = ord(c)
    if o < 0x80:
        return f"\\x{o:02x}"
    if 0xDC80 <= o <= 0xDCFF:  # an undecodable byte (surrogateescape)
        return f"\\x{o - 0xDC00:02x}"
    if o <= 0xFFFF:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def _is_safe(s: str) -> bool:
    return s.isprintable() and "\\" not in s


def escape_text(s: str) -> str:
    """``s`` made safe for a text line: printable, one line, reversible.

    >>> escape_text("a b")
    'a b'
    >>> escape_text("x\\nevil\\x1b[2K\\\\")
    'x\\\\nevil\\\\x1b[2K\\\\\\\\'
    """
    if _is_safe(s):  # the fast path: nothing to do (C speed)
        return s
    return "".join(c if (c.isprintable() and c != "\\") else _esc_char(c) for c in s)


def escape_bytes(b: bytes) -> str:
    """Raw bytes from a process as text: decoded as UTF-8 where valid, then escaped."""
    return escape_text(b.decode("utf-8", "surrogateescape"))


def quote_text(s: str, quote: str = "'") -> str:
    """``s`` escaped and in quotes (the quote character itself escaped too)."""
    return quote + escape_text(s).replace(quote, "\\" + quote) + quote


def text(v: Any) -> str:
    """Any value (str, bytes, int, None, list) as one escaped token of text."""
    if isinstance(v, str):
        return escape_text(v)
    if isinstance(v, bytes | bytearray):
        return escape_bytes(bytes(v))
    return escape_text(str(v))


_UNESC = re.compile(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|[\\ntr'\"])")


def unescape_text(s: str) -> str:
    """The inverse of :func:`escape_text` (``\\xNN`` at or above 0x80 is a raw byte)."""

    def one(m: re.Match[str]) -> str:
        g = m.group(1)
        if g[0] == "x":
            o = int(g[1:], 16)
            return chr(o) if o < 0x80 else chr(0xDC00 + o)
        if g[0] in "uU":
            return chr(int(g[1:], 16))
        return {"n": "\n", "t": "\t", "r": "\r"}.get(g, g)

    return _UNESC.sub(one, s)


# ------------------------------------------------------------------ JSON


def has_surrogates(s: str) -> bool:
    """True when ``s`` cannot be encoded as UTF-8 (it holds lone surrogates)."""
    if s.isascii():
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def raw_bytes(s: str) -> bytes:
    """A decoded string back to the bytes it came from (never raises)."""
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates that no undecodable byte produced
        return s.encode("utf-8", "surrogatepass")


def to_json(v: Any) -> Any:
    """``v`` with every string that holds undecodable bytes replaced by ``{"b64": ...}``;
    bytes become lists of ints, tuples lists (as the JSON sink writes them)."""
    if isinstance(v, str):
        if has_surrogates(v):
            return {"b64": base64.b64encode(raw_bytes(v)).decode("ascii")}
        return v
    if isinstance(v, bytes | bytearray):
        return list(v)
    if isinstance(v, list | tuple):
        return [to_json(x) for x in v]
    if isinstance(v, dict):
        return {to_json_key(k): to_json(x) for k, x in v.items()}
    return v


def to_json_key(k: Any) -> str:
    """An object key: keys are names (never user data); made encodable if they are not."""
    k = str(k)
    return k if not has_surrogates(k) else escape_text(k)


def is_b64(v: Any) -> bool:
    return isinstance(v, dict) and len(v) == 1 and isinstance(v.get("b64"), str)


def from_json(v: Any) -> Any:
    """The inverse of :func:`to_json` on parsed JSON: ``{"b64": ...}`` objects become the
    original ``str`` again (undecodable bytes as surrogateescape surrogates)."""
    if is_b64(v):
        return base64.b64decode(v["b64"]).decode("utf-8", "surrogateescape")
    if isinstance(v, list):
        return [from_json(x) for x in v]
    if isinstance(v, dict):
        return {k: from_json(x) for k, x in v.items()}
    return v


def json_bytes(v: Any) -> bytes:
    """A string value of probewatch JSON as the raw bytes the process had."""
    if is_b64(v):
        return base64.b64decode(v["b64"])
    if isinstance(v, str):
        return v.encode("utf-8", "surrogateescape")
    raise TypeError(f"not a string value: {v!r}")


__all__ = [
    "escape_text",
    "obj_json",
    "escape_bytes",
    "quote_text",
    "text",
    "unescape_text",
    "has_surrogates",
    "raw_bytes",
    "to_json",
    "from_json",
    "json_bytes",
]


_dump_line = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def obj_json(obj: Any) -> str:
    """Any JSON-able object as one line of valid UTF-8 JSON in this module's scheme
    (strings with undecodable bytes as ``{"b64": ...}``; :func:`from_json` reverses it).

    Example::

        obj_json({"argv": ["cat", "x\udcff"]})   # '{"argv":["cat",{"b64":"eP8="}]}'
    """
    return _dump_line(to_json(obj))
