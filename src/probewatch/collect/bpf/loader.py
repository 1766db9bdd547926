"""Find the built BPF objects, and turn their ring-buffer records into Events.

The record layouts are those of ``probewatch.h``; each is decoded with one
precompiled ``struct.Struct``.

Example::

    data = object_bytes("syscalls")          # obj/<machine>/syscalls.bpf.o (x86_64, arm64)
    tab = syscall_table()                    # nr <-> name, args from the kernel
"""

from __future__ import annotations

import functools
import os
import struct
from importlib import resources
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ...decode.syscalls import SyscallTable, parse_syscall_numbers, read_syscall_formats
from ...errors import DecodeError, FeatureUnavailable
from ...event import Event
from ..base import Losses  # defined with the collector interface; re-exported here

# enum pw_kind
EV_SYSCALL, EV_SYS_ENTER, EV_FORK, EV_EXEC, EV_EXIT, EV_TCP, EV_READLINE = range(1, 8)
EV_EXEC_INFO, EV_FORK_INFO = 8, 9
# enum pw_stat
STAT_GENERATED, STAT_RB_LOST, STAT_READ_FAIL, STAT_TRUNC = range(4)
STAT_MAX = 8
# blob flags
BLOB_TRUNC, BLOB_FAULT, BLOB_NULL = 1, 2, 4
# nrconf flags
NR_TRACE, NR_NORETURN = 1, 2

HDR = struct.Struct("<HHIQIIIIIIQ16s")  # struct pw_hdr, 64 bytes
SYSCALL = struct.Struct("<qQ6QiI")  # struct pw_syscall after the header
BLOB = struct.Struct("<BBHHH")
FORK = struct.Struct("<II")
EXEC = struct.Struct("<II256s")
EXIT = struct.Struct("<iIQQ")
EXEC_INFO = struct.Struct("<IIIIIIIIQQQQHHHHHH4x")  # struct pw_exec_info after the header
FORK_INFO = struct.Struct("<IIQQQ")
# pw_exec_info.flags
XI_FNAME_TRUNC, XI_CWD_TRUNC, XI_ARGV_TRUNC, XI_ENV_TRUNC = 0x1, 0x2, 0x4, 0x8
XI_ARGV_FAULT, XI_ENV_FAULT, XI_NO_MM, XI_CWD_UNREACH = 0x10, 0x20, 0x40, 0x80

# environment variables an exec record keeps (the rest of the environment is dropped)
EXEC_ENV_KEEP = frozenset({
    "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "PYTHONPATH", "BASH_ENV", "ENV",
    "HISTFILE", "HISTSIZE", "HISTFILESIZE", "HISTCONTROL", "PROMPT_COMMAND",
    "SSH_CONNECTION", "SSH_CLIENT", "SUDO_USER", "SUDO_UID", "PYTHONSTARTUP",
    "PERL5OPT", "NODE_OPTIONS", "GCONV_PATH", "LD_BIND_NOW",
})


def pick_env(blob: bytes, keep: frozenset[str] = EXEC_ENV_KEEP) -> dict[str, str]:
    """NAME -> value for the kept names in a NUL-separated environment block."""
    out: dict[str, str] = {}
    for item in blob.split(b"\0"):
        eq = item.find(b"=")
        if eq <= 0:
            continue
        name = item[:eq].decode("ascii", "replace")
        if name in keep and name not in out:
            out[name] = item[eq + 1 :].decode("utf-8", "surrogateescape")
    return out


def split_argv(blob: bytes) -> list[str]:
    """A NUL-separated argument block (mm->arg_start..arg_end) -> argv."""
    if blob.endswith(b"\0"):
        blob = blob[:-1]
    if not blob:
        return []
    return [a.decode("utf-8", "surrogateescape") for a in blob.split(b"\0")]
TCP = struct.Struct("<HHHH16s16sQ")
READLINE = struct.Struct("<II256s")
COUNT = struct.Struct("<QQQ")
NRCONF = struct.Struct("<6sBb6H")  # kinds, flags, argv_arg, sizes
SYSCALL_SIZE = HDR.size + SYSCALL.size  # 136

# uname -m -> the obj/ directory of that architecture's objects (the vmlinux.h
# directory names of libbpf-tools: x86_64 keeps its machine name, aarch64 is arm64)
ARCH_DIRS = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


def machine(uname_m: str | None = None) -> str:
    """The obj/ directory name for ``uname -m`` (default: this machine): ``arm64`` for
    ``aarch64``."""
    m = uname_m or os.uname().machine
    return ARCH_DIRS.get(m, m)


def _obj_path(name: str) -> Any:
    base = resources.files("probewatch.collect.bpf").joinpath("obj")
    return base.joinpath(machine()).joinpath(name)


