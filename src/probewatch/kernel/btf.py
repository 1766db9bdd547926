"""Enum names from the running kernel's BTF (/sys/kernel/btf/vmlinux).

Only what probewatch needs to name numbers the kernel hands out (``enum
bpf_prog_type``, ``bpf_attach_type``, ``bpf_link_type``): the kernel is the source of
truth, no hand-written table. The file is read once and its enums kept.

Example::

    enum_values("bpf_prog_type")[5]       # 'BPF_PROG_TYPE_TRACEPOINT'
"""

from __future__ import annotations

import struct
from functools import lru_cache

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
BTF_MAGIC = 0xEB9F

# BTF_KIND_* -> bytes that follow the 12-byte struct btf_type (vlen: its low 16 bits)
_KIND_INT, _KIND_ARRAY, _KIND_STRUCT, _KIND_UNION, _KIND_ENUM = 1, 3, 4, 5, 6
_KIND_FUNC = 12
_KIND_FUNC_PROTO, _KIND_VAR, _KIND_DATASEC, _KIND_DECL_TAG, _KIND_ENUM64 = 13, 14, 15, 17, 19


def _extra(kind: int, vlen: int) -> int:
    if kind in (_KIND_INT, _KIND_VAR, _KIND_DECL_TAG):
        return 4
    if kind == _KIND_ARRAY:
        return 12
    if kind in (_KIND_STRUCT, _KIND_UNION, _KIND_DATASEC, _KIND_ENUM64):
        return 12 * vlen
    if kind in (_KIND_ENUM, _KIND_FUNC_PROTO):
        return 8 * vlen
    return 0


def parse_enums(data: bytes, funcs: dict[int, str] | None = None
                ) -> dict[str, dict[int, str]]:
    """Every named enum of a BTF blob: ``{enum name: {value: enumerator name}}``;
    ``funcs``, when given, is filled with ``{type id: name}`` of every FUNC (the
    attach point of fentry/fexit/LSM programs is a FUNC's id).

    Raises ValueError for data that is not BTF (or is cut short).
    """
    if len(data) < 24:
        raise ValueError("BTF data too short")
    magic = struct.unpack_from("<H", data, 0)[0]
    end = "<" if magic == BTF_MAGIC else ">"
    if struct.unpack_from(end + "H", data, 0)[0] != BTF_MAGIC:
        raise ValueError("not BTF (bad magic)")
    hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(end + "5I", data, 4)
    types = hdr_len + type_off
    strs = hdr_len + str_off
    if types + type_len > len(data) or strs + str_len > len(data):
        raise ValueError("BTF sections beyond the end of the data")

    def name(off: int) -> str:
        if off >= str_len:
            return ""
        s = strs + off
        e = data.find(b"\0", s, strs + str_len)
        return data[s : e if e >= 0 else strs + str_len].decode("ascii", "replace")

    out: dict[str, dict[int, str]] = {}
    p, stop = types, types + type_len
    hdr = struct.Struct(end + "3I")
    member = struct.Struct(end + "Ii")
    member64 = struct.Struct(end + "3I")
    tid = 0
    while p + 12 <= stop:
        tid += 1
        name_off, info, _ = hdr.unpack_from(data, p)
        kind = (info >> 24) & 0x1F
        if kind == _KIND_FUNC and funcs is not None:
            funcs[tid] = name(name_off)
        vlen = info & 0xFFFF
        body = p + 12
        p = body + _extra(kind, vlen)
        if p > stop:
            raise ValueError("BTF type section cut short")
        if kind in (_KIND_ENUM, _KIND_ENUM64) and name_off:
            vals: dict[int, str] = {}
            for i in range(vlen):
                if kind == _KIND_ENUM:
                    n, v = member.unpack_from(data, body + 8 * i)
                else:
                    n, lo, hi = member64.unpack_from(data, body + 12 * i)
                    v = lo | (hi << 32)
                vals.setdefault(v, name(n))
            out.setdefault(name(name_off), vals)
    return out


_funcs: dict[int, str] = {}


@lru_cache(maxsize=1)
def _kernel_enums() -> dict[str, dict[int, str]]:
    try:
        with open(VMLINUX_BTF, "rb") as f:
            return parse_enums(f.read(), _funcs)
    except (OSError, ValueError):
        return {}


def func_name(btf_id: int) -> str | None:
    """The name of the kernel function with vmlinux BTF type id ``btf_id`` (None if
    unknown: no BTF, or the id belongs to a module's BTF)."""
    _kernel_enums()
    return _funcs.get(btf_id)


def enum_values(enum: str) -> dict[int, str]:
    """``{value: name}`` of a kernel enum; empty when the kernel has no BTF or no such enum."""
    return _kernel_enums().get(enum, {})


def enum_name(enum: str, value: int, strip: str = "") -> str:
    """The enumerator of ``value`` (its prefix ``strip`` removed, lower case); the number
    as text when unknown.

    >>> enum_name("no_such_enum", 7)
    '7'
    """
    n = enum_values(enum).get(value)
    if n is None:
        return str(value)
    if strip and n.startswith(strip):
        n = n[len(strip):]
    return n.lower()


__all__ = ["enum_name", "enum_values", "func_name", "parse_enums"]
