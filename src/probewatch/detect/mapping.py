"""probewatch Events -> SigmaEvents (docs/detection.md), with the process table's context.

``Mapper(table).map(ev)`` turns one Event of the BPF ``syscalls`` program into the
Sigma events it stands for:

- ``sched:sched_process_exec`` -> ``process_creation`` and an ``auditd`` EXECVE record;
- ``syscalls:NAME`` -> ``syscall`` (every traced syscall), an ``auditd`` SYSCALL
  record and one PATH record per path argument; plus ``file_event`` for files
  created, opened for writing, renamed, linked, chmod-ed, chown-ed, unlinked,
  time-changed or truncated, and ``network_connection`` for connect() to an inet
  address.

Every kind carries the process fields (Image, CommandLine, User, ...; see
docs/detection.md). Paths are made absolute against the process's cwd when relative
and the dfd is AT_FDCWD (or against the directory an fd was opened on, when known),
with ``.``/``..`` folded. Flags and enums are strace's names (decode/syscalls.py's
tables and a few here: ptrace requests, prctl options, bpf commands, socket options).

Beyond the contract, for rules on fd hand-offs (reverse shells): the ``syscall`` kind
has ``FdTarget`` — what the fd argument (``fd``, ``oldfd``, ``fildes``) refers to as
far as the mapper saw it opened: a path, ``socket:AF_INET:SOCK_STREAM`` and after a
connect ``socket:AF_INET:SOCK_STREAM:1.2.3.4:4444`` (an accept()ed one ends in
``:accepted``: ``socket:AF_INET:SOCK_STREAM:1.2.3.4:51000:accepted``), ``memfd:NAME``; a successful
``prctl(PR_SET_NAME)`` has ``NewName`` (the comm the record saw at the return); and
``process_creation`` has ``StdinTarget``/``StdoutTarget``/``StderrTarget`` (same
form) when fds 0-2 were set up by traced syscalls (dup2 of a socket, ...). The fd
table is per process, bounded (64 fds), copied at fork; close() is not traced, so an
fd reused by an untraced syscall (pipe, eventfd, ...) may keep an old target.

Value details (the contract leaves them open):

- syscall arguments: ints are signed as the kernel's C type says (fds, pids and
  uid/gid arguments as signed 32-bit, so -1 stays -1); ``dfd``-style arguments are
  ``"AT_FDCWD"`` or the fd; ``mode`` of open/creat/chmod/mknod is strace's octal text
  (``"04755"``; mknod's with the file type first, ``"S_IFIFO|0644"``), omitted for open
  without O_CREAT; pointers not read are ``"0x..."``
  or ``"NULL"``; sockaddrs are strace's text; strings and argv as captured.
- ``file_event.Mode`` is the int permission bits (``0o4755`` = 2541);
  ``SourceFilename`` of a symlink is the link's text as given (not resolved).
- ``network_connection``: ``DestinationIsIpv6``/``Initiated`` are ``"true"``/``"false"``
  strings (Sysmon's form); ``Protocol`` comes from the socket() seen for that fd
  (absent when it was not seen); ``SourceIp``/``SourcePort`` are never known here.
- process fields: ``ExeName`` is the executable file's own name as the kernel opened
  it (symlinks resolved; a ``#!`` script's interpreter, e.g. ``dash``), beside
  ``Image`` (the path as exec'd) — a name that differs tells a renamed or linked copy.
- ``process_creation``: ``ExecSyscall`` is ``execveat`` when the exec'd path is
  ``/dev/fd/N`` (fexecve), else ``execve``; ``Argv1`` is argv[1] (``""`` when absent:
  the applet of ``busybox NAME``); ``Image`` of a memfd exec is
  ``/memfd:NAME (deleted)``, as /proc/PID/exe shows it.
- ``auditd``: SYSCALL records have ``a0``..``a3`` in hex without 0x (as audit.log),
  ``syscall`` equal to ``SYSCALL`` (the name), ``exit``, ``pid``, ``ppid``, ``gid``,
  ``egid``; PATH ``name`` is the resolved absolute path.

The user-space layer (``watch`` arms it beside the syscalls program, see
``detect.pipeline.live_events``): ``bash:readline`` -> ``shell_command`` (``Command``:
the line typed, ``Shell``, ``Truncated``) and ``tls:write``/``tls:read`` -> ``tls``
(``Direction``, ``Data``, ``DataLength``, ``Captured``, ``Cut``, ``Library``,
``LibraryPath``, ``Function``, ``Fd``, ``DestinationIp``/``DestinationPort``: the peer,
``SourceIp``/``SourcePort``: this end), each with the process fields.

``Mapper.use_engine(engine)`` (the watch Detector calls it) makes only what the rules
can match: no ``syscall`` event for a syscall no rule names, and for the others an
engine ``Partial`` with only the fields the candidate rules read (the engine builds the
full event on a match). The process fields are cached per process (invalidated when
its exec, ids, cwd or parent change).

``WATCH_SYSCALLS``: what ``probewatch watch`` traces by default; ``needed_syscalls``
narrows it to what loaded rules can use; ``open_watch_session`` opens the BPF source.

Example::

    table = ProcessTable(); table.seed()
    mapper = Mapper(table)
    with open_watch_session() as s:
        for ev in s.events():
            for sev in mapper.map(ev):      # also applies ev to the table
                print(sev.kind, sev.fields.get("Image"), sev.fields.get("TargetFilename"))
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..analyze.proctable import Process, ProcessTable, _abspath
from ..decode import syscalls as sd
from ..decode.syscalls import (
    AF,
    AT_FLAGS,
    SyscallTable,
    clone_flags,
    errno_name,
    format_sockaddr,
    open_flags,
    signal_name,
    sockaddr_endpoint,
    socket_type,
)
from ..event import Event
from .model import KINDS, SigmaEvent

__all__ = [
    "Mapper",
    "WATCH_SYSCALLS",
    "PROCESS_FIELDS",
    "needed_syscalls",
    "open_watch_session",
]

#: the syscalls ``watch`` traces by default (the security-relevant ones; those the
#: running kernel lacks are left out when a session is opened)
WATCH_SYSCALLS: tuple[str, ...] = (
    # programs
    "execve", "execveat",
    # files
    "open", "openat", "openat2", "creat", "rename", "renameat", "renameat2",
    "link", "linkat", "symlink", "symlinkat", "unlink", "unlinkat", "rmdir",
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
    "utimensat", "utimes", "futimesat", "utime", "truncate", "ftruncate",
    "mknod", "mknodat", "chdir", "fchdir",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
    # network
    "socket", "connect", "bind", "listen", "accept", "accept4", "setsockopt",
    # fds
    "dup", "dup2", "dup3", "memfd_create",
    # other processes
    "ptrace", "process_vm_writev", "process_vm_readv", "kill", "tgkill", "tkill",
    "pidfd_open", "pidfd_getfd",
    # kernel, privileges, namespaces
    "init_module", "finit_module", "delete_module", "bpf", "perf_event_open", "prctl",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid",
    "setfsgid", "capset", "mount", "umount2", "move_mount", "pivot_root", "chroot",
    "unshare", "setns", "personality", "keyctl", "kexec_load", "kexec_file_load",
    "userfaultfd", "io_uring_setup", "syslog",
)

#: fcntl commands that duplicate a descriptor (F_DUPFD, F_DUPFD_CLOEXEC): perl and
#: shells set up 0-2 this way
_F_DUPFD = frozenset({0, 1030})

#: the syscalls the table and the mapper themselves need (lineage, cwd, fds)
CORE_SYSCALLS = ("execve", "execveat", "chdir", "fchdir", "socket", "connect", "close",
                 "close_range", "fcntl", "dup",
                 "dup2", "dup3", "memfd_create", "open", "openat", "creat", "accept",
                 "accept4")

#: the process fields every kind carries (docs/detection.md)
PROCESS_FIELDS = (
    "Image", "CommandLine", "Argv0", "Comm", "CurrentDirectory", "ProcessId",
    "ParentProcessId", "ParentImage", "ParentCommandLine", "GrandparentImage", "User",
    "Uid", "Euid", "Gid", "Egid", "LogonId", "ContainerId",
    "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "PYTHONPATH", "BASH_ENV", "HISTFILE",
    "HISTSIZE", "HISTFILESIZE", "PROMPT_COMMAND", "SSH_CONNECTION",
)

# ------------------------------------------------------------------ strace names

PTRACE_REQ = {
    0: "PTRACE_TRACEME", 1: "PTRACE_PEEKTEXT", 2: "PTRACE_PEEKDATA", 3: "PTRACE_PEEKUSER",
    4: "PTRACE_POKETEXT", 5: "PTRACE_POKEDATA", 6: "PTRACE_POKEUSER", 7: "PTRACE_CONT",
    8: "PTRACE_KILL", 9: "PTRACE_SINGLESTEP", 12: "PTRACE_GETREGS", 13: "PTRACE_SETREGS",
    14: "PTRACE_GETFPREGS", 15: "PTRACE_SETFPREGS", 16: "PTRACE_ATTACH",
    17: "PTRACE_DETACH", 18: "PTRACE_GETFPXREGS", 19: "PTRACE_SETFPXREGS",
    24: "PTRACE_SYSCALL", 0x4200: "PTRACE_SETOPTIONS", 0x4201: "PTRACE_GETEVENTMSG",
    0x4202: "PTRACE_GETSIGINFO", 0x4203: "PTRACE_SETSIGINFO", 0x4204: "PTRACE_GETREGSET",
    0x4205: "PTRACE_SETREGSET", 0x4206: "PTRACE_SEIZE", 0x4207: "PTRACE_INTERRUPT",
    0x4208: "PTRACE_LISTEN", 0x4209: "PTRACE_PEEKSIGINFO", 0x420A: "PTRACE_GETSIGMASK",
    0x420B: "PTRACE_SETSIGMASK", 0x420C: "PTRACE_SECCOMP_GET_FILTER",
    0x420E: "PTRACE_GET_SYSCALL_INFO",
}
PRCTL_OPT = {
    1: "PR_SET_PDEATHSIG", 2: "PR_GET_PDEATHSIG", 3: "PR_GET_DUMPABLE",
    4: "PR_SET_DUMPABLE", 7: "PR_GET_KEEPCAPS", 8: "PR_SET_KEEPCAPS", 15: "PR_SET_NAME",
    16: "PR_GET_NAME", 21: "PR_GET_SECCOMP", 22: "PR_SET_SECCOMP", 23: "PR_CAPBSET_READ",
    24: "PR_CAPBSET_DROP", 35: "PR_SET_MM", 36: "PR_SET_CHILD_SUBREAPER",
    37: "PR_GET_CHILD_SUBREAPER", 38: "PR_SET_NO_NEW_PRIVS", 39: "PR_GET_NO_NEW_PRIVS",
    47: "PR_CAP_AMBIENT", 0x59616D61: "PR_SET_PTRACER", 0x53564D41: "PR_SET_VMA",
}
BPF_CMD = {i: f"BPF_{n}" for i, n in enumerate((
    "MAP_CREATE", "MAP_LOOKUP_ELEM", "MAP_UPDATE_ELEM", "MAP_DELETE_ELEM",
    "MAP_GET_NEXT_KEY", "PROG_LOAD", "OBJ_PIN", "OBJ_GET", "PROG_ATTACH", "PROG_DETACH",
    "PROG_TEST_RUN", "PROG_GET_NEXT_ID", "MAP_GET_NEXT_ID", "PROG_GET_FD_BY_ID",
    "MAP_GET_FD_BY_ID", "OBJ_GET_INFO_BY_FD", "PROG_QUERY", "RAW_TRACEPOINT_OPEN",
    "BTF_LOAD", "BTF_GET_FD_BY_ID", "TASK_FD_QUERY", "MAP_LOOKUP_AND_DELETE_ELEM",
    "MAP_FREEZE", "BTF_GET_NEXT_ID", "MAP_LOOKUP_BATCH", "MAP_LOOKUP_AND_DELETE_BATCH",
    "MAP_UPDATE_BATCH", "MAP_DELETE_BATCH", "LINK_CREATE", "LINK_UPDATE",
    "LINK_GET_FD_BY_ID", "LINK_GET_NEXT_ID", "ENABLE_STATS", "ITER_CREATE",
    "LINK_DETACH", "PROG_BIND_MAP", "TOKEN_CREATE"))}
SOL = {0: "SOL_IP", 1: "SOL_SOCKET", 6: "SOL_TCP", 17: "SOL_UDP", 41: "SOL_IPV6",
       255: "SOL_RAW", 263: "SOL_PACKET"}
SO_OPT = {
    1: "SO_DEBUG", 2: "SO_REUSEADDR", 3: "SO_TYPE", 4: "SO_ERROR", 5: "SO_DONTROUTE",
    6: "SO_BROADCAST", 7: "SO_SNDBUF", 8: "SO_RCVBUF", 9: "SO_KEEPALIVE",
    10: "SO_OOBINLINE", 13: "SO_LINGER", 15: "SO_REUSEPORT", 20: "SO_RCVTIMEO",
    21: "SO_SNDTIMEO", 25: "SO_BINDTODEVICE", 26: "SO_ATTACH_FILTER",
    27: "SO_DETACH_FILTER", 36: "SO_MARK", 44: "SO_LOCK_FILTER", 50: "SO_ATTACH_BPF",
    51: "SO_ATTACH_REUSEPORT_CBPF", 52: "SO_ATTACH_REUSEPORT_EBPF",
}
PACKET_OPT = {1: "PACKET_ADD_MEMBERSHIP", 2: "PACKET_DROP_MEMBERSHIP",
              5: "PACKET_RX_RING", 8: "PACKET_AUXDATA", 10: "PACKET_VERSION",
              13: "PACKET_TX_RING", 18: "PACKET_FANOUT"}
MFD_FLAGS = [(1, "MFD_CLOEXEC"), (2, "MFD_ALLOW_SEALING"), (4, "MFD_HUGETLB"),
             (8, "MFD_NOEXEC_SEAL"), (0x10, "MFD_EXEC")]
RENAME_FLAGS = [(1, "RENAME_NOREPLACE"), (2, "RENAME_EXCHANGE"), (4, "RENAME_WHITEOUT")]
MS_FLAGS = [
    (1, "MS_RDONLY"), (2, "MS_NOSUID"), (4, "MS_NODEV"), (8, "MS_NOEXEC"),
    (16, "MS_SYNCHRONOUS"), (32, "MS_REMOUNT"), (64, "MS_MANDLOCK"), (128, "MS_DIRSYNC"),
    (256, "MS_NOSYMFOLLOW"), (1024, "MS_NOATIME"), (2048, "MS_NODIRATIME"),
    (4096, "MS_BIND"), (8192, "MS_MOVE"), (16384, "MS_REC"), (32768, "MS_SILENT"),
    (1 << 16, "MS_POSIXACL"), (1 << 17, "MS_UNBINDABLE"), (1 << 18, "MS_PRIVATE"),
    (1 << 19, "MS_SLAVE"), (1 << 20, "MS_SHARED"), (1 << 21, "MS_RELATIME"),
    (1 << 24, "MS_STRICTATIME"), (1 << 25, "MS_LAZYTIME"), (0xC0ED0000, "MS_MGC_VAL"),
]
SOCK_FLAGS_ONLY = [(0o4000, "SOCK_NONBLOCK"), (0o2000000, "SOCK_CLOEXEC")]
O_CLOEXEC_ONLY = [(0o2000000, "O_CLOEXEC")]

# syscalls whose path arguments (name -> audit nametype) a PATH record stands for
_PATH_ARGS: dict[str, tuple[tuple[str, str, str | None], ...]] = {
    # name: ((path arg, nametype, its dfd arg or None), ...)
    "open": (("filename", "NORMAL", None),),
    "openat": (("filename", "NORMAL", "dfd"),),
    "openat2": (("filename", "NORMAL", "dfd"),),
    "creat": (("pathname", "CREATE", None),),
    "rename": (("oldname", "DELETE", None), ("newname", "CREATE", None)),
    "renameat": (("oldname", "DELETE", "olddfd"), ("newname", "CREATE", "newdfd")),
    "renameat2": (("oldname", "DELETE", "olddfd"), ("newname", "CREATE", "newdfd")),
    "link": (("oldname", "NORMAL", None), ("newname", "CREATE", None)),
    "linkat": (("oldname", "NORMAL", "olddfd"), ("newname", "CREATE", "newdfd")),
    "symlink": (("newname", "CREATE", None),),
    "symlinkat": (("newname", "CREATE", "newdfd"),),
    "unlink": (("pathname", "DELETE", None),),
    "unlinkat": (("pathname", "DELETE", "dfd"),),
    "rmdir": (("pathname", "DELETE", None),),
    "chmod": (("filename", "NORMAL", None),),
    "fchmodat": (("filename", "NORMAL", "dfd"),),
    "fchmodat2": (("filename", "NORMAL", "dfd"),),
    "chown": (("filename", "NORMAL", None),),
    "lchown": (("filename", "NORMAL", None),),
    "fchownat": (("filename", "NORMAL", "dfd"),),
    "utimensat": (("filename", "NORMAL", "dfd"),),
    "utimes": (("filename", "NORMAL", None),),
    "utime": (("filename", "NORMAL", None),),
    "futimesat": (("filename", "NORMAL", "dfd"),),
    "truncate": (("path", "NORMAL", None),),
    "mknod": (("filename", "CREATE", None),),
    "mknodat": (("filename", "CREATE", "dfd"),),
    "execve": (("filename", "NORMAL", None),),
    "execveat": (("filename", "NORMAL", "fd"),),
    "chdir": (("filename", "NORMAL", None),),
    "chroot": (("filename", "NORMAL", None),),
    "mount": (("dir_name", "NORMAL", None),),
    "umount2": (("name", "NORMAL", None),),
    "pivot_root": (("new_root", "NORMAL", None), ("put_old", "NORMAL", None)),
    "move_mount": (("to_pathname", "NORMAL", "to_dfd"),),
}

# file_event: syscall -> (Operation, target arg, dfd arg, source arg, source dfd)
_FILE_OPS: dict[str, tuple[str, str | None, str | None, str | None, str | None]] = {
    "creat": ("create", "pathname", None, None, None),
    "rename": ("rename", "newname", None, "oldname", None),
    "renameat": ("rename", "newname", "newdfd", "oldname", "olddfd"),
    "renameat2": ("rename", "newname", "newdfd", "oldname", "olddfd"),
    "link": ("link", "newname", None, "oldname", None),
    "linkat": ("link", "newname", "newdfd", "oldname", "olddfd"),
    "symlink": ("symlink", "newname", None, "oldname", None),
    "symlinkat": ("symlink", "newname", "newdfd", "oldname", None),
    "unlink": ("unlink", "pathname", None, None, None),
    "unlinkat": ("unlink", "pathname", "dfd", None, None),
    "rmdir": ("unlink", "pathname", None, None, None),
    "chmod": ("chmod", "filename", None, None, None),
    "fchmod": ("chmod", None, "fd", None, None),
    "fchmodat": ("chmod", "filename", "dfd", None, None),
    "fchmodat2": ("chmod", "filename", "dfd", None, None),
    "chown": ("chown", "filename", None, None, None),
    "lchown": ("chown", "filename", None, None, None),
    "fchown": ("chown", None, "fd", None, None),
    "fchownat": ("chown", "filename", "dfd", None, None),
    "utimensat": ("utimes", "filename", "dfd", None, None),
    "utimes": ("utimes", "filename", None, None, None),
    "utime": ("utimes", "filename", None, None, None),
    "futimesat": ("utimes", "filename", "dfd", None, None),
    "truncate": ("truncate", "path", None, None, None),
    "ftruncate": ("truncate", None, "fd", None, None),
    "mknod": ("create", "filename", None, None, None),
    "mknodat": ("create", "filename", "dfd", None, None),
}

_O_WRITE = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000  # O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND
_EINPROGRESS = 115
_DFD_NAMES = frozenset({"dfd", "olddfd", "newdfd", "from_dfd", "to_dfd"})
_FD_NAMES = frozenset({"fd", "oldfd", "newfd", "fildes", "pidfd", "group_fd"})
_ID_NAMES = frozenset({"uid", "gid", "user", "group", "ruid", "euid", "suid", "rgid",
                       "egid", "sgid", "pid", "tgid", "upid"})
_ADDR_NAMES = frozenset({"addr", "start", "brk", "new_addr", "old_addr", "shmaddr"})
_MODE_SYSCALLS = frozenset({"open", "openat", "creat", "chmod", "fchmod", "fchmodat",
                            "fchmodat2", "mkdir", "mkdirat", "mknod", "mknodat"})


_s32 = sd._s32  # C-type sign of syscall arguments: decode/syscalls.py's
_s64 = sd._s64


def _flags(table: Sequence[tuple[int, str]], v: int, zero: str = "0") -> str:
    return sd._flags(table, v & 0xFFFFFFFFFFFFFFFF, zero)


def _mode(v: int) -> str:
    """strace's octal mode with its type bits dropped: 0o104755 -> '04755'."""
    v &= 0o7777
    return f"0{v:o}" if v else "000"


