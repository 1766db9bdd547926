"""Minimal bpf(2) through ctypes: load a program, create a map, list what is loaded.

This is the probing half of BPF support (does this kernel let us load a program
of type X?) and the reading half of ``probewatch audit`` (which programs and links
exist, where they are attached); the real loader lives in ``collect/bpf``. File descriptors returned
here are plain ints owned by the caller: close them with :func:`os.close`.

Example::

    fd = prog_load(BPF_PROG_TYPE_TRACEPOINT, TRIVIAL_PROG)   # r0 = 0; exit
    os.close(fd)
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from collections.abc import Mapping
from typing import Any

# syscall numbers of bpf(2) per machine (uname -m)
SYS_BPF = {
    "x86_64": 321,
    "i386": 357,
    "i686": 357,
    "aarch64": 280,
    "arm64": 280,
    "riscv64": 280,
    "loongarch64": 280,
    "armv7l": 386,
    "armv6l": 386,
    "ppc64le": 361,
    "ppc64": 361,
    "s390x": 351,
    "mips64": 5315,
}

# enum bpf_cmd
BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_PROG_GET_NEXT_ID = 11
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_TASK_FD_QUERY = 20
BPF_LINK_GET_FD_BY_ID = 30
BPF_LINK_GET_NEXT_ID = 31

# enum bpf_map_type
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_RINGBUF = 27

# enum bpf_prog_type
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_KPROBE = 2
BPF_PROG_TYPE_TRACEPOINT = 5
BPF_PROG_TYPE_RAW_TRACEPOINT = 17

BPF_OBJ_NAME_LEN = 16

# r0 = 0 (BPF_ALU64 | BPF_MOV | BPF_K); exit (BPF_JMP | BPF_EXIT)
TRIVIAL_PROG = bytes([0xB7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])


class SyscallError(OSError):
    """A raw syscall made through :func:`syscall` failed; ``errno`` is set, ``what`` says which."""

    def __init__(self, err: int, what: str) -> None:
        super().__init__(err, os.strerror(err))
        self.what = what

    def __str__(self) -> str:
        name = errno.errorcode.get(self.errno or 0, str(self.errno))
        return f"{self.what}: {name} ({self.strerror})"


class BpfError(SyscallError):
    """bpf(2) failed; ``errno`` is set, ``log`` holds the verifier log when one was asked for."""

    def __init__(self, err: int, what: str, log: str = "") -> None:
        super().__init__(err, what)
        self.log = log


class _MapCreateAttr(ctypes.Structure):
    # the BPF_MAP_CREATE member of union bpf_attr, up to map_extra (Linux 5.16 layout)
    _fields_ = [
        ("map_type", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("numa_node", ctypes.c_uint32),
        ("map_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("map_ifindex", ctypes.c_uint32),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
    ]


class _ProgLoadAttr(ctypes.Structure):
    # the BPF_PROG_LOAD member of union bpf_attr, up to expected_attach_type (4.17)
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("prog_ifindex", ctypes.c_uint32),
        ("expected_attach_type", ctypes.c_uint32),
    ]


_libc: ctypes.CDLL | None = None


def syscall(nr: int, *args: Any) -> int:
    """libc syscall(nr, args...) (ctypes-typed args); the result, -1 with errno on failure."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fn = _libc.syscall
    fn.restype = ctypes.c_long
    return int(fn(ctypes.c_long(nr), *args))


def syscall_nr(
    table: Mapping[str, int], what: str, error: type[SyscallError], machine: str | None = None
) -> int:
    """``table[machine]`` (default: this machine); ``error(ENOSYS, what + machine)`` if absent."""
    m = machine or os.uname().machine
    try:
        return table[m]
    except KeyError:
        raise error(errno.ENOSYS, f"{what}{m}") from None


def sys_bpf_nr(machine: str | None = None) -> int:
    """The bpf(2) syscall number on ``machine`` (default: this one); ENOSYS if unknown."""
    return syscall_nr(SYS_BPF, "bpf(2) syscall number unknown for machine ", BpfError, machine)


def bpf(cmd: int, attr: ctypes.Structure, what: str = "bpf") -> int:
    """Call bpf(cmd, &attr, sizeof attr); return the (non-negative) result or raise BpfError."""
    ret = syscall(
        sys_bpf_nr(), ctypes.c_int(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr))
    )
    if ret < 0:
        raise BpfError(ctypes.get_errno(), what)
    return ret


