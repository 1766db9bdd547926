"""strace-style decoding of syscall arguments and return values.

The syscall names and their argument names and types come from the running
kernel's syscall tracepoint formats (``events/syscalls/sys_enter_*/format``); the
numbers from the table built with the BPF objects (the formats do not carry them).
The flag tables below follow the Linux UAPI headers (x86_64 / generic values; the open
flags that arm64 numbers differently have their own table, chosen by machine).

Example::

    format_call("openat", {"dfd": -100, "filename": "/etc/hostname", "flags": 0o2000000,
                           "mode": 0}, ["dfd", "filename", "flags", "mode"], 3)
    # 'openat(AT_FDCWD, "/etc/hostname", O_RDONLY|O_CLOEXEC) = 3'
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import os
import signal as _signal
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .escape import raw_bytes

# ------------------------------------------------------------------ errno

# kernel-internal codes that leak to tracers when a syscall is restarted
_KERNEL_ERRNO = {
    512: ("ERESTARTSYS", "To be restarted if SA_RESTART is set"),
    513: ("ERESTARTNOINTR", "To be restarted"),
    514: ("ERESTARTNOHAND", "To be restarted if no handler"),
    515: ("ENOIOCTLCMD", "No ioctl command"),
    516: ("ERESTART_RESTARTBLOCK", "Interrupted by signal"),
    517: ("EPROBE_DEFER", "Driver requests probe retry"),
    518: ("EOPENSTALE", "Open found a stale dentry"),
    521: ("EBADHANDLE", "Illegal NFS file handle"),
    524: ("ENOTSUPP", "Operation is not supported"),
    526: ("EIOCBQUEUED", "iocb queued, will get completion event"),
}
# names strace prefers where Python's errorcode has an alias
_ERRNO_NAME = {
    _errno.EAGAIN: "EAGAIN",
    _errno.EDEADLK: "EDEADLK",
    _errno.EOPNOTSUPP: "EOPNOTSUPP",
}


def errno_name(err: int) -> str:
    """ENOENT for 2; 'E<n>' when unknown."""
    if err in _KERNEL_ERRNO:
        return _KERNEL_ERRNO[err][0]
    return _ERRNO_NAME.get(err) or _errno.errorcode.get(err, f"E{err}")


def errno_text(err: int) -> str:
    """strerror text ('No such file or directory')."""
    if err in _KERNEL_ERRNO:
        return _KERNEL_ERRNO[err][1]
    return os.strerror(err)


def is_error(ret: int) -> bool:
    return -4096 < ret < 0


def format_return(name: str, ret: int | None) -> str:
    """'= 3', '= -1 ENOENT (No such file or directory)', '= ?' (no return)."""
    if ret is None:
        return "= ?"
    if is_error(ret):
        err = -ret
        if err in _KERNEL_ERRNO:
            return f"= ? {errno_name(err)} ({errno_text(err)})"
        return f"= -1 {errno_name(err)} ({errno_text(err)})"
    if name in _RET_HEX:
        return f"= {hex(ret & 0xFFFFFFFFFFFFFFFF)}"
    return f"= {ret}"


_RET_HEX = {"mmap", "mremap", "brk", "shmat"}

# ------------------------------------------------------------------ flag tables


def _flags(table: Sequence[tuple[int, str]], value: int, zero: str = "0") -> str:
    """'A|B|0x40' for a bit set, in table order; ``zero`` when nothing is set."""
    parts = []
    rest = value
    for bit, name in table:
        if bit and rest & bit == bit:
            parts.append(name)
            rest &= ~bit
    if rest:
        parts.append(hex(rest))
    return "|".join(parts) if parts else zero


def _enum(table: Mapping[int, str], value: int) -> str:
    return table.get(value, str(value))


O_ACCMODE = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}
O_FLAGS = [
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"),
    (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o20200000, "O_TMPFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
]
O_CREAT = 0o100
O_TMPFILE = 0o20200000

# arm64 (arch/arm64/include/uapi/asm/fcntl.h) swaps four bits with x86_64, so its
# O_TMPFILE (__O_TMPFILE | O_DIRECTORY) differs too
_O_ARM64 = {"O_DIRECTORY": 0o40000, "O_NOFOLLOW": 0o100000, "O_DIRECT": 0o200000,
            "O_LARGEFILE": 0o400000, "O_TMPFILE": 0o20040000}
O_FLAGS_ARM64 = [(_O_ARM64.get(name, bit), name) for bit, name in O_FLAGS]
O_TMPFILE_ARM64 = _O_ARM64["O_TMPFILE"]
_ARM64_MACHINES = frozenset({"aarch64", "arm64", "EM_AARCH64"})
_THIS_MACHINE = os.uname().machine


def _arm64(machine: str | None) -> bool:
    return (machine or _THIS_MACHINE) in _ARM64_MACHINES


def open_flags(v: int, machine: str | None = None) -> str:
    """'O_RDONLY|O_CLOEXEC' (strace order: access mode first), with the bit values of
    ``machine`` (``uname -m``; default: this machine)."""
    v &= 0xFFFFFFFF
    acc = O_ACCMODE.get(v & 3, f"{v & 3:#x}")
    rest = _flags(O_FLAGS_ARM64 if _arm64(machine) else O_FLAGS, v & ~3, "")
    return f"{acc}|{rest}" if rest else acc


def mode_octal(v: int) -> str:
    """0644 -> '0644' (strace prints modes in octal with a leading 0)."""
    return f"0{v & 0o7777:o}" if v & 0o7777 else "000"


def needs_mode(flags: int, machine: str | None = None) -> bool:
    tmpfile = O_TMPFILE_ARM64 if _arm64(machine) else O_TMPFILE
    return bool(flags & O_CREAT) or (flags & tmpfile) == tmpfile


AT_FDCWD = -100


def dirfd(v: int) -> str:
    v = _s32(v)
    return "AT_FDCWD" if v == AT_FDCWD else str(v)


AT_FLAGS = [
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x200, "AT_REMOVEDIR"),
    (0x400, "AT_SYMLINK_FOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"),
    (0x8000, "AT_RECURSIVE"),
]

PROT = [(1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC"), (0x8, "PROT_SEM"),
        (0x01000000, "PROT_GROWSDOWN"), (0x02000000, "PROT_GROWSUP")]
MAP_TYPE = {1: "MAP_SHARED", 2: "MAP_PRIVATE", 3: "MAP_SHARED_VALIDATE"}
MAP_FLAGS = [
    (0x10, "MAP_FIXED"),
    (0x20, "MAP_ANONYMOUS"),
    (0x40, "MAP_32BIT"),
    (0x100, "MAP_GROWSDOWN"),
    (0x800, "MAP_DENYWRITE"),
    (0x1000, "MAP_EXECUTABLE"),
    (0x2000, "MAP_LOCKED"),
    (0x4000, "MAP_NORESERVE"),
    (0x8000, "MAP_POPULATE"),
    (0x10000, "MAP_NONBLOCK"),
    (0x20000, "MAP_STACK"),
    (0x40000, "MAP_HUGETLB"),
    (0x80000, "MAP_SYNC"),
    (0x100000, "MAP_FIXED_NOREPLACE"),
    (0x4000000, "MAP_UNINITIALIZED"),
]


def prot_flags(v: int) -> str:
    return _flags(PROT, v, "PROT_NONE")


def mmap_flags(v: int) -> str:
    typ = MAP_TYPE.get(v & 0xF, f"{v & 0xF:#x}")
    rest = _flags(MAP_FLAGS, v & ~0xF, "")
    return f"{typ}|{rest}" if rest else typ


AF = {
    0: "AF_UNSPEC", 1: "AF_UNIX", 2: "AF_INET", 3: "AF_AX25", 4: "AF_IPX", 5: "AF_APPLETALK",
    9: "AF_X25", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET", 29: "AF_CAN",
    31: "AF_BLUETOOTH", 38: "AF_ALG", 40: "AF_VSOCK", 44: "AF_XDP",
}
SOCK_TYPE = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 4: "SOCK_RDM",
             5: "SOCK_SEQPACKET", 6: "SOCK_DCCP", 10: "SOCK_PACKET"}
SOCK_FLAGS = [(0o4000, "SOCK_NONBLOCK"), (0o2000000, "SOCK_CLOEXEC")]
IPPROTO = {0: "IPPROTO_IP", 1: "IPPROTO_ICMP", 6: "IPPROTO_TCP", 17: "IPPROTO_UDP",
           41: "IPPROTO_IPV6", 58: "IPPROTO_ICMPV6", 132: "IPPROTO_SCTP", 255: "IPPROTO_RAW"}


def socket_type(v: int) -> str:
    t = SOCK_TYPE.get(v & 0xF, str(v & 0xF))
    rest = _flags(SOCK_FLAGS, v & ~0xF, "")
    return f"{t}|{rest}" if rest else t


def socket_proto(family: int, v: int) -> str:
    if family in (2, 10):
        return IPPROTO.get(v, str(v))
    return str(v)


def signal_name(v: int) -> str:
    """9 -> 'SIGKILL'; 0 -> '0'; real-time -> 'SIGRTMIN+n'."""
    v = _s32(v)
    if v == 0:
        return "0"
    try:
        name = _signal.Signals(v).name
    except ValueError:
        rtmin = int(_signal.SIGRTMIN)
        if rtmin <= v <= int(_signal.SIGRTMAX):
            return f"SIGRTMIN+{v - rtmin}" if v != rtmin else "SIGRTMIN"
        if 32 <= v < rtmin:
            return f"SIG_{v}"
        return str(v)
    return name


CLONE_FLAGS = [
    (0x00000100, "CLONE_VM"),
    (0x00000200, "CLONE_FS"),
    (0x00000400, "CLONE_FILES"),
    (0x00000800, "CLONE_SIGHAND"),
    (0x00001000, "CLONE_PIDFD"),
    (0x00002000, "CLONE_PTRACE"),
    (0x00004000, "CLONE_VFORK"),
    (0x00008000, "CLONE_PARENT"),
    (0x00010000, "CLONE_THREAD"),
    (0x00020000, "CLONE_NEWNS"),
    (0x00040000, "CLONE_SYSVSEM"),
    (0x00080000, "CLONE_SETTLS"),
    (0x00100000, "CLONE_PARENT_SETTID"),
    (0x00200000, "CLONE_CHILD_CLEARTID"),
    (0x00400000, "CLONE_DETACHED"),
    (0x00800000, "CLONE_UNTRACED"),
    (0x01000000, "CLONE_CHILD_SETTID"),
    (0x02000000, "CLONE_NEWCGROUP"),
    (0x04000000, "CLONE_NEWUTS"),
    (0x08000000, "CLONE_NEWIPC"),
    (0x10000000, "CLONE_NEWUSER"),
    (0x20000000, "CLONE_NEWPID"),
    (0x40000000, "CLONE_NEWNET"),
    (0x80000000, "CLONE_IO"),
]


def clone_flags(v: int) -> str:
    """'CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD' (exit signal in the low byte)."""
    sig = v & 0xFF
    out = _flags(CLONE_FLAGS, v & ~0xFF, "")
    if sig:
        out = f"{out}|{signal_name(sig)}" if out else signal_name(sig)
    return out or "0"


FCNTL_CMD = {
    0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL", 5: "F_GETLK",
    6: "F_SETLK", 7: "F_SETLKW", 8: "F_SETOWN", 9: "F_GETOWN", 10: "F_SETSIG",
    11: "F_GETSIG", 15: "F_SETOWN_EX", 16: "F_GETOWN_EX", 36: "F_OFD_GETLK",
    37: "F_OFD_SETLK", 38: "F_OFD_SETLKW", 1024: "F_SETLEASE", 1025: "F_GETLEASE",
    1026: "F_NOTIFY", 1030: "F_DUPFD_CLOEXEC", 1031: "F_SETPIPE_SZ", 1032: "F_GETPIPE_SZ",
    1033: "F_ADD_SEALS", 1034: "F_GET_SEALS",
}
FD_FLAGS = [(1, "FD_CLOEXEC")]

IOCTL_CMD = {
    0x5401: "TCGETS", 0x5402: "TCSETS", 0x5403: "TCSETSW", 0x5404: "TCSETSF",
    0x540B: "TCFLSH", 0x540E: "TIOCSCTTY", 0x540F: "TIOCGPGRP", 0x5410: "TIOCSPGRP",
    0x5413: "TIOCGWINSZ", 0x5414: "TIOCSWINSZ", 0x541B: "FIONREAD", 0x5421: "FIONBIO",
    0x5450: "FIONCLEX", 0x5451: "FIOCLEX", 0x5452: "FIOASYNC",
}

ACCESS_MODE = [(4, "R_OK"), (2, "W_OK"), (1, "X_OK")]


def access_mode(v: int) -> str:
    return _flags(ACCESS_MODE, v, "F_OK")


WAIT_OPTS = [(1, "WNOHANG"), (2, "WUNTRACED"), (8, "WCONTINUED"), (0x20000000, "__WNOTHREAD"),
             (0x40000000, "__WALL"), (0x80000000, "__WCLONE")]

SEEK = {0: "SEEK_SET", 1: "SEEK_CUR", 2: "SEEK_END", 3: "SEEK_DATA", 4: "SEEK_HOLE"}

# ------------------------------------------------------------------ values


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _s64(v: int) -> int:
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v & (1 << 63) else v


def pointer(v: int) -> str:
    return "NULL" if v == 0 else hex(v & 0xFFFFFFFFFFFFFFFF)


def quote(data: bytes, limit: int | None = 32, truncated: bool = False) -> str:
    """strace's string quoting: C escapes, octal for the rest; '...' after the limit."""
    more = truncated
    if limit is not None and len(data) > limit:
        data = data[:limit]
        more = True
    out = ['"']
    n = len(data)
    for i, b in enumerate(data):
        c = chr(b)
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif c == "\f":
            out.append("\\f")
        elif c == "\v":
            out.append("\\v")
        elif 0x20 <= b < 0x7F:
            out.append(c)
        else:
            nxt = data[i + 1] if i + 1 < n else None
            if nxt is not None and 0x30 <= nxt <= 0x37:
                out.append(f"\\{b:03o}")
            else:
                out.append(f"\\{b:o}")
    out.append('"')
    if more:
        out.append("...")
    return "".join(out)


