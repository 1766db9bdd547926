"""Property tests: whatever bytes or text come in, only DecodeError comes out.

Random and mutated pages, format files, header files and records are fed to the
decoders; each example must finish quickly (the deadline catches hangs) and either
succeed or raise DecodeError: never IndexError, struct.error, ValueError, ...
"""

from __future__ import annotations

import os
import struct
import sys
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures"))

import fixturelib as fx  # noqa: E402

from probewatch.decode.format import (  # noqa: E402
    DEFAULT_LAYOUT,
    parse_format,
    parse_page_layout,
)
from probewatch.decode.ringbuf import PageDecoder, iter_records, page_header  # noqa: E402
from probewatch.errors import DecodeError  # noqa: E402

# PROBEWATCH_FUZZ_EXAMPLES=20000 for a deeper run; the default keeps the suite fast
FAST = settings(
    max_examples=int(os.environ.get("PROBEWATCH_FUZZ_EXAMPLES", "150")),
    suppress_health_check=[HealthCheck.too_slow],
)  # no deadline: tests/conftest.py's profile (derandomized on CI)
FORMATS = fx.load_formats()
FORMAT_LIST = sorted(FORMATS.values(), key=lambda f: f.id)
FORMAT_TEXTS = [fx.format_text(s, n) for s, n in fx.all_format_paths()]
CAPTURES = [fx.load_capture(n) for n in ("basic", "overrun_stored", "getppid")]
REAL_PAGES = [p for c in CAPTURES for _, p in c.pages[:3]]
DECODER = PageDecoder(DEFAULT_LAYOUT, FORMATS)


def _attempt(fn: Any) -> Any:
    """fn()'s result, or the DecodeError it raised (any other exception escapes)."""
    try:
        return fn()
    except DecodeError as e:
        assert str(e), "a DecodeError must say what is wrong"
        return e


def all_page_paths(page: Any) -> dict[str, Any]:
    """Run every page reader over ``page`` (only DecodeError may escape) and check that
    the readers that succeed agree with each other; -> each reader's result or error."""
    events: list[Any] = []
    r = {
        "decode": _attempt(lambda: DECODER.decode_page(page, 0, events)),
        "count": _attempt(lambda: DECODER.count_page(page)),
        "records": _attempt(lambda: list(iter_records(page))),
        "header": _attempt(lambda: page_header(page)),
    }
    r["events"] = events
    recs, counts = r["records"], r["count"]
    if isinstance(recs, list):
        # the reference walker: every record inside the page, in order
        for _ts, _tid, start, end in recs:
            assert 0 <= start < end, (start, end)
        assert [x[2] for x in recs] == sorted(x[2] for x in recs)
        if isinstance(counts, dict):
            # the fast counter sees exactly the records the reference walker sees
            assert sum(counts.values()) == len(recs), (counts, len(recs))
        if not isinstance(r["decode"], DecodeError):
            # one Event per record of a known format, none made up
            assert len(events) <= len(recs)
    for ev in events:
        assert ev.cpu == 0 and isinstance(ev.ts, int) and isinstance(ev.fields, dict)
    if isinstance(r["header"], DecodeError):
        # no page header: no reader may make anything of the page
        assert all(isinstance(r[k], DecodeError) for k in ("decode", "count", "records"))
    return r


def _full_page_ok(page: bytes) -> None:
    """A whole real page decodes, every record to an Event, as the fixture recorded."""
    r = all_page_paths(page)
    assert not any(isinstance(v, DecodeError) for v in r.values()), r
    assert len(r["records"]) == len(r["events"]) > 0


@st.composite
def mutated(draw: st.DrawFn, base: bytes, max_edits: int = 8) -> bytes:
    b = bytearray(base)
    for _ in range(draw(st.integers(1, max_edits))):
        op = draw(st.sampled_from(["flip", "u32", "cut", "insert", "delete"]))
        if not b:
            break
        i = draw(st.integers(0, len(b) - 1))
        if op == "flip":
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "u32" and i + 4 <= len(b):
            b[i: i + 4] = struct.pack("<I", draw(st.integers(0, 0xFFFFFFFF)))
        elif op == "cut":
            del b[i:]
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del b[i: i + draw(st.integers(1, 16))]
    return bytes(b)