_S_IFMT = {0o010000: "S_IFIFO", 0o020000: "S_IFCHR", 0o060000: "S_IFBLK",
           0o100000: "S_IFREG", 0o140000: "S_IFSOCK"}


def _mknod_mode(v: int) -> str:
    """mknod's mode as strace shows it, file type first: 0o10644 -> 'S_IFIFO|0644'."""
    t = _S_IFMT.get(v & 0o170000)
    return f"{t}|{_mode(v)}" if t else _mode(v)


def _dfd(v: Any) -> Any:
    if not isinstance(v, int):
        return v
    v = _s32(v)
    return "AT_FDCWD" if v == sd.AT_FDCWD else v


# per syscall: arg name -> decoder (beyond the generic rules in _decode_arg)
_open_flags = functools.lru_cache(maxsize=1024)(open_flags)  # few distinct values
_SPECIAL: dict[str, dict[str, Callable[[int, Mapping[str, Any]], Any]]] = {
    "open": {"flags": lambda v, f: _open_flags(v)},
    "openat": {"flags": lambda v, f: _open_flags(v)},
    "unlinkat": {"flag": lambda v, f: _flags(AT_FLAGS, v)},
    "linkat": {"flags": lambda v, f: _flags(AT_FLAGS, v)},
    "fchownat": {"flag": lambda v, f: _flags(AT_FLAGS, v)},
    "utimensat": {"flags": lambda v, f: _flags(AT_FLAGS, v)},
    "fchmodat2": {"flags": lambda v, f: _flags(AT_FLAGS, v)},
    "execveat": {"flags": lambda v, f: _flags(AT_FLAGS, v)},
    "renameat2": {"flags": lambda v, f: _flags(RENAME_FLAGS, v)},
    "memfd_create": {"flags": lambda v, f: _flags(MFD_FLAGS, v)},
    "mknod": {"mode": lambda v, f: _mknod_mode(v)},
    "mknodat": {"mode": lambda v, f: _mknod_mode(v)},
    "ptrace": {"request": lambda v, f: PTRACE_REQ.get(v & 0xFFFFFFFF, str(_s64(v))),
               "pid": lambda v, f: _s32(v)},
    "prctl": {"option": lambda v, f: PRCTL_OPT.get(v & 0xFFFFFFFF, str(_s32(v)))},
    "bpf": {"cmd": lambda v, f: BPF_CMD.get(v & 0xFFFFFFFF, str(_s32(v)))},
    "socket": {"family": lambda v, f: AF.get(v & 0xFFFFFFFF, str(_s32(v))),
               "type": lambda v, f: socket_type(v & 0xFFFFFFFF),
               "protocol": lambda v, f: sd.socket_proto(_int(f.get("family")),
                                                        v & 0xFFFFFFFF)},
    "setsockopt": {"level": lambda v, f: SOL.get(v & 0xFFFFFFFF, str(_s32(v))),
                   "optname": lambda v, f: _sockopt(_int(f.get("level")), v)},
    "accept4": {"flags": lambda v, f: _flags(SOCK_FLAGS_ONLY, v)},
    "dup3": {"flags": lambda v, f: _flags(O_CLOEXEC_ONLY, v)},
    "mount": {"flags": lambda v, f: _flags(MS_FLAGS, v)},
    "unshare": {"unshare_flags": lambda v, f: clone_flags(v)},
    "setns": {"flags": lambda v, f: clone_flags(v) if v else "0"},
    "kill": {"sig": lambda v, f: signal_name(v)},
    "tkill": {"sig": lambda v, f: signal_name(v)},
    "tgkill": {"sig": lambda v, f: signal_name(v)},
    "mmap": {"prot": lambda v, f: sd.prot_flags(v), "flags": lambda v, f: sd.mmap_flags(v)},
    "mprotect": {"prot": lambda v, f: sd.prot_flags(v)},
    "personality": {"personality": lambda v, f: f"{v & 0xFFFFFFFF:#x}"},
}


