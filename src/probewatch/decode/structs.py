"""strace-style rendering of the user-memory structs syscalls take or fill in.

The BPF program copies the bytes an argument points to (see ``capture_plan`` in
:mod:`probewatch.decode.syscalls`: which argument, how many bytes, read at the
syscall's exit so that what the kernel wrote is there, as strace shows it); the
functions here turn those bytes into strace's text. Each one takes ``bytes`` and
returns ``str``, and raises :class:`StructError` (only) when the bytes are too short
for the struct. Layouts are the x86_64 user ABI (``struct stat``, ``struct statx``,
the kernel's ``struct sigaction``, ...), one precompiled ``struct.Struct`` each;
flag and enum names are the UAPI headers' (the kernel does not export them).

Example::

    format_stat(bytes(24) + (0o100644).to_bytes(4, "little") + bytes(20)
                + (5).to_bytes(8, "little") + bytes(88))
    # '{st_mode=S_IFREG|0644, st_size=5, ...}'
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence


class StructError(ValueError):
    """The captured bytes are too short (or cut) for the struct."""


def _need(data: bytes, n: int, what: str) -> None:
    if len(data) < n:
        raise StructError(f"{what}: {len(data)} bytes, need {n}")


def flags(table: Sequence[tuple[int, str]], value: int, zero: str = "0") -> str:
    """'A|B|0x40' for a bit set, in table order (multi-bit names first where listed)."""
    parts = []
    rest = value
    for bit, name in table:
        if bit and rest & bit == bit:
            parts.append(name)
            rest &= ~bit
    if rest:
        parts.append(hex(rest))
    return "|".join(parts) if parts else zero


# ------------------------------------------------------------------ modes, stat

S_IFMT = {0o140000: "S_IFSOCK", 0o120000: "S_IFLNK", 0o100000: "S_IFREG",
          0o060000: "S_IFBLK", 0o040000: "S_IFDIR", 0o020000: "S_IFCHR",
          0o010000: "S_IFIFO"}


def file_mode(mode: int) -> str:
    """0o100644 -> 'S_IFREG|0644'; 0o41777 -> 'S_IFDIR|S_ISVTX|0777'."""
    parts = []
    fmt = mode & 0o170000
    if fmt:
        parts.append(S_IFMT.get(fmt, f"{fmt:#o}"))
    for bit, name in ((0o4000, "S_ISUID"), (0o2000, "S_ISGID"), (0o1000, "S_ISVTX")):
        if mode & bit:
            parts.append(name)
    parts.append(f"0{mode & 0o777:o}" if mode & 0o777 else "000")
    return "|".join(parts)


def makedev(dev: int) -> str:
    major = ((dev >> 8) & 0xFFF) | ((dev >> 32) & ~0xFFF & 0xFFFFFFFF)
    minor = (dev & 0xFF) | ((dev >> 12) & ~0xFF & 0xFFFFFFFF)
    return f"makedev({major:#x}, {minor:#x})"


def _mkdev(major: int, minor: int) -> str:
    return f"makedev({major:#x}, {minor:#x})"


# struct stat (x86_64): st_dev, st_ino, st_nlink, st_mode, st_uid, st_gid, pad, st_rdev,
# st_size, ... (144 bytes)
STAT = struct.Struct("<QQQIIIiQq")
STAT_SIZE = 144


def format_stat(data: bytes) -> str:
    """strace's abbreviated struct stat: mode, then size (or rdev for devices)."""
    _need(data, STAT.size, "struct stat")
    _dev, _ino, _nlink, mode, _uid, _gid, _pad, rdev, size = STAT.unpack_from(data)
    if mode & 0o170000 in (0o020000, 0o060000):
        return f"{{st_mode={file_mode(mode)}, st_rdev={makedev(rdev)}, ...}}"
    return f"{{st_mode={file_mode(mode)}, st_size={size}, ...}}"


