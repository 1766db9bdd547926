"""The ctypes libbpf wrapper: error paths, .rodata by name, record layouts vs BTF."""

from __future__ import annotations

import base64
import struct

import pytest

from conftest import need_root  # tests/conftest.py
from probewatch.collect.bpf import libbpf
from probewatch.collect.bpf.loader import (
    BLOB,
    COUNT,
    EXEC,
    EXIT,
    FORK,
    HDR,
    NRCONF,
    READLINE,
    SYSCALL_SIZE,
    TCP,
    object_bytes,
    parse_stats,
)

# A program the verifier must reject, built from this source with the Makefile's flags:
BAD_SRC = """
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
SEC("tracepoint/syscalls/sys_enter_getppid")
int pw_bad(void *ctx)
{
	char *p = (char *)bpf_get_current_task();
	return *p; /* direct kernel memory load: the verifier says no */
}
"""
BAD_OBJ = base64.b64decode("""
f0VMRgIBAQAAAAAAAAAAAAEA9wABAAAAAAAAAAAAAAAAAAAAAAAAAJgDAAAAAAAAAAAAAEAAAAAA
AEAACwABAIUAAAAjAAAAcQAAAAAAAABnAAAAOAAAAMcAAAA4AAAAlQAAAAAAAABHUEwAn+sBABgA
AAAAAAAAnAAAAJwAAADYAAAAAAAAAAAAAAIAAAAAAAAAAAEAAA0DAAAAAQAAAAEAAAAFAAAAAAAA
AQQAAAAgAAABCQAAAAEAAAwCAAAArwAAAAAAAAEBAAAACAAAAQAAAAAAAAADAAAAAAUAAAAHAAAA
BAAAALQAAAAAAAABBAAAACAAAADIAAAAAAAADgYAAAABAAAA0AAAAAEAAA8AAAAACAAAAAAAAAAE
AAAAAGN0eABpbnQAcHdfYmFkAHRyYWNlcG9pbnQvc3lzY2FsbHMvc3lzX2VudGVyX2dldHBwaWQA
Li9iYWQuYnBmLmMACWNoYXIgKnAgPSAoY2hhciAqKWJwZl9nZXRfY3VycmVudF90YXNrKCk7AAly
ZXR1cm4gKnA7IC8qIGRpcmVjdCBrZXJuZWwgbWVtb3J5IGxvYWQ6IHRoZSB2ZXJpZmllciBzYXlz
IG5vICovAGNoYXIAX19BUlJBWV9TSVpFX1RZUEVfXwBMSUNFTlNFAGxpY2Vuc2UAn+sBACAAAAAA
AAAAFAAAABQAAAA8AAAAUAAAAAAAAAAIAAAAEAAAAAEAAAAAAAAABAAAABAAAAAQAAAAAwAAAAAA
AAA2AAAAQgAAABQcAAAIAAAANgAAAG0AAAAJIAAAIAAAADYAAABtAAAAAiAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAADAAMAAAAAAAAAAAAAAAAAAAAAAFAAAAASAAMAAAAAAAAAAAAoAAAA
AAAAAHAAAAARAAQAAAAAAAAAAAAEAAAAAAAAAKwAAAAAAAAABAAAAAMAAAAsAAAAAAAAAAQAAAAB
AAAAQAAAAAAAAAAEAAAAAQAAAFAAAAAAAAAABAAAAAEAAABgAAAAAAAAAAQAAAABAAAACwwALnRl
eHQALnJlbC5CVEYuZXh0AC5sbHZtX2FkZHJzaWcAbGljZW5zZQB0cmFjZXBvaW50L3N5c2NhbGxz
L3N5c19lbnRlcl9nZXRwcGlkAHB3X2JhZAAuc3RydGFiAC5zeW10YWIALnJlbC5CVEYATElDRU5T
RQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAVwAAAAMAAAAAAAAAAAAAAAAAAAAAAAAAGgMAAAAAAAB4AAAAAAAAAAAA
AAAAAAAAAQAAAAAAAAAAAAAAAAAAAAEAAAABAAAABgAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAqAAAAAQAAAAYAAAAAAAAAAAAAAAAAAABAAAAA
AAAAACgAAAAAAAAAAAAAAAAAAAAIAAAAAAAAAAAAAAAAAAAAIgAAAAEAAAADAAAAAAAAAAAAAAAA
AAAAaAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAGsAAAABAAAAAAAAAAAA
AAAAAAAAAAAAAGwAAAAAAAAAjAEAAAAAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAABnAAAACQAA
AEAAAAAAAAAAAAAAAAAAAADIAgAAAAAAABAAAAAAAAAACgAAAAUAAAAIAAAAAAAAABAAAAAAAAAA
CwAAAAEAAAAAAAAAAAAAAAAAAAAAAAAA+AEAAAAAAABwAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAA
AAAAAAAAAAcAAAAJAAAAQAAAAAAAAAAAAAAAAAAAANgCAAAAAAAAQAAAAAAAAAAKAAAABwAAAAgA
AAAAAAAAEAAAAAAAAAAUAAAAA0z/bwAAAIAAAAAAAAAAAAAAAAAYAwAAAAAAAAIAAAAAAAAAAAAA
AAAAAAABAAAAAAAAAAAAAAAAAAAAXwAAAAIAAAAAAAAAAAAAAAAAAAAAAAAAaAIAAAAAAABgAAAA
AAAAAAEAAAACAAAACAAAAAAAAAAYAAAAAAAAAA==
""")