def real_page() -> st.SearchStrategy[bytes]:
    return st.sampled_from(REAL_PAGES)


# -- ring-buffer pages ---------------------------------------------------------------


@FAST
@given(st.binary(max_size=4200))
def test_random_bytes_as_pages(page: bytes) -> None:
    r = all_page_paths(page)
    if len(page) < 16:  # shorter than a page header: nothing can be read
        assert isinstance(r["header"], DecodeError), r


@FAST
@given(st.binary(max_size=512).map(
    lambda b: struct.pack("<QQ", 1, len(b)) + b))  # a sane header over random events
def test_random_events_behind_a_valid_header(page: bytes) -> None:
    r = all_page_paths(page)
    hdr = r["header"]  # the sane header always reads back as written
    assert not isinstance(hdr, DecodeError) and hdr.ts == 1, hdr


@FAST
@given(real_page().flatmap(lambda p: st.tuples(st.just(p), st.integers(0, len(p)))))
def test_truncated_real_pages(args: tuple[bytes, int]) -> None:
    page, cut = args
    if cut == len(page):
        _full_page_ok(page)
        return
    r = all_page_paths(page[:cut])
    whole = all_page_paths(page)
    if isinstance(r["records"], list):  # what a cut page still yields is a prefix
        assert r["records"] == whole["records"][: len(r["records"])]


@FAST
@given(real_page().flatmap(lambda p: mutated(p)))
def test_mutated_real_pages(page: bytes) -> None:
    r = all_page_paths(page)
    assert set(r) == {"decode", "count", "records", "header", "events"}


@FAST
@given(real_page().flatmap(lambda p: mutated(p[:16] + p[16:]) if p else st.just(p)),
       st.integers(0, 0xFFFFFFFF))
def test_mutated_pages_with_random_commit(page: bytes, commit: int) -> None:
    if len(page) >= 16:
        page = page[:8] + struct.pack("<Q", commit) + page[16:]
    r = all_page_paths(page)
    recs = r["records"]
    if isinstance(recs, list) and len(page) >= 16:
        # nothing is read past the committed length the header gives
        assert all(end <= 16 + (commit & 0xFFFFF) + 8 for *_, end in recs), (commit, recs)


# -- format files ---------------------------------------------------------------------


def parse_or_decode_error(text: str) -> Any:
    try:
        return parse_format(text, "fuzz")
    except DecodeError:
        return None


@FAST
@given(st.text(max_size=400))
def test_random_text_as_format(text: str) -> None:
    fmt = parse_or_decode_error(text)
    if fmt is not None:  # what parses is a usable format: fields laid out in the record
        assert all(f.offset >= 0 and f.size >= 0 for f in fmt.fields)
        assert fmt.min_size >= 0


@FAST
@given(st.sampled_from(FORMAT_TEXTS).flatmap(
    lambda t: mutated(t.encode(), max_edits=6).map(lambda b: b.decode("utf-8", "replace"))))
def test_mutated_format_text(text: str) -> None:
    fmt = parse_or_decode_error(text)
    if fmt is not None:
        # whatever parsed must also decode any record without crashing
        for rec in (bytes(fmt.min_size), b"\xff" * (fmt.min_size + 64), b""):
            out = _attempt(lambda rec=rec: fmt.decode(rec, 0, len(rec)))
            if not isinstance(out, DecodeError):
                assert list(out) == [f.name for f in fmt.fields]


