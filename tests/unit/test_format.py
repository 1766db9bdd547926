"""probewatch.decode.format: format files, field typing, record decoding, page layout."""

from __future__ import annotations

import os
import struct
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures"))

import fixturelib as fx  # noqa: E402

from probewatch.decode.format import (  # noqa: E402
    DEFAULT_LAYOUT,
    KIND_ARRAY,
    KIND_BYTES,
    KIND_DATA_LOC,
    KIND_INT,
    KIND_POINTER,
    KIND_REL_LOC,
    KIND_STRING,
    KIND_TAIL,
    EventFormat,
    PageLayout,
    load_format,
    load_page_layout,
    parse_format,
    parse_page_layout,
)
from probewatch.errors import DecodeError, NotFound  # noqa: E402

COMMON = (
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
    "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
    "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
)


def make_format(fields: str, name: str = "ev", ev_id: int = 1000, system: str = "test"
                ) -> EventFormat:
    text = f"name: {name}\nID: {ev_id}\nformat:\n{COMMON}{fields}\nprint fmt: \"\"\n"
    return parse_format(text, system)


def kinds(fmt: EventFormat) -> dict[str, tuple[str, int, bool]]:
    return {f.name: (f.kind, f.elem_size, f.elem_signed) for f in fmt.fields}


# -- the recorded formats ----------------------------------------------------------


@pytest.mark.parametrize("system,name", fx.all_format_paths())
def test_every_fixture_format_parses(system: str, name: str) -> None:
    fmt = fx.load_format(system, name)
    assert fmt.name == name and fmt.system == system
    assert fmt.event_name == f"{system}:{name}"
    assert [f.name for f in fmt.common_fields] == [
        "common_type", "common_flags", "common_preempt_count", "common_pid"]
    assert fmt.fields and not any(f.is_common for f in fmt.fields)
    assert fmt.min_size >= 8
    # a zeroed record of the minimum size decodes without error
    rec = fx.common(fmt.id, 1) + bytes(fmt.min_size)
    out = fmt.decode(rec, 0, len(rec))
    assert list(out) == [f.name for f in fmt.fields]


def test_sys_enter_openat_field_typing() -> None:
    fmt = fx.load_format("syscalls", "sys_enter_openat")
    assert fmt.id == 782
    assert kinds(fmt) == {
        "__syscall_nr": (KIND_INT, 4, True),
        "dfd": (KIND_INT, 4, True),  # int in an 8-byte slot, signed:0 in the file
        "filename": (KIND_POINTER, 8, False),
        "flags": (KIND_INT, 4, True),
        "mode": (KIND_INT, 2, False),  # umode_t
    }
    dfd = fmt.field("dfd")
    assert (dfd.ctype, dfd.offset, dfd.size, dfd.signed) == ("int", 16, 8, False)
    assert fmt.field("common_pid").offset == 4
    with pytest.raises(NotFound):
        fmt.field("nope")


def openat_record(fmt: EventFormat, dfd_slot: int, mode_slot: int = 0o644) -> bytes:
    return (fx.common(fmt.id, 4242) + struct.pack("<i4x", 257)
            + struct.pack("<QQQQ", dfd_slot, 0x7FFD12345678, 0x80000, mode_slot))


def test_at_fdcwd_decodes_as_minus_100() -> None:
    fmt = fx.load_format("syscalls", "sys_enter_openat")
    rec = openat_record(fmt, 0x00000000FFFFFF9C)
    assert fmt.decode(rec, 0, len(rec)) == {
        "__syscall_nr": 257, "dfd": -100, "filename": 0x7FFD12345678, "flags": 0x80000,
        "mode": 0o644}
    # the upper half of the slot is not part of the int (registers may carry junk)
    rec = openat_record(fmt, 0xDEADBEEFFFFFFF9C, 0x1_0000_81A4)
    out = fmt.decode(rec, 0, len(rec))
    assert out["dfd"] == -100 and out["mode"] == 0o100644
    # a record inside a bigger buffer
    buf = b"\xff" * 40 + rec + b"\xee" * 8
    assert fmt.decode(buf, 40, 40 + len(rec))["dfd"] == -100


