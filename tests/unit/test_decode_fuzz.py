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
    deadline=400,
    suppress_health_check=[HealthCheck.too_slow],
)
FORMATS = fx.load_formats()
FORMAT_LIST = sorted(FORMATS.values(), key=lambda f: f.id)
FORMAT_TEXTS = [fx.format_text(s, n) for s, n in fx.all_format_paths()]
CAPTURES = [fx.load_capture(n) for n in ("basic", "overrun_stored", "getppid")]
REAL_PAGES = [p for c in CAPTURES for _, p in c.pages[:3]]
DECODER = PageDecoder(DEFAULT_LAYOUT, FORMATS)


def all_page_paths(page: Any) -> None:
    """Run every page reader over ``page``; only DecodeError may escape."""
    for fn in (
        lambda: DECODER.decode_page(page, 0, []),
        lambda: DECODER.count_page(page),
        lambda: list(iter_records(page)),
        lambda: page_header(page),
    ):
        try:
            fn()
        except DecodeError:
            pass


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
    all_page_paths(page)


@FAST
@given(st.binary(max_size=512).map(
    lambda b: struct.pack("<QQ", 1, len(b)) + b))  # a sane header over random events
def test_random_events_behind_a_valid_header(page: bytes) -> None:
    all_page_paths(page)


@FAST
@given(real_page().flatmap(lambda p: st.tuples(st.just(p), st.integers(0, len(p)))))
def test_truncated_real_pages(args: tuple[bytes, int]) -> None:
    page, cut = args
    all_page_paths(page[:cut])


@FAST
@given(real_page().flatmap(lambda p: mutated(p)))
def test_mutated_real_pages(page: bytes) -> None:
    all_page_paths(page)


@FAST
@given(real_page().flatmap(lambda p: mutated(p[:16] + p[16:]) if p else st.just(p)),
       st.integers(0, 0xFFFFFFFF))
def test_mutated_pages_with_random_commit(page: bytes, commit: int) -> None:
    if len(page) >= 16:
        page = page[:8] + struct.pack("<Q", commit) + page[16:]
    all_page_paths(page)


# -- format files ---------------------------------------------------------------------


def parse_or_decode_error(text: str) -> Any:
    try:
        return parse_format(text, "fuzz")
    except DecodeError:
        return None


@FAST
@given(st.text(max_size=400))
def test_random_text_as_format(text: str) -> None:
    parse_or_decode_error(text)


@FAST
@given(st.sampled_from(FORMAT_TEXTS).flatmap(
    lambda t: mutated(t.encode(), max_edits=6).map(lambda b: b.decode("utf-8", "replace"))))
def test_mutated_format_text(text: str) -> None:
    fmt = parse_or_decode_error(text)
    if fmt is not None:
        # whatever parsed must also decode any record without crashing
        for rec in (bytes(fmt.min_size), b"\xff" * (fmt.min_size + 64), b""):
            try:
                fmt.decode(rec, 0, len(rec))
            except DecodeError:
                pass


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
        try:
            fmt.decode(rec, a, b)
        except DecodeError:
            pass
        try:
            fmt.make_event(rec, a, b, 0, 0)
        except DecodeError:
            pass


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
        try:
            dec.decode_page(REAL_PAGES[0], 0, [])
        except DecodeError:
            pass


@FAST
@given(st.text(max_size=200), st.text(max_size=200))
def test_random_page_layout_text(hp: str, he: str) -> None:
    try:
        parse_page_layout(hp, he)
    except DecodeError:
        pass