STATX_MASK = [
    (0x0FFF, "STATX_ALL"), (0x07FF, "STATX_BASIC_STATS"),
    (0x1, "STATX_TYPE"), (0x2, "STATX_MODE"), (0x4, "STATX_NLINK"), (0x8, "STATX_UID"),
    (0x10, "STATX_GID"), (0x20, "STATX_ATIME"), (0x40, "STATX_MTIME"), (0x80, "STATX_CTIME"),
    (0x100, "STATX_INO"), (0x200, "STATX_SIZE"), (0x400, "STATX_BLOCKS"),
    (0x800, "STATX_BTIME"), (0x1000, "STATX_MNT_ID"), (0x2000, "STATX_DIOALIGN"),
]
STATX_ATTR = [
    (0x4, "STATX_ATTR_COMPRESSED"), (0x10, "STATX_ATTR_IMMUTABLE"),
    (0x20, "STATX_ATTR_APPEND"), (0x40, "STATX_ATTR_NODUMP"),
    (0x800, "STATX_ATTR_ENCRYPTED"), (0x1000, "STATX_ATTR_AUTOMOUNT"),
    (0x2000, "STATX_ATTR_MOUNT_ROOT"), (0x100000, "STATX_ATTR_VERITY"),
    (0x200000, "STATX_ATTR_DAX"),
]
# struct statx: stx_mask, stx_blksize, stx_attributes, stx_nlink, stx_uid, stx_gid,
# stx_mode, pad, stx_ino, stx_size (256 bytes in all)
STATX = struct.Struct("<IIQIIIHHQQ")
STATX_SIZE = 256


def format_statx(data: bytes) -> str:
    _need(data, STATX.size, "struct statx")
    mask, _blk, attrs, _nl, _uid, _gid, mode, _p, _ino, size = STATX.unpack_from(data)
    return (f"{{stx_mask={flags(STATX_MASK, mask)}, "
            f"stx_attributes={flags(STATX_ATTR, attrs)}, stx_mode={file_mode(mode)}, "
            f"stx_size={size}, ...}}")


# ------------------------------------------------------------------ signals


def sig_short(n: int) -> str:
    """Signal n as strace writes it in a set: 'INT', 'RTMIN', 'RT_3'."""
    if n == 32:
        return "RTMIN"
    if n > 32:
        return f"RT_{n - 32}"
    return SIGNAMES.get(n, str(n))[3:]


SIGNAMES = {
    1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT",
    7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2",
    13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD",
    18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU",
    23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ", 26: "SIGVTALRM", 27: "SIGPROF",
    28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS",
}


def signame(n: int) -> str:
    """17 -> 'SIGCHLD', 34 -> 'SIGRT_2' (strace's names for the kernel's numbers)."""
    if n in SIGNAMES:
        return SIGNAMES[n]
    if n == 32:
        return "SIGRTMIN"
    if 32 < n <= 64:
        return f"SIGRT_{n - 32}"
    return str(n)


def sigset_bits(mask: int, nbits: int = 64) -> str:
    """A sigset as strace prints it: '[INT CHLD]', or '~[...]' (the complement) when
    two thirds of the signals (42 of 64) or more are in it."""
    mask &= (1 << nbits) - 1
    prefix = ""
    if bin(mask).count("1") >= nbits * 2 // 3:
        prefix, mask = "~", ~mask & ((1 << nbits) - 1)
    names = [sig_short(i + 1) for i in range(nbits) if mask >> i & 1]
    return f"{prefix}[{' '.join(names)}]"


def format_sigset(data: bytes) -> str:
    _need(data, 8, "sigset_t")
    return sigset_bits(int.from_bytes(data[:8], "little"))


SA_FLAGS = [
    (0x04000000, "SA_RESTORER"), (0x08000000, "SA_ONSTACK"), (0x10000000, "SA_RESTART"),
    (0x40000000, "SA_NODEFER"), (0x80000000, "SA_RESETHAND"), (0x4, "SA_SIGINFO"),
    (0x1, "SA_NOCLDSTOP"), (0x2, "SA_NOCLDWAIT"),
]
SA_RESTORER = 0x04000000
# the kernel's struct sigaction (x86_64): handler, flags, restorer, mask
SIGACTION = struct.Struct("<QQQQ")
SIGACTION_SIZE = 32


def format_sigaction(data: bytes) -> str:
    _need(data, SIGACTION.size, "struct sigaction")
    handler, fl, restorer, mask = SIGACTION.unpack_from(data)
    h = {0: "SIG_DFL", 1: "SIG_IGN"}.get(handler, hex(handler))
    out = f"{{sa_handler={h}, sa_mask={sigset_bits(mask)}, sa_flags={flags(SA_FLAGS, fl)}"
    if fl & SA_RESTORER:
        out += f", sa_restorer={hex(restorer) if restorer else 'NULL'}"
    return out + "}"