def format_sockaddr(raw: bytes, addrlen: int | None = None) -> str:
    """strace's rendering of struct sockaddr bytes (AF_INET, AF_INET6, AF_UNIX)."""
    if len(raw) < 2:
        return "{}"
    fam = struct.unpack_from("<H", raw)[0]
    name = AF.get(fam, str(fam))
    if fam == 2 and len(raw) >= 8:
        port = struct.unpack_from(">H", raw, 2)[0]
        addr = str(ipaddress.IPv4Address(raw[4:8]))
        return f'{{sa_family={name}, sin_port=htons({port}), sin_addr=inet_addr("{addr}")}}'
    if fam == 10 and len(raw) >= 24:
        port, flow = struct.unpack_from(">HI", raw, 2)
        addr = str(ipaddress.IPv6Address(raw[8:24]))
        scope = struct.unpack_from("<I", raw, 24)[0] if len(raw) >= 28 else 0
        return (f"{{sa_family={name}, sin6_port=htons({port}), sin6_flowinfo=htonl({flow}), "
                f'inet_pton({name}, "{addr}", &sin6_addr), sin6_scope_id={scope}}}')
    if fam == 1:
        path = raw[2:]
        if path[:1] == b"\0" and len(path) > 0:
            p = path[1:].split(b"\0", 1)[0] if addrlen is None else path[1:]
            return f"{{sa_family={name}, sun_path=@{quote(p, None)}}}"
        p = path.split(b"\0", 1)[0]
        return f"{{sa_family={name}, sun_path={quote(p, None)}}}"
    return f"{{sa_family={name}, sa_data={quote(raw[2:], None)}}}"


