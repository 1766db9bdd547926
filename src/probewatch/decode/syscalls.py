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
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import structs as _structs
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


_flags = _structs.flags  # 'A|B|0x40' for a bit set, in table order


def _enum(table: Mapping[int, str], value: int) -> str:
    return table.get(value, str(value))


O_ACCMODE = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}
# strace's order (and its FASYNC for O_ASYNC)
O_FLAGS = [
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"),
    (0o10000, "O_DSYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
    (0o20200000, "O_TMPFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o20000, "FASYNC"),
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
SOCK_FLAGS = [(0o2000000, "SOCK_CLOEXEC"), (0o4000, "SOCK_NONBLOCK")]
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
    """9 -> 'SIGKILL'; 0 -> '0'; real-time as strace: 32 -> 'SIGRTMIN', 34 -> 'SIGRT_2'."""
    v = _s32(v)
    if v == 0:
        return "0"
    return _structs.signame(v)


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
        if len(raw) == 2:  # unnamed (socketpair, an unbound socket)
            return f"{{sa_family={name}}}"
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

# ------------------------------------------------------------------ struct capture

# more argument kinds (enum pw_arg_kind): memory copied for the struct decoders
ARG_MEM, ARG_MEM_N, ARG_DIRENTS, ARG_PTRS, ARG_MEM_ARG, ARG_STR_OUT = range(7, 13)
ARG_IOV_IN, ARG_IOV_OUT, ARG_MSG_IN, ARG_MSG_OUT, ARG_FDSET = range(13, 18)
ARG_IOCTL, ARG_FCNTL = 18, 19  # the struct the request/command names (BPF: pw_cmd_size)
ARG_TS_INOUT = 20  # a timeout the call updates: 16 bytes at entry, 16 at exit
IN, OUT = 1, 2  # shown always / only when the call succeeded (strace: the pointer)


@dataclass(frozen=True)
class Capture:
    """What the BPF side copies for one argument and how its bytes are shown."""

    kind: int
    size: int  # bytes (ARG_MEM), per element (ARG_MEM_N), at most (ARG_MEM_ARG)
    direction: int = IN
    render: Callable[[bytes], str] | None = None  # None: the syscall's formatter shows it


_S = _structs
_STAT = Capture(ARG_MEM, _S.STAT_SIZE, OUT, _S.format_stat)
_SIGSET_IN = Capture(ARG_MEM, 8, IN, _S.format_sigset)
_TS_IN = Capture(ARG_MEM, 16, IN, _S.format_timespec)
_TS_OUT = Capture(ARG_MEM, 16, OUT, _S.format_timespec)
_FDPAIR = Capture(ARG_MEM, 8, OUT, _S.format_fdpair)

#: by the C type in the kernel's syscall format (spaces normalized)
CTYPE_CAPTURE: dict[str, Capture] = {
    "struct stat *": _STAT,
    "struct statx *": Capture(ARG_MEM, _S.STATX_SIZE, OUT, _S.format_statx),
    "const struct sigaction *": Capture(ARG_MEM, _S.SIGACTION_SIZE, IN, _S.format_sigaction),
    "struct sigaction *": Capture(ARG_MEM, _S.SIGACTION_SIZE, OUT, _S.format_sigaction),
    "sigset_t *": _SIGSET_IN,
    "const sigset_t *": _SIGSET_IN,
    "const struct rlimit64 *": Capture(ARG_MEM, 16, IN, _S.format_rlimit),
    "struct rlimit64 *": Capture(ARG_MEM, 16, OUT, _S.format_rlimit),
    "struct pollfd *": Capture(ARG_MEM_N, _S.POLLFD.size, IN),
    "const struct __kernel_timespec *": _TS_IN,
    "struct sysinfo *": Capture(ARG_MEM, 112, OUT, _S.format_sysinfo),
    "struct clone_args *": Capture(ARG_MEM_ARG, _S.CLONE_ARGS_SIZE, IN),
    "struct linux_dirent64 *": Capture(ARG_DIRENTS, 0, OUT),
}
#: by (syscall, argument name): where the C type alone does not say it
ARG_CAPTURE: dict[tuple[str, str], Capture | None] = {
    ("rt_sigprocmask", "oset"): Capture(ARG_MEM, 8, OUT, _S.format_sigset),
    ("getrlimit", "rlim"): Capture(ARG_MEM, 16, OUT, _S.format_rlimit),
    ("setrlimit", "rlim"): Capture(ARG_MEM, 16, IN, _S.format_rlimit),
    ("clock_gettime", "tp"): _TS_OUT,
    ("clock_getres", "tp"): _TS_OUT,
    ("nanosleep", "rqtp"): _TS_IN,
    ("ppoll", "tsp"): Capture(ARG_TS_INOUT, 16, IN),
    ("wait4", "stat_addr"): Capture(ARG_MEM, 4, OUT, _S.format_wstatus),
    ("socketpair", "usockvec"): _FDPAIR,
    ("pipe2", "fildes"): _FDPAIR,
    ("pipe", "fildes"): _FDPAIR,
    ("getsockopt", "optval"): Capture(ARG_MEM, 4, OUT),
    ("getsockopt", "optlen"): Capture(ARG_MEM, 4, OUT, _S.format_int),
    ("setsockopt", "optval"): Capture(ARG_MEM_ARG, 16, IN),
    ("execve", "envp"): Capture(ARG_PTRS, 0, IN),
    ("execveat", "envp"): Capture(ARG_PTRS, 0, IN),
    ("getcwd", "buf"): Capture(ARG_STR_OUT, 0, OUT),
    ("writev", "vec"): Capture(ARG_IOV_IN, 0, IN),
    ("pwritev", "vec"): Capture(ARG_IOV_IN, 0, IN),
    ("pwritev2", "vec"): Capture(ARG_IOV_IN, 0, IN),
    ("readv", "vec"): Capture(ARG_IOV_OUT, 0, OUT),
    ("preadv", "vec"): Capture(ARG_IOV_OUT, 0, OUT),
    ("preadv2", "vec"): Capture(ARG_IOV_OUT, 0, OUT),
    ("sendmsg", "msg"): Capture(ARG_MSG_IN, 0, IN),
    ("ioctl", "arg"): Capture(ARG_IOCTL, 0, IN),
    ("fcntl", "arg"): Capture(ARG_FCNTL, 0, IN),
    ("select", "inp"): Capture(ARG_FDSET, 8, IN),
    ("select", "outp"): Capture(ARG_FDSET, 8, IN),
    ("select", "exp"): Capture(ARG_FDSET, 8, IN),
    ("select", "tvp"): Capture(ARG_TS_INOUT, 16, IN),
    ("pselect6", "inp"): Capture(ARG_FDSET, 8, IN),
    ("pselect6", "outp"): Capture(ARG_FDSET, 8, IN),
    ("pselect6", "exp"): Capture(ARG_FDSET, 8, IN),
    ("pselect6", "tsp"): Capture(ARG_TS_INOUT, 16, IN),
    ("epoll_wait", "events"): Capture(ARG_MEM_N, 12, OUT),
    ("epoll_pwait", "events"): Capture(ARG_MEM_N, 12, OUT),
    ("epoll_ctl", "event"): Capture(ARG_MEM, 12, IN),
    ("recvmsg", "msg"): Capture(ARG_MSG_OUT, 0, OUT),
}


def capture_of(sc: str, ctype: str, name: str) -> Capture | None:
    """The user memory to copy for argument ``name`` of ``sc`` (None: nothing more)."""
    c = ARG_CAPTURE.get((sc, name), _NO)
    if c is not _NO:
        return c
    return CTYPE_CAPTURE.get(" ".join(ctype.split()))


_NO = Capture(-1, 0)


def capture_plan(info: SyscallInfo) -> tuple[list[int], list[int]]:
    """(kinds, sizes) for the BPF side's map "nrconf": :func:`arg_kinds` (strings,
    buffers, sockaddrs, argv) plus the structs above."""
    kinds = arg_kinds(info)
    sizes = [0] * 6
    for i, (ctype, name) in enumerate(info.args[:6]):
        c = capture_of(info.name, ctype, name)
        if c is not None and (kinds[i] == ARG_NONE or (info.name, name) in ARG_CAPTURE):
            kinds[i] = c.kind
            sizes[i] = c.size
    return kinds, sizes

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


# ioctl requests whose argument is shown: request -> (decoder, shown only on success)
_IOCTL_ARG: dict[int, tuple[Callable[[bytes], str], bool]] = {
    0x5401: (_structs.format_termios, True), 0x5402: (_structs.format_termios, False),
    0x5403: (_structs.format_termios, False), 0x5404: (_structs.format_termios, False),
    0x5413: (_structs.format_winsize, True), 0x5414: (_structs.format_winsize, False),
    0x540F: (_structs.format_int, True), 0x5410: (_structs.format_int, False),
    0x541B: (_structs.format_int, True), 0x5421: (_structs.format_int, False),
}


def _sp_ioctl(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    cmd = _int(f.get("cmd")) & 0xFFFFFFFF
    out = [str(_s32(_int(f.get("fd")))), IOCTL_CMD.get(cmd, hex(cmd))]
    if cmd in (0x5450, 0x5451):  # FIONCLEX, FIOCLEX take no argument
        return out
    arg = pointer(_int(f.get("arg")))
    data, dec = f.get("arg_data"), _IOCTL_ARG.get(cmd)
    if isinstance(data, bytes) and dec is not None and (_ok(ret) or not dec[1]):
        try:
            arg = dec[0](data)
        except _structs.StructError:
            pass
    return out + [arg]


def _sp_clone(f: Fields, a: Callable[[str], str], ret: int | None = None) -> list[str]:
    """strace's order: child_stack, flags, parent_tid, tls, child_tidptr; the kernel
    stores the child's tid (the return) at parent_tid: strace shows it, '[N]'."""
    fl = _int(f.get("clone_flags"))
    out = [f"child_stack={pointer(_int(f.get('newsp')))}", f"flags={clone_flags(fl)}"]
    if fl & 0x00100000:
        ptid = pointer(_int(f.get("parent_tidptr")))
        out.append(f"parent_tid={f'[{ret}]' if ret is not None and ret > 0 else ptid}")
    if fl & 0x00080000:
        out.append(f"tls={pointer(_int(f.get('tls')))}")
    if fl & 0x01200000:
        out.append(f"child_tidptr={pointer(_int(f.get('child_tidptr')))}")
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


def _sp_exit(f: Fields, a: Callable[[str], str]) -> list[str]:
    return [str(_s32(_int(f.get("error_code"))))]


SIG_HOW = {0: "SIG_BLOCK", 1: "SIG_UNBLOCK", 2: "SIG_SETMASK"}
AT_STATX_SYNC = {0: "AT_STATX_SYNC_AS_STAT", 0x2000: "AT_STATX_FORCE_SYNC",
                 0x4000: "AT_STATX_DONT_SYNC", 0x6000: "AT_STATX_SYNC_TYPE"}
GRND = [(1, "GRND_NONBLOCK"), (2, "GRND_RANDOM"), (4, "GRND_INSECURE")]
ARCH_PRCTL = {0x1001: "ARCH_SET_GS", 0x1002: "ARCH_SET_FS", 0x1003: "ARCH_GET_FS",
              0x1004: "ARCH_GET_GS", 0x1011: "ARCH_GET_CPUID", 0x1012: "ARCH_SET_CPUID"}
MADV = {0: "MADV_NORMAL", 1: "MADV_RANDOM", 2: "MADV_SEQUENTIAL", 3: "MADV_WILLNEED",
        4: "MADV_DONTNEED", 8: "MADV_FREE", 9: "MADV_REMOVE", 10: "MADV_DONTFORK",
        11: "MADV_DOFORK", 12: "MADV_MERGEABLE", 13: "MADV_UNMERGEABLE",
        14: "MADV_HUGEPAGE", 15: "MADV_NOHUGEPAGE", 16: "MADV_DONTDUMP", 17: "MADV_DODUMP",
        18: "MADV_WIPEONFORK", 19: "MADV_KEEPONFORK", 20: "MADV_COLD", 21: "MADV_PAGEOUT",
        22: "MADV_POPULATE_READ", 23: "MADV_POPULATE_WRITE", 24: "MADV_DONTNEED_LOCKED",
        25: "MADV_COLLAPSE", 100: "MADV_HWPOISON", 101: "MADV_SOFT_OFFLINE"}
CLOCKS = {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 2: "CLOCK_PROCESS_CPUTIME_ID",
          3: "CLOCK_THREAD_CPUTIME_ID", 4: "CLOCK_MONOTONIC_RAW", 5: "CLOCK_REALTIME_COARSE",
          6: "CLOCK_MONOTONIC_COARSE", 7: "CLOCK_BOOTTIME", 8: "CLOCK_REALTIME_ALARM",
          9: "CLOCK_BOOTTIME_ALARM", 11: "CLOCK_TAI"}
MSG_FLAGS = [(0x1, "MSG_OOB"), (0x2, "MSG_PEEK"), (0x4, "MSG_DONTROUTE"), (0x8, "MSG_CTRUNC"),
             (0x10, "MSG_PROBE"), (0x20, "MSG_TRUNC"), (0x40, "MSG_DONTWAIT"),
             (0x80, "MSG_EOR"), (0x100, "MSG_WAITALL"), (0x200, "MSG_FIN"),
             (0x400, "MSG_SYN"), (0x800, "MSG_CONFIRM"), (0x1000, "MSG_RST"),
             (0x2000, "MSG_ERRQUEUE"), (0x4000, "MSG_NOSIGNAL"), (0x8000, "MSG_MORE"),
             (0x10000, "MSG_WAITFORONE"), (0x40000, "MSG_BATCH"),
             (0x4000000, "MSG_ZEROCOPY"), (0x20000000, "MSG_FASTOPEN"),
             (0x40000000, "MSG_CMSG_CLOEXEC")]
SOL = {0: "SOL_IP", 1: "SOL_SOCKET", 6: "SOL_TCP", 17: "SOL_UDP", 41: "SOL_IPV6",
       263: "SOL_PACKET", 270: "SOL_NETLINK"}
SO_NAMES = {1: "SO_DEBUG", 2: "SO_REUSEADDR", 3: "SO_TYPE", 4: "SO_ERROR", 5: "SO_DONTROUTE",
            6: "SO_BROADCAST", 7: "SO_SNDBUF", 8: "SO_RCVBUF", 9: "SO_KEEPALIVE",
            10: "SO_OOBINLINE", 11: "SO_NO_CHECK", 12: "SO_PRIORITY", 13: "SO_LINGER",
            14: "SO_BSDCOMPAT", 15: "SO_REUSEPORT", 16: "SO_PASSCRED", 17: "SO_PEERCRED",
            18: "SO_RCVLOWAT", 19: "SO_SNDLOWAT", 20: "SO_RCVTIMEO_OLD",
            21: "SO_SNDTIMEO_OLD", 25: "SO_BINDTODEVICE", 26: "SO_ATTACH_FILTER",
            29: "SO_TIMESTAMP_OLD", 30: "SO_ACCEPTCONN", 31: "SO_PEERSEC",
            32: "SO_SNDBUFFORCE", 33: "SO_RCVBUFFORCE", 34: "SO_PASSSEC", 36: "SO_MARK",
            38: "SO_PROTOCOL", 39: "SO_DOMAIN", 46: "SO_BUSY_POLL"}
TCP_NAMES = {1: "TCP_NODELAY", 2: "TCP_MAXSEG", 3: "TCP_CORK", 4: "TCP_KEEPIDLE",
             5: "TCP_KEEPINTVL", 6: "TCP_KEEPCNT", 7: "TCP_SYNCNT", 8: "TCP_LINGER2",
             9: "TCP_DEFER_ACCEPT", 10: "TCP_WINDOW_CLAMP", 11: "TCP_INFO",
             12: "TCP_QUICKACK", 13: "TCP_CONGESTION", 18: "TCP_USER_TIMEOUT",
             23: "TCP_FASTOPEN", 30: "TCP_FASTOPEN_CONNECT", 31: "TCP_ULP"}
FUTEX_CMD = {0: "FUTEX_WAIT", 1: "FUTEX_WAKE", 2: "FUTEX_FD", 3: "FUTEX_REQUEUE",
             4: "FUTEX_CMP_REQUEUE", 5: "FUTEX_WAKE_OP", 6: "FUTEX_LOCK_PI",
             7: "FUTEX_UNLOCK_PI", 8: "FUTEX_TRYLOCK_PI", 9: "FUTEX_WAIT_BITSET",
             10: "FUTEX_WAKE_BITSET", 11: "FUTEX_WAIT_REQUEUE_PI",
             12: "FUTEX_CMP_REQUEUE_PI", 13: "FUTEX_LOCK_PI2"}
TIMER_FLAGS = [(1, "TIMER_ABSTIME")]


def _sp_getcwd(f: Fields, a: Callable[[str], str]) -> list[str]:
    b = f.get("buf")
    if isinstance(b, bytes):
        return [quote(b.split(b"\0", 1)[0], None), a("size")]
    return [a("buf"), a("size")]


def _sp_rlimit(f: Fields, a: Callable[[str], str]) -> list[str]:
    r = _int(f.get("resource")) & 0xFFFFFFFF
    return [_structs.RLIMIT.get(r, str(r)), a("rlim")]


def _sp_prlimit(f: Fields, a: Callable[[str], str]) -> list[str]:
    r = _int(f.get("resource")) & 0xFFFFFFFF
    return [str(_s32(_int(f.get("pid")))), _structs.RLIMIT.get(r, str(r)), a("new_rlim"),
            a("old_rlim")]


def _sp_arch_prctl(f: Fields, a: Callable[[str], str]) -> list[str]:
    code = _int(f.get("option")) & 0xFFFFFFFF
    name = ARCH_PRCTL.get(code, f"{code:#x} /* ARCH_??? */")
    return [name, hex(_int(f.get("arg2")))]


def _clock(f: Fields) -> str:
    c = _s32(_int(f.get("which_clock")))
    return CLOCKS.get(c, str(c))


SPECIAL: dict[str, Special] = {
    "rt_sigaction": lambda f, a: [signal_name(_int(f.get("sig"))), a("act"), a("oact"),
                                  a("sigsetsize")],
    "rt_sigprocmask": lambda f, a: [SIG_HOW.get(_s32(_int(f.get("how"))), a("how")),
                                    a("nset"), a("oset"), a("sigsetsize")],
    "prlimit64": _sp_prlimit,
    "getrlimit": _sp_rlimit,
    "setrlimit": _sp_rlimit,
    "rseq": lambda f, a: [a("rseq"), hex(_int(f.get("rseq_len")) & 0xFFFFFFFF),
                          a("flags"), hex(_int(f.get("sig")) & 0xFFFFFFFF)],
    "getrandom": lambda f, a: [a("ubuf"), a("len"),
                               _flags(GRND, _int(f.get("flags")) & 0xFFFFFFFF)],
    "arch_prctl": _sp_arch_prctl,
    "madvise": lambda f, a: [a("start"), a("len_in"),
                             MADV.get(_s32(_int(f.get("behavior"))), a("behavior"))],
    "socketpair": lambda f, a: [AF.get(_int(f.get("family")), a("family")),
                                socket_type(_int(f.get("type"))),
                                socket_proto(_int(f.get("family")), _int(f.get("protocol"))),
                                a("usockvec")],
    "pipe2": lambda f, a: [a("fildes"), _flags(O_FLAGS, _int(f.get("flags")) & 0xFFFFFFFF)],
    "clock_gettime": lambda f, a: [_clock(f), a("tp")],
    "clock_getres": lambda f, a: [_clock(f), a("tp")],
    "clock_nanosleep": lambda f, a: [_clock(f), _flags(TIMER_FLAGS, _int(f.get("flags"))),
                                     a("rqtp"), a("rmtp")],
    "getcwd": _sp_getcwd,
    "epoll_create1": lambda f, a: [_flags([(0o2000000, "EPOLL_CLOEXEC")],
                                          _int(f.get("flags")) & 0xFFFFFFFF)],
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
    "clone": _sp_clone,
    "access": _sp_access,
    "faccessat": _sp_faccessat,
    "faccessat2": lambda f, a: _sp_faccessat(f, a) + [_flags(AT_FLAGS, _int(f.get("flags")))],
    "mkdir": _sp_mkdir,
    "mkdirat": lambda f, a: [dirfd(_int(f.get("dfd")))] + _sp_mkdir(f, a),
    "chmod": lambda f, a: [a("filename"), mode_octal(_int(f.get("mode")))],
    "unlinkat": _sp_unlinkat,
    "lseek": _sp_lseek,
    "exit": _sp_exit,
    "exit_group": _sp_exit,
}


# ------------------------------------------------------------------ iovecs, msghdr


def _iov_text(kind: int, data: bytes, f: Fields, ptr: int, ret: int | None,
              strmax: int) -> str:
    """writev/readv's iovec array or sendmsg/recvmsg's msghdr, as strace shows them."""
    msg = kind in (ARG_MSG_IN, ARG_MSG_OUT)
    out = kind in (ARG_IOV_OUT, ARG_MSG_OUT)
    failed = ret is None or is_error(ret)
    if out and failed and msg:
        return pointer(ptr)
    hdr, name, iovs = _structs.parse_iov_blob(data, msg)
    moved = (ret if ret is not None and ret > 0 else 0) if out else None
    if hdr is None:
        vlen = _int(f.get("vlen"))
        if out and failed:
            return _structs.format_iov_pointers(iovs)
        return _structs.format_iovs(iovs, strmax, moved, quote, vlen)
    nptr, nlen, _iov, iovlen, ctl, ctllen, mflags = hdr
    if not nptr:
        nm = "NULL"
    elif name and nlen:
        nm = format_sockaddr(name[:nlen], nlen)
    else:
        nm = pointer(nptr)
    inlen = f.get("msg_inlen")
    nl = f"{inlen} => {nlen}" if isinstance(inlen, int) and out and inlen != nlen else str(nlen)
    parts = [f"msg_name={nm}", f"msg_namelen={nl}",
             f"msg_iov={_structs.format_iovs(iovs, strmax, moved, quote, iovlen)}",
             f"msg_iovlen={iovlen}"]
    if ctllen:
        parts.append(f"msg_control={pointer(ctl)}")
    parts += [f"msg_controllen={ctllen}", f"msg_flags={_flags(MSG_FLAGS, mflags)}"]
    return "{" + ", ".join(parts) + "}"


# ------------------------------------------------------------------ epoll

EPOLL_EVENTS = [(0x1, "EPOLLIN"), (0x2, "EPOLLPRI"), (0x4, "EPOLLOUT"), (0x8, "EPOLLERR"),
                (0x10, "EPOLLHUP"), (0x20, "EPOLLNVAL"), (0x40, "EPOLLRDNORM"),
                (0x80, "EPOLLRDBAND"), (0x100, "EPOLLWRNORM"), (0x200, "EPOLLWRBAND"),
                (0x400, "EPOLLMSG"), (0x2000, "EPOLLRDHUP"), (1 << 28, "EPOLLEXCLUSIVE"),
                (1 << 29, "EPOLLWAKEUP"), (1 << 30, "EPOLLONESHOT"), (1 << 31, "EPOLLET")]
EPOLL_CTL = {1: "EPOLL_CTL_ADD", 2: "EPOLL_CTL_DEL", 3: "EPOLL_CTL_MOD"}
_EPOLL_EVENT = struct.Struct("<IQ")  # packed on x86_64: 12 bytes


def _epoll_event(data: bytes, off: int = 0) -> str:
    ev, d = _EPOLL_EVENT.unpack_from(data, off)
    return (f"{{events={_flags(EPOLL_EVENTS, ev)}, "
            f"data={{u32={d & 0xFFFFFFFF}, u64={d}}}}}")


def _sp_epoll_ctl(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    op = _s32(_u(f, "op"))
    ev = a("event")
    data = f.get("event_data")
    if op != 2 and isinstance(data, bytes) and len(data) >= 12:
        ev = _epoll_event(data)
    return [a("epfd"), EPOLL_CTL.get(op, str(op)), a("fd"), ev]


def _sp_epoll_wait(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    evs = a("events")
    data = f.get("events_data")
    if _ok(ret) and ret is not None and isinstance(data, bytes) and len(data) >= 12 * ret:
        evs = "[" + ", ".join(_epoll_event(data, 12 * i) for i in range(ret)) + "]"
    out = [a("epfd"), evs, a("maxevents"), a("timeout")]
    if "sigmask" in f:
        out += [a("sigmask"), a("sigsetsize")]
    return out


# ------------------------------------------------------------------ select


def _fdset_words(f: Fields, n: str) -> tuple[int, int] | None:
    """(at entry, at exit) of an fd_set argument's first 64 fds; None: NULL/not read."""
    data = f.get(f"{n}_data")
    if not isinstance(data, bytes) or len(data) < 16:
        return None
    a, b = struct.unpack_from("<QQ", data)
    return a, b


def _fds(mask: int, nfds: int) -> str:
    return "[" + " ".join(str(i) for i in range(min(nfds, 64)) if mask >> i & 1) + "]"


def _sp_select(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    nfds = _s32(_u(f, "n"))
    out = [str(nfds)]
    for n in ("inp", "outp", "exp"):
        w = _fdset_words(f, n)
        out.append(_fds(w[0], nfds) if w is not None else a(n))
    tn = "tvp" if "tvp" in f else "tsp"
    out.append(a(tn))
    if "sig" in f:
        out.append(a("sig"))
    return out


def _ret_select(f: Fields, ret: int) -> str | None:
    if ret == 0:
        return "0 (Timeout)"
    nfds = _s32(_u(f, "n"))
    parts = []
    for n, label in (("inp", "in"), ("outp", "out"), ("exp", "except")):
        w = _fdset_words(f, n)
        if w is not None and w[1] & ((1 << min(max(nfds, 0), 64)) - 1):
            parts.append(f"{label} {_fds(w[1], nfds)}")
    tn = "tvp" if "tvp" in f else "tsp"
    td = f.get(f"{tn}_data")
    if isinstance(td, bytes) and len(td) >= 32:
        left = (_structs.format_timeval if tn == "tvp" else _structs.format_timespec)(td[16:32])
        parts.append(f"left {left}")
    return f"{ret} ({', '.join(parts)})" if parts else None


# ------------------------------------------------------------------ ret-aware formatters



def _u(f: Fields, n: str) -> int:
    return _int(f.get(n))


def _i(f: Fields, n: str) -> str:
    return str(_s32(_u(f, n)))


def futex_op(op: int) -> str:
    cmd = op & 0x7F
    out = FUTEX_CMD.get(cmd, str(cmd))
    if op & 128:
        out += "_PRIVATE"
    if op & 256:
        out += "|FUTEX_CLOCK_REALTIME"
    rest = op & ~0x1FF
    if rest:
        out += f"|{rest:#x}"
    return out


def _bitset(v: int) -> str:
    return "FUTEX_BITSET_MATCH_ANY" if v & 0xFFFFFFFF == 0xFFFFFFFF else f"{v & 0xFFFFFFFF:#x}"


def _sp_futex(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    op = _u(f, "op") & 0xFFFFFFFF
    cmd = op & 0x7F
    out = [pointer(_u(f, "uaddr")), futex_op(op)]
    val = str(_u(f, "val") & 0xFFFFFFFF)
    ut, u2, v3 = _u(f, "utime"), _u(f, "uaddr2"), _u(f, "val3") & 0xFFFFFFFF
    if cmd in (0, 11):  # WAIT, WAIT_REQUEUE_PI
        out += [val, pointer(ut)]
        if cmd == 11:
            out.append(pointer(u2))
    elif cmd == 9:  # WAIT_BITSET
        out += [val, pointer(ut), _bitset(v3)]
    elif cmd == 10:  # WAKE_BITSET
        out += [val, _bitset(v3)]
    elif cmd in (1, 2):
        out.append(val)
    elif cmd == 3:
        out += [val, str(ut & 0xFFFFFFFF), pointer(u2)]
    elif cmd in (4, 12):
        out += [val, str(ut & 0xFFFFFFFF), pointer(u2), str(v3)]
    elif cmd == 5:
        out += [val, str(ut & 0xFFFFFFFF), pointer(u2), hex(v3)]
    elif cmd in (6, 13):
        out.append(pointer(ut))
    return out


def _ok(ret: int | None) -> bool:
    return ret is not None and not is_error(ret)


def _sp_newfstatat(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    return [dirfd(_u(f, "dfd")), a("filename"), a("statbuf"),
            _flags(AT_FLAGS, _u(f, "flag") & 0xFFFFFFFF)]


def _sp_statx(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    fl = _u(f, "flags") & 0xFFFFFFFF
    sync = AT_STATX_SYNC.get(fl & 0x6000, "")
    rest = _flags(AT_FLAGS, fl & ~0x6000, "")
    flt = "|".join(x for x in (sync, rest) if x)
    return [dirfd(_u(f, "dfd")), a("filename"), flt,
            _structs.flags(_structs.STATX_MASK, _u(f, "mask") & 0xFFFFFFFF), a("buffer")]


def _sp_getdents(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    ptr = pointer(_u(f, "dirent"))
    n = f.get("dirent_count")
    if _ok(ret) and isinstance(n, int):
        ptr += f" /* {n} entries */"
    return [a("fd"), ptr, a("count")]


def _sp_poll(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    data, n = f.get("ufds_data"), _u(f, "nfds") & 0xFFFFFFFF
    fds = a("ufds")
    if isinstance(data, bytes) and n:
        try:
            fds = _structs.format_pollfds(data, n)
        except _structs.StructError:
            pass
    out = [fds, str(n)]
    if "timeout_msecs" in f:
        return out + [_i(f, "timeout_msecs")]
    return out + [a("tsp"), a("sigmask"), a("sigsetsize")]


def _ret_poll(f: Fields, ret: int) -> str | None:
    if ret == 0:
        return "0 (Timeout)"
    data, n = f.get("ufds_data"), _u(f, "nfds") & 0xFFFFFFFF
    if ret > 0 and isinstance(data, bytes):
        try:
            rev = _structs.format_revents(data, n)
        except _structs.StructError:
            return None
        td = f.get("tsp_data")
        if isinstance(td, bytes) and len(td) >= 32:
            return f"{ret} ({rev}, left {_structs.format_timespec(td[16:32])})"
        return f"{ret} ({rev})"
    return None


def _spr_fcntl(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    out = _sp_fcntl(f, a)
    cmd = _u(f, "cmd") & 0xFFFFFFFF
    data = f.get("arg_data")
    if cmd in (5, 6, 7, 36, 37, 38) and isinstance(data, bytes) and len(out) == 3:
        getter = cmd in (5, 36)
        if not getter or _ok(ret):
            try:
                out[2] = _structs.format_flock(data, with_pid=getter)
            except _structs.StructError:
                pass
    return out


def _ret_fcntl(f: Fields, ret: int) -> str | None:
    cmd = _u(f, "cmd") & 0xFFFFFFFF
    if cmd == 3:
        return f"{ret:#x} (flags {open_flags(ret)})" if ret else "0 (flags O_RDONLY)"
    if cmd == 1 and ret > 0:
        return f"{ret:#x} (flags {_flags(FD_FLAGS, ret)})"
    return None


def _sockopt_name(level: int, opt: int) -> str:
    table = SO_NAMES if level == 1 else TCP_NAMES if level == 6 else {}
    return table.get(opt, str(opt))


def _sp_setsockopt(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    lv, opt, ln = _s32(_u(f, "level")), _s32(_u(f, "optname")), _s32(_u(f, "optlen"))
    data = f.get("optval_data")
    val = pointer(_u(f, "optval"))
    if isinstance(data, bytes) and ln == 4 and len(data) >= 4:
        val = _structs.format_int(data)
    elif isinstance(data, bytes) and 0 <= ln == len(data):
        val = quote(data, None)
    return [a("fd"), SOL.get(lv, str(lv)), _sockopt_name(lv, opt), val, str(ln)]


def _sp_getsockopt(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    lv, opt = _s32(_u(f, "level")), _s32(_u(f, "optname"))
    val, ln = pointer(_u(f, "optval")), pointer(_u(f, "optlen"))
    d, dl = f.get("optval_data"), f.get("optlen_data")
    if _ok(ret) and isinstance(dl, bytes) and len(dl) >= 4:
        ln = _structs.format_int(dl)
        if isinstance(d, bytes) and len(d) >= 4 and int.from_bytes(dl[:4], "little") == 4:
            val = _structs.format_int(d)
    return [a("fd"), SOL.get(lv, str(lv)), _sockopt_name(lv, opt), val, ln]


def _sp_clone3(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    data = f.get("uargs_data")
    txt = pointer(_u(f, "uargs"))
    if isinstance(data, bytes):
        try:
            txt = _structs.format_clone_args(data, CLONE_FLAGS, ret if _ok(ret) else None)
        except _structs.StructError:
            pass
    return [txt, a("size")]


def _addrlen(f: Fields, sa: str, ln: str, ret: int | None) -> str:
    inlen = f.get(f"{sa}_inlen")
    data = f.get(sa)
    if not isinstance(inlen, int):
        return pointer(_u(f, ln))
    if _ok(ret) and isinstance(data, bytes) and len(data) != inlen:
        return f"[{inlen} => {len(data)}]"
    return f"[{inlen}]"


def _sockaddr_out(f: Fields, a: Callable[[str], str], sa: str, ret: int | None) -> str:
    data = f.get(sa)
    if _ok(ret) and isinstance(data, bytes):
        return format_sockaddr(data, len(data))
    return pointer(_u(f, f"{sa}_ptr") or (data if isinstance(data, int) else 0))


def _sp_getsockname(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    sa, ln = ("usockaddr", "usockaddr_len")
    return [a("fd"), _sockaddr_out(f, a, sa, ret), _addrlen(f, sa, ln, ret)]


def _sp_accept(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    sa, ln = "upeer_sockaddr", "upeer_addrlen"
    if f.get(sa) is None or f.get(sa) == 0:
        out = [a("fd"), "NULL", "NULL"]
    else:
        out = [a("fd"), _sockaddr_out(f, a, sa, ret), _addrlen(f, sa, ln, ret)]
    if "flags" in f:
        out.append(_flags(SOCK_FLAGS, _u(f, "flags"), "0"))
    return out


def _spr_wait4(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    st = pointer(_u(f, "stat_addr"))
    data = f.get("stat_addr_data")
    if ret is not None and ret > 0 and isinstance(data, bytes) and len(data) >= 4:
        st = _structs.format_wstatus(data)
    return [str(_s32(_u(f, "upid"))), st, _flags(WAIT_OPTS, _u(f, "options") & 0xFFFFFFFF),
            pointer(_u(f, "ru"))]


def _sp_execve(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    env = pointer(_u(f, "envp"))
    n = f.get("envp_count")
    if isinstance(n, int) and _u(f, "envp"):
        env += f" /* {n} var{'s' if n != 1 else ''} */"
    out = [a("filename"), a("argv"), env]
    if "fd" in f:  # execveat
        out = [dirfd(_u(f, "fd"))] + out + [_flags(AT_FLAGS, _u(f, "flags"))]
    return out


def _sp_sendto(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
    names = [n for n in ("fd", "buff", "len", "flags", "addr", "addr_len") if n in f]
    return [_flags(MSG_FLAGS, _u(f, n) & 0xFFFFFFFF) if n == "flags" else a(n)
            for n in names]


def _msg_flags_call(argnames: Sequence[str]) -> Callable[..., list[str]]:
    def sp(f: Fields, a: Callable[[str], str], ret: int | None) -> list[str]:
        return [_flags(MSG_FLAGS, _u(f, n) & 0xFFFFFFFF) if n == "flags" else a(n)
                for n in argnames]
    return sp


SPECIAL_R: dict[str, Callable[[Fields, Callable[[str], str], int | None], list[str]]] = {
    "newfstatat": _sp_newfstatat,
    "statx": _sp_statx,
    "getdents64": _sp_getdents,
    "futex": _sp_futex,
    "poll": _sp_poll,
    "ppoll": _sp_poll,
    "ioctl": _sp_ioctl,
    "fcntl": _spr_fcntl,
    "select": _sp_select,
    "pselect6": _sp_select,
    "epoll_ctl": _sp_epoll_ctl,
    "epoll_wait": _sp_epoll_wait,
    "epoll_pwait": _sp_epoll_wait,
    "setsockopt": _sp_setsockopt,
    "getsockopt": _sp_getsockopt,
    "clone3": _sp_clone3,
    "clone": _sp_clone,
    "getsockname": _sp_getsockname,
    "getpeername": _sp_getsockname,
    "accept": _sp_accept,
    "accept4": _sp_accept,
    "wait4": _spr_wait4,
    "execve": _sp_execve,
    "execveat": _sp_execve,
    "recvfrom": _msg_flags_call(("fd", "ubuf", "size", "flags", "addr", "addr_len")),
    "sendto": _msg_flags_call(("fd", "buff", "len", "flags", "addr", "addr_len")),
    "sendmsg": _msg_flags_call(("fd", "msg", "flags")),
    "pwritev": lambda f, a, r: [a("fd"), a("vec"), a("vlen"), str(_s64(_u(f, "pos_l")))],
    "preadv": lambda f, a, r: [a("fd"), a("vec"), a("vlen"), str(_s64(_u(f, "pos_l")))],
    "recvmsg": _msg_flags_call(("fd", "msg", "flags")),
}
RET_DECOR: dict[str, Callable[[Fields, int], str | None]] = {
    "poll": _ret_poll,
    "ppoll": _ret_poll,
    "select": _ret_select,
    "pselect6": _ret_select,
    "fcntl": _ret_fcntl,
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
        ct = ctypes_of.get(n, "long")
        data = fields.get(f"{n}_data")
        if data is not None:
            cap = capture_of(name, ct, n)
            if cap is not None and cap.kind == ARG_TS_INOUT and isinstance(data, bytes):
                try:  # as passed in (the exit half is the "left" of the return)
                    fmt = _structs.format_timeval if n == "tvp" else _structs.format_timespec
                    return fmt(data[:16])
                except _structs.StructError:
                    return pointer(_int(v))
            if cap is not None and ARG_IOV_IN <= cap.kind <= ARG_MSG_OUT and isinstance(
                    data, bytes):
                try:
                    return _iov_text(cap.kind, data, fields, _int(v), ret, strmax)
                except _structs.StructError:
                    return pointer(_int(v))
            if (cap is not None and cap.render is not None and isinstance(data, bytes)
                    and (cap.direction == IN or _ok(ret))):
                try:
                    return cap.render(data)
                except _structs.StructError:
                    pass  # cut short: the pointer
            return pointer(_int(v))
        return _arg_text(name, n, ct, v, fields, bad, trunc, strmax)

    spr = SPECIAL_R.get(name)
    sp = SPECIAL.get(name)
    texts: list[str] | None = None
    if spr is not None:
        try:
            texts = spr(fields, a, ret)
        except Exception:
            texts = None
    elif sp is not None and not bad.intersection(("flags",)):
        try:
            texts = sp(fields, a)
        except Exception:
            texts = None
    if texts is None:
        texts = [a(n) for _, n in pairs]
    rtext = format_return(name, ret)
    dec = RET_DECOR.get(name)
    if dec is not None and ret is not None and not is_error(ret):
        try:
            d = dec(fields, ret)
        except Exception:
            d = None
        if d is not None:
            rtext = f"= {d}"
    return f"{name}({', '.join(texts)}) {rtext}"


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