# ------------------------------------------------------------------ limits, time, misc

RLIMIT = {0: "RLIMIT_CPU", 1: "RLIMIT_FSIZE", 2: "RLIMIT_DATA", 3: "RLIMIT_STACK",
          4: "RLIMIT_CORE", 5: "RLIMIT_RSS", 6: "RLIMIT_NPROC", 7: "RLIMIT_NOFILE",
          8: "RLIMIT_MEMLOCK", 9: "RLIMIT_AS", 10: "RLIMIT_LOCKS", 11: "RLIMIT_SIGPENDING",
          12: "RLIMIT_MSGQUEUE", 13: "RLIMIT_NICE", 14: "RLIMIT_RTPRIO", 15: "RLIMIT_RTTIME"}
RLIM = struct.Struct("<QQ")


def _rlim(v: int) -> str:
    if v == 0xFFFFFFFFFFFFFFFF:
        return "RLIM64_INFINITY"
    if v > 1024 and v % 1024 == 0:
        return f"{v // 1024}*1024"
    return str(v)


def format_rlimit(data: bytes) -> str:
    _need(data, RLIM.size, "struct rlimit64")
    cur, mx = RLIM.unpack_from(data)
    return f"{{rlim_cur={_rlim(cur)}, rlim_max={_rlim(mx)}}}"


TIMESPEC = struct.Struct("<qq")


def format_timespec(data: bytes) -> str:
    _need(data, TIMESPEC.size, "struct timespec")
    s, ns = TIMESPEC.unpack_from(data)
    return f"{{tv_sec={s}, tv_nsec={ns}}}"


def format_timeval(data: bytes) -> str:
    _need(data, TIMESPEC.size, "struct timeval")
    s, us = TIMESPEC.unpack_from(data)
    return f"{{tv_sec={s}, tv_usec={us}}}"


SYSINFO = struct.Struct("<q3Q6QH2xIQQI")  # 108 of its 112 bytes


def format_sysinfo(data: bytes) -> str:
    _need(data, SYSINFO.size, "struct sysinfo")
    (up, l1, l2, l3, tot, free, shared, buf, tsw, fsw, procs, _p, th, fh,
     unit) = SYSINFO.unpack_from(data)
    return (f"{{uptime={up}, loads=[{l1}, {l2}, {l3}], totalram={tot}, freeram={free}, "
            f"sharedram={shared}, bufferram={buf}, totalswap={tsw}, freeswap={fsw}, "
            f"procs={procs}, totalhigh={th}, freehigh={fh}, mem_unit={unit}}}")


def format_ints(data: bytes, n: int) -> str:
    """'[3, 4]': n C ints (pipe fds, socketpair, an int option)."""
    _need(data, 4 * n, "int array")
    return "[" + ", ".join(str(v) for v in struct.unpack_from(f"<{n}i", data)) + "]"


def format_int(data: bytes) -> str:
    return format_ints(data, 1)


def format_fdpair(data: bytes) -> str:
    return format_ints(data, 2)


def wait_status(st: int) -> str:
    """A wait status as strace prints it: '[{WIFEXITED(s) && WEXITSTATUS(s) == 0}]'."""
    st &= 0xFFFFFFFF
    sig = st & 0x7F
    if sig == 0:
        out = f"WIFEXITED(s) && WEXITSTATUS(s) == {(st >> 8) & 0xFF}"
    elif sig == 0x7F:
        stop = (st >> 8) & 0xFF
        out = f"WIFSTOPPED(s) && WSTOPSIG(s) == {signame(stop)}"
        if st >> 16:
            out += f" && WSTOPSIG(s) >> 8 == {st >> 16:#x}"  # ptrace events; rare
    else:
        out = f"WIFSIGNALED(s) && WTERMSIG(s) == {signame(sig)}"
        if st & 0x80:
            out += " && WCOREDUMP(s)"
    return f"[{{{out}}}]"


def format_wstatus(data: bytes) -> str:
    _need(data, 4, "wait status")
    return wait_status(int.from_bytes(data[:4], "little"))


# ------------------------------------------------------------------ poll

POLL_EVENTS = [(0x1, "POLLIN"), (0x2, "POLLPRI"), (0x4, "POLLOUT"), (0x8, "POLLERR"),
               (0x10, "POLLHUP"), (0x20, "POLLNVAL"), (0x40, "POLLRDNORM"),
               (0x80, "POLLRDBAND"), (0x100, "POLLWRNORM"), (0x200, "POLLWRBAND"),
               (0x400, "POLLMSG"), (0x2000, "POLLRDHUP")]