def sockaddr_endpoint(raw: bytes) -> tuple[str, int] | None:
    """(address, port) of an AF_INET/AF_INET6 sockaddr, else None."""
    if len(raw) < 8:
        return None
    fam = struct.unpack_from("<H", raw)[0]
    if fam == 2:
        return str(ipaddress.IPv4Address(raw[4:8])), struct.unpack_from(">H", raw, 2)[0]
    if fam == 10 and len(raw) >= 24:
        return str(ipaddress.IPv6Address(raw[8:24])), struct.unpack_from(">H", raw, 2)[0]
    return None


# ------------------------------------------------------------------ syscall table


@dataclass
class SyscallInfo:
    """One syscall as the kernel describes it: number, name, arguments (ctype, name)."""

    nr: int
    name: str
    args: list[tuple[str, str]] = field(default_factory=list)
    known: bool = False  # the kernel has a format for it (args may be empty)

    @property
    def arg_names(self) -> list[str]:
        return [n for _, n in self.args]


def parse_syscall_format(text: str) -> list[tuple[str, str]]:
    """The argument (ctype, name) pairs of a sys_enter_* format (after __syscall_nr)."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("field:"):
            continue
        decl = line[len("field:") :].split(";", 1)[0].strip()
        if decl.startswith(("unsigned short common_", "unsigned char common_", "int common_")):
            continue
        if "*" in decl:
            star = decl.rfind("*")
            ctype, name = decl[: star + 1].strip(), decl[star + 1 :].strip()
        else:
            ctype, _, name = decl.rpartition(" ")
        if name == "__syscall_nr":
            continue
        out.append((ctype, name))
    return out


def read_syscall_formats(root: str) -> dict[str, list[tuple[str, str]]]:
    """name -> args, for every events/syscalls/sys_enter_NAME on the running kernel."""
    base = os.path.join(root, "events", "syscalls")
    out: dict[str, list[tuple[str, str]]] = {}
    try:
        names = os.listdir(base)
    except OSError:
        return out
    for d in names:
        if not d.startswith("sys_enter_"):
            continue
        try:
            with open(os.path.join(base, d, "format")) as f:
                out[d[len("sys_enter_") :]] = parse_syscall_format(f.read())
        except OSError:
            continue
    return out


def parse_syscall_numbers(text: str) -> dict[int, str]:
    """'257 openat' lines -> {257: 'openat'}."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            out[int(parts[0])] = parts[1]
    return out