_FIELD = st.builds(
    lambda t, n, dims, off, size, sg: f"\tfield:{t} {n}{dims};\toffset:{off};\tsize:{size};"
    f"\tsigned:{sg};\n",
    st.sampled_from(["int", "unsigned long", "char", "u8", "__data_loc char[]", "__rel_loc u64[]",
                     "__data_loc cpumask_t", "struct x", "void *", "pid_t", "bool", "long long",
                     "enum e", "weird_t", "const char *const", "s16"]),
    st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True),
    st.sampled_from(["", "[]", "[4]", "[16]", "[N]", "[0]", "[2][3]", "[99999999]"]),
    st.integers(0, 80), st.integers(0, 40), st.integers(0, 1),
)


@FAST
@given(st.lists(_FIELD, max_size=8), st.binary(max_size=160), st.integers(-4, 200),
       st.integers(-4, 200))
def test_random_fields_and_records(fields: list[str], rec: bytes, start: int, end: int
                                   ) -> None:
    text = ("name: fz\nID: 42\nformat:\n"
            "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
            "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n" + "".join(fields))
    fmt = parse_or_decode_error(text)
    if fmt is None:
        return
    for a, b in ((0, len(rec)), (start, end)):
        out = _attempt(lambda a=a, b=b: fmt.decode(rec, a, b))
        if not isinstance(out, DecodeError):
            assert list(out) == [f.name for f in fmt.fields]
        ev = _attempt(lambda a=a, b=b: fmt.make_event(rec, a, b, 0, 0))
        if not isinstance(ev, DecodeError):
            assert ev.event.endswith("fz") and set(ev.fields) <= {f.name for f in fmt.fields}


@FAST
@given(st.sampled_from(FORMAT_LIST), st.binary(max_size=300), st.integers(0, 64),
       st.integers(0, 400))
def test_random_records_into_real_formats(fmt: Any, rec: bytes, start: int, end: int) -> None:
    for a, b in ((0, len(rec)), (start, end), (start, len(rec))):
        try:
            out = fmt.decode(rec, a, b)
        except DecodeError:
            continue
        assert list(out) == [f.name for f in fmt.fields]


# -- header_page / header_event -----------------------------------------------------------

HP = fx.read("header_page")
HE = fx.read("header_event")


@FAST
@given(mutated(HP.encode(), 6).map(lambda b: b.decode("utf-8", "replace")),
       mutated(HE.encode(), 6).map(lambda b: b.decode("utf-8", "replace")))
def test_mutated_page_layout(hp: str, he: str) -> None:
    for a, b in ((hp, HE), (HP, he), (hp, he)):
        try:
            lay = parse_page_layout(a, b)
        except DecodeError:
            continue
        # a layout that parses must give a decoder that survives a real page
        dec = PageDecoder(lay, FORMATS)
        events: list[Any] = []
        out = _attempt(lambda d=dec, e=events: d.decode_page(REAL_PAGES[0], 0, e))
        if not isinstance(out, DecodeError):
            assert all(ev.cpu == 0 for ev in events)
    # the real header files always parse, to the default layout
    assert parse_page_layout(HP, HE) == DEFAULT_LAYOUT


@FAST
@given(st.text(max_size=200), st.text(max_size=200))
def test_random_page_layout_text(hp: str, he: str) -> None:
    lay = _attempt(lambda: parse_page_layout(hp, he))
    if not isinstance(lay, DecodeError):  # text without the real fields gives no layout
        assert "commit" in hp and "timestamp" in hp, (hp, lay)


def test_zero_record_of_every_real_format_decodes_to_zeros() -> None:
    """The counterpart of the fuzz tests above (where a DecodeError is allowed): a
    well-formed record always decodes. An all-zero record of a format's fixed size has
    every number 0 and every __data_loc empty, so every field decodes to a zero value."""
    n = 0
    for fmt in FORMAT_LIST:
        rec = bytes(fmt.min_size)
        out = fmt.decode(rec, 0, len(rec))
        assert list(out) == [f.name for f in fmt.fields], fmt.name
        for name, v in out.items():
            if isinstance(v, tuple):  # a fixed array: all elements 0
                assert all(x == 0 for x in v), (fmt.name, name, v)
            else:  # 0, "" or b""
                assert not v, (fmt.name, name, v)
        n += 1
    assert n == len(FORMAT_LIST) >= 10