def test_make_event() -> None:
    fmt = fx.load_format("syscalls", "sys_enter_openat")
    rec = openat_record(fmt, 0xFFFFFF9C)
    ev = fmt.make_event(rec, 0, len(rec), ts=123, cpu=1)
    assert (ev.ts, ev.cpu, ev.pid, ev.tid, ev.comm, ev.event, ev.probe) == (
        123, 1, 4242, 4242, "", "syscalls:sys_enter_openat", "")
    assert ev.fields["dfd"] == -100
    with pytest.raises(DecodeError):
        fmt.make_event(rec, 0, len(rec) + 1, ts=1, cpu=0)


def test_sys_exit_openat_negative_ret() -> None:
    fmt = fx.load_format("syscalls", "sys_exit_openat")
    rec = fx.common(fmt.id, 1) + struct.pack("<i4xq", 257, -2)
    assert fmt.decode(rec, 0, len(rec)) == {"__syscall_nr": 257, "ret": -2}


def test_sched_switch_comm_arrays() -> None:
    fmt = fx.load_format("sched", "sched_switch")
    assert fmt.field("prev_comm").kind == KIND_STRING
    assert fmt.field("prev_comm").count == 16
    assert kinds(fmt)["prev_state"] == (KIND_INT, 8, True)
    rec = (fx.common(fmt.id, 0) + b"swapper/0\0garbag" + struct.pack("<iiq", 0, 120, 0)
           + "bash-\u00e9\0".encode() + bytes(16 - 8) + struct.pack("<ii", 77, 120))
    assert len(rec) == 64
    assert fmt.decode(rec, 0, 64) == {
        "prev_comm": "swapper/0", "prev_pid": 0, "prev_prio": 120, "prev_state": 0,
        "next_comm": "bash-\u00e9", "next_pid": 77, "next_prio": 120}
    # invalid utf-8 is kept (surrogateescape: lossless, the sinks escape it), not an
    # error; a comm without NUL takes all 16 bytes
    rec2 = bytearray(rec)
    rec2[8:24] = b"\xff\xfeABCDEFGHIJKLMN"
    assert fmt.decode(bytes(rec2), 0, 64)["prev_comm"] == "\udcff\udcfeABCDEFGHIJKLMN"


def data_loc(offset: int, length: int) -> bytes:
    return struct.pack("<I", (length << 16) | offset)


def test_sched_process_exec_data_loc() -> None:
    fmt = fx.load_format("sched", "sched_process_exec")
    f = fmt.field("filename")
    assert (f.kind, f.elem_kind, f.size) == (KIND_DATA_LOC, "string", 4)
    name = b"/usr/bin/true\0"
    rec = fx.common(fmt.id, 9) + data_loc(20, len(name)) + struct.pack("<ii", 9, 9) + name
    assert fmt.decode(rec, 0, len(rec)) == {"filename": "/usr/bin/true", "pid": 9, "old_pid": 9}
    # an empty dynamic string
    rec0 = fx.common(fmt.id, 9) + data_loc(20, 0) + struct.pack("<ii", 9, 9)
    assert fmt.decode(rec0, 0, len(rec0))["filename"] == ""
    # running past the record is an error, even when the buffer goes on
    bad = fx.common(fmt.id, 9) + data_loc(20, 64) + struct.pack("<ii", 9, 9) + name
    with pytest.raises(DecodeError, match="filename"):
        fmt.decode(bad + bytes(100), 0, len(bad))


def test_sched_process_fork_two_data_locs() -> None:
    fmt = fx.load_format("sched", "sched_process_fork")
    rec = (fx.common(fmt.id, 1) + data_loc(24, 5) + struct.pack("<i", 1) + data_loc(29, 7)
           + struct.pack("<i", 2) + b"bash\0" + b"worker\0")
    assert fmt.decode(rec, 0, len(rec)) == {
        "parent_comm": "bash", "parent_pid": 1, "child_comm": "worker", "child_pid": 2}


