"""Custom events from applications: ``probewatch.mark(name, **fields)``.

A mark is one write(2) to tracefs ``trace_marker``: the kernel stamps it with the
writing thread, CPU and time and puts it in the ring buffer in line with every kernel
event (``ftrace:print``). It goes to the active session's instance when this process
has one running with marks (``probewatch.Session`` with the ``marker`` spec), else to
the top level, from where any probewatch session that shows marks gets a copy
(``copy_trace_marker``, Linux 6.17+). Binary payloads go to ``trace_marker_raw``
(``ftrace:raw_data``: a 4-byte id then the bytes).

The text of a mark (what ``probewatch trace marker`` parses back into fields):

- ``NAME`` or ``NAME {"key": value, ...}`` -- an instant (phase ``i``);
- ``B|NAME {...}`` / ``E|NAME {...}`` -- begin / end of a slice (Perfetto slices);
- Android's atrace ``B|PID|NAME`` / ``E|PID`` are understood too; any other text is a
  mark with no name whose ``buf`` is the text.

Cost: one json encoding (when there are fields) and one write(2) on a cached file
descriptor; bench/mark_cost.py measures it. A mark that cannot be written (no tracefs,
not root) raises :class:`probewatch.errors.TracefsError` once per call; ``quiet=True``
in :func:`configure` makes marks silently do nothing instead.

Example::

    import probewatch
    probewatch.mark("request", id=42, path="/index")
    with probewatch.span("db_query", table="users"):
        run_query()
    probewatch.mark_raw(b"\\x01\\x02", id=7)
"""

from __future__ import annotations

import errno
import json
import os
import re
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import TracefsError

_lock = threading.Lock()
_fds: dict[str, int] = {}          # path -> open fd (kept open: a mark is one write)
_current: dict[str, int] = {}      # file name -> fd of the current target (the fast path)
_heads: dict[tuple[str, str], bytes] = {}   # (name, phase) -> checked head bytes
_active: list[str] = []            # instance directories of running sessions, newest last
_quiet = False
_root: str | None = None

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
_q = json.encoder.encode_basestring  # the C string quoter (non-ASCII kept, as _dumps)


def _fields_json(fields: dict[str, Any]) -> str:
    """``fields`` as compact JSON: str/int/bool/None values quoted directly (several
    times faster than the encoder), anything else through the encoder."""
    parts = []
    for k, v in fields.items():
        c = v.__class__
        if c is str:
            parts.append(f"{_q(k)}:{_q(v)}")
        elif c is int:
            parts.append(f"{_q(k)}:{v}")
        elif c is bool:
            parts.append(f"{_q(k)}:{'true' if v else 'false'}")
        elif v is None:
            parts.append(f"{_q(k)}:null")
        else:
            return _dumps(fields)
    return "{" + ",".join(parts) + "}"
#: the kernel cuts a trace_marker write at about 4 KiB; marks are kept below that
MAX_MARK = 4000
_NAME = re.compile(r"^[^\s|{]+$")


def configure(quiet: bool | None = None, root: str | None = None) -> None:
    """``quiet``: marks that cannot be written do nothing (no exception);
    ``root``: the tracefs mount (default: found, as every probewatch tool finds it)."""
    global _quiet, _root
    if quiet is not None:
        _quiet = quiet
    if root is not None:
        _root = root


def set_active(instance_dir: str) -> None:
    """Marks of this process go to ``instance_dir``'s trace_marker (a session started)."""
    with _lock:
        _active.append(instance_dir)
        _current.clear()


def clear_active(instance_dir: str) -> None:
    """The session of ``instance_dir`` ended: close its marker fds, fall back."""
    with _lock:
        _current.clear()
        if instance_dir in _active:
            _active.remove(instance_dir)
        for f in ("trace_marker", "trace_marker_raw"):
            fd = _fds.pop(os.path.join(instance_dir, f), None)
            if fd is not None:
                os.close(fd)


def _base() -> str:
    global _root
    if _active:
        return _active[-1]
    if _root is None:
        from .kernel.tracefs import tracefs_root

        _root = tracefs_root()
    return _root


def _fd(file: str) -> int:
    fd = _current.get(file)
    if fd is not None:
        return fd
    with _lock:
        path = os.path.join(_base(), file)
        fd = _fds.get(path)
        if fd is None:
            fd = _fds[path] = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        _current[file] = fd
    return fd


def _head(name: str, phase: str) -> bytes:
    h = _heads.get((name, phase))
    if h is None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"mark name {name!r}: give a name without spaces, '|' or '{{'")
        h = (name if phase == "i" else f"{phase}|{name}").encode("utf-8", "surrogateescape")
        if len(_heads) < 4096:
            _heads[(name, phase)] = h
    return h