POLLFD = struct.Struct("<ihh")


def _pollfds(data: bytes, n: int) -> list[tuple[int, int, int]]:
    _need(data, POLLFD.size * n, "struct pollfd array")
    return [POLLFD.unpack_from(data, i * POLLFD.size) for i in range(n)]


def format_pollfds(data: bytes, n: int) -> str:
    """The array as the call got it: '[{fd=3, events=POLLIN}]'."""
    return "[" + ", ".join(f"{{fd={fd}, events={flags(POLL_EVENTS, ev & 0xFFFF)}}}"
                           for fd, ev, _r in _pollfds(data, n)) + "]"


def format_revents(data: bytes, n: int) -> str:
    """What the call returned: '[{fd=5, revents=POLLOUT}]' (entries with revents)."""
    return "[" + ", ".join(f"{{fd={fd}, revents={flags(POLL_EVENTS, r & 0xFFFF)}}}"
                           for fd, _e, r in _pollfds(data, n) if r) + "]"


# ------------------------------------------------------------------ clone3

CLONE_ARGS = struct.Struct("<QQQQQQQQQQQ")
CLONE_ARGS_SIZE = 88
_CLONE_PIDFD, _CLONE_SETTLS = 0x1000, 0x80000
_CLONE_PARENT_SETTID, _CLONE_CHILD_SETTID = 0x100000, 0x1000000
_CLONE_CHILD_CLEARTID, _CLONE_INTO_CGROUP = 0x200000, 0x200000000


def format_clone_args(data: bytes, clone_flags: Sequence[tuple[int, str]],
                      ret: int | None = None) -> str:
    """struct clone_args as strace shows it; ``ret`` (the child's tid) is what the
    kernel stored at parent_tid (strace's '=> {parent_tid=[N]}')."""
    n = min(len(data), CLONE_ARGS_SIZE) // 8
    if n < 8:
        raise StructError(f"struct clone_args: {len(data)} bytes, need 64")
    v = list(struct.unpack_from(f"<{n}Q", data)) + [0] * (11 - n)
    fl, pidfd, ctid, ptid, esig, stack, ssize, tls, set_tid, set_tid_size, cgroup = v
    out = [f"flags={flags(clone_flags, fl)}"]
    if fl & _CLONE_PIDFD:
        out.append(f"pidfd={_ptr(pidfd)}")
    if fl & (_CLONE_CHILD_SETTID | _CLONE_CHILD_CLEARTID):
        out.append(f"child_tid={_ptr(ctid)}")
    if fl & _CLONE_PARENT_SETTID:
        out.append(f"parent_tid={_ptr(ptid)}")
    out.append(f"exit_signal={signame(esig) if esig else 0}")
    out.append(f"stack={_ptr(stack)}")
    out.append(f"stack_size={ssize:#x}")
    if fl & _CLONE_SETTLS:
        out.append(f"tls={_ptr(tls)}")
    if set_tid or set_tid_size:
        out.append(f"set_tid={_ptr(set_tid)}, set_tid_size={set_tid_size}")
    if fl & _CLONE_INTO_CGROUP:
        out.append(f"cgroup={cgroup}")
    text = "{" + ", ".join(out) + "}"
    if ret is not None and ret > 0 and fl & _CLONE_PARENT_SETTID:
        text += f" => {{parent_tid=[{ret}]}}"
    return text


def _ptr(v: int) -> str:
    return hex(v) if v else "NULL"


#: struct decoders by name, for the fuzz test and the JSON side
DECODERS: Mapping[str, object] = {
    "stat": format_stat, "statx": format_statx, "sigset": format_sigset,
    "sigaction": format_sigaction, "rlimit": format_rlimit,
    "timespec": format_timespec, "timeval": format_timeval, "sysinfo": format_sysinfo,
    "int": format_int, "fdpair": format_fdpair, "wstatus": format_wstatus,
}

__all__ = ["StructError", "DECODERS", "file_mode", "format_stat", "format_statx",
           "format_sigaction", "format_sigset", "format_rlimit", "format_timespec",
           "format_timeval", "format_sysinfo", "format_pollfds", "format_revents",
           "format_clone_args", "format_wstatus", "wait_status", "sigset_bits", "signame"]