Decoder = Callable[[int, Mapping[str, Any]], Any]


def _int_decoder(sc: str, an: str, ct: str, special: Mapping[str, Decoder]) -> Decoder:
    """How argument ``an`` (C type ``ct``) of syscall ``sc`` is shown when it is a number."""
    dec = special.get(an)
    if dec is not None:
        return dec
    if an in _DFD_NAMES or (an == "fd" and sc == "execveat"):
        return lambda v, f: _dfd(v)
    if an == "mode" and sc in _MODE_SYSCALLS:
        return lambda v, f: _mode(v)
    if an in _FD_NAMES or an in _ID_NAMES:
        return lambda v, f: _s32(v)
    if "*" in ct or an in _ADDR_NAMES:
        return lambda v, f: sd.pointer(v)
    if ct in ("int", "pid_t", "key_t", "clockid_t", "timer_t", "mqd_t", "int32_t"):
        return lambda v, f: _s32(v)
    if ct in ("unsigned int", "u32", "uid_t", "gid_t", "umode_t", "__u32"):
        return lambda v, f: v & 0xFFFFFFFF
    return lambda v, f: _s64(v)


def _int(v: Any) -> int:
    return v if isinstance(v, int) else 0


def _sockopt(level: int, v: int) -> str:
    v &= 0xFFFFFFFF
    if level == 1:
        return SO_OPT.get(v, str(v))
    if level == 263:
        return PACKET_OPT.get(v, str(v))
    return str(v)


