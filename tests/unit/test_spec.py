"""The probe-spec grammar: what parses, what it means, and every error with its caret."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probewatch.errors import SpecError
from probewatch.sources.spec import (
    KINDS,
    ArgRef,
    ArgSpec,
    ArgType,
    Deref,
    ProbeSpec,
    Register,
    Retval,
    has_glob,
    parse_spec,
    parse_spec_words,
    parse_type,
)

# ------------------------------------------------------------------- valid specs


def test_brief_examples() -> None:
    s = parse_spec("u:libc:malloc size=arg0:u64")
    assert (s.kind, s.target, s.symbol) == ("uprobe", "libc", "malloc")
    assert (s.offset, s.address) == (0, None)
    assert s.args == [ArgSpec("size", ArgRef(0), "u64")]
    assert s.text == "u:libc:malloc size=arg0:u64"

    s = parse_spec("ur:/bin/bash:readline line=+0(retval):string")
    assert (s.kind, s.target, s.symbol) == ("uretprobe", "/bin/bash", "readline")
    assert s.args == [ArgSpec("line", Deref(0, Retval()), "string")]
    assert s.is_return

    s = parse_spec("k:do_sys_openat2 dfd=arg0:s32 name=+0(arg1):ustring")
    assert (s.kind, s.symbol, s.target) == ("kprobe", "do_sys_openat2", None)
    assert s.args == [
        ArgSpec("dfd", ArgRef(0), "s32"),
        ArgSpec("name", Deref(0, ArgRef(1)), "ustring"),
    ]

    s = parse_spec("kr:do_sys_openat2 ret=retval:s64")
    assert s.kind == "kretprobe"
    assert s.args == [ArgSpec("ret", Retval(), "s64")]


def test_tracepoint_with_globs() -> None:
    s = parse_spec("t:syscalls:sys_enter_open*")
    assert (s.kind, s.system, s.name) == ("tracepoint", "syscalls", "sys_enter_open*")
    assert s.is_glob
    s = parse_spec("tracepoint:sched*:sched_[!w]ake?")
    assert (s.system, s.name) == ("sched*", "sched_[!w]ake?")
    assert not parse_spec("t:sched:sched_switch").is_glob


@pytest.mark.parametrize(
    "short,long",
    [("t", "tracepoint"), ("u", "uprobe"), ("ur", "uretprobe"), ("k", "kprobe"),
     ("kr", "kretprobe"), ("U", "usdt")],
)
def test_short_and_long_kinds(short: str, long: str) -> None:
    assert KINDS[short] == KINDS[long] == long
    body = {"t": "a:b", "u": "/x:f", "ur": "/x:f", "k": "f", "kr": "f", "U": "/x:p:n"}[short]
    assert parse_spec(f"{short}:{body}") == parse_spec(f"{long}:{body}")
    assert parse_spec(f"{short}:{body}").kind == long


def test_uprobe_forms() -> None:
    s = parse_spec("u:/usr/lib/libfoo.so.1:foo_bar+0x1c")
    assert (s.target, s.symbol, s.offset) == ("/usr/lib/libfoo.so.1", "foo_bar", 0x1C)
    assert parse_spec("u:/x:foo+28").offset == 28
    s = parse_spec("u:/x:0x4245C0")
    assert (s.address, s.symbol) == (0x4245C0, None)
    s = parse_spec("u:libc:malloc@@GLIBC_2.2.5")
    assert s.symbol == "malloc@@GLIBC_2.2.5"
    s = parse_spec("uprobe:libssl:SSL_*")
    assert s.is_glob and s.symbol == "SSL_*"
    s = parse_spec("u:/a:b:c:func")  # the target may contain ':' (the last one splits)
    assert (s.target, s.symbol) == ("/a:b:c", "func")
    s = parse_spec("u:_ZN3foo3barEv.cold:x")
    assert s.target == "_ZN3foo3barEv.cold"


def test_kprobe_forms() -> None:
    s = parse_spec("k:ext4:ext4_file_open+16")
    assert (s.target, s.symbol, s.offset) == ("ext4", "ext4_file_open", 16)
    s = parse_spec("k:foo.isra.0")
    assert s.symbol == "foo.isra.0"
    assert parse_spec("k:vfs_*").is_glob


def test_usdt_forms() -> None:
    s = parse_spec("usdt:/usr/bin/python3:python:function__entry")
    assert (s.target, s.provider, s.name) == ("/usr/bin/python3", "python", "function__entry")
    s = parse_spec("U:/usr/bin/python3:function__entry")
    assert (s.target, s.provider, s.name) == ("/usr/bin/python3", None, "function__entry")
    s = parse_spec("usdt:libc:libc:setjmp a=arg0 b=+8(arg1):u8[16]")
    assert s.args[1] == ArgSpec("b", Deref(8, ArgRef(1)), "u8[16]")


def test_expressions() -> None:
    s = parse_spec("u:/x:f a=%rdi b=%X0 c=-16(+8(%sp)):x32 d=+0x10(arg7):s16 e=arg12")
    assert [a.expr for a in s.args] == [
        Register("rdi"),
        Register("x0"),
        Deref(-16, Deref(8, Register("sp"))),
        Deref(16, ArgRef(7)),
        ArgRef(12),
    ]
    assert [a.type for a in s.args] == [None, None, "x32", "s16", None]


@pytest.mark.parametrize(
    "t", ["u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "x8", "x16", "x32", "x64",
          "string", "ustring", "u8[1]", "x64[64]", "s16[3]"],
)
def test_every_type(t: str) -> None:
    assert parse_spec(f"u:/x:f v=arg0:{t}").args[0].type == t
    assert str(parse_type(t)) == t


def test_arg_type_properties() -> None:
    assert parse_type("u8[16]") == ArgType("u8", 16)
    assert parse_type("u8[16]").needs_memory and not parse_type("u8[16]").is_string
    assert parse_type("ustring").is_string and parse_type("string").needs_memory
    assert parse_type("s32").signed and parse_type("s32").bits == 32
    assert not parse_type("x64").signed and not parse_type("u64").needs_memory
    assert ArgSpec("a", ArgRef(0), "u8[2]").arg_type == ArgType("u8", 2)


def test_whitespace_and_words() -> None:
    s = parse_spec("  u:libc:malloc\tsize=arg0:u64 \n ptr=arg1 ")
    assert [a.name for a in s.args] == ["size", "ptr"]
    w = parse_spec_words(["u:libc:malloc", "size=arg0:u64", "ptr=arg1"])
    assert w == s


def test_positions_recorded() -> None:
    s = parse_spec("u:/bin/bash:readline+4 x=arg0")
    assert s.pos("target") == 2
    assert s.pos("symbol") == 12
    assert s.pos("offset") == 21
    assert s.args[0].pos == 23
    assert s.args[0].expr.pos == 25
    err = s.error("boom", part="symbol")
    assert err.pos == 12 and err.spec == s.text


@pytest.mark.parametrize(
    "text,canon",
    [
        ("t:sched:sched_switch", "tracepoint:sched:sched_switch"),
        ("u:libc:malloc size=arg0:u64", "uprobe:libc:malloc size=arg0:u64"),
        ("u:/x:f+16", "uprobe:/x:f+0x10"),
        ("u:/x:0X1F", "uprobe:/x:0x1f"),
        ("ur:/bin/bash:readline line=+0(retval):string",
         "uretprobe:/bin/bash:readline line=+0(retval):string"),
        ("k:ext4:f+0x0", "kprobe:ext4:f"),
        ("kr:f r=retval:s64", "kretprobe:f r=retval:s64"),
        ("U:/x:n", "usdt:/x:n"),
        ("U:/x:p:n a=-0x10(%RDI)", "usdt:/x:p:n a=-16(%rdi)"),
    ],
)
def test_canonical(text: str, canon: str) -> None:
    s = parse_spec(text)
    assert s.canonical() == canon
    assert str(s) == canon
    assert parse_spec(canon) == s


def test_has_glob() -> None:
    assert has_glob("a*") and has_glob("a?") and has_glob("a[bc]")
    assert not has_glob("abc") and not has_glob(None) and not has_glob("")


# ------------------------------------------------------------------------ errors

# (text, expected message fragment, caret position)
ERRORS: list[tuple[str, str, int]] = [
    ("   ", "empty probe spec: expected probe kind (tracepoint/t, uprobe/u,", 3),
    ("x:foo", "expected probe kind (tracepoint/t, uprobe/u, uretprobe/ur, kprobe/k,"
     " kretprobe/kr, usdt/U), got 'x'", 0),
    ("  kprobex:foo", "expected probe kind (tracepoint/t, uprobe/u", 2),
    (":foo", "expected probe kind (tracepoint/t", 0),
    ("u", "expected ':' after probe kind 'u'", 1),
    ("kretprobe", "expected ':' after probe kind 'kretprobe'", 9),
    # tracepoints
    ("t:a", "expected ':' between tracepoint system and name (t:SYSTEM:NAME)", 3),
    ("t:a:b:c", "unexpected ':' in tracepoint name", 5),
    ("t::b", "expected a tracepoint system", 2),
    ("t:a:", "expected a tracepoint name after 'SYSTEM:'", 4),
    ("t:sys/x:b", "unexpected character '/' in tracepoint system", 5),
    ("t:a:b[c", "unclosed '[' in tracepoint name glob", 5),
    ("t:a:b[]", "empty '[]' in tracepoint name glob", 5),
    ("t:a:b[c+]", "unexpected '+' in tracepoint name glob", 7),
    ("t:a:b x=arg0", "tracepoints take no NAME=EXPR arguments", 6),
    # uprobes
    ("u:", "expected a target (path or library name) after 'u:'", 2),
    ("ur:", "expected a target (path or library name) after 'ur:'", 3),
    ("u:libc", "expected ':' after the target (u:TARGET:SYMBOL)", 6),
    ("u::malloc", "expected a target (path or library name) after 'u:'", 2),
    ("u:libc:", "expected a symbol or 0xADDRESS after the target", 7),
    ("u:libc:0x12+4", "an address takes no +OFFSET", 11),
    ("u:libc:0x12g", "expected a decimal or 0x-hex address", 11),
    ("u:libc:0x", "expected a decimal or 0x-hex address", 9),
    ("u:libc:1abc", "a symbol cannot start with a digit (write an address as 0xADDRESS)", 7),
    ("u:libc:+4", "expected a symbol before '+'", 7),
    ("u:libc:mal-loc", "unexpected character '-' in symbol", 10),
    ("u:libc:mal\u00e9", "unexpected character '\u00e9' in symbol", 10),
    ("ur:libc:malloc+4", "uretprobe takes no +OFFSET (it fires when the function returns)", 14),
    ("u:libc:mal*+4", "an offset needs one symbol, not a glob", 11),
    ("u:libc:malloc+", "expected an offset after '+'", 14),
    ("u:libc:malloc+4x", "expected a decimal or 0x-hex offset", 15),
    ("u:libc:malloc+0xq", "expected a decimal or 0x-hex offset", 16),
    # kprobes
    ("k:", "expected a kernel function name after 'k:'", 2),
    ("k:a:b:c", "unexpected ':' (k:FUNC or k:MODULE:FUNC)", 5),
    ("k::f", "expected a module name before ':' (k:MODULE:FUNC)", 2),
    ("k:mod:", "expected a kernel function name after 'mod:'", 6),
    ("k:mo/d:f", "unexpected character '/' in module name", 4),
    ("k:mo*:f", "unexpected character '*' in module name", 4),
    ("kr:vfs_read+8", "kretprobe takes no +OFFSET", 11),
    ("k:vfs@read", "unexpected character '@' in kernel function name", 5),
    ("k:0xffffffff81000000", "a kernel function name cannot start with a digit", 2),
    # usdt
    ("usdt:", "expected a target (path or library name) after 'usdt:'", 5),
    ("usdt:/bin/x", "expected ':' after the target (usdt:TARGET:[PROVIDER:]NAME)", 11),
    ("usdt::n", "expected a target (path or library name) after 'usdt:'", 5),
    ("usdt:/x::n", "expected a USDT provider before ':' (usdt:TARGET:PROVIDER:NAME)", 8),
    ("usdt:/x:p:", "expected a USDT probe name", 10),
    ("usdt:/x:", "expected a USDT probe name", 8),
    ("usdt:/x:p-q:n", "unexpected character '-' in USDT provider", 9),
    ("usdt:/x:p:n!", "unexpected character '!' in USDT probe name", 11),
    # argument names
    ("u:a:b x", "expected NAME=EXPR[:TYPE] (e.g. size=arg0:u64)", 6),
    ("u:a:b =arg0", "expected an argument name before '='", 6),
    ("u:a:b 1x=arg0", "an argument name must be a C identifier", 6),
    ("u:a:b x-y=arg0", "an argument name must be a C identifier", 7),
    ("u:a:b " + "n" * 33 + "=arg0", "is too long (at most 32 characters)", 6),
    ("u:a:b common_pid=arg0", "argument name 'common_pid' is reserved by the kernel", 6),
    ("u:a:b __probe_ip=arg0", "argument name '__probe_ip' is reserved by the kernel", 6),
    ("u:a:b x=arg0 x=arg1", "duplicate argument name 'x'", 13),
    # expressions
    ("u:a:b x=", "expected an expression after '=' (argN, retval, %REG, +OFF(EXPR))", 8),
    ("u:a:b x=foo", "expected argN, retval, %REG, +OFF(EXPR) or -OFF(EXPR)", 8),
    ("u:a:b x=arg0x", "expected argN, retval, %REG, +OFF(EXPR) or -OFF(EXPR)", 8),
    ("u:a:b x=arg", "expected argN, retval, %REG, +OFF(EXPR) or -OFF(EXPR)", 8),
    ("u:a:b x=retvalue", "expected argN, retval, %REG, +OFF(EXPR) or -OFF(EXPR)", 8),
    ("u:a:b x=arg0)", "unexpected ')' after the expression (expected ':TYPE'", 12),
    ("u:a:b x=arg200", "argument index too large (at most arg127)", 8),
    ("ur:a:b x=arg0", "arg0 is not available in uretprobe/kretprobe", 9),
    ("kr:f x=+8(arg2)", "arg2 is not available in uretprobe/kretprobe", 10),
    ("u:a:b x=retval", "retval is only available in uretprobe/kretprobe", 8),
    ("k:f x=+0(retval):string", "retval is only available in uretprobe/kretprobe", 9),
    ("usdt:/x:p:n x=retval", "retval is only available in uretprobe/kretprobe", 14),
    ("u:a:b x=%", "expected a register name after '%' (e.g. %di, %x0)", 9),
    ("u:a:b x=+(arg0)", "expected an offset after '+' (e.g. +8(arg0))", 9),
    ("u:a:b x=-x(arg0)", "expected an offset after '-' (e.g. +8(arg0))", 9),
    ("u:a:b x=+8arg0", "expected a decimal or 0x-hex offset", 10),
    ("u:a:b x=+8[arg0]", "expected '(' after the dereference offset", 10),
    ("u:a:b x=+8", "expected '(' after the dereference offset", 10),
    ("u:a:b x=+8(arg0", "expected ')' to close the dereference", 15),
    ("u:a:b x=+8(arg0]", "expected ')' to close the dereference", 15),
    ("u:a:b x=" + "+0(" * 9 + "arg0" + ")" * 9, "dereferences nested too deeply (at most 8)", 32),
    ("u:a:b x=+99999999999(arg0)", "dereference offset too large", 9),
    # types
    ("u:a:b x=arg0:u7", "unknown type 'u7' (expected u8..u64, s8..s64, x8..x64, string,"
     " ustring or an array like u8[16])", 13),
    ("u:a:b x=arg0:char", "unknown type 'char'", 13),
    ("u:a:b x=arg0:", "expected a type after ':' (expected u8..u64", 13),
    ("u:a:b x=arg0:[4]", "expected a type after ':'", 13),
    ("u:a:b x=arg0:u8[", "expected an array size (1..64) after '['", 16),
    ("u:a:b x=arg0:u8[0]", "array size must be 1..64, not 0", 16),
    ("u:a:b x=arg0:u8[65]", "array size must be 1..64, not 65", 16),
    ("u:a:b x=arg0:u8[4", "expected ']' to close the array size", 17),
    ("u:a:b x=arg0:string[4]", "arrays take a number type (u8..u64, s8..s64, x8..x64), not string",
     13),
    ("u:a:b x=arg0:u8[4]x", "unexpected 'x' after type", 18),
    ("u:a:b x=arg0:u32:u8", "unexpected ':' after type", 16),
]


@pytest.mark.parametrize("text,message,pos", ERRORS, ids=[e[0][:40] for e in ERRORS])
def test_spec_errors(text: str, message: str, pos: int) -> None:
    with pytest.raises(SpecError) as ei:
        parse_spec(text)
    e = ei.value
    assert message in e.message
    assert e.pos == pos, f"caret at {e.pos}, expected {pos}: {e}"
    assert e.spec == text
    if text.strip():
        # the rendering puts the caret under the offending character
        lines = str(e).split("\n")
        assert lines[1] == "  " + text
        assert lines[2].index("^") == pos + 2


def test_too_many_args() -> None:
    args = " ".join(f"a{i}=arg0" for i in range(129))
    text = "u:/x:f " + args
    with pytest.raises(SpecError) as ei:
        parse_spec(text)
    assert "too many arguments (the kernel allows at most 128)" in ei.value.message
    assert ei.value.pos == text.index(" a128=") + 1
    parse_spec("u:/x:f " + " ".join(f"a{i}=arg0" for i in range(128)))


def test_non_string_input() -> None:
    with pytest.raises(SpecError, match="a probe spec must be a string, not int"):
        parse_spec(123)  # type: ignore[arg-type]


def test_parse_type_errors() -> None:
    with pytest.raises(SpecError, match="unexpected '\\)' after type") as ei:
        parse_type("u32)")
    assert ei.value.pos == 3
    with pytest.raises(SpecError, match="unknown type 'q'"):
        parse_type("q")


def test_errors_never_reach_anything() -> None:
    # a spec error is a ValueError too, so callers can treat it as bad input
    with pytest.raises(ValueError):
        parse_spec("nope")


# --------------------------------------------------------------------- hypothesis

_FRAGMENTS = [
    "t", "u", "ur", "k", "kr", "U", "usdt", "tracepoint", "uprobe", ":", ":", "::", "/bin/x",
    "libc", "malloc", "+", "-", "0x", "0X1f", "12", "*", "?", "[", "]", "!", "=", "arg", "arg0",
    "arg7", "retval", "%", "%di", "(", ")", ":u8", ":s64", ":string", ":ustring", "[16]", " ",
    "\t", "name", "_", "@@GLIBC_2.2.5", ".", "$", "\u00e9", "\x00", "common_pid",
]


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80))
def test_fuzz_random_text_only_spec_errors(text: str) -> None:
    out = _check_fuzz(text)
    assert isinstance(out, ProbeSpec | SpecError)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=24).map("".join))
def test_fuzz_grammar_fragments_only_spec_errors(text: str) -> None:
    out = _check_fuzz(text)
    assert isinstance(out, ProbeSpec | SpecError)
    if isinstance(out, SpecError) and out.pos is not None:  # the caret points into the text
        assert 0 <= out.pos <= len(text)


def _check_fuzz(text: str) -> ProbeSpec | SpecError:
    """Parse ``text``: a SpecError with a message, or a spec that round-trips."""
    try:
        spec = parse_spec(text)
    except SpecError as e:
        assert e.pos is None or 0 <= e.pos <= len(text)
        assert e.message
        return e
    assert isinstance(spec, ProbeSpec)
    # anything that parses round-trips through its canonical form
    again = parse_spec(spec.canonical())
    assert again == spec
    assert again.canonical() == spec.canonical()
    return spec


_ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
_expr: st.SearchStrategy[str] = st.recursive(
    st.one_of(
        st.integers(0, 127).map(lambda n: f"arg{n}"),
        st.sampled_from(["%di", "%rsi", "%x0", "%sp"]),
    ),
    lambda inner: st.tuples(st.sampled_from("+-"), st.integers(0, 4096), inner).map(
        lambda t: f"{t[0]}{t[1]}({t[2]})"
    ),
    max_leaves=4,
)
_type = st.one_of(
    st.none(),
    st.sampled_from(["u8", "s16", "x32", "u64", "string", "ustring"]),
    st.tuples(st.sampled_from(["u8", "x64"]), st.integers(1, 64)).map(lambda t: f"{t[0]}[{t[1]}]"),
)


@settings(max_examples=300)
@given(
    kind=st.sampled_from(["u", "uprobe", "k", "kprobe", "U", "usdt"]),
    name=_ident,
    offset=st.integers(0, 1 << 20),
    args=st.lists(st.tuples(_ident, _expr, _type), max_size=5, unique_by=lambda t: t[0]),
)
def test_generated_valid_specs_round_trip(
    kind: str, name: str, offset: int, args: list[tuple[str, str, str | None]]
) -> None:
    args = [a for a in args if a[0] not in ("common_pid", "common_type")]
    if kind in ("u", "uprobe"):
        head = f"{kind}:/usr/lib/x.so:{name}" + (f"+{offset}" if offset else "")
    elif kind in ("k", "kprobe"):
        head = f"{kind}:{name}" + (f"+{offset}" if offset else "")
    else:
        head = f"{kind}:/usr/bin/x:prov:{name}"
    text = " ".join([head] + [f"{n}={e}" + (f":{t}" if t else "") for n, e, t in args])
    spec = parse_spec(text)
    assert [a.name for a in spec.args] == [a[0] for a in args]
    assert [a.type for a in spec.args] == [a[2] for a in args]
    assert parse_spec(spec.canonical()) == spec