def object_bytes(name: str) -> bytes:
    """The built object NAME.bpf.o for this machine (package data)."""
    p = _obj_path(f"{name}.bpf.o")
    try:
        return p.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise FeatureUnavailable(
            f"no BPF object {name}.bpf.o for {machine()} in this probewatch installation "
            "(build it with scripts/build-bpf.sh)"
        ) from None


@functools.lru_cache(maxsize=4)
def syscall_table(root: str | None = None) -> SyscallTable:
    """Syscall numbers (built table) joined with the running kernel's formats."""
    if root is None:
        from ...kernel.tracefs import tracefs_root

        try:
            root = tracefs_root()
        except Exception:
            root = ""
    try:
        text = _obj_path("syscalls.tbl").read_text()
    except (FileNotFoundError, NotADirectoryError):
        text = ""
    nums = parse_syscall_numbers(text)
    formats = read_syscall_formats(root) if root else {}
    # syscalls newer than the headers the table was built from: numbered here when the
    # running kernel has them (a format), or they would not be traced at all
    newer = NEWER_SYSCALLS.get(machine(), {})
    for nr, name in newer.items():
        if nr not in nums and name in formats:
            nums[nr] = name
    return SyscallTable(nums, formats)


#: syscalls after Linux 6.1's UAPI headers (Debian 12 builds the table from those), from
#: the kernel's arch/x86/entry/syscalls/syscall_64.tbl; used only when the running
#: kernel has a tracepoint format of that name
NEWER_SYSCALLS: dict[str, dict[int, str]] = {
    "x86_64": {
        335: "uretprobe", 336: "uprobe", 451: "cachestat", 452: "fchmodat2",
        453: "map_shadow_stack", 454: "futex_wake", 455: "futex_wait", 456: "futex_requeue",
        457: "statmount", 458: "listmount", 459: "lsm_get_self_attr",
        460: "lsm_set_self_attr", 461: "lsm_list_modules", 462: "mseal", 463: "setxattrat",
        464: "getxattrat", 465: "listxattrat", 466: "removexattrat", 467: "open_tree_attr",
        468: "file_getattr", 469: "file_setattr",
    },
}