# ------------------------------------------------------------------ the mapper

_ABSENT = object()
_NO_FD_TARGET = frozenset({"openat", "openat2", "execveat"})
#: the syscall kind's own fields (beside the process fields and the arguments)
_SC_OWN = frozenset({"Syscall", "TargetFilename", "FdTarget", "NewName", "Return", "Errno",
                     "Success", "Comm"})
_Partial: Any = None  # detect.engine.Partial, bound by Mapper.use_engine


class Mapper:
    """Event -> list[SigmaEvent] with the process table's context (module docstring).

    ``map(ev)`` first applies ``ev`` to the table (a no-op when the caller already
    did: ProcessTable.on_event ignores the same Event twice in a row).
    ``kinds``: produce only these kinds (e.g. those the loaded rules use; None: all).
    The fd table and the process table are kept either way."""

    def __init__(self, table: ProcessTable | None = None,
                 syscalls: SyscallTable | None = None,
                 kinds: Iterable[str] | None = None) -> None:
        self.table = table if table is not None else ProcessTable()
        want = set(KINDS if kinds is None else kinds)
        self._k_pc = "process_creation" in want
        self._k_fe = "file_event" in want
        self._k_nc = "network_connection" in want
        self._k_sc = "syscall" in want
        self._k_au = "auditd" in want
        self._k_sh = "shell_command" in want
        self._k_tls = "tls" in want
        if syscalls is None:
            from ..collect.bpf.loader import syscall_table

            syscalls = syscall_table()
        self.syscalls = syscalls
        self._ctypes: dict[str, dict[str, str]] = {}
        self._decs: dict[str, list[tuple[str, str, Decoder]]] = {}
        self._pcache: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self._engine: Any = None
        self._plans: dict[Any, frozenset[str] | None | bool] = {}
        self._pwant: dict[frozenset[str], tuple[str, ...]] = {}
        self._plan_by_name = False
        self._plan_ok = False
        self.errors = 0

    def use_engine(self, engine: Any) -> None:
        """Make only what ``engine`` (a detect.engine.Engine) can match: no ``syscall``
        event for a syscall no rule names, and for the others a Partial with only the
        fields the candidate rules read (the engine builds the full event on a match).
        Without it (the default) every event is made in full."""
        global _Partial
        from .engine import Partial

        _Partial = Partial
        self._engine = engine
        self._plans = {}
        self._pwant = {}
        idx = getattr(engine, "index_fields", None)
        fields = tuple(idx("syscall")) if callable(idx) else ("?",)
        # the plan is asked with the syscall's index fields, known before the event is
        # made: its name, and its TargetFilename (the last path argument)
        self._plan_ok = set(fields) <= {"Syscall", "TargetFilename"}
        # and kept per syscall name when the name is the only index field
        self._plan_by_name = set(fields) <= {"Syscall"}

    # -- process fields
    def process_fields(self, p: Process | None, ev: Event) -> dict[str, Any]:
        """The process fields of ``p`` (or what ``ev`` says when p is unknown)."""
        out = dict(self._pbase(p, ev))
        out["Comm"] = ev.comm
        return out

    def _pbase(self, p: Process | None, ev: Event) -> dict[str, Any]:
        """The process fields without Comm: per process, cached until one of them
        changes (exec, setuid, chdir, a new parent or the parent's exec). The dict
        returned is shared: copy it before changing it."""
        if p is None:
            f = ev.fields
            out: dict[str, Any] = {"ProcessId": ev.pid}
            ppid = f.get("ppid")
            if isinstance(ppid, int) and ppid:
                out["ParentProcessId"] = ppid
                par = self.table.procs.get(ppid)
                if par is not None:
                    out["ParentImage"] = par.exe
                    out["ParentCommandLine"] = par.command_line
            uid = f.get("uid")
            if isinstance(uid, int) and ev.probe.startswith("bpf"):
                out["Uid"] = uid
                out["User"] = self.table.user_name(uid)
            return out
        par = self.table.parent(p)
        hit = self._pcache.get(p.pid)
        if hit is not None:
            k = hit[0]
            if (k[0] == p.exec_ts and k[1] == p.uid and k[2] == p.euid and k[3] == p.gid
                    and k[4] == p.egid and k[5] == p.cwd and k[6] == p.ppid
                    and k[7] == p.exe and k[8] == id(par)
                    and (par is None or k[9] == par.exe)):
                return hit[1]
        key = (p.exec_ts, p.uid, p.euid, p.gid, p.egid, p.cwd, p.ppid, p.exe,
               id(par), par.exe if par is not None else None)
        base: dict[str, Any] = {
            "Image": p.exe,
            "CommandLine": p.command_line,
            "Argv0": p.argv[0] if p.argv else "",
            "CurrentDirectory": p.cwd,
            "ProcessId": p.pid,
            "ParentProcessId": p.ppid,
            "LogonId": p.auid,
        }
        if p.uid >= 0:
            base["User"] = self.table.user_name(p.uid)
            base["Uid"] = p.uid
        if p.euid >= 0:
            base["Euid"] = p.euid
        if p.gid >= 0:
            base["Gid"] = p.gid
        if p.egid >= 0:
            base["Egid"] = p.egid
        if par is not None:
            base["ParentImage"] = par.exe
            base["ParentCommandLine"] = par.command_line
            gp = self.table.parent(par)
            if gp is not None:
                base["GrandparentImage"] = gp.exe
        if p.container:
            base["ContainerId"] = p.container
        if p.exe_name:
            base["ExeName"] = p.exe_name
        for k2, v in p.env.items():
            base[k2] = v
        if len(self._pcache) > 2048:
            # bounded: each entry holds two joined command lines (up to ~16 KiB under
            # an exec storm of long argvs); 2048 busy processes is plenty of reuse
            self._pcache.clear()
        self._pcache[p.pid] = (key, base)
        return base

    # -- entry point
    def map(self, ev: Event) -> list[SigmaEvent]:
        table = self.table
        table.on_event(ev)
        name = ev.event
        if name.startswith("syscalls:"):
            return self._syscall(ev, name[9:])
        if name == "sched:sched_process_exec":
            return self._exec(ev)
        if name == "tcp:connect":
            return self._tcp(ev)
        if name == "bash:readline":
            return self._typed(ev)
        if name == "tls:write" or name == "tls:read":
            return self._tls(ev)
        return []

    def _typed(self, ev: Event) -> list[SigmaEvent]:
        """A line typed into bash -> ``shell_command``: ``Command`` (the line as typed),
        ``Shell`` (the shell's Image), ``Truncated``, plus the shell's process fields."""
        if not self._k_sh:
            return []
        f = ev.fields
        p = self.table.procs.get(ev.pid)
        pf = self.process_fields(p, ev)
        pf.update(Command=f.get("line", ""), Shell=pf.get("Image") or ev.comm,
                  Truncated="line" in f.get("truncated", ()))
        return [SigmaEvent("shell_command", ev.ts, ev.pid, pf, ev)]

    def _tls(self, ev: Event) -> list[SigmaEvent]:
        """TLS plaintext -> ``tls`` (docs/detection.md): the data and its connection, plus
        the process fields."""
        if not self._k_tls:
            return []
        f = ev.fields
        p = self.table.procs.get(ev.pid)
        pf = self.process_fields(p, ev)
        pf.update(Direction=f.get("direction"), Data=f.get("data", ""),
                  DataLength=f.get("len", 0), Captured=f.get("captured", 0),
                  Cut=f.get("cut", 0), Library=f.get("library"), LibraryPath=f.get("lib"),
                  Function=f.get("function"), Fd=f.get("fd", -1))
        if "daddr" in f:
            pf.update(DestinationIp=f["daddr"], DestinationPort=f["dport"],
                      SourceIp=f["saddr"], SourcePort=f["sport"])
        return [SigmaEvent("tls", ev.ts, ev.pid, pf, ev)]

    def _exec(self, ev: Event) -> list[SigmaEvent]:
        if not self._k_pc and not self._k_au:
            return []
        p = self.table.procs.get(ev.pid)
        pf = self.process_fields(p, ev)
        argv = p.argv if p is not None else []
        fn = ev.fields.get("filename") or ""
        pf["OriginalArgv0"] = argv[0] if argv else ""
        pf["Argv1"] = argv[1] if len(argv) > 1 else ""  # a multi-call binary's applet
        pf["ExecSyscall"] = "execveat" if fn.startswith("/dev/fd/") else "execve"
        if p is not None and p.fds:
            for fd, key in ((0, "StdinTarget"), (1, "StdoutTarget"), (2, "StderrTarget")):
                t = p.fds.get(fd)
                if t is not None:
                    pf[key] = t
        out = [SigmaEvent("process_creation", ev.ts, ev.pid, pf, ev)] if self._k_pc else []
        if not self._k_au:
            return out
        audit = self.process_fields(p, ev)
        audit["type"] = "EXECVE"
        audit["argc"] = str(len(argv))
        for i, a in enumerate(argv):
            audit[f"a{i}"] = a
        out.append(SigmaEvent("auditd", ev.ts, ev.pid, audit, ev))
        return out

    def _tcp(self, ev: Event) -> list[SigmaEvent]:
        if not self._k_nc:
            return []
        f = ev.fields
        p = self.table.procs.get(ev.pid)
        pf = self.process_fields(p, ev)
        pf.update(DestinationIp=f.get("daddr"), DestinationPort=f.get("dport"),
                  SourceIp=f.get("saddr"), SourcePort=f.get("sport"),
                  DestinationIsIpv6="true" if f.get("family") == 10 else "false",
                  Initiated="true", Protocol="tcp", Success=f.get("state") == 1)
        return [SigmaEvent("network_connection", ev.ts, ev.pid, pf, ev)]

    def _ctype_map(self, name: str) -> dict[str, str]:
        m = self._ctypes.get(name)
        if m is None:
            info = self.syscalls.by_name.get(name)
            m = {n: c for c, n in info.args} if info is not None else {}
            self._ctypes[name] = m
        return m

    def _path(self, p: Process | None, f: Mapping[str, Any], arg: str,
              dfd_arg: str | None) -> str | None:
        v = f.get(arg)
        if not isinstance(v, str):
            return None
        if v.startswith("/"):
            return _abspath(v, "/")
        base = ""
        if p is not None:
            base = p.cwd
            if dfd_arg is not None:
                d = f.get(dfd_arg)
                if isinstance(d, int) and _s32(d) != sd.AT_FDCWD:
                    t = p.fd(_s32(d))
                    if t is None or not t.startswith("/"):
                        return v if v else None
                    if not v:  # AT_EMPTY_PATH: the fd itself
                        return t
                    base = t
        if not v:
            return None
        return _abspath(v, base) if base else v

    def _syscall(self, ev: Event, name: str) -> list[SigmaEvent]:
        f = ev.fields
        table = self.table
        p = table.procs.get(ev.pid)
        if p is None:
            p = table.get(ev.pid)
        ret = f.get("ret")
        ok = isinstance(ret, int) and not sd.is_error(ret)
        if name == "connect" and ret == -_EINPROGRESS:
            ok = True
        base: dict[str, Any] | None = None  # the process fields, made when needed
        out: list[SigmaEvent] = []

        # the fd (before this call changes it) and the syscall's path arguments
        fd_target = None
        if p is not None and p.fds and name not in _NO_FD_TARGET:
            for fd_arg in ("fd", "oldfd", "fildes"):
                if fd_arg in f:
                    fd_target = p.fd(_s32(_int(f.get(fd_arg))))
                    break
        paths: list[tuple[str, str]] = []
        for arg, nametype, dfd_arg in _PATH_ARGS.get(name, ()):
            if name == "openat" or name == "open":
                if _int(f.get("flags")) & 0o100:
                    nametype = "CREATE"
            path = self._path(p, f, arg, dfd_arg)
            if path is not None:
                paths.append((path, nametype))

        # syscall
        if self._k_sc:
            plan: frozenset[str] | None | bool = None
            if self._plan_ok:
                if self._plan_by_name:
                    pkey: Any = name
                    tf = None
                else:
                    # the engine keys TargetFilename by its first directory: so can we
                    tf = paths[-1][0] if paths else None
                    if tf is None:
                        pkey = name
                    else:
                        i = tf.find("/", 1)
                        pkey = (name, tf if i < 0 else tf[:i])
                plan = self._plans.get(pkey, True)
                if plan is True:
                    if len(self._plans) >= 4096:
                        self._plans.clear()
                    plan = self._plans[pkey] = self._engine.plan(
                        "syscall", {"Syscall": name, "TargetFilename": tf})
            if plan is None:
                base = self._pbase(p, ev)
                out.append(SigmaEvent("syscall", ev.ts, ev.pid, self._syscall_fields(
                    ev, name, f, self._pf(base, ev), self._ctype_map(name), paths,
                    fd_target, ret, ok, None), ev))
            elif isinstance(plan, frozenset):
                base = self._pbase(p, ev)
                out.append(self._partial_syscall(ev, name, f, base, self._ctype_map(name),
                                                 paths, fd_target, ret, ok, plan))
        if self._k_au:
            if base is None:
                base = self._pbase(p, ev)
            self._audit(out, ev, name, f, p, self._pf(base, ev), self._ctype_map(name),
                        paths, ret, ok)

        # file_event
        fe = self._file_event(name, f, p, ok, fd_target) if self._k_fe else None
        if fe is not None:
            if base is None:
                base = self._pbase(p, ev)
            fe_fields = self._pf(base, ev)
            fe_fields.update(fe)
            fe_fields["Syscall"] = name
            fe_fields["Success"] = ok
            out.append(SigmaEvent("file_event", ev.ts, ev.pid, fe_fields, ev))

        # network_connection
        if name == "connect" and self._k_nc:
            nc = self._connect(f, p, ok)
            if nc is not None:
                nf = self._pf(base if base is not None else self._pbase(p, ev), ev)
                nf.update(nc)
                out.append(SigmaEvent("network_connection", ev.ts, ev.pid, nf, ev))

        # the fd table (after the call)
        if ok and p is not None:
            self._track_fds(name, f, p, ret, paths)
        return out

    @staticmethod
    def _pf(base: dict[str, Any], ev: Event) -> dict[str, Any]:
        out = dict(base)
        out["Comm"] = ev.comm
        return out

    def _partial_syscall(self, ev: Event, name: str, f: Mapping[str, Any],
                         base: dict[str, Any], ctypes: Mapping[str, str],
                         paths: list[tuple[str, str]], fd_target: str | None, ret: Any,
                         ok: bool, want: frozenset[str]) -> SigmaEvent:
        """The syscall event with only the process fields and arguments in ``want``
        (what the candidate rules read; the rest of the syscall's own fields are cheap
        and kept); its ``build()`` gives the full event."""
        pw = self._pwant.get(want)
        if pw is None:
            pw = self._pwant[want] = tuple(sorted(want - _SC_OWN))
        pf = {k: base[k] for k in pw if k in base}
        pf["Comm"] = ev.comm
        sc = self._syscall_fields(ev, name, f, pf, ctypes, paths, fd_target, ret, ok, want)

        def build() -> SigmaEvent:
            return SigmaEvent("syscall", ev.ts, ev.pid,
                              self._syscall_fields(ev, name, f, self._pf(base, ev), ctypes,
                                                   paths, fd_target, ret, ok, None), ev)

        return _Partial("syscall", ev.ts, ev.pid, sc, ev, build)

    def _syscall_event(self, ev: Event, name: str, f: Mapping[str, Any],
                       pf: dict[str, Any], ctypes: Mapping[str, str],
                       paths: list[tuple[str, str]], fd_target: str | None, ret: Any,
                       ok: bool) -> SigmaEvent:
        return SigmaEvent("syscall", ev.ts, ev.pid,
                          self._syscall_fields(ev, name, f, dict(pf), ctypes, paths,
                                               fd_target, ret, ok, None), ev)

    def _syscall_fields(self, ev: Event, name: str, f: Mapping[str, Any],
                        sc: dict[str, Any], ctypes: Mapping[str, str],
                        paths: list[tuple[str, str]], fd_target: str | None, ret: Any,
                        ok: bool, want: frozenset[str] | None) -> dict[str, Any]:
        """The syscall kind's own fields added to ``sc`` (the process fields, changed
        in place); ``want``: decode only these arguments (None: all)."""
        sc["Syscall"] = name
        decs = self._decs.get(name)
        if decs is None:
            special = _SPECIAL.get(name, {})
            decs = self._decs[name] = [(an, ct, _int_decoder(name, an, ct, special))
                                       for an, ct in ctypes.items()]
        for an, ct, dec in decs:
            if want is not None and an not in want:
                continue
            v = f.get(an)
            if v is None:
                continue
            if type(v) is int:
                sc[an] = dec(v, f)
            elif isinstance(v, bytes | bytearray):
                sc[an] = (format_sockaddr(bytes(v)) if "sockaddr" in ct
                          else bytes(v).decode("utf-8", "surrogateescape"))
            else:
                sc[an] = v
        if name in ("open", "openat") and not sd.needs_mode(_int(f.get("flags"))):
            sc.pop("mode", None)  # strace shows no mode without O_CREAT/O_TMPFILE
        if paths:
            sc["TargetFilename"] = paths[-1][0]  # rename/link: the new name
        if fd_target is not None:
            sc["FdTarget"] = fd_target
        if name == "prctl" and ok and _int(f.get("option")) == 15:
            sc["NewName"] = ev.comm  # PR_SET_NAME: the comm at the syscall's return
        if isinstance(ret, int):
            sc["Return"] = _s64(ret)
            if not ok:
                sc["Errno"] = errno_name(-ret)
        sc["Success"] = ok
        return sc

    def _audit(self, out: list[SigmaEvent], ev: Event, name: str, f: Mapping[str, Any],
               p: Process | None, pf: dict[str, Any], ctypes: Mapping[str, str],
               paths: list[tuple[str, str]], ret: Any, ok: bool) -> None:
        au = dict(pf)
        au["type"] = "SYSCALL"
        au["SYSCALL"] = name
        au["syscall"] = name
        au["exe"] = p.exe if p is not None else ""
        au["comm"] = ev.comm
        if p is not None:
            au["uid"] = str(p.uid)
            au["euid"] = str(p.euid)
            au["gid"] = str(p.gid)
            au["egid"] = str(p.egid)
            au["auid"] = str(p.auid)
            au["ppid"] = str(p.ppid)
        au["pid"] = str(ev.pid)
        au["success"] = "yes" if ok else "no"
        if isinstance(ret, int):
            au["exit"] = str(_s64(ret))
        names = list(ctypes)
        for i in range(4):
            v = f.get(names[i]) if i < len(names) else None
            if isinstance(v, int):
                au[f"a{i}"] = f"{v & 0xFFFFFFFFFFFFFFFF:x}"
            elif i < len(names):
                ptr = f.get(f"{names[i]}_ptr")
                au[f"a{i}"] = f"{ptr:x}" if isinstance(ptr, int) else "0"
        out.append(SigmaEvent("auditd", ev.ts, ev.pid, au, ev))
        for path, nametype in paths:
            pr = dict(pf)
            pr.update(type="PATH", name=path, nametype=nametype)
            out.append(SigmaEvent("auditd", ev.ts, ev.pid, pr, ev))

    def _file_event(self, name: str, f: Mapping[str, Any], p: Process | None, ok: bool,
                    fd_target: str | None) -> dict[str, Any] | None:
        if name in ("open", "openat"):
            fl = _int(f.get("flags"))
            if not fl & _O_WRITE:
                return None
            dfd = "dfd" if name == "openat" else None
            opened = self._path(p, f, "filename", dfd)
            if opened is None:
                return None
            res: dict[str, Any] = {"TargetFilename": opened,
                                   "Operation": "create" if fl & 0o100 else "write",
                                   "Flags": _open_flags(fl)}
            if fl & 0o100:
                res["Mode"] = _int(f.get("mode")) & 0o7777
            return res
        op = _FILE_OPS.get(name)
        if op is None:
            return None
        oper, targ, dfd, src, sdfd = op
        if targ is None:
            if fd_target is None or not fd_target.startswith("/"):
                return None
            target: str | None = fd_target
        else:
            target = self._path(p, f, targ, dfd)
            if target is None and dfd is not None and p is not None:
                # utimensat(fd, NULL, ...): the fd itself
                d = f.get(dfd)
                if isinstance(d, int) and _s32(d) >= 0:
                    target = p.fd(_s32(d))
            if target is None:
                return None
        out: dict[str, Any] = {"TargetFilename": target, "Operation": oper}
        if src is not None:
            s = f.get(src)
            if isinstance(s, str):
                out["SourceFilename"] = s if oper == "symlink" else self._path(p, f, src, sdfd)
        if oper in ("chmod", "create") and "mode" in f:
            out["Mode"] = _int(f.get("mode")) & 0o7777
        if name == "creat":
            out["Flags"] = "O_WRONLY|O_CREAT|O_TRUNC"
        return out

    def _connect(self, f: Mapping[str, Any], p: Process | None, ok: bool
                 ) -> dict[str, Any] | None:
        raw = f.get("uservaddr")
        if not isinstance(raw, bytes | bytearray):
            return None
        ep = sockaddr_endpoint(bytes(raw))
        if ep is None:
            return None
        fd = _s32(_int(f.get("fd")))
        out: dict[str, Any] = {
            "DestinationIp": ep[0],
            "DestinationPort": ep[1],
            "DestinationIsIpv6": "true" if ":" in ep[0] else "false",
            "Initiated": "true",
            "Fd": fd,
            "Success": ok,
        }
        sock = p.fd(fd) if p is not None else None
        if sock is not None and sock.startswith("socket:"):
            if ":SOCK_STREAM" in sock:
                out["Protocol"] = "tcp"
            elif ":SOCK_DGRAM" in sock:
                out["Protocol"] = "udp"
        return out

    def _track_fds(self, name: str, f: Mapping[str, Any], p: Process, ret: Any,
                   paths: list[tuple[str, str]]) -> None:
        if not isinstance(ret, int):
            return
        if name in ("open", "openat", "openat2", "creat"):
            if paths:
                p.set_fd(ret, paths[0][0])
        elif name == "socket":
            fam = _int(f.get("family")) & 0xFFFF
            typ = _int(f.get("type")) & 0xF
            p.set_fd(ret, f"socket:{AF.get(fam, fam)}:{sd.SOCK_TYPE.get(typ, typ)}")
        elif name == "connect":
            fd = _s32(_int(f.get("fd")))
            raw = f.get("uservaddr")
            ep = sockaddr_endpoint(bytes(raw)) if isinstance(raw, bytes | bytearray) else None
            cur = p.fd(fd) or "socket:?:?"
            if ep is not None and cur.startswith("socket:"):
                base = ":".join(cur.split(":")[:3])
                p.set_fd(fd, f"{base}:{ep[0]}:{ep[1]}")
        elif name in ("accept", "accept4"):
            cur = p.fd(_s32(_int(f.get("fd")))) or "socket:?:?"
            base = ":".join(cur.split(":")[:3])
            raw = f.get("upeer_sockaddr")
            ep = sockaddr_endpoint(bytes(raw)) if isinstance(raw, bytes | bytearray) else None
            # ":accepted" tells a served connection (inetd, sshd) from one made out
            p.set_fd(ret, f"{base}:{ep[0]}:{ep[1]}:accepted" if ep else f"{base}:accepted")
        elif name in ("dup", "dup2", "dup3") or (
                name == "fcntl" and _int(f.get("cmd")) in _F_DUPFD and ret >= 0):
            old = _s32(_int(f.get("fildes" if name == "dup" else
                                  "fd" if name == "fcntl" else "oldfd")))
            new = ret
            t = p.fd(old)
            if t is not None:
                p.set_fd(new, t)
            elif p.fds:
                p.fds.pop(new, None)
        elif name == "memfd_create":
            p.set_fd(ret, f"memfd:{f.get('uname', '')}")
        elif name == "close":
            if ret == 0 and p.fds:  # the number may come back as a pipe, eventfd, ...
                p.fds.pop(_s32(_int(f.get("fd"))), None)
        elif name == "close_range":
            if ret == 0 and p.fds:
                lo, hi = _int(f.get("fd")) & 0xFFFFFFFF, _int(f.get("max_fd")) & 0xFFFFFFFF
                for fd in [n for n in p.fds if lo <= n <= hi]:
                    del p.fds[fd]