def kernel_version_code(release: str | None = None) -> int:
    """LINUX_VERSION_CODE for a release string ('6.1.0-18-amd64' -> 0x060100).

    Only kernels before 5.0 check ``kern_version`` of kprobe programs. Ubuntu's
    /proc/version_signature carries the real upstream sublevel and wins when present.
    """
    if release is None:
        release = os.uname().release
        try:
            with open("/proc/version_signature") as f:
                sig = f.read().split()
            if sig:
                release = sig[-1]
        except OSError:
            pass
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not m:
        return 0
    a, b, c = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    return (a << 16) + (b << 8) + min(c, 255)


def prog_load(
    prog_type: int,
    insns: bytes = TRIVIAL_PROG,
    license: str = "GPL",
    name: str = "",
    log_size: int = 0,
) -> int:
    """Load a program; return its fd. With ``log_size`` > 0 a failure carries the verifier log."""
    if len(insns) % 8:
        raise ValueError("BPF instructions are 8 bytes each")
    insn_buf = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    attr = _ProgLoadAttr()
    attr.prog_type = prog_type
    attr.insn_cnt = len(insns) // 8
    attr.insns = ctypes.addressof(insn_buf)
    attr.license = ctypes.addressof(lic)
    attr.kern_version = kernel_version_code()
    if name:
        attr.prog_name = name.encode()[: BPF_OBJ_NAME_LEN - 1]
    log = None
    if log_size > 0:
        log = ctypes.create_string_buffer(log_size)
        attr.log_level = 1
        attr.log_size = log_size
        attr.log_buf = ctypes.addressof(log)
    try:
        return bpf(BPF_PROG_LOAD, attr, f"BPF_PROG_LOAD type {prog_type}")
    except BpfError as e:
        if log is not None:
            e.log = log.value.decode(errors="replace").strip()
        raise


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int) -> int:
    """Create a map; return its fd."""
    attr = _MapCreateAttr()
    attr.map_type = map_type
    attr.key_size = key_size
    attr.value_size = value_size
    attr.max_entries = max_entries
    return bpf(BPF_MAP_CREATE, attr, f"BPF_MAP_CREATE type {map_type}")


# --- reading what is loaded (probewatch audit) --------------------------------------


class _IdAttr(ctypes.Structure):
    # BPF_*_GET_NEXT_ID / BPF_*_GET_FD_BY_ID: start_id (or the id), next_id, open_flags
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32),
                ("open_flags", ctypes.c_uint32)]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32),
                ("info", ctypes.c_uint64)]


class _TaskFdQueryAttr(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint32), ("fd", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("buf_len", ctypes.c_uint32), ("buf", ctypes.c_uint64),
                ("prog_id", ctypes.c_uint32), ("fd_type", ctypes.c_uint32),
                ("probe_offset", ctypes.c_uint64), ("probe_addr", ctypes.c_uint64)]


class _ProgInfo(ctypes.Structure):
    # struct bpf_prog_info up to btf_id (4.18+); the kernel fills what it has
    _fields_ = [
        ("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32), ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN), ("ifindex", ctypes.c_uint32),
        ("gpl_compatible", ctypes.c_uint32), ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64), ("nr_jited_ksyms", ctypes.c_uint32),
        ("nr_jited_func_lens", ctypes.c_uint32), ("jited_ksyms", ctypes.c_uint64),
        ("jited_func_lens", ctypes.c_uint64), ("btf_id", ctypes.c_uint32),
    ]


def _next_ids(cmd: int, what: str) -> list[int]:
    ids: list[int] = []
    attr = _IdAttr()
    while True:
        try:
            bpf(cmd, attr, what)
        except BpfError as e:
            if e.errno == errno.ENOENT:
                return ids
            raise
        ids.append(attr.next_id)
        attr.id = attr.next_id


def prog_ids() -> list[int]:
    """The ids of every BPF program loaded now (BPF_PROG_GET_NEXT_ID; needs CAP_SYS_ADMIN)."""
    return _next_ids(BPF_PROG_GET_NEXT_ID, "BPF_PROG_GET_NEXT_ID")


def link_ids() -> list[int]:
    """The ids of every BPF link now (BPF_LINK_GET_NEXT_ID, Linux 5.8+)."""
    return _next_ids(BPF_LINK_GET_NEXT_ID, "BPF_LINK_GET_NEXT_ID")


def _fd_by_id(cmd: int, obj_id: int, what: str) -> int:
    attr = _IdAttr()
    attr.id = obj_id
    return bpf(cmd, attr, f"{what} {obj_id}")


def _info(fd: int, buf: ctypes.Array[ctypes.c_char] | ctypes.Structure, what: str) -> None:
    attr = _InfoAttr()
    attr.bpf_fd = fd
    attr.info_len = ctypes.sizeof(buf)
    attr.info = ctypes.addressof(buf)
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr, what)