class SyscallTable:
    """nr <-> name, with each syscall's arguments from the kernel's formats."""

    def __init__(self, numbers: Mapping[int, str],
                 formats: Mapping[str, list[tuple[str, str]]]) -> None:
        self.by_nr: dict[int, SyscallInfo] = {}
        self.by_name: dict[str, SyscallInfo] = {}
        for nr, name in numbers.items():
            args = formats.get(name)
            if args is None:
                # a few syscalls have tracepoints under another name
                alias = _FORMAT_ALIAS.get(name)
                args = formats.get(alias) if alias else None
            info = SyscallInfo(nr, name, list(args or []), args is not None)
            self.by_nr[nr] = info
            self.by_name[name] = info

    def name(self, nr: int) -> str:
        info = self.by_nr.get(nr)
        return info.name if info else f"syscall_{nr}"

    def nr(self, name: str) -> int | None:
        info = self.by_name.get(name)
        return info.nr if info else None

    def __len__(self) -> int:
        return len(self.by_nr)


# table name -> the name of its tracepoint (the kernel's SYSCALL_DEFINE name) where they
# differ: x86_64 and the generic table (arm64) alike
_FORMAT_ALIAS = {"umount2": "umount", "stat": "newstat", "lstat": "newlstat",
                 "fstat": "newfstat", "uname": "newuname", "sendfile": "sendfile64",
                 "fadvise64": "fadvise64_64", "personality": "arm64_personality"}

