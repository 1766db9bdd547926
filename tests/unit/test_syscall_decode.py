"""strace-style argument decoding: flags, modes, errno, strings, sockaddrs, tables."""

from __future__ import annotations

import socket
import struct

from probewatch.decode import syscalls as d


def test_open_flags() -> None:
    assert d.open_flags(0) == "O_RDONLY"
    assert d.open_flags(0o2000000) == "O_RDONLY|O_CLOEXEC"
    assert d.open_flags(0o1101) == "O_WRONLY|O_CREAT|O_TRUNC"
    x86 = "x86_64"  # the bits arm64 numbers differently: tests/unit/test_arch.py
    assert d.open_flags(2 | 0o4000 | 0o200000, x86) == "O_RDWR|O_NONBLOCK|O_DIRECTORY"
    assert d.open_flags(0o20200000 | 2, x86) == "O_RDWR|O_TMPFILE"
    assert d.open_flags(0x80000000) == "O_RDONLY|0x80000000"
    assert d.needs_mode(0o100) and d.needs_mode(0o20200000, x86)
    assert not d.needs_mode(0o200000, x86)


def test_modes_and_dirfd() -> None:
    assert d.mode_octal(0o644) == "0644"
    assert d.mode_octal(0o4755) == "04755"
    assert d.dirfd(-100) == "AT_FDCWD"
    assert d.dirfd(0xFFFFFF9C) == "AT_FDCWD"
    assert d.dirfd(3) == "3"
    assert d.access_mode(0) == "F_OK"
    assert d.access_mode(6) == "R_OK|W_OK"


def test_mmap_prot_flags() -> None:
    assert d.prot_flags(0) == "PROT_NONE"
    assert d.prot_flags(3) == "PROT_READ|PROT_WRITE"
    assert d.mmap_flags(0x22) == "MAP_PRIVATE|MAP_ANONYMOUS"
    assert d.mmap_flags(0x812) == "MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE"


def test_socket_clone_signals() -> None:
    assert d.socket_type(1) == "SOCK_STREAM"
    # strace 6.1's order (measured: socketpair(AF_UNIX, SOCK_DGRAM|SOCK_CLOEXEC|SOCK_NONBLOCK..)
    assert d.socket_type(1 | 0o2000000 | 0o4000) == "SOCK_STREAM|SOCK_CLOEXEC|SOCK_NONBLOCK"
    assert d.socket_proto(2, 0) == "IPPROTO_IP"
    assert d.socket_proto(1, 0) == "0"
    assert d.clone_flags(0x01200011) == "CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD"
    assert d.signal_name(9) == "SIGKILL"
    assert d.signal_name(0) == "0"
    # strace names the kernel's numbers: kill(pid, 34) is 'kill(pid, SIGRT_2)'
    assert d.signal_name(32) == "SIGRTMIN"
    assert d.signal_name(34) == "SIGRT_2"
    assert d.signal_name(36) == "SIGRT_4"


def test_errno_and_returns() -> None:
    assert d.errno_name(2) == "ENOENT"
    assert d.errno_name(11) == "EAGAIN"
    assert d.errno_text(2) == "No such file or directory"
    assert d.errno_name(512) == "ERESTARTSYS"
    assert d.errno_name(9999) == "E9999"
    assert d.format_return("openat", 3) == "= 3"
    assert d.format_return("openat", -2) == "= -1 ENOENT (No such file or directory)"
    assert d.format_return("mmap", 0x7F0000001000) == "= 0x7f0000001000"
    assert d.format_return("exit_group", None) == "= ?"
    assert d.format_return("read", -512).startswith("= ? ERESTARTSYS")


def test_quote_like_strace() -> None:
    assert d.quote(b"vm\n") == '"vm\\n"'
    assert d.quote(b"\x01\x020") == '"\\1\\0020"'
    assert d.quote(b'a"b\\c\t') == '"a\\"b\\\\c\\t"'
    assert d.quote(b"x" * 40) == '"' + "x" * 32 + '"...'
    assert d.quote(b"abc", truncated=True) == '"abc"...'
    assert d.quote("ü".encode()) == '"\\303\\274"'


def test_sockaddrs() -> None:
    v4 = struct.pack("<H", 2) + struct.pack(">H", 80) + socket.inet_aton("10.0.0.1") + b"\0" * 8
    assert d.format_sockaddr(v4) == (
        '{sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("10.0.0.1")}')
    v6 = (struct.pack("<H", 10) + struct.pack(">HI", 443, 0)
          + socket.inet_pton(socket.AF_INET6, "::1") + struct.pack("<I", 0))
    assert d.format_sockaddr(v6) == (
        "{sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), "
        'inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}')
    un = struct.pack("<H", 1) + b"/run/x.sock\0"
    assert d.format_sockaddr(un) == '{sa_family=AF_UNIX, sun_path="/run/x.sock"}'
    assert d.sockaddr_endpoint(v4) == ("10.0.0.1", 80)