def test_dynamic_arrays_of_ints_bytes_and_cpumask() -> None:
    dma = fx.load_format("dma", "dma_map_sg")
    assert kinds(dma)["phys_addrs"] == (KIND_DATA_LOC, 8, False)
    assert dma.field("phys_addrs").elem_kind == "int"
    assert dma.field("lengths").elem_size == 4
    assert kinds(dma)["truncated"] == (KIND_INT, 1, False)  # bool
    body = bytearray(48)
    tail = b"sda\0" + struct.pack("<QQ", 1, 2) + struct.pack("<QQ", 3, 4) + struct.pack(
        "<II", 512, 4096)
    struct.pack_into("<4s", body, 8, data_loc(48, 4))
    struct.pack_into("<iiB", body, 12, 2, 2, 1)
    struct.pack_into("<4s4s4sIQ", body, 24, data_loc(52, 16), data_loc(68, 16),
                     data_loc(84, 8), 1, 0x10)
    rec = fx.common(dma.id, 3) + bytes(body[8:]) + tail
    assert dma.decode(rec, 0, len(rec)) == {
        "device": "sda", "full_nents": 2, "full_ents": 2, "truncated": 1,
        "phys_addrs": (1, 2), "dma_addrs": (3, 4), "lengths": (512, 4096), "dir": 1,
        "attrs": 0x10}

    ras = fx.load_format("ras", "non_standard_event")
    assert ras.field("buf").elem_kind == "bytes"
    assert ras.field("sec_type").kind == KIND_STRING

    ipi = fx.load_format("ipi", "ipi_send_cpumask")
    f = ipi.field("cpumask")
    assert (f.kind, f.elem_kind) == (KIND_DATA_LOC, "bytes")
    rec = fx.common(ipi.id, 0) + data_loc(32, 8) + bytes(4) + struct.pack("<QQ", 1, 2) + \
        struct.pack("<Q", 0b101)
    assert ipi.decode(rec, 0, len(rec)) == {
        "cpumask": struct.pack("<Q", 0b101), "callsite": 1, "callback": 2}


def test_rel_loc_is_relative_to_the_field_end() -> None:
    # modelled on samples/trace_events (foo_rel_loc); this kernel has no __rel_loc event
    fmt = make_format(
        "\tfield:__rel_loc char[] foo;\toffset:8;\tsize:4;\tsigned:0;\n"
        "\tfield:u32 bar;\toffset:12;\tsize:4;\tsigned:0;\n"
        "\tfield:__rel_loc unsigned long[] bitmask;\toffset:16;\tsize:4;\tsigned:0;\n"
        "\tfield:__rel_loc cpumask_t cpumask;\toffset:20;\tsize:4;\tsigned:0;\n"
    )
    assert [f.kind for f in fmt.fields] == [KIND_REL_LOC, KIND_INT, KIND_REL_LOC, KIND_REL_LOC]
    # payload at 24: "hello\0" (6) | bitmask u64 at 32 | cpumask 8 bytes at 40
    rec = (fx.common(fmt.id, 5)
           + struct.pack("<I", (6 << 16) | (24 - 12))
           + struct.pack("<I", 7)
           + struct.pack("<I", (8 << 16) | (32 - 20))
           + struct.pack("<I", (8 << 16) | (40 - 24))
           + b"hello\0\0\0" + struct.pack("<Q", 0xF0) + b"\x03" + bytes(7))
    assert fmt.decode(rec, 0, len(rec)) == {
        "foo": "hello", "bar": 7, "bitmask": (0xF0,), "cpumask": b"\x03" + bytes(7)}
    short = rec[:-4]
    with pytest.raises(DecodeError, match="cpumask"):
        fmt.decode(short, 0, len(short))