_ADDR_NAMES = {"addr", "start", "brk", "new_addr", "old_addr", "shmaddr"}

# ------------------------------------------------------------------ argument kinds

# must match enum pw_arg_kind in collect/bpf/probewatch.h
ARG_NONE, ARG_STR, ARG_BUF_IN, ARG_BUF_OUT, ARG_SOCKADDR, ARG_SOCKADDR_OUT, ARG_ARGV = range(7)

_BUF_NAMES = {"buf", "ubuf", "buff"}
_OUT_BUF_SYSCALLS = {"read", "pread64", "recvfrom", "getcwd", "readlink", "readlinkat",
                     "getrandom"}
_IN_BUF_SYSCALLS = {"write", "pwrite64", "sendto"}
_NOT_STRINGS = {"sethostname", "setdomainname"}


def arg_kinds(info: SyscallInfo) -> list[int]:
    """What the BPF side should capture for each of the (up to six) arguments."""
    kinds = [ARG_NONE] * 6
    args = info.args[:6]
    for i, (ctype, name) in enumerate(args):
        nxt = args[i + 1][0] if i + 1 < len(args) else ""
        ct = " ".join(ctype.split())
        if ct.startswith("const char *const *") or (name == "argv" and ct.endswith("**")):
            kinds[i] = ARG_ARGV if name == "argv" else ARG_NONE
        elif "struct sockaddr *" in ct:
            kinds[i] = ARG_SOCKADDR_OUT if nxt.replace(" ", "").endswith("*") else ARG_SOCKADDR
        elif name in _BUF_NAMES and info.name in _OUT_BUF_SYSCALLS:
            kinds[i] = ARG_BUF_OUT
        elif name in _BUF_NAMES and info.name in _IN_BUF_SYSCALLS:
            kinds[i] = ARG_BUF_IN
        elif ct == "const char *" and name not in _BUF_NAMES and info.name not in _NOT_STRINGS:
            kinds[i] = ARG_STR
    return kinds