# ------------------------------------------------------------------ sessions


def needed_syscalls(rules: Any = None, table: SyscallTable | None = None) -> list[str]:
    """The syscalls to trace for ``rules`` (a RuleSet, or rules with ``kind``/``kinds``
    and ``index``): what the table and the mapper need (CORE_SYSCALLS), plus the file
    and connect syscalls when file_event / network_connection rules exist, plus for
    ``syscall`` rules the syscall names they are indexed on (all of WATCH_SYSCALLS
    when one is not indexed on ``Syscall``), plus WATCH_SYSCALLS for auditd SYSCALL or
    PATH rules. ``rules=None``: WATCH_SYSCALLS. Only names with a tracepoint here."""
    names: set[str] = set(WATCH_SYSCALLS)
    need = _rule_needs(rules)
    if need is not None:
        kinds, syscall_names, audit_types = need
        names = set(CORE_SYSCALLS)
        if "file_event" in kinds:
            names |= set(_FILE_OPS) | {"open", "openat", "openat2", "creat"}
        if "network_connection" in kinds:
            names |= {"socket", "connect"}
        if "syscall" in kinds:
            names |= set(WATCH_SYSCALLS) if syscall_names is None else syscall_names
        if "auditd" in kinds and (audit_types is None or audit_types - {"execve"}):
            names |= set(WATCH_SYSCALLS)
    if table is None:
        from ..collect.bpf.loader import syscall_table

        table = syscall_table()
    have = _syscall_tracepoints()
    return sorted(n for n in names if n in table.by_name and table.by_name[n].known
                  and (have is None or n in have))