def test_ftrace_tail_arrays_and_fixed_arrays() -> None:
    pr = fx.load_format("ftrace", "print")
    assert pr.field("buf").kind == KIND_TAIL and pr.field("buf").elem_kind == "string"
    rec = fx.common(pr.id, 1) + struct.pack("<Q", 0xFFFF) + b"hi there\n\0\0\0"
    assert pr.decode(rec, 0, len(rec)) == {"ip": 0xFFFF, "buf": "hi there\n"}
    assert pr.decode(rec, 0, 16) == {"ip": 0xFFFF, "buf": ""}

    fn = fx.load_format("ftrace", "function")
    assert (fn.field("args").kind, fn.field("args").elem_size) == (KIND_TAIL, 8)
    rec = fx.common(fn.id, 1) + struct.pack("<QQQQ", 1, 2, 30, 40) + b"\x01\x02"
    assert fn.decode(rec, 0, len(rec)) == {"ip": 1, "parent_ip": 2, "args": (30, 40)}

    ks = fx.load_format("ftrace", "kernel_stack")
    f = ks.field("caller")
    assert (f.kind, f.count, f.elem_size, f.elem_signed) == (KIND_ARRAY, 8, 8, False)
    rec = fx.common(ks.id, 1) + struct.pack("<i4x", 3) + struct.pack("<8Q", *range(8))
    assert ks.decode(rec, 0, len(rec)) == {"size": 3, "caller": tuple(range(8))}

    br = fx.load_format("ftrace", "branch")
    assert br.field("func").kind == KIND_STRING and br.field("func").count == 31
    assert kinds(br)["correct"] == (KIND_INT, 1, False)  # plain char: the flag decides


@pytest.mark.parametrize(
    "decl,size,signed,expect",
    [
        ("int dfd", 8, 0, (KIND_INT, 4, True)),
        ("pid_t pid", 8, 0, (KIND_INT, 4, True)),
        ("unsigned int fd", 8, 0, (KIND_INT, 4, False)),
        ("unsigned fd", 4, 0, (KIND_INT, 4, False)),
        ("long ret", 8, 1, (KIND_INT, 8, True)),
        ("long offset", 8, 0, (KIND_INT, 8, True)),  # syscall slots say signed:0
        ("unsigned long addr", 8, 0, (KIND_INT, 8, False)),
        ("long int x", 8, 1, (KIND_INT, 8, True)),
        ("unsigned long long x", 8, 0, (KIND_INT, 8, False)),
        ("long long x", 8, 1, (KIND_INT, 8, True)),
        ("short x", 2, 1, (KIND_INT, 2, True)),
        ("short unsigned int x", 2, 0, (KIND_INT, 2, False)),
        ("signed char x", 1, 1, (KIND_INT, 1, True)),
        ("char x", 1, 0, (KIND_INT, 1, False)),
        ("char x", 1, 1, (KIND_INT, 1, True)),
        ("bool b", 1, 0, (KIND_INT, 1, False)),
        ("size_t count", 8, 0, (KIND_INT, 8, False)),
        ("ssize_t n", 8, 1, (KIND_INT, 8, True)),
        ("loff_t pos", 8, 0, (KIND_INT, 8, True)),
        ("umode_t mode", 8, 0, (KIND_INT, 2, False)),
        ("gfp_t gfp_flags", 4, 0, (KIND_INT, 4, False)),
        ("const __u32 flags", 8, 0, (KIND_INT, 4, False)),
        ("__s32 x", 8, 0, (KIND_INT, 4, True)),
        ("const clockid_t which", 8, 0, (KIND_INT, 4, True)),
        ("key_serial_t id", 8, 0, (KIND_INT, 4, True)),
        ("u64 x", 8, 0, (KIND_INT, 8, False)),
        ("s8 x", 1, 1, (KIND_INT, 1, True)),
        ("xfs_daddr_t blk", 8, 1, (KIND_INT, 8, True)),  # unknown typedef: size + flag
        ("xfs_extlen_t len", 4, 0, (KIND_INT, 4, False)),
        ("enum zone_type zone", 4, 0, (KIND_INT, 4, False)),
        ("const enum landlock_rule_type t", 8, 0, (KIND_INT, 8, False)),
        ("const char * filename", 8, 0, (KIND_POINTER, 8, False)),
        ("const char *const * argv", 8, 0, (KIND_POINTER, 8, False)),
        ("void __seg_gs * p", 8, 0, (KIND_POINTER, 8, False)),
        ("struct robust_list_head * * head", 8, 0, (KIND_POINTER, 8, False)),
        ("struct foo inline_struct", 12, 0, (KIND_BYTES, 1, False)),
        ("odd_t three", 3, 0, (KIND_BYTES, 1, False)),
        ("char comm[16]", 16, 0, (KIND_STRING, 1, False)),
        ("char comm[TASK_COMM_LEN]", 16, 0, (KIND_STRING, 1, False)),
        ("u8 mac[6]", 6, 0, (KIND_BYTES, 1, False)),
        ("unsigned char addr[6]", 6, 0, (KIND_BYTES, 1, False)),
        ("long v[3]", 24, 1, (KIND_ARRAY, 8, True)),
        ("unsigned int w[10]", 40, 0, (KIND_ARRAY, 4, False)),
        ("s8 small[4]", 4, 1, (KIND_ARRAY, 1, True)),
        ("u16 m[2][3]", 12, 0, (KIND_ARRAY, 2, False)),
        ("u32 buf[]", 0, 0, (KIND_TAIL, 4, False)),
        ("__data_loc char[] name", 4, 0, (KIND_DATA_LOC, 1, False)),
        ("__data_loc u64[] addrs", 4, 0, (KIND_DATA_LOC, 8, False)),
    ],
)
def test_type_rules(decl: str, size: int, signed: int, expect: tuple[str, int, bool]) -> None:
    fmt = make_format(f"\tfield:{decl};\toffset:8;\tsize:{size};\tsigned:{signed};\n")
    f = fmt.fields[0]
    assert (f.kind, f.elem_size, f.elem_signed) == expect