# ------------------------------------------------------------------ iovec, msghdr

IOV_HDR = struct.Struct("<II")  # struct pw_iov_hdr: entries, msg_name bytes
IOV_ENT = struct.Struct("<QQII")  # struct pw_iov_ent: base, len, got, flags
MSGHDR = struct.Struct("<QI4xQQQQI")  # name, namelen, iov, iovlen, control, controllen, flags
MSGHDR_SIZE = 56
_FAULT = 2


def parse_iov_blob(data: bytes, msg: bool
                   ) -> tuple[tuple[int, ...] | None, bytes, list[tuple[int, int, bytes | None]]]:
    """A PW_ARG_IOV_*/PW_ARG_MSG_* capture -> (msghdr fields or None, msg_name bytes,
    [(iov_base, iov_len, bytes shown or None when they could not be read)])."""
    _need(data, IOV_HDR.size, "iovec capture")
    n, name_len = IOV_HDR.unpack_from(data)
    off = IOV_HDR.size
    hdr: tuple[int, ...] | None = None
    name = b""
    if msg:
        _need(data, off + MSGHDR_SIZE, "struct user_msghdr")
        hdr = MSGHDR.unpack_from(data, off)
        off += MSGHDR_SIZE
        _need(data, off + name_len, "msg_name")
        name = data[off : off + name_len]
        off += (name_len + 7) & ~7
    _need(data, off + n * IOV_ENT.size, "struct iovec table")
    ents = [IOV_ENT.unpack_from(data, off + j * IOV_ENT.size) for j in range(n)]
    pos = off + n * IOV_ENT.size
    out: list[tuple[int, int, bytes | None]] = []
    for base, ln, got, fl in ents:
        _need(data, pos + got, "iovec data")
        out.append((base, ln, None if fl & _FAULT else data[pos : pos + got]))
        pos += got
    return hdr, name, out


def format_iovs(iovs: Sequence[tuple[int, int, bytes | None]], strmax: int,
                moved: int | None, quote_fn: object, total: int | None = None) -> str:
    """'[{iov_base="hi", iov_len=2}, ...]'. ``moved``: bytes the call moved (a read's
    return; None for a write: every buffer in full); ``total``: the array's length when
    more entries exist than were captured."""
    q = quote_fn  # decode.syscalls.quote (kept apart: no import cycle)
    left = moved
    parts = []
    for base, ln, shown in iovs:
        fill = ln if left is None else min(ln, left)
        if left is not None:
            left -= fill
        if shown is None or not base:
            b = _ptr(base)
        else:
            b = q(shown, strmax, truncated=fill > len(shown))  # type: ignore[operator]
        parts.append(f"{{iov_base={b}, iov_len={ln}}}")
    if total is not None and total > len(iovs):
        parts.append("...")
    return "[" + ", ".join(parts) + "]"


def format_iov_pointers(iovs: Sequence[tuple[int, int, bytes | None]]) -> str:
    """A failed read's array: every base as a pointer."""
    return "[" + ", ".join(f"{{iov_base={_ptr(b)}, iov_len={ln}}}" for b, ln, _ in iovs) + "]"


# ------------------------------------------------------------------ terminals, locks

TC_IFLAG = [(0o1, "IGNBRK"), (0o2, "BRKINT"), (0o4, "IGNPAR"), (0o10, "PARMRK"),
            (0o20, "INPCK"), (0o40, "ISTRIP"), (0o100, "INLCR"), (0o200, "IGNCR"),
            (0o400, "ICRNL"), (0o1000, "IUCLC"), (0o2000, "IXON"), (0o4000, "IXANY"),
            (0o10000, "IXOFF"), (0o20000, "IMAXBEL"), (0o40000, "IUTF8")]
TC_OFLAG = [(0o1, "OPOST"), (0o2, "OLCUC"), (0o4, "ONLCR"), (0o10, "OCRNL"), (0o20, "ONOCR"),
            (0o40, "ONLRET"), (0o100, "OFILL"), (0o200, "OFDEL")]
# the delay fields strace names first: (mask, shift-free values -> names)
TC_ODELAY = [(0o400, {0: "NL0", 0o400: "NL1"}),
             (0o3000, {0: "CR0", 0o1000: "CR1", 0o2000: "CR2", 0o3000: "CR3"}),
             (0o14000, {0: "TAB0", 0o4000: "TAB1", 0o10000: "TAB2", 0o14000: "TAB3"}),
             (0o20000, {0: "BS0", 0o20000: "BS1"}), (0o40000, {0: "VT0", 0o40000: "VT1"}),
             (0o100000, {0: "FF0", 0o100000: "FF1"})]