def parse_stats(per_slot: dict[int, bytes], ncpu: int) -> Losses:
    """Sum the per-CPU u64 counters of map "stats" (slot -> raw per-CPU values)."""
    out = Losses()

    def cpus(slot: int) -> list[int]:
        raw = per_slot.get(slot, b"")
        return [struct.unpack_from("<Q", raw, 8 * c)[0] for c in range(min(ncpu, len(raw) // 8))]

    out.generated = sum(cpus(STAT_GENERATED))
    lost = cpus(STAT_RB_LOST)
    out.lost = sum(lost)
    out.lost_per_cpu = {c: n for c, n in enumerate(lost)}
    out.read_failed = sum(cpus(STAT_READ_FAIL))
    out.truncated = sum(cpus(STAT_TRUNC))
    return out


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _s64(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


def _u32(v: int) -> int:
    return v & 0xFFFFFFFF


# the C types of syscall arguments (tracepoint formats) that are not 64-bit unsigned:
# the registers carry them as 64 bits, upper half undefined for 32-bit types
_S32 = {"int", "pid_t", "key_t", "clockid_t", "mqd_t", "int32_t", "__s32", "timer_t"}
_S64 = {"long", "off_t", "loff_t", "ssize_t", "__kernel_old_time_t", "time_t"}
_U32 = {"unsigned int", "u32", "__u32", "uid_t", "gid_t", "umode_t", "old_uid_t",
        "old_gid_t", "rwf_t", "unsigned", "mode_t", "qid_t"}


def _converters(args: list[tuple[str, str]]) -> list[Any]:
    """Per argument, how its raw 64-bit register value becomes the C value (None: as is):
    dfd -100 (AT_FDCWD) is -100, not 4294967196 or 18446744073709551516."""
    out: list[Any] = [None] * 6
    for i, (ctype, _name) in enumerate(args[:6]):
        ct = " ".join(ctype.replace("const ", "").split())
        if "*" in ct:
            continue
        if ct in _S32:
            out[i] = _s32
        elif ct in _S64:
            out[i] = _s64
        elif ct in _U32:
            out[i] = _u32
    return out


class RecordDecoder:
    """Ring-buffer records -> Events (the syscall names and argument names from ``table``).

    execve/execveat entries (sent at entry, before the image is replaced) are held by
    tid and joined with the return that follows; exit/exit_group have no return.
    """

    def __init__(self, table: SyscallTable, probe: str = "bpf") -> None:
        self.table = table
        self.probe = probe
        self._pending: dict[int, tuple[dict[str, Any], list[str], list[str]]] = {}
        self._conv: dict[int, list[Any]] = {}
        self.unknown = 0

    def decode(self, rec: bytes) -> Event | None:
        if len(rec) < HDR.size:
            self.unknown += 1
            return None
        (kind, _flags, cpu, ts, pid, tid, ppid, uid, gid, _pad, cgroup,
         comm) = HDR.unpack_from(rec)
        base = {"ppid": ppid, "uid": uid, "gid": gid, "cgroup": cgroup}
        c = comm.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")  # lossless
        if kind == EV_SYSCALL or kind == EV_SYS_ENTER:
            return self._syscall(kind, rec, ts, cpu, pid, tid, c, base)
        if kind == EV_FORK:
            child_pid, child_tid = FORK.unpack_from(rec, HDR.size)
            base.update(child_pid=child_pid, child_tid=child_tid)
            return Event(ts, cpu, pid, tid, c, "sched:sched_process_fork", self.probe, base)
        if kind == EV_EXEC:
            old, n, fname = EXEC.unpack_from(rec, HDR.size)
            base.update(old_pid=old,
                        filename=fname[: max(n - 1, 0)].decode(errors="surrogateescape"))
            return Event(ts, cpu, pid, tid, c, "sched:sched_process_exec", self.probe, base)
        if kind == EV_EXEC_INFO:
            return self._exec_info(rec, ts, cpu, pid, tid, c, base)
        if kind == EV_FORK_INFO:
            child, _p, cstart, cboot, pboot = FORK_INFO.unpack_from(rec, HDR.size)
            base.update(child_pid=child, child_tid=child, child_start_ns=cstart,
                        child_start_boottime=cboot, parent_start_boottime=pboot)
            return Event(ts, cpu, pid, tid, c, "sched:sched_process_fork", self.probe, base)
        if kind == EV_EXIT:
            code, _p, start, boot = EXIT.unpack_from(rec, HDR.size)
            base.update(exit_code=code, start_ns=start, start_boottime=boot)
            return Event(ts, cpu, pid, tid, c, "sched:sched_process_exit", self.probe, base)
        if kind == EV_TCP:
            fam, sport, dport, state, sa, da, lat = TCP.unpack_from(rec, HDR.size)
            if fam == 2:
                saddr, daddr = str(IPv4Address(sa[:4])), str(IPv4Address(da[:4]))
            else:
                saddr, daddr = str(IPv6Address(sa)), str(IPv6Address(da))
            base.update(family=fam, saddr=saddr, sport=sport, daddr=daddr, dport=dport,
                        state=state, latency_ns=lat)
            return Event(ts, cpu, pid, tid, c, "tcp:connect", self.probe, base)
        if kind == EV_READLINE:
            n, fl, line = READLINE.unpack_from(rec, HDR.size)
            base["line"] = line[:n].split(b"\0", 1)[0].decode(errors="surrogateescape")
            if fl & BLOB_FAULT:
                base["faults"] = ["line"]
            if fl & BLOB_TRUNC:
                base["truncated"] = ["line"]
            return Event(ts, cpu, pid, tid, c, "bash:readline", self.probe, base)
        self.unknown += 1
        return None

    def _exec_info(self, rec: bytes, ts: int, cpu: int, pid: int, tid: int, comm: str,
                   base: dict[str, Any]) -> Event:
        """PW_EV_EXEC_INFO -> a sched:sched_process_exec Event with the full context."""
        (old, fl, euid, egid, suid, sgid, auid, ses, start, boot, pboot, cap,
         fn_len, cwd_len, argv_len, env_len, cg_len, exe_len) = EXEC_INFO.unpack_from(
            rec, HDR.size)
        off = HDR.size + EXEC_INFO.size
        fn = rec[off : off + fn_len]
        off += fn_len
        cwd = rec[off : off + cwd_len]
        off += cwd_len
        argv = rec[off : off + argv_len]
        off += argv_len
        env = rec[off : off + env_len]
        off += env_len
        cg = rec[off : off + cg_len]
        off += cg_len
        exe = rec[off : off + exe_len]
        f = base
        f.update(
            old_pid=old,
            filename=fn.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"),
            argv=split_argv(argv),
            cwd=cwd.decode("utf-8", "surrogateescape"),
            env=pick_env(env),
            euid=euid, egid=egid, suid=suid, sgid=sgid, loginuid=auid, sessionid=ses,
            start_ns=start, start_boottime=boot, parent_start_boottime=pboot,
            cap_effective=cap,
            cgroup_name=cg.decode("utf-8", "surrogateescape"),
            exe_name=exe.decode("utf-8", "surrogateescape"),
        )
        trunc = [n for bit, n in ((XI_FNAME_TRUNC, "filename"), (XI_CWD_TRUNC, "cwd"),
                                  (XI_ARGV_TRUNC, "argv"), (XI_ENV_TRUNC, "env")) if fl & bit]
        faults = [n for bit, n in ((XI_ARGV_FAULT, "argv"), (XI_ENV_FAULT, "env"),
                                   (XI_CWD_UNREACH, "cwd")) if fl & bit]
        if fl & XI_NO_MM:
            faults.append("mm")
        if trunc:
            f["truncated"] = trunc
        if faults:
            f["faults"] = faults
        return Event(ts, cpu, pid, tid, comm, "sched:sched_process_exec", self.probe, f)

    def _syscall(self, kind: int, rec: bytes, ts: int, cpu: int, pid: int, tid: int,
                 comm: str, base: dict[str, Any]) -> Event | None:
        if len(rec) < SYSCALL_SIZE:
            raise DecodeError(f"short syscall record ({len(rec)} bytes)")
        ret, dur, a0, a1, a2, a3, a4, a5, nr, dlen = SYSCALL.unpack_from(rec, HDR.size)
        args = (a0, a1, a2, a3, a4, a5)
        info = self.table.by_nr.get(nr)
        name = info.name if info else f"syscall_{nr}"
        names = info.arg_names if info and info.known else [f"arg{i}" for i in range(6)]
        fields = base
        fields["nr"] = nr
        conv = self._conv.get(nr)
        if conv is None:
            conv = self._conv[nr] = _converters(info.args if info and info.known else [])
        for i, n in enumerate(names[:6]):
            c = conv[i]
            fields[n] = args[i] if c is None else c(args[i])
        faults: list[str] = []
        trunc: list[str] = []
        off = SYSCALL_SIZE
        end = min(len(rec), SYSCALL_SIZE + dlen)
        while off + BLOB.size <= end:
            ai, bkind, bflags, count, blen = BLOB.unpack_from(rec, off)
            data = rec[off + BLOB.size : off + BLOB.size + blen]
            off += BLOB.size + ((blen + 7) & ~7)
            an = names[ai] if ai < len(names) else f"arg{ai}"
            if bflags & BLOB_NULL:  # a NULL pointer: no string (JSON null, "NULL" in text)
                fields[an] = None
                continue
            if bflags & BLOB_FAULT:
                faults.append(an)
                fields[f"{an}_ptr"] = args[ai] if ai < 6 else 0
                if bkind != 6:
                    continue
            if bflags & BLOB_TRUNC:
                trunc.append(an)
            if bkind == 1:  # string
                fields[an] = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif bkind == 6:  # argv
                parts = data.split(b"\0")[:count]
                fields[an] = [p.decode("utf-8", "surrogateescape") for p in parts]
            elif bkind in (7, 8, 11, 20) or 13 <= bkind <= 17:  # structs, arrays, iovecs:
                fields[f"{an}_data"] = data  # the pointer stays in fields[an]
                if bkind == 16:  # recvmsg: msg_namelen as passed in
                    fields[f"{an}_inlen"] = count
            elif bkind in (9, 10):  # dirents / pointers counted
                fields[f"{an}_count"] = count
            elif bkind in (3, 5, 12) and -4096 < ret < 0:
                # an output buffer of a failed call: the pointer, as strace shows
                if bkind == 5:  # struct sockaddr out: *addrlen as passed in
                    fields[f"{an}_inlen"] = count
            else:
                fields[an] = data
                if bkind == 5:  # struct sockaddr out: *addrlen as passed in
                    fields[f"{an}_inlen"] = count
        if faults:
            fields["faults"] = faults
        if trunc:
            fields["truncated"] = trunc
        if kind == EV_SYS_ENTER:
            if name in ("exit", "exit_group"):
                fields["ret"] = None
                return Event(ts, cpu, pid, tid, comm, f"syscalls:{name}", self.probe, fields)
            self._pending[tid] = (fields, faults, trunc)
            return None
        pend = self._pending.pop(tid, None)
        if pend is not None:
            pf, pfaults, ptrunc = pend
            for k, v in pf.items():
                if k not in ("ppid", "uid", "gid", "cgroup"):
                    fields.setdefault(k, v)
                    if v is None or isinstance(v, str | list):
                        fields[k] = v
            if pfaults:
                fields["faults"] = pfaults
            if ptrunc:
                fields["truncated"] = ptrunc
        fields["ret"] = ret
        fields["duration_ns"] = dur
        return Event(ts, cpu, pid, tid, comm, f"syscalls:{name}", self.probe, fields)


__all__ = [
    "object_bytes",
    "syscall_table",
    "RecordDecoder",
    "Losses",
    "parse_stats",
    "machine",
    "pick_env",
    "split_argv",
    "EXEC_ENV_KEEP",
]