def test_narrow_ints_read_low_bytes_with_type_signedness() -> None:
    fmt = make_format(
        "\tfield:int a;\toffset:8;\tsize:8;\tsigned:0;\n"
        "\tfield:short b;\toffset:16;\tsize:8;\tsigned:0;\n"
        "\tfield:unsigned int c;\toffset:24;\tsize:8;\tsigned:1;\n"
        "\tfield:bool d;\toffset:32;\tsize:8;\tsigned:0;\n"
    )
    rec = fx.common(fmt.id, 1) + struct.pack("<QQQQ", 0xAAAA_AAAA_FFFF_FFFE, 0xFFFF_8000,
                                             0xFFFF_FFFF, 0x100)
    assert fmt.decode(rec) == {"a": -2, "b": -32768, "c": 0xFFFF_FFFF, "d": 0}


def test_overlapping_fields_and_gaps() -> None:
    fmt = make_format(
        "\tfield:u64 whole;\toffset:8;\tsize:8;\tsigned:0;\n"
        "\tfield:u32 low;\toffset:8;\tsize:4;\tsigned:0;\n"
        "\tfield:u8 tail;\toffset:30;\tsize:1;\tsigned:0;\n"
    )
    rec = fx.common(fmt.id, 1) + struct.pack("<Q", 0x1122334455667788) + bytes(14) + b"\x09"
    assert fmt.decode(rec) == {"whole": 0x1122334455667788, "low": 0x55667788, "tail": 9}
    assert fmt.min_size == 31


def test_record_bounds_errors() -> None:
    fmt = fx.load_format("sched", "sched_switch")
    rec = bytes(64)
    with pytest.raises(DecodeError, match="needs 64"):
        fmt.decode(rec, 0, 63)
    with pytest.raises(DecodeError, match="outside"):
        fmt.decode(rec, 0, 65)
    with pytest.raises(DecodeError):
        fmt.decode(rec, -1, 63)
    with pytest.raises(DecodeError):
        fmt.decode(rec, 10, 5)


def test_formats_without_common_pid_use_minus_one() -> None:
    text = ("name: bare\nID: 7\nformat:\n"
            "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
            "\tfield:int x;\toffset:4;\tsize:4;\tsigned:1;\n")
    fmt = parse_format(text, "t")
    rec = struct.pack("<H2xi", 7, -5)
    ev = fmt.make_event(rec, 0, 8, 1, 0)
    assert (ev.pid, ev.fields) == (-1, {"x": -5})
    assert fmt.print_fmt == ""