def rule_kinds(rules: Any) -> set[str] | None:
    """The kinds ``rules`` (a RuleSet or a list of compiled rules) look at; None when
    they do not say (or no rules were given): every kind is then produced."""
    need = _rule_needs(rules)
    return None if need is None else need[0]


def _rule_needs(rules: Any) -> tuple[set[str], set[str] | None, set[str] | None] | None:
    """(kinds, syscall names of syscall rules or None: any, auditd types or None: any),
    or None when the rules do not say."""
    if rules is None:
        return None
    items: Iterable[Any] = getattr(rules, "rules", None) or (
        rules if isinstance(rules, list | tuple) else [])
    kinds: set[str] = set()
    sc_names: set[str] | None = set()
    au_types: set[str] | None = set()
    for r in items:
        ks = getattr(r, "kinds", None) or []
        k = getattr(r, "kind", None)
        rk = {str(x) for x in ks} | ({k} if isinstance(k, str) else set())
        if not rk:
            if getattr(r, "correlation", None):
                continue  # a correlation: its referenced rules say what they need
            return None
        kinds |= rk
        idx = getattr(r, "index", None)
        if "syscall" in rk and sc_names is not None:
            if k == "syscall" and idx and str(idx[0]).lower() == "syscall":
                sc_names |= {str(v).lower() for v in idx[1]}
            else:
                sc_names = None
        if "auditd" in rk and au_types is not None:
            if k == "auditd" and idx and str(idx[0]).lower() == "type":
                au_types |= {str(v).lower() for v in idx[1]}
            else:
                au_types = None
    return kinds, sc_names, au_types


