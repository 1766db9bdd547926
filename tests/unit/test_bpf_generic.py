"""The generic BPF backend without a kernel: record layouts, argument compilation,
uprobe decoding and the user-space tracefs filter evaluator."""

from __future__ import annotations

import re
import struct
import subprocess
from importlib import resources
from typing import Any

import pytest

from conftest import missing, need_tool  # tests/conftest.py
from probewatch.collect.bpf.filter import FilterError, FilterField, compile_filter
from probewatch.collect.bpf.generic import (
    DLOC_REL,
    HDR,
    TPCONF,
    UARG,
    UARG_ARRAY,
    UARG_INT,
    UARG_STR,
    UREC_HEAD,
    UREC_SIZE,
    UVAL,
    UArg,
    UprobeDecoder,
    compile_uarg,
    tp_config,
    uprobe_config,
)
from probewatch.decode.format import parse_format
from probewatch.errors import SpecError
from probewatch.sources.args import X86_64
from probewatch.sources.spec import parse_spec

EXEC_FORMAT = """name: sched_process_exec
ID: 365
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;

print fmt: "filename=%s", __get_str(filename)
"""


# ------------------------------------------------------------------ layouts


def test_struct_sizes() -> None:
    assert HDR.size == 48
    assert TPCONF.size == 24
    assert UARG.size == 24
    assert UVAL.size == 16
    assert UREC_SIZE == UREC_HEAD.size + 8 * UVAL.size == 144