FORMAT = """name: sys_enter_openat
ID: 782
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;
"""


def test_table_and_kinds_from_formats() -> None:
    args = d.parse_syscall_format(FORMAT)
    assert args == [("int", "dfd"), ("const char *", "filename"), ("int", "flags"),
                    ("umode_t", "mode")]
    formats = {
        "openat": args,
        "getpid": [],
        "read": [("unsigned int", "fd"), ("char *", "buf"), ("size_t", "count")],
        "write": [("unsigned int", "fd"), ("const char *", "buf"), ("size_t", "count")],
        "connect": [("int", "fd"), ("struct sockaddr *", "uservaddr"), ("int", "addrlen")],
        "accept": [("int", "fd"), ("struct sockaddr *", "upeer_sockaddr"),
                   ("int *", "upeer_addrlen")],
        "execve": [("const char *", "filename"), ("const char *const *", "argv"),
                   ("const char *const *", "envp")],
    }
    tab = d.SyscallTable(d.parse_syscall_numbers("0 read\n1 write\n39 getpid\n42 connect\n"
                                                 "43 accept\n59 execve\n257 openat\n"), formats)
    assert tab.name(257) == "openat" and tab.nr("openat") == 257
    assert tab.name(999) == "syscall_999"
    assert tab.by_name["getpid"].known and tab.by_name["getpid"].args == []
    k = d.arg_kinds
    assert k(tab.by_name["openat"])[:2] == [d.ARG_NONE, d.ARG_STR]
    assert k(tab.by_name["read"])[1] == d.ARG_BUF_OUT
    assert k(tab.by_name["write"])[1] == d.ARG_BUF_IN
    assert k(tab.by_name["connect"])[1] == d.ARG_SOCKADDR
    assert k(tab.by_name["accept"])[1] == d.ARG_SOCKADDR_OUT
    assert k(tab.by_name["execve"])[:3] == [d.ARG_STR, d.ARG_ARGV, d.ARG_NONE]


def test_format_call_lines() -> None:
    oa = [("int", "dfd"), ("const char *", "filename"), ("int", "flags"), ("umode_t", "mode")]
    f = {"dfd": 0xFFFFFF9C, "filename": "/etc/hostname", "flags": 0o2000000, "mode": 0}
    assert d.format_call("openat", f, oa, 3) == (
        'openat(AT_FDCWD, "/etc/hostname", O_RDONLY|O_CLOEXEC) = 3')
    f2 = dict(f, filename="/nope", flags=0o1101, mode=0o644)
    assert d.format_call("openat", f2, oa, -2) == (
        'openat(AT_FDCWD, "/nope", O_WRONLY|O_CREAT|O_TRUNC, 0644) = -1 ENOENT '
        "(No such file or directory)")
    # a failed user-memory read shows the pointer, never an empty string
    f3 = dict(f, filename=0x7FFD0000, filename_ptr=0x7FFD0000)
    assert d.format_call("openat", f3, oa, -14, faults=["filename"]).startswith(
        "openat(AT_FDCWD, 0x7ffd0000, O_RDONLY|O_CLOEXEC) = -1 EFAULT")
    assert d.format_call("getpid", {}, [], 42) == "getpid() = 42"
    ex = [("const char *", "filename"), ("const char *const *", "argv"),
          ("const char *const *", "envp")]
    fe = {"filename": "/bin/true", "argv": ["true", "a b"], "envp": 0x7FFF1000}
    assert d.format_call("execve", fe, ex, 0) == (
        'execve("/bin/true", ["true", "a b"], 0x7fff1000) = 0')
    assert d.format_call("execve", fe, ex, 0, truncated=["argv"]) == (
        'execve("/bin/true", ["true", "a b", ...], 0x7fff1000) = 0')
    mm = [("unsigned long", "addr"), ("unsigned long", "len"), ("unsigned long", "prot"),
          ("unsigned long", "flags"), ("unsigned long", "fd"), ("unsigned long", "off")]
    fm = {"addr": 0, "len": 4096, "prot": 3, "flags": 0x22, "fd": 0xFFFFFFFF, "off": 0}
    assert d.format_call("mmap", fm, mm, 0x7F0000000000) == (
        "mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) "
        "= 0x7f0000000000")