def test_old_style_field_lines_without_signed() -> None:
    fmt = make_format("\tfield:int x;\toffset:8;\tsize:4;\n")
    assert (fmt.fields[0].kind, fmt.fields[0].elem_signed) == (KIND_INT, True)


def test_print_fmt_is_kept() -> None:
    fmt = fx.load_format("sched", "sched_process_exec")
    assert fmt.print_fmt.startswith('"filename=%s pid=%d old_pid=%d"')


# -- malformed format text -----------------------------------------------------------

GOOD = fx.format_text("sched", "sched_process_exec")


MALFORMED = [
        ("", "no 'name:'"),
        (GOOD.replace("name: sched_process_exec\n", ""), "no 'name:'"),
        (GOOD.replace("ID: 365\n", ""), "no 'ID:'"),
        (GOOD.replace("ID: 365", "ID: x365"), "bad event ID"),
        (GOOD.replace("ID: 365", "ID: 70000"), "out of range"),
        (GOOD.replace("ID: 365", "ID: 365\nID: 366"), "two 'ID:'"),
        (GOOD.replace("name: sched_process_exec", "name: a b"), "bad event name"),
        (GOOD.replace("offset:12;", "offset:twelve;"), "bad offset"),
        (GOOD.replace("offset:12;", "offset:-12;"), "offset -12 out of range"),
        (GOOD.replace("size:4;\tsigned:1;\n\n", "size:99999999999;\tsigned:1;\n\n"), "range"),
        (GOOD.replace("\toffset:12;", ""), "malformed field line"),
        (GOOD.replace("pid_t old_pid", "pid_t pid"), "duplicate field"),
        (GOOD.replace("filename;\toffset:8;\tsize:4;", "filename;\toffset:8;\tsize:2;"),
         "size 2, expected 4"),
        (GOOD.replace("pid_t old_pid", "pid_t"), "no type"),
        (GOOD.replace("pid_t old_pid", "old_pid[3"), "field name"),
        (GOOD.replace("pid_t old_pid", "int[4] old_pid"), "brackets"),
        (GOOD.replace("signed:1;", "signed:maybe;", 1), "bad signed flag"),
        (GOOD.replace("format:\n", "format: now\n"), "after 'format:'"),
        (GOOD.replace("\tfield:pid_t pid;", "\tjunk here\n\tfield:pid_t pid;"), "unexpected line"),
        ("name: x\nID: 1\nformat:\n\nprint fmt: \"\"\n", "declares no fields"),
        (GOOD.replace("pid_t old_pid", "u8 bad[\u00b2]"), "bad array dimension"),
        (GOOD.replace("pid_t old_pid", "const old_pid"), "only qualifiers"),
]