def prog_info(prog_id: int) -> dict[str, Any]:
    """What the kernel says of program ``prog_id``: type (number), name, tag (hex),
    load_time (ns since boot, CLOCK_BOOTTIME), uid, map_ids, btf_id, gpl.

    Raises BpfError (ENOENT when it went away meanwhile)."""
    fd = _fd_by_id(BPF_PROG_GET_FD_BY_ID, prog_id, "BPF_PROG_GET_FD_BY_ID")
    try:
        info = _ProgInfo()
        _info(fd, info, f"BPF_OBJ_GET_INFO_BY_FD prog {prog_id}")
        n = info.nr_map_ids
        map_ids: list[int] = []
        if n:
            arr = (ctypes.c_uint32 * n)()
            info2 = _ProgInfo()
            info2.nr_map_ids = n
            info2.map_ids = ctypes.addressof(arr)
            _info(fd, info2, f"BPF_OBJ_GET_INFO_BY_FD prog {prog_id}")
            map_ids = list(arr[: min(n, info2.nr_map_ids)])
    finally:
        os.close(fd)
    return {
        "id": info.id, "type": info.type, "name": info.name.decode(errors="replace"),
        "tag": bytes(info.tag).hex(), "load_time": info.load_time,
        "uid": info.created_by_uid, "map_ids": map_ids, "btf_id": info.btf_id,
        "gpl": bool(info.gpl_compatible & 1), "jited": info.jited_prog_len > 0,
        "xlated_len": info.xlated_prog_len,
    }


_LINK_INFO_SIZE = 96
_PATH_MAX = 4096


def _cstr(buf: ctypes.Array[ctypes.c_char]) -> str:
    return buf.value.decode(errors="surrogateescape")


def link_info(link_id: int) -> dict[str, Any]:
    """What the kernel says of BPF link ``link_id``: type and prog_id (numbers) and the
    attach point by link type: ``tp_name``; ``attach_type`` (number), ``target_obj_id``,
    ``target_btf_id``; ``cgroup_id``; ``ifindex``; ``netns_ino``; the perf_event link's
    ``perf_type`` (enum bpf_perf_event_type) with ``path``/``offset`` (uprobes),
    ``func``/``offset``/``addr`` (kprobes) or ``tp_name``; uprobe_multi's ``path``,
    ``offsets`` and ``pid``; kprobe_multi's ``count``.

    Raises BpfError (ENOENT when it went away meanwhile)."""
    fd = _fd_by_id(BPF_LINK_GET_FD_BY_ID, link_id, "BPF_LINK_GET_FD_BY_ID")
    try:
        return _link_info_fd(fd, link_id)
    finally:
        os.close(fd)


def _link_info_fd(fd: int, link_id: int) -> dict[str, Any]:
    import struct

    what = f"BPF_OBJ_GET_INFO_BY_FD link {link_id}"
    raw = ctypes.create_string_buffer(_LINK_INFO_SIZE)
    _info(fd, raw, what)
    ltype, lid, prog_id = struct.unpack_from("=3I", raw.raw, 0)
    out: dict[str, Any] = {"id": lid, "type": ltype, "prog_id": prog_id}
    name = ctypes.create_string_buffer(_PATH_MAX)

    def again(fields: list[tuple[int, str, int]]) -> bytes:
        """A second call with string buffers / arrays filled in: (offset, fmt, value)."""
        buf = ctypes.create_string_buffer(_LINK_INFO_SIZE)
        for off, fmt, val in fields:
            struct.pack_into(fmt, buf, off, val)
        _info(fd, buf, what)
        return buf.raw

    addr = ctypes.addressof(name)
    if ltype in (1, 4):  # raw_tracepoint: tp_name; iter: target_name
        again([(16, "=Q", addr), (24, "=I", _PATH_MAX)])
        out["tp_name" if ltype == 1 else "target_name"] = _cstr(name)
    elif ltype == 2:  # tracing (fentry/fexit/LSM/freplace)
        out["attach_type"], out["target_obj_id"], out["target_btf_id"] = struct.unpack_from(
            "=3I", raw.raw, 16)
    elif ltype == 3:  # cgroup
        out["cgroup_id"], out["attach_type"] = struct.unpack_from("=QI", raw.raw, 16)
    elif ltype == 5:  # netns
        out["netns_ino"], out["attach_type"] = struct.unpack_from("=2I", raw.raw, 16)
    elif ltype == 6:  # xdp
        out["ifindex"] = struct.unpack_from("=I", raw.raw, 16)[0]
    elif ltype in (11, 13):  # tcx, netkit
        out["ifindex"], out["attach_type"] = struct.unpack_from("=2I", raw.raw, 16)
    elif ltype == 9:  # struct_ops
        out["map_id"] = struct.unpack_from("=I", raw.raw, 16)[0]
    elif ltype == 10:  # netfilter
        out["pf"], out["hooknum"], out["priority"] = struct.unpack_from("=IIi", raw.raw, 16)
    elif ltype == 8:  # kprobe_multi
        out["count"], out["flags"] = struct.unpack_from("=2I", raw.raw, 24)
    elif ltype == 12:  # uprobe_multi
        b = again([(16, "=Q", addr), (48, "=I", _PATH_MAX)])
        out["path"] = _cstr(name)
        count, flags, pid = struct.unpack_from("=3I", b, 52)
        out["count"], out["flags"], out["pid"] = count, flags, pid
        if count:
            offs = (ctypes.c_uint64 * count)()
            again([(16, "=Q", addr), (48, "=I", _PATH_MAX),
                   (24, "=Q", ctypes.addressof(offs)), (52, "=I", count)])
            out["offsets"] = list(offs)
    elif ltype == 7:  # perf_event: uprobe / kprobe / tracepoint / event
        ptype = struct.unpack_from("=I", raw.raw, 16)[0]
        out["perf_type"] = ptype
        if ptype in (1, 2, 3, 4, 5):
            b = again([(16, "=I", ptype), (24, "=Q", addr), (32, "=I", _PATH_MAX)])
            if ptype in (1, 2):
                out["path"] = _cstr(name)
                out["offset"] = struct.unpack_from("=I", b, 36)[0]
            elif ptype in (3, 4):
                out["func"] = _cstr(name)
                out["offset"], out["addr"] = struct.unpack_from("=IQ", b, 36)
            else:
                out["tp_name"] = _cstr(name)
        elif ptype == 6:
            out["config"], out["event_type"] = struct.unpack_from("=QI", raw.raw, 24)
    return out


