"""The one text escape and the one JSON scheme for strings a traced process controls."""

from __future__ import annotations

import io
import json
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probewatch.decode.escape import (
    escape_bytes,
    escape_text,
    from_json,
    json_bytes,
    quote_text,
    to_json,
    unescape_text,
)
from probewatch.decode.syscalls import format_call
from probewatch.event import Event
from probewatch.sinks.jsonl import JsonLinesSink, event_json
from probewatch.sinks.text import TextSink
from probewatch.sinks.writer import Deadline, Out, OutputCut

# every code point, lone surrogates included (what surrogateescape and worse can give)
ANY_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()))
HOSTILE = [
    b"\xff\xfe",
    b"x\nsshd  99999 1 0 /usr/sbin/sshd -D",
    b"\x1b[2K\rhidden",
    b"back\\slash",
    b"\xe2\x80\xae-bidi override",  # U+202E
    b"\xc2\x85next line",  # U+0085 (NEL)
    b"\xe2\x80\xa8line separator",
    b"\x00nul",
    b"caf\xc3\xa9",
]


def _from_bytes(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _ev(comm: str, **fields: object) -> Event:
    return Event(1_000_000_000, 0, 42, 42, comm, "sys:ev", "t:sys:ev", dict(fields))


def _safe_line(s: str) -> None:
    """One line that cannot forge another or drive the terminal, and encodes as UTF-8."""
    assert s.isprintable(), s  # no \n \r ESC, no undecodable bytes, no U+2028 / U+202E
    s.encode("utf-8")


# ------------------------------------------------------------------ text


@pytest.mark.parametrize("raw", HOSTILE)
def test_escape_hostile(raw: bytes) -> None:
    s = escape_bytes(raw)
    _safe_line(s)
    assert unescape_text(s) == _from_bytes(raw)


def test_escape_examples() -> None:
    assert escape_text("plain /usr/bin/ls -l") == "plain /usr/bin/ls -l"
    assert escape_text("café") == "café"  # printable non-ASCII stays readable
    assert escape_text("x\nsshd") == "x\\nsshd"
    assert escape_text("\x1b[2K\r") == "\\x1b[2K\\r"
    assert escape_text("a\\b") == "a\\\\b"  # unambiguous: a backslash is doubled
    assert escape_text(_from_bytes(b"\xff\xfe")) == "\\xff\\xfe"  # the raw bytes
    assert escape_text("\u0085") == "\\u0085"  # a C1 control, not the byte 0x85
    assert escape_text("\u202e") == "\\u202e"
    assert escape_text("\U000e0001") == "\\U000e0001"
    assert quote_text("it's") == "'it\\'s'"


@settings(max_examples=400)
@given(ANY_TEXT)
def test_escape_text_is_one_printable_line_and_reversible(s: str) -> None:
    e = escape_text(s)
    _safe_line(e)
    assert unescape_text(e) == s


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_escape_bytes_reversible(b: bytes) -> None:
    e = escape_bytes(b)
    _safe_line(e)
    assert unescape_text(e).encode("utf-8", "surrogateescape") == b


# ------------------------------------------------------------------ JSON


@settings(max_examples=400)
@given(st.binary(max_size=300), st.binary(max_size=15), st.lists(st.binary(max_size=40)))
def test_event_json_valid_and_lossless(path: bytes, comm: bytes, argv: list[bytes]) -> None:
    ev = _ev(_from_bytes(comm), filename=_from_bytes(path),
             argv=[_from_bytes(a) for a in argv], dfd=-100, buf=b"\x00\xff", ptr=None,
             tup=(1, 2))
    line = event_json(ev)
    raw = line.encode("utf-8")  # strict: no lone surrogates in the output
    assert b"\n" not in raw
    d = json.loads(raw)
    assert from_json(d["comm"]) == ev.comm
    f = from_json(d["fields"])
    assert f["filename"] == ev.fields["filename"]
    assert json_bytes(d["fields"]["filename"]) == path
    assert f["argv"] == ev.fields["argv"]
    assert [json_bytes(a) for a in d["fields"]["argv"]] == argv
    assert f["dfd"] == -100 and f["buf"] == [0, 255] and f["ptr"] is None and f["tup"] == [1, 2]


def test_json_scheme_documented_form() -> None:
    """Valid strings stay strings; undecodable bytes make {"b64": ...}."""
    assert to_json("/etc/passwd") == "/etc/passwd"
    assert to_json("x\n\x1b") == "x\n\x1b"  # valid Unicode: JSON escapes it itself
    assert to_json(_from_bytes(b"/tmp/\xff")) == {"b64": "L3RtcC//"}
    ev = _ev(_from_bytes(b"ev\xff"), argv=["a", _from_bytes(b"\xfe")])
    d = json.loads(event_json(ev))
    assert d["comm"] == {"b64": "ZXb/"}
    assert d["fields"]["argv"] == ["a", {"b64": "/g=="}]
    # the common case is the fast hand-rolled encoder: same text as json.dumps
    plain = _ev("bash", filename="/bin/ls", n=3)
    assert json.loads(event_json(plain)) == {
        "ts": 1_000_000_000, "cpu": 0, "pid": 42, "tid": 42, "comm": "bash",
        "event": "sys:ev", "probe": "t:sys:ev", "fields": {"filename": "/bin/ls", "n": 3}}


def test_json_sink_batches_and_objects() -> None:
    buf = io.StringIO()
    sink = JsonLinesSink(buf)
    sink.write_many([_ev(_from_bytes(b"\xff")), _ev("ok")])
    sink.write_obj({"rows": [{"comm": _from_bytes(b"\xfe\n")}]})
    lines = buf.getvalue().encode("utf-8").splitlines()
    assert len(lines) == 3
    assert [json.loads(x).get("comm") for x in lines[:2]] == [{"b64": "/w=="}, "ok"]
    assert from_json(json.loads(lines[2])) == {"rows": [{"comm": _from_bytes(b"\xfe\n")}]}


# ------------------------------------------------------------------ text sink and strace lines


@settings(max_examples=200)
@given(st.binary(max_size=15), st.binary(max_size=100), st.lists(st.binary(max_size=20),
                                                                 max_size=4))
def test_text_sink_one_safe_line(comm: bytes, path: bytes, argv: list[bytes]) -> None:
    buf = io.StringIO()
    sink = TextSink(buf)
    sink.write(_ev(_from_bytes(comm), filename=_from_bytes(path),
                   argv=[_from_bytes(a) for a in argv], ptr=None))
    lines = buf.getvalue().split("\n")
    assert len(lines) == 3 and lines[2] == ""  # header, the event, nothing else
    _safe_line(lines[1])


@settings(max_examples=200)
@given(st.binary(max_size=60), st.lists(st.binary(max_size=20), max_size=5))
def test_format_call_never_raises(path: bytes, argv: list[bytes]) -> None:
    line = format_call(
        "execve",
        {"filename": _from_bytes(path), "argv": [_from_bytes(a) for a in argv], "envp": 0},
        [("const char *", "filename"), ("const char *const *", "argv"),
         ("const char *const *", "envp")], 0)
    _safe_line(line)
    assert line.startswith('execve("')


@settings(max_examples=200)
@given(st.binary(max_size=80), st.binary(max_size=40))
def test_format_call_socket_data_never_raises(buf: bytes, addr: bytes) -> None:
    for line in (
        format_call("write", {"fd": 3, "buf": buf, "count": len(buf)},
                    [("unsigned int", "fd"), ("const char *", "buf"), ("size_t", "count")],
                    len(buf), strmax=64),
        format_call("connect", {"fd": 3, "uservaddr": addr, "addrlen": len(addr)},
                    [("int", "fd"), ("struct sockaddr *", "uservaddr"), ("int", "addrlen")],
                    0),
    ):
        _safe_line(line)
        assert line.startswith(("write(3, ", "connect(3, ")), line
        assert line.endswith((f"= {len(buf)}", "= 0")), line


def test_format_call_null_path() -> None:
    line = format_call("openat", {"dfd": -100, "filename": None, "flags": 0, "mode": 0},
                       [("int", "dfd"), ("const char *", "filename"), ("int", "flags"),
                        ("umode_t", "mode")], -14)
    assert line == "openat(AT_FDCWD, NULL, O_RDONLY) = -1 EFAULT (Bad address)"


# ------------------------------------------------------------------ the stdout writer


def test_out_never_raises_on_encoding(tmp_path: object) -> None:
    r, w = os.pipe()
    with os.fdopen(w, "w", encoding="ascii") as fw:
        out = Out(fw)
        out.write("caf\u00e9 " + _from_bytes(b"\xff") + "\n")
        out.flush()
    with os.fdopen(r, "rb") as fr:
        assert fr.read() == b"caf\xc3\xa9 \\udcff\n"


def test_out_cutoff_with_a_reader_that_never_reads() -> None:
    r, w = os.pipe()
    try:
        with os.fdopen(os.dup(w), "w") as fw:
            out = Out(fw)
            out.set_cutoff(time.monotonic() + 0.3)
            t0 = time.monotonic()
            line = "x" * 99 + "\n"
            with pytest.raises(OutputCut) as ei:
                for _ in range(10_000):  # 1 MB: far more than a pipe holds
                    out.write(line)
                out.flush()
            took = time.monotonic() - t0
            assert 0.25 < took < 1.0
            assert ei.value.lines > 0
        os.close(w)
        with os.fdopen(r, "rb") as fr:
            data = fr.read()
        assert data and data.endswith(b"\n")  # whole lines only
        assert set(data.splitlines()) == {b"x" * 99}
    finally:
        for fd in (r, w):
            try:
                os.close(fd)
            except OSError:
                pass


def test_deadline_compares_event_stamps() -> None:
    d = Deadline(1.0, "mono")
    assert not d.late(10**18)  # not armed: nothing is late
    d.arm()
    now = time.monotonic_ns()
    evs = [_ev("a"), _ev("b"), _ev("c")]
    evs[0].ts, evs[1].ts, evs[2].ts = now, now + 900_000_000, now + 1_200_000_000
    assert d.on_time(evs) == 2
    assert d.on_time(evs[:2]) == 2
    assert Deadline(None).on_time(evs) == 3


# ------------------------------------------------------------------ BPF tool records


def _hdr(kind: int, comm: bytes) -> bytes:
    from probewatch.collect.bpf.loader import HDR

    return HDR.pack(kind, 0, 1, 5_000, 77, 77, 1, 0, 0, 0, 1, comm)


def _blob(ai: int, kind: int, flags: int, data: bytes, count: int = 0) -> bytes:
    from probewatch.collect.bpf.loader import BLOB

    return BLOB.pack(ai, kind, flags, count, len(data)) + data + bytes(-len(data) % 8)


def test_bpf_records_keep_bytes_and_c_values() -> None:
    """opensnoop/execsnoop/bashreadline records: comm, paths, lines keep their bytes;
    int arguments are C ints (dfd -100 however the register held it); NULL is None."""
    from probewatch.collect.bpf.loader import (
        BLOB_NULL,
        BLOB_TRUNC,
        EV_READLINE,
        EV_SYSCALL,
        READLINE,
        SYSCALL,
        RecordDecoder,
    )
    from probewatch.decode.syscalls import SyscallTable

    table = SyscallTable({257: "openat"}, {"openat": [
        ("int", "dfd"), ("const char *", "filename"), ("int", "flags"), ("umode_t", "mode")]})
    dec = RecordDecoder(table)
    comm = b"ev\xff\n\x1b[1m"
    for raw_dfd in (0xFFFFFF9C, 0xFFFFFFFFFFFFFF9C):  # zero- and sign-extended AT_FDCWD
        data = _blob(1, 1, 0, b"/tmp/\xff\n\0")
        rec = (_hdr(EV_SYSCALL, comm) + SYSCALL.pack(-2, 10, raw_dfd, 0x1000, 0, 0, 0, 0, 257,
                                                     len(data)) + data)
        ev = dec.decode(rec)
        assert ev is not None
        assert ev.fields["dfd"] == -100
        assert ev.fields["filename"] == _from_bytes(b"/tmp/\xff\n")
        assert ev.comm == _from_bytes(comm)
        d = json.loads(event_json(ev))
        assert json_bytes(d["comm"]) == comm and json_bytes(d["fields"]["filename"]) == (
            b"/tmp/\xff\n")
    data = _blob(1, 1, BLOB_NULL, b"")
    ev = dec.decode(_hdr(EV_SYSCALL, b"x") + SYSCALL.pack(-14, 1, 0xFFFFFF9C, 0, 0, 0, 0, 0,
                                                          257, len(data)) + data)
    assert ev is not None and ev.fields["filename"] is None
    assert json.loads(event_json(ev))["fields"]["filename"] is None
    line = b"ls \xff\n\x1b[2K"
    ev = dec.decode(_hdr(EV_READLINE, b"bash") + READLINE.pack(len(line), BLOB_TRUNC, line))
    assert ev is not None and ev.fields["line"] == _from_bytes(line)
    assert ev.fields["truncated"] == ["line"]
    assert json_bytes(json.loads(event_json(ev))["fields"]["line"]) == line
    assert escape_text(ev.fields["line"]) == "ls \\xff\\n\\x1b[2K"