def _syscall_tracepoints() -> set[str] | None:
    """Names with a syscalls:sys_enter_NAME tracepoint here (None: cannot tell)."""
    try:
        from ..kernel.tracefs import tracefs_root

        base = os.path.join(tracefs_root(), "events", "syscalls")
        return {d[10:] for d in os.listdir(base) if d.startswith("sys_enter_")}
    except Exception:
        return None


def open_watch_session(pids: Sequence[int] | None = None, *,
                       command: Sequence[str] | None = None,
                       syscalls: Sequence[str] | None = None,
                       ringbuf_kb: int = 16384, raw_syscalls: bool = True,
                       **kw: Any) -> Any:
    """A BpfSession for watch: lifecycle with exec info, and the watch syscalls.

    ``pids``: only these processes and their children (None: the whole machine);
    ``command``: start it gated (traced from its first instruction);
    ``raw_syscalls``: select the syscalls in the kernel behind the raw_syscalls
    tracepoints (two links: start and close take well under a second) rather than
    one tracepoint pair per syscall (~150 links: closing them takes seconds).
    ``ringbuf_kb``: the ring buffer (mapped twice into this process: it counts
    twice its size in RSS once written). Use as a context manager; iterate
    ``events()``."""
    from ..bpf_session import BpfSession

    names = list(syscalls) if syscalls is not None else needed_syscalls()
    s = BpfSession("syscalls", syscalls=names, lifecycle=True, exec_info=True,
                   pids=list(pids) if pids else None, follow_children=True,
                   ringbuf_kb=ringbuf_kb, raw_syscalls=raw_syscalls, **kw)
    if command:
        s.trace_command(list(command))
    return s