def _root() -> None:
    need_root("loading BPF programs")


def test_corrupt_bytes_give_clear_error() -> None:
    with pytest.raises(libbpf.BpfOpenError) as ei:
        libbpf.BpfObject.open(b"\x7fELF" + b"\0" * 60, "corrupt")
    assert "cannot open BPF object 'corrupt'" in str(ei.value)
    assert ei.value.errno != 0


def test_truncated_object_gives_clear_error() -> None:
    data = object_bytes("syscalls")
    with pytest.raises(libbpf.BpfOpenError):
        libbpf.BpfObject.open(data[: len(data) // 3], "truncated")


@pytest.mark.integration  # loads BPF programs into the kernel
def test_verifier_rejection_carries_the_log() -> None:
    _root()
    obj = libbpf.BpfObject.open(BAD_OBJ, "bad")
    try:
        with pytest.raises(libbpf.BpfLoadError) as ei:
            obj.load()
    finally:
        obj.close()
    text = str(ei.value)
    assert "the kernel refused BPF object 'bad'" in text
    assert "EACCES" in text or "EINVAL" in text
    assert "pw_bad" in text  # libbpf names the program
    assert "R0" in text or "invalid" in text or "mem" in text, text  # verifier lines


def test_rodata_names_and_types() -> None:
    obj = libbpf.BpfObject.open(object_bytes("syscalls"), "syscalls")
    try:
        names = obj.rodata.names()
        for n in ("filter_pids", "targ_comm", "self_pid", "str_max", "argv_max"):
            assert n in names
        obj.rodata["str_max"] = 77
        assert obj.rodata["str_max"] == struct.pack("<I", 77)
        obj.rodata["targ_comm"] = b"bash"
        assert obj.rodata["targ_comm"] == b"bash" + b"\0" * 12
        with pytest.raises(libbpf.BpfLibError, match="no .rodata variable"):
            obj.rodata["nope"] = 1
    finally:
        obj.close()
    obj.close()  # idempotent
    assert obj.closed


def test_unknown_map_and_program() -> None:
    with libbpf.BpfObject.open(object_bytes("syscalls"), "syscalls") as obj:
        with pytest.raises(libbpf.BpfLibError, match="no map"):
            obj.map("nosuch")
        with pytest.raises(libbpf.BpfLibError, match="no program"):
            obj.set_autoload("nosuch", False)
        assert "pw_raw_enter" in obj.program_names()


@pytest.mark.integration  # loads BPF programs into the kernel
def test_attach_to_missing_tracepoint_is_clear() -> None:
    _root()
    with libbpf.BpfObject.open(object_bytes("tcpconnect"), "tcpconnect") as obj:
        obj.load()
        with pytest.raises(libbpf.BpfLibError, match="no such tracepoint"):
            obj.attach_tracepoint("pw_tcp_state", "sock", "no_such_event")


def test_record_layouts_match_btf() -> None:
    """The struct.Struct layouts in loader.py agree with probewatch.h (via BTF sizes)."""
    sizes = _btf_struct_sizes(object_bytes("syscalls"))
    sizes.update(_btf_struct_sizes(object_bytes("tcpconnect")))
    sizes.update(_btf_struct_sizes(object_bytes("bashreadline")))
    # clang keeps in BTF only the structs that maps and functions use; check those
    want = {
        "pw_hdr": HDR.size,
        "pw_syscall": SYSCALL_SIZE,
        "pw_blob": BLOB.size,
        "pw_fork": HDR.size + FORK.size,
        "pw_exec": HDR.size + EXEC.size,
        "pw_exit": HDR.size + EXIT.size,
        "pw_tcp": HDR.size + TCP.size,
        "pw_readline": HDR.size + READLINE.size,
        "pw_count": COUNT.size,
        "pw_nrconf": NRCONF.size,
    }
    assert len(sizes) >= 4, sizes
    for name, size in sizes.items():
        assert size == want[name], (name, size, want[name])
    assert HDR.size == 64 and SYSCALL_SIZE == 136


def _btf_struct_sizes(data: bytes) -> dict[str, int]:
    import ctypes

    L = libbpf.lib()
    obj = libbpf.BpfObject.open(data, "btf")
    out = {}
    try:
        btf = L.bpf_object__btf(obj._ptr)
        for name in ("pw_hdr", "pw_syscall", "pw_blob", "pw_fork", "pw_exec", "pw_exit",
                     "pw_tcp", "pw_readline", "pw_count", "pw_nrconf"):
            tid = L.btf__find_by_name_kind(btf, name.encode(), 4)  # BTF_KIND_STRUCT
            if tid > 0:
                t = L.btf__type_by_id(btf, tid)
                out[name] = (ctypes.c_uint32 * 3).from_address(t)[2]
    finally:
        obj.close()
    return out


def test_parse_stats_sums_cpus() -> None:
    per = {0: struct.pack("<QQ", 5, 7), 1: struct.pack("<QQ", 1, 2), 2: struct.pack("<QQ", 0, 3)}
    s = parse_stats(per, 2)
    assert (s.generated, s.lost, s.read_failed) == (12, 3, 3)
    assert s.lost_per_cpu == {0: 1, 1: 2}