TC_BAUD = {0: "B0", 1: "B50", 2: "B75", 3: "B110", 4: "B134", 5: "B150", 6: "B200",
           7: "B300", 8: "B600", 9: "B1200", 10: "B1800", 11: "B2400", 12: "B4800",
           13: "B9600", 14: "B19200", 15: "B38400", 0o10001: "B57600", 0o10002: "B115200",
           0o10003: "B230400", 0o10004: "B460800", 0o10005: "B500000", 0o10006: "B576000",
           0o10007: "B921600", 0o10010: "B1000000", 0o10011: "B1152000",
           0o10012: "B1500000", 0o10013: "B2000000", 0o10014: "B2500000",
           0o10015: "B3000000", 0o10016: "B3500000", 0o10017: "B4000000"}
TC_CSIZE = {0: "CS5", 0o20: "CS6", 0o40: "CS7", 0o60: "CS8"}
TC_CFLAG = [(0o100, "CSTOPB"), (0o200, "CREAD"), (0o400, "PARENB"), (0o1000, "PARODD"),
            (0o2000, "HUPCL"), (0o4000, "CLOCAL"), (0o10000000000, "CMSPAR"),
            (0o20000000000, "CRTSCTS")]
TC_LFLAG = [(0o1, "ISIG"), (0o2, "ICANON"), (0o4, "XCASE"), (0o10, "ECHO"), (0o20, "ECHOE"),
            (0o40, "ECHOK"), (0o100, "ECHONL"), (0o200, "NOFLSH"), (0o100000, "IEXTEN"),
            (0o1000, "ECHOCTL"), (0o2000, "ECHOPRT"), (0o4000, "ECHOKE"),
            (0o10000, "FLUSHO"), (0o40000, "PENDIN"), (0o400, "TOSTOP"),
            (0o200000, "EXTPROC")]  # strace's order (IEXTEN before ECHOCTL)
TERMIOS = struct.Struct("<IIII")


def format_termios(data: bytes) -> str:
    """The kernel's struct termios (TCGETS): '{c_iflag=ICRNL|IXON, ..., ...}'."""
    _need(data, TERMIOS.size, "struct termios")
    i, o, c, lf = TERMIOS.unpack_from(data)
    odel = [names.get(o & mask, hex(o & mask)) for mask, names in TC_ODELAY]
    orest = flags(TC_OFLAG, o & ~0o177400, "")
    ctext = [TC_BAUD.get(c & 0o10017, hex(c & 0o10017)), TC_CSIZE[c & 0o60]]
    crest = flags(TC_CFLAG, c & ~0o10077, "")
    return (f"{{c_iflag={flags(TC_IFLAG, i)}, "
            f"c_oflag={'|'.join(odel + ([orest] if orest else []))}, "
            f"c_cflag={'|'.join(ctext + ([crest] if crest else []))}, "
            f"c_lflag={flags(TC_LFLAG, lf)}, ...}}")


WINSIZE = struct.Struct("<HHHH")


def format_winsize(data: bytes) -> str:
    _need(data, WINSIZE.size, "struct winsize")
    r, c, x, y = WINSIZE.unpack_from(data)
    return f"{{ws_row={r}, ws_col={c}, ws_xpixel={x}, ws_ypixel={y}}}"


FLOCK = struct.Struct("<hh4xqqi")
F_LTYPE = {0: "F_RDLCK", 1: "F_WRLCK", 2: "F_UNLCK"}
_WHENCE = {0: "SEEK_SET", 1: "SEEK_CUR", 2: "SEEK_END"}


def format_flock(data: bytes, with_pid: bool = False) -> str:
    """struct flock; the pid only for F_GETLK's answer, as strace shows it."""
    _need(data, FLOCK.size, "struct flock")
    t, w, start, ln, pid = FLOCK.unpack_from(data)
    out = (f"{{l_type={F_LTYPE.get(t, str(t))}, l_whence={_WHENCE.get(w, str(w))}, "
           f"l_start={start}, l_len={ln}")
    return out + (f", l_pid={pid}}}" if with_pid else "}")