NORETURN = {"execve", "execveat", "exit", "exit_group"}

# ------------------------------------------------------------------ strace formatting

Fields = Mapping[str, Any]


def _int(v: Any) -> int:
    return v if isinstance(v, int) else 0


def _raw(v: Any) -> bytes:
    """A decoded string (undecodable bytes as surrogateescape) back to its bytes."""
    if isinstance(v, bytes | bytearray):
        return bytes(v)
    return raw_bytes(str(v))


def _arg_text(sc: str, name: str, ctype: str, v: Any, fields: Fields, bad: set[str],
              trunc: set[str], strmax: int) -> str:
    """One argument, generically by its C type and name."""
    if isinstance(v, list):  # argv
        items = ", ".join(quote(_raw(s), strmax) for s in v)
        return f"[{items}{', ...' if name in trunc else ''}]"
    if isinstance(v, bytes | bytearray):
        if "sockaddr" in ctype:
            return format_sockaddr(bytes(v))
        return quote(bytes(v), strmax, truncated=name in trunc)
    if isinstance(v, str):
        return quote(_raw(v), None, truncated=name in trunc)
    iv = _int(v)
    if "*" in ctype or name in _ADDR_NAMES:
        return pointer(iv)
    if name in ("dfd", "olddfd", "newdfd") or (name == "fd" and sc.endswith("at")):
        return dirfd(iv)
    if ctype in ("int", "pid_t", "long", "off_t", "loff_t", "key_t", "clockid_t",
                 "timer_t", "mqd_t", "qid_t", "int32_t", "__s32"):
        return str(_s32(iv) if ctype != "long" and ctype != "loff_t" else _s64(iv))
    if ctype in ("unsigned int", "u32", "uid_t", "gid_t", "__u32", "umode_t", "old_uid_t",
                 "old_gid_t", "rwf_t"):
        return str(iv & 0xFFFFFFFF)
    return str(iv & 0xFFFFFFFFFFFFFFFF)


# per-syscall overrides: name -> function(fields, args_text_of(name)) -> list of texts
Special = Callable[[Fields, Callable[[str], str]], list[str]]


