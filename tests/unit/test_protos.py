"""Prototype rendering as ltrace prints it (values checked against ltrace's own output)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probewatch.cli.ltrace import select
from probewatch.decode.protos import (
    format_conversions,
    known_functions,
    prototype,
    render_call,
    render_string,
    render_value,
)
from probewatch.errors import ProbewatchError


def test_table_parses_and_knows_common_calls() -> None:
    names = known_functions()
    assert len(names) > 150
    assert prototype("malloc").args == ("ulong",) and prototype("malloc").ret == "addr"
    assert prototype("free@GLIBC_2.2.5").ret == "void"
    assert prototype("__printf_chk").args == ("int", "format")
    assert prototype("__isoc99_sscanf").variadic and prototype("open64").args[0] == "string"
    p = prototype("no_such_fn")
    assert not p.known and p.args == ("default",) * 4 and p.ret == "default"


@pytest.mark.parametrize("typ,value,text,want", [
    ("int", 0xFFFFFFFD, None, "-3"),
    ("int", (1 << 64) - 1, None, "-1"),
    ("uint", 0xFFFFFFFF, None, "4294967295"),
    ("long", 10001, None, "10001"),
    ("long", (1 << 64) - 70000, None, "-70000"),
    # no prototype: ltrace's values for zzfun(1023, 65535, -4096, -65535, 1000000)
    ("default", 1023, None, "1023"),
    ("default", 10000, None, "10000"),
    ("default", 10001, None, "0x2711"),
    ("default", 65535, None, "0xffff"),
    ("default", (1 << 64) - 4096, None, "-4096"),
    ("default", (1 << 64) - 65535, None, "0xffffffffffff0001"),
    ("default", 1000000, None, "0xf4240"),
    ("ulong", 16, None, "16"),
    ("hex", 255, None, "0xff"),
    ("octal", 1, None, "01"),
    ("octal", 0, None, "0"),
    ("char", 0, None, "'\\0'"),
    ("char", ord("z"), None, "'z'"),
    ("char", 10, None, "'\\n'"),
    ("addr", 0, None, "0"),
    ("addr", 0x55D0C2A6B2A0, None, "0x55d0c2a6b2a0"),
    ("string", 0, None, "nil"),
    ("string", 0x1000, b"a\tb", '"a\\tb"'),
    ("string", 0x1000, None, "0x1000"),
    ("void", 123, None, "<void>"),
])
def test_render_value(typ: str, value: int, text: bytes | None, want: str) -> None:
    assert render_value(typ, value, text, 32) == want


def test_strings_cut_like_ltrace() -> None:
    s = b"0123456789012345678901234567890123456789xyz"
    assert render_string(s, 32) == '"01234567890123456789012345678901"...'
    assert render_string(b'say "hi"\\', 32) == '"say "hi"\\\\"'
    assert render_string(b"\x1b[0m\xff", 32) == '"\\033[0m\\377"'


def test_printf_varargs() -> None:
    assert format_conversions(b"%d %s %c %x %p %ld %%") == [
        "int", "string", "char", "hex", "addr", "slong"]
    assert format_conversions(b"%*.*s %5.2f %zu %llx") == [
        "int", "int", "string", "double", "ulong", "hex64"]
    fmt = b"%d %s %c %x %p %ld\n"
    values = [0x1000, (1 << 32) - 3, 0x2000, ord("z"), 255, 16, 123456789012]
    texts = {0: fmt, 2: b"a\tb"}
    got = render_call(prototype("printf"), values, texts, 32)
    assert got == 'printf("%d %s %c %x %p %ld\\n", -3, "a\\tb", \'z\', 0xff, 0x10, 123456789012'
    # fewer values than conversions: the rest is "..."
    assert render_call(prototype("printf"), values[:3], texts, 32).endswith('"a\\tb", ...')


def test_select_like_ltrace_e() -> None:
    names = ["malloc", "calloc", "free", "strlen", "strcmp"]
    assert select(names, None) == sorted(names)
    assert select(names, "malloc+free") == ["free", "malloc"]
    assert select(names, "*alloc-calloc") == ["malloc"]
    assert select(names, "-str*") == ["calloc", "free", "malloc"]
    assert select(names, "!free") == ["calloc", "malloc", "strcmp", "strlen"]
    assert select(names, "malloc@libc.so*") == ["malloc"]
    with pytest.raises(ProbewatchError):
        select(names, "+")


@given(st.sampled_from(sorted({"int", "uint", "long", "ulong", "hex", "octal", "char",
                                "addr", "string", "void", "default"})),
       st.integers(0, (1 << 64) - 1), st.one_of(st.none(), st.binary(max_size=80)),
       st.integers(1, 64))
def test_render_never_fails(typ: str, value: int, text: bytes | None, limit: int) -> None:
    out = render_value(typ, value, text, limit)
    assert out and "\n" not in out
    assert out.isascii()


@given(st.binary(max_size=60), st.lists(st.integers(0, (1 << 64) - 1), max_size=10))
def test_any_format_renders(fmt: bytes, values: list[int]) -> None:
    out = render_call(prototype("printf"), [1, *values], {0: fmt}, 32)
    assert out.startswith("printf(")
    assert len(out.split(", ")) <= 2 + len(values) + fmt.count(b"%")


def test_no_uretprobe_where_it_would_crash() -> None:
    """A uretprobe on a function that returns twice kills whoever longjmps back."""
    from probewatch.cli.ltrace import plan

    sites = {s.proto.name: s for s in plan("/usr/bin/bash", ["__sigsetjmp", "exit",
                                                             "malloc", "fork"], "bash")}
    assert sites["__sigsetjmp"].return_spec == "" and sites["exit"].return_spec == ""
    assert sites["malloc"].return_spec.startswith("ur:/usr/bin/bash:0x")
    assert sites["fork"].return_spec.startswith("ur:")  # returns once in each process
    assert sites["__sigsetjmp"].entry_spec.startswith("u:/usr/bin/bash:0x")


def test_uretprobe_on_setjmp_refused() -> None:
    from probewatch.errors import SpecError
    from probewatch.sources.spec import parse_spec
    from probewatch.sources.uprobe import resolve_uprobe

    for sym in ("_setjmp", "__sigsetjmp", "vfork"):
        with pytest.raises(SpecError, match="returns twice"):
            resolve_uprobe(parse_spec(f"ur:libc:{sym}"))
        [p] = resolve_uprobe(parse_spec(f"u:libc:{sym}"))  # the entry is harmless
        assert p.definition.startswith("p:")