class _ObjAttr(ctypes.Structure):
    # BPF_OBJ_PIN / BPF_OBJ_GET: pathname, bpf_fd, file_flags
    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32),
                ("file_flags", ctypes.c_uint32)]


def _obj(cmd: int, path: str, fd: int, what: str) -> int:
    name = ctypes.create_string_buffer(os.fsencode(path))
    attr = _ObjAttr()
    attr.pathname = ctypes.addressof(name)
    attr.bpf_fd = fd
    return bpf(cmd, attr, f"{what} {path}")


def obj_pin(fd: int, path: str) -> None:
    """Pin the BPF object ``fd`` at ``path`` (a file in a bpffs mount)."""
    _obj(BPF_OBJ_PIN, path, fd, "BPF_OBJ_PIN")


def obj_get(path: str) -> int:
    """A new fd for the BPF object pinned at ``path`` (close it with os.close)."""
    return _obj(BPF_OBJ_GET, path, 0, "BPF_OBJ_GET")


#: enum bpf_task_fd_type
FD_TYPES = ("raw_tracepoint", "tracepoint", "kprobe", "kretprobe", "uprobe", "uretprobe")


def task_fd_query(pid: int, fd: int) -> dict[str, Any] | None:
    """The BPF program attached through fd ``fd`` of process ``pid`` (a perf event or a
    raw tracepoint fd): ``prog_id``, ``fd_type`` (a name of :data:`FD_TYPES`), ``name``
    (tracepoint, kernel function or file path), ``offset`` and ``addr``. None when no
    program is attached there (or the fd is of another kind)."""
    name = ctypes.create_string_buffer(_PATH_MAX)
    attr = _TaskFdQueryAttr()
    attr.pid, attr.fd, attr.buf_len, attr.buf = pid, fd, _PATH_MAX, ctypes.addressof(name)
    try:
        bpf(BPF_TASK_FD_QUERY, attr, f"BPF_TASK_FD_QUERY pid {pid} fd {fd}")
    except BpfError:
        return None
    t = attr.fd_type
    return {"prog_id": attr.prog_id,
            "fd_type": FD_TYPES[t] if t < len(FD_TYPES) else str(t),
            "name": _cstr(name), "offset": attr.probe_offset, "addr": attr.probe_addr}


__all__ = [
    "prog_ids",
    "link_ids",
    "prog_info",
    "link_info",
    "task_fd_query",
    "obj_pin",
    "obj_get",
    "BpfError",
    "SyscallError",
    "bpf",
    "syscall",
    "syscall_nr",
    "prog_load",
    "map_create",
    "kernel_version_code",
    "sys_bpf_nr",
    "TRIVIAL_PROG",
    "BPF_PROG_TYPE_KPROBE",
    "BPF_PROG_TYPE_TRACEPOINT",
    "BPF_PROG_TYPE_RAW_TRACEPOINT",
    "BPF_MAP_TYPE_ARRAY",
    "BPF_MAP_TYPE_RINGBUF",
]