def _sp_open(f: Fields, a: Callable[[str], str]) -> list[str]:
    fl = _int(f.get("flags"))
    out = [a("filename"), open_flags(fl)]
    if needs_mode(fl):
        out.append(mode_octal(_int(f.get("mode"))))
    return out


def _sp_openat(f: Fields, a: Callable[[str], str]) -> list[str]:
    return [dirfd(_int(f.get("dfd")))] + _sp_open(f, a)


def _sp_mmap(f: Fields, a: Callable[[str], str]) -> list[str]:
    off = _int(f.get("off"))
    return [pointer(_int(f.get("addr"))), str(_int(f.get("len"))),
            prot_flags(_int(f.get("prot"))), mmap_flags(_int(f.get("flags"))),
            str(_s32(_int(f.get("fd")))), hex(off) if off else "0"]


def _sp_mprotect(f: Fields, a: Callable[[str], str]) -> list[str]:
    return [pointer(_int(f.get("start"))), str(_int(f.get("len"))),
            prot_flags(_int(f.get("prot")))]


def _sp_socket(f: Fields, a: Callable[[str], str]) -> list[str]:
    fam = _int(f.get("family"))
    return [AF.get(fam, str(fam)), socket_type(_int(f.get("type"))),
            socket_proto(fam, _int(f.get("protocol")))]


def _sp_kill(f: Fields, a: Callable[[str], str]) -> list[str]:
    return [str(_s32(_int(f.get("pid")))), signal_name(_int(f.get("sig")))]


def _sp_tgkill(f: Fields, a: Callable[[str], str]) -> list[str]:
    return [str(_s32(_int(f.get("tgid")))), str(_s32(_int(f.get("pid")))),
            signal_name(_int(f.get("sig")))]


def _sp_fcntl(f: Fields, a: Callable[[str], str]) -> list[str]:
    cmd = _int(f.get("cmd"))
    out = [str(_s32(_int(f.get("fd")))), FCNTL_CMD.get(cmd, hex(cmd))]
    arg = _int(f.get("arg"))
    if cmd in (1, 3, 9, 11, 1025, 1032, 1034):  # getters take no argument
        return out
    if cmd == 2:
        out.append(_flags(FD_FLAGS, arg))
    elif cmd == 4:
        out.append(open_flags(arg))
    elif cmd in (0, 1030, 8, 10, 1024, 1031, 1033):
        out.append(str(_s32(arg)))
    else:
        out.append(pointer(arg))
    return out


def _sp_ioctl(f: Fields, a: Callable[[str], str]) -> list[str]:
    cmd = _int(f.get("cmd")) & 0xFFFFFFFF
    return [str(_s32(_int(f.get("fd")))), IOCTL_CMD.get(cmd, hex(cmd)),
            pointer(_int(f.get("arg")))]


def _sp_clone(f: Fields, a: Callable[[str], str]) -> list[str]:
    fl = _int(f.get("clone_flags"))
    out = [f"child_stack={pointer(_int(f.get('newsp')))}", f"flags={clone_flags(fl)}"]
    if fl & 0x00100000:
        out.append(f"parent_tid={pointer(_int(f.get('parent_tidptr')))}")
    if fl & 0x01200000:
        out.append(f"child_tidptr={pointer(_int(f.get('child_tidptr')))}")
    if fl & 0x00080000:
        out.append(f"tls={pointer(_int(f.get('tls')))}")
    return out


def _sp_access(f: Fields, a: Callable[[str], str]) -> list[str]:
    return [a("filename"), access_mode(_int(f.get("mode")))]


def _sp_faccessat(f: Fields, a: Callable[[str], str]) -> list[str]:
    return [dirfd(_int(f.get("dfd"))), a("filename"), access_mode(_int(f.get("mode")))]


def _sp_mkdir(f: Fields, a: Callable[[str], str]) -> list[str]:
    return [a("pathname"), mode_octal(_int(f.get("mode")))]