def _btf_structs(path: str) -> dict[str, list[tuple[str, int, int, bool | None]]]:
    """struct name -> [(member, byte offset, byte size, signed?)] from bpftool's raw BTF
    dump of the built object (signed: None for char arrays and nested structs)."""
    out = subprocess.run([need_tool("bpftool"), "btf", "dump", "file", path, "format", "raw"],
                         capture_output=True, text=True, check=True).stdout
    types: dict[int, dict[str, Any]] = {}
    cur: dict[str, Any] | None = None
    for line in out.splitlines():
        m = re.match(r"\[(\d+)\] (\w+) '([^']*)'(.*)", line)
        if m:
            cur = {"kind": m.group(2), "name": m.group(3), "members": []}
            cur.update(re.findall(r"(\w+)=(\S+)", m.group(4)))
            types[int(m.group(1))] = cur
        elif line.startswith("\t'") and cur is not None and cur["kind"] in ("STRUCT", "UNION"):
            mm = re.match(r"\t'([^']*)' type_id=(\d+) bits_offset=(\d+)", line)
            assert mm, line
            cur["members"].append((mm.group(1), int(mm.group(2)), int(mm.group(3))))

    def size(tid: int) -> tuple[int, bool | None]:
        t = types[tid]
        if t["kind"] == "TYPEDEF":
            return size(int(t["type_id"]))
        if t["kind"] == "INT":
            return int(t["size"]), (None if t["name"] == "char" else
                                    t.get("encoding") == "SIGNED")
        if t["kind"] == "ARRAY":
            n, sign = size(int(t["type_id"]))
            return n * int(t["nr_elems"]), (None if types[int(t["type_id"])]["name"] == "char"
                                              else sign)
        return int(t["size"]), None

    res = {}
    for t in types.values():
        if t["kind"] == "STRUCT" and t["name"].startswith("pw_"):
            res[t["name"]] = [(n, off // 8, *size(tid)) for n, tid, off in t["members"]]
            assert sum(sz for _, _, sz, _ in res[t["name"]]) <= int(t["size"])
    return res


def _py_layout(st: struct.Struct) -> list[tuple[int, int, bool | None]]:
    """(byte offset, byte size, signed?) of each member of a Python struct format
    (NNs: a char array; NX: an array of X; a lowercase code is signed)."""
    assert st.format[0] == "<"  # little-endian, no alignment: offsets are running sums
    layout: list[tuple[int, int, bool | None]] = []
    pos = 0
    for count, code in re.findall(r"(\d*)([a-zA-Z])", st.format[1:]):
        sz = int(count or 1) * struct.calcsize("<" + code)
        layout.append((pos, sz, None if code == "s" else code.islower()))
        pos += sz
    return layout


def test_layouts_match_btf_of_built_object() -> None:
    """Every Python decoder struct has the member offsets, sizes and signedness the C
    compiler gave struct pw_* in the committed generic.bpf.o (its BTF, via bpftool)."""
    obj = resources.files("probewatch.collect.bpf").joinpath("obj/x86_64/generic.bpf.o")
    try:
        path = str(obj)
        open(path, "rb").close()
    except OSError:
        missing("generic.bpf.o not built for this machine (scripts/build-bpf.sh)")
    btf = _btf_structs(path)
    for name, st, size in (("pw_gen_hdr", HDR, 48), ("pw_tpconf", TPCONF, 24),
                           ("pw_uarg", UARG, 24), ("pw_uval", UVAL, 16)):
        assert [m[1:] for m in btf[name]] == _py_layout(st), name
        assert st.size == size
    assert [m[0] for m in btf["pw_gen_hdr"]] == ["kind", "flags", "cpu", "ts", "pid", "tid",
                                                  "slot", "size", "comm"]
    # struct pw_urec { u64 ip; u64 ret_ip; struct pw_uval vals[PW_UARGS_MAX]; }
    assert btf["pw_urec"] == [("ip", 0, 8, False), ("ret_ip", 8, 8, False),
                              ("vals", 16, 8 * 16, None)]
    assert [m[1:] for m in btf["pw_urec"][:2]] == _py_layout(UREC_HEAD)
    assert UREC_SIZE == 144


def test_tp_config_finds_dynamic_fields() -> None:
    fmt = parse_format(EXEC_FORMAT, "sched")
    ev_id, fixed, n, _, *dloc = TPCONF.unpack(tp_config(fmt))
    assert (ev_id, fixed, n) == (365, 20, 1)
    assert dloc[0] == 8 and not dloc[0] & DLOC_REL


# ------------------------------------------------------------------ uprobe arguments


def _args(text: str) -> list[UArg]:
    ps = parse_spec(text)
    return [compile_uarg(ps, a, X86_64) for a in ps.args]


def test_compile_registers_derefs_and_types() -> None:
    a, b, s, arr, st, r8 = _args(
        "u:/bin/x:f a=arg0:s32 b=+8(arg1):u16 s=+0(+16(arg0)):string z=arg2:u8[4]"
        " st=arg7 r=%r8d")
    assert (a.reg, a.offs, a.kind, a.size, a.signed) == (14, (), UARG_INT, 4, True)  # di
    assert (b.reg, b.offs, b.size) == (13, (8,), 2)  # si
    assert (s.offs, s.kind) == ((16, 0), UARG_STR)
    assert (arr.reg, arr.offs, arr.kind, arr.size, arr.elem_bytes) == (12, (0,), UARG_ARRAY,
                                                                       4, True)
    assert (st.reg, st.offs, st.size) == (19, (16,), 8)  # $stack2 = sp + 16
    assert (r8.reg, r8.size) == (9, 4)


def test_compile_retval_and_limits() -> None:
    (r,) = _args("ur:/bin/x:f r=retval:s64")
    assert (r.reg, r.signed) == (10, True)  # ax
    with pytest.raises(SpecError, match="memory reads"):
        _args("u:/bin/x:f a=+1(+2(+3(+4(+5(arg0))))):u8")
    with pytest.raises(SpecError, match="middle of a register"):
        _args("u:/bin/x:f a=%ah")
    assert len(uprobe_config(_args("u:/bin/x:f a=arg0"))) == 8 + 8 * UARG.size


def test_uprobe_decoder_matches_ftrace_field_shapes() -> None:
    args = _args("u:/bin/x:f a=arg0:s32 c=arg1:u8 s=+0(arg0):string z=arg2:u8[4]"
                 " w=arg2:s16[2] d=arg1")
    dec = UprobeDecoder(args, retprobe=False)
    strings = b"hello\0" + b"ab\xff\xff"
    vals = [(0xFFFFFFFD, 0, 0), (0x1234, 0, 0), (0, 6, 0), (6, 4, 0), (10, 4, 0), (7, 0, 0)]
    buf = bytearray(UREC_HEAD.pack(0x1000, 0))
    for v, ln, fl in vals + [(0, 0, 0)] * (8 - len(vals)):
        buf += UVAL.pack(v, ln, fl, 0)
    buf += strings + b"\xfe\xff\x02\x00"
    rec = bytes(buf)
    # w: the 4 bytes at offset 10 of the string area
    out = dec.decode(rec, 0, len(rec))
    assert list(out) == ["__probe_ip", "a", "c", "s", "z", "w", "d"]
    assert out["__probe_ip"] == 0x1000
    assert out["a"] == -3 and out["c"] == 0x34 and out["d"] == 7
    assert out["s"] == "hello"
    assert out["z"] == b"ab\xff\xff"
    assert out["w"] == (-2, 2)


def test_uretprobe_fields_and_faults() -> None:
    (r,) = _args("ur:/bin/x:f s=+0(retval):string")
    dec = UprobeDecoder([r], retprobe=True)
    rec = UREC_HEAD.pack(0x10, 0x20) + UVAL.pack(0, 0, 1, 0) + bytes(7 * UVAL.size)
    assert dec.decode(rec, 0, len(rec)) == {"__probe_func": 0x10, "__probe_ret_ip": 0x20,
                                            "s": ""}
    assert dec.faults == 1


# ------------------------------------------------------------------ filters

FIELDS = [
    FilterField("dfd", 8, False), FilterField("flags", 8, False),
    FilterField("delta", 4, True), FilterField("filename", is_string=True),
    FilterField("ptr", 8, False, is_pointer=True), FilterField("common_pid", 4, True),
]


def _f(text: str, **vals: object) -> bool:
    pred = compile_filter(text, FIELDS)
    comm = str(vals.pop("comm", "cat"))
    cpu = int(vals.pop("cpu", 0))  # type: ignore[call-overload]
    return pred(dict(vals), comm, cpu)


@pytest.mark.parametrize("text,vals,want", [
    ("dfd == 0xffffff9c", {"dfd": 0xFFFFFF9C}, True),
    ("dfd != 0xffffff9c", {"dfd": 0xFFFFFF9C}, False),
    ("flags & 0x80000", {"flags": 0x80800}, True),
    ("flags & 0x80000", {"flags": 0x800}, False),
    ("delta < -1", {"delta": -5}, True),
    ("delta >= -1", {"delta": -5}, False),
    ("delta == 0xffffffff", {"delta": -1}, True),  # cast to the field's s32
    ("flags <= 010", {"flags": 8}, True),  # octal, as kstrtoull(…, 0)
    ('filename ~ "*echo"', {"filename": "/bin/echo"}, True),
    ('filename ~ "/bin/ec?o"', {"filename": "/bin/echo"}, True),
    ('filename ~ "*true"', {"filename": "/bin/echo"}, False),
    ('filename == "/bin/echo"', {"filename": "/bin/echo"}, True),
    ("filename == /bin/echo", {"filename": "/bin/echo"}, True),  # unquoted string
    ('filename != "/bin/echo"', {"filename": "/bin/echo"}, False),
    ('comm == "cat"', {}, True),
    ("COMM ~ c*", {}, True),
    ("cpu == 1", {"cpu": 1}, True),
    ("dfd == 1 || flags == 2 && delta == 3", {"dfd": 1, "flags": 0, "delta": 0}, True),
    ("(dfd == 1 || flags == 2) && delta == 3", {"dfd": 1, "flags": 0, "delta": 0}, False),
    ("!(dfd == 1) && !flags == 0", {"dfd": 2, "flags": 1}, True),
    ("common_pid > 0", {"common_pid": 7}, True),
])
def test_filter_semantics(text: str, vals: dict[str, object], want: bool) -> None:
    assert _f(text, **vals) is want


@pytest.mark.parametrize("text,msg", [
    ("bogus == 1", "Field not found"),
    ("dfd == -1", "Illegal integer value"),
    ("dfd == x1", "Illegal integer value"),
    ('dfd == "1"', "Expecting numeric field"),
    ("dfd ~ 1", "Expecting string field"),
    ("filename < 3", "Invalid operator"),
    ('ptr ~ "*x"', "pointer field"),
    ("(dfd == 1", "Unbalanced parens"),
    ("dfd == 1)", "Unbalanced parens"),
    ("dfd ==", "Missing field name and/or value"),
    ("", "Missing field name and/or value"),
    ("dfd = 1", "Unexpected character"),
])
def test_filter_errors_point_at_the_problem(text: str, msg: str) -> None:
    with pytest.raises(FilterError) as ei:
        compile_filter(text, FIELDS)
    assert msg in str(ei.value)
    assert ei.value.pos is not None


def test_struct_unpack_of_header() -> None:
    # struct pw_gen_hdr written out by hand, little-endian, as probewatch.h lays it out:
    # u16 kind, u16 flags, u32 cpu, u64 ts, u32 pid, u32 tid, u32 slot, u32 size, comm[16]
    raw = bytes.fromhex("1000" "0000" "01000000" "6300000000000000" "0a000000" "0b000000"
                        "03000000" "0c000000") + b"cat".ljust(16, b"\0")
    assert len(raw) == HDR.size == 48
    assert HDR.unpack(raw) == (16, 0, 1, 99, 10, 11, 3, 12, b"cat" + b"\0" * 13)