@pytest.mark.parametrize("text,message", MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_formats_raise_decode_error(text: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_format(text, "sched")


def test_non_str_input() -> None:
    with pytest.raises(DecodeError):
        parse_format(b"name: x", "s")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        parse_format(GOOD, "s", long_size=3)


def test_load_format_from_a_tracefs_tree(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(str(tmp_path), "events", "sched", "sched_process_exec")
    os.makedirs(d)
    with open(os.path.join(d, "format"), "w") as f:
        f.write(GOOD)
    fmt = load_format(str(tmp_path), "sched", "sched_process_exec")
    assert (fmt.id, fmt.event_name) == (365, "sched:sched_process_exec")
    with pytest.raises(NotFound):
        load_format(str(tmp_path), "sched", "nosuch")
    with open(os.path.join(d, "format"), "w") as f:
        f.write("garbage")
    with pytest.raises(DecodeError, match="format"):
        load_format(str(tmp_path), "sched", "sched_process_exec")


# -- header_page / header_event -------------------------------------------------------


def test_page_layout_of_this_kernel() -> None:
    lay = fx.layout()
    assert lay == DEFAULT_LAYOUT
    assert (lay.ts_offset, lay.ts_size, lay.commit_offset, lay.commit_size) == (0, 8, 8, 8)
    assert (lay.data_offset, lay.data_size, lay.page_size, lay.long_size) == (16, 4080, 4096, 8)
    assert (lay.type_len_bits, lay.time_delta_bits, lay.array_bits) == (5, 27, 32)
    assert (lay.padding_type, lay.time_extend_type, lay.time_stamp_type) == (29, 30, 31)
    assert lay.data_max_type_len == 28
    assert lay.overwrite_offset == 8


def test_page_layout_of_an_8k_subbuffer_instance() -> None:
    cap = fx.load_capture("subbuf8k")
    assert (cap.layout.data_size, cap.layout.page_size) == (8176, 8192)


def test_load_page_layout(tmp_path: os.PathLike[str]) -> None:
    ev = os.path.join(str(tmp_path), "events")
    os.makedirs(ev)
    for name in ("header_page", "header_event"):
        with open(os.path.join(ev, name), "w") as f:
            f.write(fx.read(name))
    assert load_page_layout(str(tmp_path)) == DEFAULT_LAYOUT
    os.unlink(os.path.join(ev, "header_event"))
    with pytest.raises(NotFound):
        load_page_layout(str(tmp_path))


HP = fx.read("header_page")
HE = fx.read("header_event")
OLD_HE = """\
	type        :    2 bits
	len         :    3 bits
	time_delta  :   27 bits
	array       :   32 bits

	padding     : type == 0
	time_extend : type == 1
	data        : type == 2
"""


BAD_LAYOUTS = [
        ("", HE, "no 'timestamp'"),
        (HP.replace("commit", "kommit"), HE, "no 'commit'"),
        (HP.replace("size:8;\tsigned:0;", "size:4;\tsigned:0;", 1), HE, "timestamp size"),
        (HP.replace("size:8;\tsigned:1;", "size:2;\tsigned:1;", 1), HE, "commit size"),
        (HP.replace("offset:16;", "offset:4;"), HE, "overlap"),
        (HP + "junk\n", HE, "malformed line in header_page"),
        (HP + HP.splitlines()[0] + "\n", HE, "twice"),
        (HP, HE.replace("27 bits", "26 bits"), "not a u32"),
        (HP, HE.replace("type == 30", "type == 29"), "do not fit"),
        (HP, HE.replace("type == 31", "type == 99"), "do not fit"),
        (HP, HE.replace("\ttime_stamp : type == 31\n", ""), "time_stamp"),
        (HP, HE.replace("\tdata max type_len  == 28\n", ""), "data max"),
        (HP, HE.replace("type_len    :    5 bits", "type_len : many bits"), "malformed"),
        (HP, OLD_HE, "pre-2.6.31"),
]


@pytest.mark.parametrize("hp,he,message", BAD_LAYOUTS, ids=[m for _, _, m in BAD_LAYOUTS])
def test_malformed_page_layout(hp: str, he: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_page_layout(hp, he)


def test_parse_header_layout_alias() -> None:
    from probewatch.decode.format import parse_header_layout

    assert parse_header_layout(HP, HE) == DEFAULT_LAYOUT


def test_page_layout_32bit_kernel() -> None:
    hp = ("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
          "\tfield: local_t commit;\toffset:8;\tsize:4;\tsigned:1;\n"
          "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
          "\tfield: char data;\toffset:12;\tsize:4084;\tsigned:0;\n")
    lay = parse_page_layout(hp, HE)
    assert lay == PageLayout(commit_size=4, data_offset=12, data_size=4084, overwrite_offset=8)
    assert lay.long_size == 4


# -- every format of the running kernel (read-only) ----------------------------------


@pytest.mark.integration  # reads the live kernel's formats
def test_every_format_of_the_running_kernel_parses(tracefs: str) -> None:
    live = os.path.join(tracefs, "events")
    n = 0
    for system in os.listdir(live):
        sdir = os.path.join(live, system)
        if not os.path.isdir(sdir):
            continue
        for name in os.listdir(sdir):
            path = os.path.join(sdir, name, "format")
            if not os.path.exists(path):
                continue
            with open(path) as f:
                fmt = parse_format(f.read(), system)
            assert fmt.min_size >= 2
            n += 1
    assert n > 100