def _sp_unlinkat(f: Fields, a: Callable[[str], str]) -> list[str]:
    return [dirfd(_int(f.get("dfd"))), a("pathname"), _flags(AT_FLAGS, _int(f.get("flag")))]


def _sp_lseek(f: Fields, a: Callable[[str], str]) -> list[str]:
    w = _int(f.get("whence"))
    return [a("fd"), str(_s64(_int(f.get("offset")))), SEEK.get(w, str(w))]


def _sp_wait4(f: Fields, a: Callable[[str], str]) -> list[str]:
    return [str(_s32(_int(f.get("upid")))), pointer(_int(f.get("stat_addr"))),
            _flags(WAIT_OPTS, _int(f.get("options"))), pointer(_int(f.get("ru")))]


def _sp_exit(f: Fields, a: Callable[[str], str]) -> list[str]:
    return [str(_s32(_int(f.get("error_code"))))]


SPECIAL: dict[str, Special] = {
    "open": _sp_open,
    "openat": _sp_openat,
    "creat": lambda f, a: [a("pathname"), mode_octal(_int(f.get("mode")))],
    "mmap": _sp_mmap,
    "mprotect": _sp_mprotect,
    "socket": _sp_socket,
    "kill": _sp_kill,
    "tkill": lambda f, a: [str(_s32(_int(f.get("pid")))), signal_name(_int(f.get("sig")))],
    "tgkill": _sp_tgkill,
    "fcntl": _sp_fcntl,
    "ioctl": _sp_ioctl,
    "clone": _sp_clone,
    "access": _sp_access,
    "faccessat": _sp_faccessat,
    "faccessat2": lambda f, a: _sp_faccessat(f, a) + [_flags(AT_FLAGS, _int(f.get("flags")))],
    "mkdir": _sp_mkdir,
    "mkdirat": lambda f, a: [dirfd(_int(f.get("dfd")))] + _sp_mkdir(f, a),
    "chmod": lambda f, a: [a("filename"), mode_octal(_int(f.get("mode")))],
    "unlinkat": _sp_unlinkat,
    "lseek": _sp_lseek,
    "wait4": _sp_wait4,
    "exit": _sp_exit,
    "exit_group": _sp_exit,
}


def format_call(
    name: str,
    fields: Fields,
    args: Sequence[tuple[str, str]] | Sequence[str],
    ret: int | None,
    faults: Sequence[str] = (),
    truncated: Sequence[str] = (),
    strmax: int = 32,
) -> str:
    """One strace-style line: 'NAME(ARGS) = RET'.

    ``args`` are the kernel's (ctype, name) pairs (or just names); ``fields`` holds the
    values: ints, decoded strings (str), captured buffers (bytes), argv (list).
    A failed read (name in ``faults``) prints the pointer, as strace does.
    """
    pairs: list[tuple[str, str]] = [
        (x[0], x[1]) if isinstance(x, tuple) else ("long", x) for x in args
    ]
    ctypes_of = {n: c for c, n in pairs}
    bad, trunc = set(faults), set(truncated)

    def a(n: str) -> str:
        v = fields.get(n)
        if n in bad:
            v = _int(fields.get(f"{n}_ptr", v))
            return pointer(v)
        return _arg_text(name, n, ctypes_of.get(n, "long"), v, fields, bad, trunc, strmax)

    sp = SPECIAL.get(name)
    if sp is not None and not bad.intersection(("flags",)):
        try:
            texts = sp(fields, a)
        except Exception:
            texts = [a(n) for _, n in pairs]
    else:
        texts = [a(n) for _, n in pairs]
    return f"{name}({', '.join(texts)}) {format_return(name, ret)}"


__all__ = [
    "SyscallInfo",
    "SyscallTable",
    "arg_kinds",
    "errno_name",
    "errno_text",
    "format_call",
    "format_return",
    "format_sockaddr",
    "open_flags",
    "mmap_flags",
    "prot_flags",
    "clone_flags",
    "signal_name",
    "socket_type",
    "quote",
    "parse_syscall_format",
    "read_syscall_formats",
    "parse_syscall_numbers",
]