def encode(name: str, fields: dict[str, Any], phase: str = "i") -> bytes:
    """The bytes written for a mark (module docstring); ValueError for a bad name.

    >>> encode("req", {"id": 1}), encode("q", {}, "B")
    (b'req {"id":1}', b'B|q')
    """
    head = _head(name, phase)
    data = head + b" " + _fields_json(fields).encode("utf-8", "surrogateescape") if fields \
        else head
    if len(data) > MAX_MARK:
        raise ValueError(f"mark {name!r} is {len(data)} bytes; at most {MAX_MARK} fit "
                         "one trace_marker write")
    return data


def _write(file: str, data: bytes) -> None:
    try:
        fd = _current.get(file)
        os.write(_fd(file) if fd is None else fd, data)
    except (OSError, TracefsError) as e:
        if _quiet:
            return
        if isinstance(e, TracefsError):
            raise
        if getattr(e, "errno", None) == errno.EBADF:  # the kernel's answer to tracing_on=0
            raise TracefsError(f"cannot write a mark to {file}: tracing is switched off in "
                               "that buffer (its tracing_on is 0)") from None
        raise TracefsError(f"cannot write a mark to {file}: {e.strerror or e} "
                           "(marks need tracefs and root)") from None


def mark(name: str, **fields: Any) -> None:
    """An instant event ``name`` with ``fields`` (JSON-able values), now, on this thread."""
    # the hot path: a known name, the fd open: one dict lookup and one write(2)
    h = _heads.get((name, "i"))
    fd = _current.get("trace_marker")
    if h is not None and fd is not None:
        data = h + b" " + _fields_json(fields).encode("utf-8", "surrogateescape") if fields else h
        if len(data) <= MAX_MARK:
            try:
                os.write(fd, data)
                return
            except OSError:
                pass
    _write("trace_marker", encode(name, fields))


def begin(name: str, **fields: Any) -> None:
    """The start of a slice ``name`` on this thread (end it with :func:`end`)."""
    _write("trace_marker", encode(name, fields, "B"))


def end(name: str, **fields: Any) -> None:
    """The end of the innermost open slice ``name`` on this thread."""
    _write("trace_marker", encode(name, fields, "E"))


@contextmanager
def span(name: str, **fields: Any) -> Iterator[None]:
    """``with span("step"): ...``: :func:`begin` on entry, :func:`end` on exit."""
    begin(name, **fields)
    try:
        yield
    finally:
        end(name)


def mark_raw(data: bytes, id: int = 0) -> None:
    """A binary mark (``ftrace:raw_data``): a 4-byte ``id`` then ``data`` (< 4 KiB)."""
    if not 0 <= id < 1 << 32:
        raise ValueError(f"raw mark id {id} is not a 32-bit unsigned number")
    if len(data) > MAX_MARK:
        raise ValueError(f"raw mark of {len(data)} bytes; at most {MAX_MARK} fit one write")
    _write("trace_marker_raw", struct.pack("=I", id) + bytes(data))


_ATRACE = re.compile(r"^([BEICS])\|(\d+)(?:\|([^|]*))?(?:\|(.*))?$")


def parse_mark(buf: str) -> dict[str, Any]:
    """The fields of a mark's text: ``mark`` (name or None), ``phase`` (``i``, ``B``,
    ``E``) and the JSON fields, which never replace those two or ``buf``.

    >>> parse_mark('req {"id":1}\\n')
    {'mark': 'req', 'phase': 'i', 'id': 1}
    >>> parse_mark("B|step")
    {'mark': 'step', 'phase': 'B'}
    >>> parse_mark("hello world")
    {'mark': None, 'phase': 'i'}
    """
    text = buf[:-1] if buf.endswith("\n") else buf
    m = _ATRACE.match(text)
    if m:  # Android atrace: B|pid|name, E|pid, I|pid|name, C|pid|name|value
        ph = {"B": "B", "E": "E"}.get(m.group(1), "i")
        out: dict[str, Any] = {"mark": m.group(3) or None, "phase": ph,
                               "atrace_pid": int(m.group(2))}
        if m.group(1) == "C" and m.group(4) is not None:
            out["value"] = m.group(4)
        return out
    head, sep, rest = text.partition(" ")
    phase = "i"
    if len(head) > 2 and head[1] == "|" and head[0] in "BE":
        phase, head = head[0], head[2:]
    if not head or not _NAME.match(head):
        return {"mark": None, "phase": "i"}
    fields: Any = {}
    if sep:
        if not rest.startswith("{"):
            return {"mark": None, "phase": "i"}
        try:
            fields = json.loads(rest)
        except ValueError:
            return {"mark": None, "phase": "i"}
        if not isinstance(fields, dict):
            return {"mark": None, "phase": "i"}
    out = {"mark": head, "phase": phase}
    for k, v in fields.items():
        if k not in ("mark", "phase", "buf", "ip"):
            out[str(k)] = v
    return out


__all__ = ["mark", "begin", "end", "span", "mark_raw", "configure", "encode", "parse_mark"]
