"""Mapper: recorded Events -> SigmaEvents, exact field values (docs/detection.md)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probewatch.analyze.proctable import Process, ProcessTable
from probewatch.decode.syscalls import SyscallTable, parse_syscall_format
from probewatch.detect.mapping import (
    CORE_SYSCALLS,
    WATCH_SYSCALLS,
    Mapper,
    needed_syscalls,
)
from probewatch.detect.model import SigmaEvent
from probewatch.event import Event

# the kernel's argument lists (events/syscalls/sys_enter_*/format) of the syscalls used
ARGS = {
    "execve": "const char * filename; const char *const * argv; const char *const * envp",
    "openat": "int dfd; const char * filename; int flags; umode_t mode",
    "fchmod": "unsigned int fd; umode_t mode",
    "renameat2": "int olddfd; const char * oldname; int newdfd; const char * newname; "
                 "unsigned int flags",
    "socket": "int family; int type; int protocol",
    "connect": "int fd; struct sockaddr * uservaddr; int addrlen",
    "accept4": "int fd; struct sockaddr * upeer_sockaddr; int * upeer_addrlen; int flags",
    "mknodat": "int dfd; const char * filename; umode_t mode; unsigned int dev",
    "dup2": "unsigned int oldfd; unsigned int newfd",
    "ptrace": "long request; long pid; unsigned long addr; unsigned long data",
    "memfd_create": "const char * uname; unsigned int flags",
    "setsockopt": "int fd; int level; int optname; char * optval; int optlen",
    "unlinkat": "int dfd; const char * pathname; int flag",
    "bpf": "int cmd; union bpf_attr * uattr; unsigned int size",
    "symlinkat": "const char * oldname; int newdfd; const char * newname",
    "chdir": "const char * filename",
    "prctl": "int option; unsigned long arg2; unsigned long arg3; unsigned long arg4; "
             "unsigned long arg5",
}
NRS = {"execve": 59, "openat": 257, "fchmod": 91, "renameat2": 316, "socket": 41,
       "connect": 42, "dup2": 33, "ptrace": 101, "memfd_create": 319, "setsockopt": 54,
       "unlinkat": 263, "bpf": 321, "symlinkat": 266, "chdir": 80, "prctl": 157,
       "accept4": 288, "mknodat": 259}


def _table() -> SyscallTable:
    formats = {}
    for name, decl in ARGS.items():
        text = "\n".join(f"\tfield:{d.strip()};\toffset:0;\tsize:8;\tsigned:0;"
                         for d in decl.split(";"))
        formats[name] = parse_syscall_format(text)
    return SyscallTable({nr: n for n, nr in NRS.items()}, formats)


SYSCALLS = _table()


@pytest.fixture
def mapper(tmp_path: Path) -> Mapper:
    t = ProcessTable(proc_root=str(tmp_path))  # empty /proc: only what events say
    init = Process(1, 0, 1)
    init.exe, init.argv, init.comm, init.uid, init.euid = "/sbin/init", ["/sbin/init"], \
        "init", 0, 0
    t.procs[1] = init
    sshd = Process(812, 1, 5)
    sshd.exe, sshd.argv, sshd.uid, sshd.euid, sshd.gid, sshd.egid = \
        "/usr/sbin/sshd", ["sshd:", "u@pts/0"], 0, 0, 0, 0
    t.procs[812] = sshd
    bash = Process(4410, 812, 7)
    bash.exe, bash.argv, bash.cwd, bash.comm = "/bin/bash", ["-bash"], "/home/u", "bash"
    bash.uid = bash.euid = 1000
    bash.gid = bash.egid = 1000
    bash.auid = 1000
    bash.pstart = 5
    t.procs[4410] = bash
    return Mapper(t, SYSCALLS)


def sc(ts: int, pid: int, comm: str, name: str, ret: int, /, **args: Any) -> Event:
    f: dict[str, Any] = {"ppid": 0, "uid": 1000, "gid": 1000, "cgroup": 1,
                         "nr": NRS[name], **args, "ret": ret, "duration_ns": 10}
    return Event(ts, 0, pid, pid, comm, f"syscalls:{name}", "bpf:syscalls", f)


def fork(ts: int, parent: int, child: int) -> Event:
    return Event(ts, 0, parent, parent, "bash", "sched:sched_process_fork", "bpf:syscalls",
                 {"ppid": 812, "uid": 1000, "gid": 1000, "cgroup": 1, "child_pid": child,
                  "child_tid": child, "child_start_ns": ts, "child_start_boottime": ts,
                  "parent_start_boottime": 7})


def exec_(ts: int, pid: int, filename: str, argv: list[str], cwd: str,
          env: dict[str, str] | None = None, euid: int = 1000) -> Event:
    return Event(ts, 0, pid, pid, filename.rsplit("/", 1)[-1][:15],
                 "sched:sched_process_exec", "bpf:syscalls",
                 {"ppid": 4410, "uid": 1000, "gid": 1000, "cgroup": 1, "old_pid": pid,
                  "filename": filename, "argv": argv, "cwd": cwd, "env": env or {},
                  "euid": euid, "egid": 1000, "suid": euid, "sgid": 1000, "loginuid": 1000,
                  "sessionid": 2, "start_ns": 100, "start_boottime": 100,
                  "parent_start_boottime": 7, "cap_effective": 0, "cgroup_name": "",
                  # the file the kernel opened: python3 is a symlink to python3.11
                  "exe_name": {"/usr/bin/python3": "python3.11"}.get(
                      filename, filename.rsplit("/", 1)[-1])})


def kinds(sevs: list[SigmaEvent]) -> list[str]:
    return [s.kind for s in sevs]


def one(sevs: list[SigmaEvent], kind: str, **match: Any) -> dict[str, Any]:
    got = [s for s in sevs if s.kind == kind
           and all(s.fields.get(k) == v for k, v in match.items())]
    assert len(got) == 1, (kind, match, [s.fields for s in sevs])
    return got[0].fields


def start_python(m: Mapper, env: dict[str, str] | None = None) -> None:
    m.map(fork(90, 4410, 4502))
    m.map(exec_(100, 4502, "/usr/bin/python3", ["python3", "x.py", "--flag"], "/home/u/w",
                env))


PROC_4502 = {
    "Image": "/usr/bin/python3",
    "CommandLine": "python3 x.py --flag",
    "Argv0": "python3",
    "Comm": "python3",
    "CurrentDirectory": "/home/u/w",
    "ProcessId": 4502,
    "ParentProcessId": 4410,
    "ParentImage": "/bin/bash",
    "ParentCommandLine": "-bash",
    "GrandparentImage": "/usr/sbin/sshd",
    "User": "1000",
    "Uid": 1000,
    "Euid": 1000,
    "Gid": 1000,
    "Egid": 1000,
    "LogonId": 1000,
    "ExeName": "python3.11",
}


def test_exec_gives_process_creation_and_auditd_execve(mapper: Mapper) -> None:
    mapper.map(fork(90, 4410, 4502))
    ev = exec_(100, 4502, "/usr/bin/python3", ["python3", "x.py", "--flag"], "/home/u/w",
               {"LD_PRELOAD": "/tmp/x.so"})
    sevs = mapper.map(ev)
    assert kinds(sevs) == ["process_creation", "auditd"]
    pc = sevs[0]
    assert (pc.ts, pc.pid, pc.source) == (100, 4502, ev)
    user = mapper.table.user_name(1000)
    want = dict(PROC_4502, User=user, LD_PRELOAD="/tmp/x.so", OriginalArgv0="python3",
                Argv1="x.py", ExecSyscall="execve")
    assert pc.fields == want
    au = sevs[1].fields
    assert {k: au[k] for k in ("type", "argc", "a0", "a1", "a2")} == {
        "type": "EXECVE", "argc": "3", "a0": "python3", "a1": "x.py", "a2": "--flag"}
    assert "a3" not in au and au["Image"] == "/usr/bin/python3"


def test_open_for_write_relative_path(mapper: Mapper) -> None:
    start_python(mapper)
    ev = sc(200, 4502, "python3", "openat", 3, dfd=0xFFFFFF9C, filename="../.bashrc",
            flags=0o2101, mode=0o644)  # O_WRONLY|O_CREAT|O_APPEND
    sevs = mapper.map(ev)
    assert kinds(sevs) == ["syscall", "auditd", "auditd", "file_event"]
    s = sevs[0].fields
    assert {k: s[k] for k in ("Syscall", "dfd", "filename", "flags", "mode",
                              "TargetFilename", "Return", "Success")} == {
        "Syscall": "openat", "dfd": "AT_FDCWD", "filename": "../.bashrc",
        "flags": "O_WRONLY|O_CREAT|O_APPEND", "mode": "0644",
        "TargetFilename": "/home/u/.bashrc", "Return": 3, "Success": True}
    assert "Errno" not in s
    fe = sevs[3].fields
    assert {k: v for k, v in fe.items() if k not in PROC_4502} == {
        "TargetFilename": "/home/u/.bashrc", "Operation": "create",
        "Flags": "O_WRONLY|O_CREAT|O_APPEND", "Mode": 0o644, "Syscall": "openat",
        "Success": True}
    au = sevs[1].fields
    assert {k: au[k] for k in ("type", "SYSCALL", "exe", "comm", "uid", "euid", "auid",
                               "success", "exit", "a0", "a1", "a2", "a3")} == {
        "type": "SYSCALL", "SYSCALL": "openat", "exe": "/usr/bin/python3",
        "comm": "python3", "uid": "1000", "euid": "1000", "auid": "1000",
        "success": "yes", "exit": "3", "a0": "ffffff9c", "a1": "0", "a2": "441",
        "a3": "1a4"}
    path = sevs[2].fields
    assert (path["type"], path["name"], path["nametype"]) == ("PATH", "/home/u/.bashrc",
                                                              "CREATE")


def test_read_only_open_is_no_file_event_and_failure_has_errno(mapper: Mapper) -> None:
    start_python(mapper)
    sevs = mapper.map(sc(200, 4502, "python3", "openat", -13, dfd=0xFFFFFF9C,
                         filename="/etc/shadow", flags=0o2000000, mode=0))
    assert kinds(sevs) == ["syscall", "auditd", "auditd"]
    s = sevs[0].fields
    assert (s["flags"], s["Return"], s["Errno"], s["Success"]) == (
        "O_RDONLY|O_CLOEXEC", -13, "EACCES", False)
    assert "mode" not in s
    assert sevs[1].fields["success"] == "no" and sevs[1].fields["exit"] == "-13"
    assert (sevs[2].fields["name"], sevs[2].fields["nametype"]) == ("/etc/shadow", "NORMAL")


def test_fchmod_resolves_the_fd(mapper: Mapper) -> None:
    start_python(mapper)
    mapper.map(sc(200, 4502, "python3", "openat", 5, dfd=0xFFFFFF9C, filename="tool",
                  flags=0o1101, mode=0o755))
    sevs = mapper.map(sc(201, 4502, "python3", "fchmod", 0, fd=5, mode=0o104755))
    fe = one(sevs, "file_event")
    assert (fe["TargetFilename"], fe["Operation"], fe["Mode"], fe["Syscall"]) == (
        "/home/u/w/tool", "chmod", 0o4755, "fchmod")
    s = one(sevs, "syscall")
    assert (s["fd"], s["mode"], s["FdTarget"]) == (5, "04755", "/home/u/w/tool")


def test_mknodat_mode_names_the_file_type(mapper: Mapper) -> None:
    start_python(mapper)
    sevs = mapper.map(sc(200, 4502, "python3", "mknodat", 0, dfd=0xFFFFFF9C, filename="f",
                         mode=0o10644, dev=0))
    s = one(sevs, "syscall")
    assert (s["mode"], s["TargetFilename"]) == ("S_IFIFO|0644", "/home/u/w/f")
    fe = one(sevs, "file_event")
    assert (fe["Operation"], fe["Mode"]) == ("create", 0o644)
    sevs = mapper.map(sc(201, 4502, "python3", "mknodat", 0, dfd=0xFFFFFF9C, filename="g",
                         mode=0o644, dev=0))
    assert one(sevs, "syscall")["mode"] == "0644"


def test_accepted_socket_is_told_from_a_connected_one(mapper: Mapper) -> None:
    start_python(mapper)
    m = mapper
    addr = struct.pack("<H", 2) + struct.pack(">H", 51000) + bytes([10, 0, 0, 9]) + b"\0" * 8
    m.map(sc(200, 4502, "python3", "socket", 3, family=2, type=1, protocol=0))
    m.map(sc(201, 4502, "python3", "accept4", 4, fd=3, upeer_sockaddr=addr,
             upeer_addrlen=16, flags=0))
    m.map(sc(202, 4502, "python3", "socket", 5, family=2, type=1, protocol=0))
    m.map(sc(203, 4502, "python3", "connect", 0, fd=5, uservaddr=addr, addrlen=16))
    p = m.table.procs[4502]
    assert p.fd(4) == "socket:AF_INET:SOCK_STREAM:10.0.0.9:51000:accepted"
    assert p.fd(5) == "socket:AF_INET:SOCK_STREAM:10.0.0.9:51000"


def test_reverse_shell_sequence(mapper: Mapper) -> None:
    start_python(mapper)
    m = mapper
    m.map(sc(200, 4502, "python3", "socket", 3, family=2, type=1, protocol=0))
    addr = struct.pack("<H", 2) + struct.pack(">H", 4444) + bytes([10, 0, 0, 9]) + b"\0" * 8
    sevs = m.map(sc(201, 4502, "python3", "connect", 0, fd=3, uservaddr=addr, addrlen=16))
    nc = one(sevs, "network_connection")
    assert {k: v for k, v in nc.items() if k not in PROC_4502} == {
        "DestinationIp": "10.0.0.9", "DestinationPort": 4444, "DestinationIsIpv6": "false",
        "Initiated": "true", "Fd": 3, "Success": True, "Protocol": "tcp"}
    s = one(sevs, "syscall")
    assert s["uservaddr"] == ('{sa_family=AF_INET, sin_port=htons(4444), '
                              'sin_addr=inet_addr("10.0.0.9")}')
    for fd in (0, 1, 2):
        d = m.map(sc(202 + fd, 4502, "python3", "dup2", fd, oldfd=3, newfd=fd))
        ds = one(d, "syscall")
        assert (ds["oldfd"], ds["newfd"], ds["FdTarget"]) == (
            3, fd, "socket:AF_INET:SOCK_STREAM:10.0.0.9:4444")
    m.map(sc(210, 4502, "python3", "execve", 0, filename="/bin/sh", argv=["sh", "-i"]))
    pc = one(m.map(exec_(209, 4502, "/bin/sh", ["sh", "-i"], "/home/u/w")),
             "process_creation")
    assert (pc["Image"], pc["CommandLine"], pc["StdinTarget"], pc["StdoutTarget"],
            pc["StderrTarget"]) == ("/bin/sh", "sh -i",
                                    *["socket:AF_INET:SOCK_STREAM:10.0.0.9:4444"] * 3)


def test_connect_einprogress_ipv6_and_unix(mapper: Mapper) -> None:
    start_python(mapper)
    mapper.map(sc(200, 4502, "python3", "socket", 4, family=10, type=0o4002, protocol=0))
    a6 = struct.pack("<H", 10) + struct.pack(">HI", 53, 0) + bytes(15) + b"\x01" + bytes(4)
    nc = one(mapper.map(sc(201, 4502, "python3", "connect", -115, fd=4, uservaddr=a6,
                           addrlen=28)), "network_connection")
    assert (nc["DestinationIp"], nc["DestinationPort"], nc["DestinationIsIpv6"],
            nc["Protocol"], nc["Success"]) == ("::1", 53, "true", "udp", True)
    unix = struct.pack("<H", 1) + b"/run/x.sock\0"
    assert kinds(mapper.map(sc(202, 4502, "python3", "connect", 0, fd=5, uservaddr=unix,
                               addrlen=14))) == ["syscall", "auditd"]


def test_enums_as_strace_names(mapper: Mapper) -> None:
    start_python(mapper)
    s = one(mapper.map(sc(200, 4502, "python3", "ptrace", -1, request=16, pid=77, addr=0,
                          data=0)), "syscall")
    assert (s["request"], s["pid"], s["addr"], s["Errno"]) == (
        "PTRACE_ATTACH", 77, "NULL", "EPERM")
    s = one(mapper.map(sc(201, 4502, "python3", "setsockopt", 0, fd=3, level=1, optname=26,
                          optval=0x7FFF0000, optlen=16)), "syscall")
    assert (s["level"], s["optname"], s["optval"]) == ("SOL_SOCKET", "SO_ATTACH_FILTER",
                                                       "0x7fff0000")
    s = one(mapper.map(sc(202, 4502, "python3", "bpf", 7, cmd=5, uattr=0x1000, size=148)),
            "syscall")
    assert s["cmd"] == "BPF_PROG_LOAD"
    s = one(mapper.map(sc(203, 4502, "python3", "memfd_create", 6, uname="x", flags=3)),
            "syscall")
    assert (s["uname"], s["flags"]) == ("x", "MFD_CLOEXEC|MFD_ALLOW_SEALING")


def test_memfd_exec_image(mapper: Mapper) -> None:
    start_python(mapper)
    mapper.map(sc(200, 4502, "python3", "memfd_create", 4, uname="payload", flags=0))
    pc = one(mapper.map(exec_(201, 4502, "/dev/fd/4", ["payload"], "/home/u/w")),
             "process_creation")
    assert (pc["Image"], pc["ExecSyscall"]) == ("/memfd:payload (deleted)", "execveat")


def test_rename_unlink_symlink_and_dirfd(mapper: Mapper) -> None:
    start_python(mapper)
    mapper.map(sc(200, 4502, "python3", "openat", 7, dfd=0xFFFFFF9C, filename="/etc/cron.d",
                  flags=0o200000, mode=0))  # O_DIRECTORY
    fe = one(mapper.map(sc(201, 4502, "python3", "renameat2", 0, olddfd=0xFFFFFF9C,
                           oldname="job.tmp", newdfd=7, newname="job", flags=1)),
             "file_event")
    assert (fe["TargetFilename"], fe["SourceFilename"], fe["Operation"]) == (
        "/etc/cron.d/job", "/home/u/w/job.tmp", "rename")
    fe = one(mapper.map(sc(202, 4502, "python3", "unlinkat", -2, dfd=0xFFFFFF9C,
                           pathname="/tmp/../tmp/x", flag=0)), "file_event")
    assert (fe["TargetFilename"], fe["Operation"], fe["Success"]) == ("/tmp/x", "unlink",
                                                                      False)
    sevs = mapper.map(sc(203, 4502, "python3", "symlinkat", 0, oldname="/etc/shadow",
                         newdfd=0xFFFFFF9C, newname="s"))
    fe = one(sevs, "file_event")
    assert (fe["TargetFilename"], fe["SourceFilename"], fe["Operation"]) == (
        "/home/u/w/s", "/etc/shadow", "symlink")
    assert one(sevs, "syscall")["oldname"] == "/etc/shadow"


def test_chdir_changes_later_resolution(mapper: Mapper) -> None:
    start_python(mapper)
    mapper.map(sc(200, 4502, "python3", "chdir", 0, filename="/var/spool"))
    fe = one(mapper.map(sc(201, 4502, "python3", "openat", 3, dfd=0xFFFFFF9C,
                           filename="cron/x", flags=1, mode=0)), "file_event")
    assert fe["TargetFilename"] == "/var/spool/cron/x"
    assert fe["CurrentDirectory"] == "/var/spool"


def test_unknown_process_gives_event_fields(mapper: Mapper) -> None:
    ev = sc(300, 9999, "ghost", "unlinkat", 0, dfd=0xFFFFFF9C, pathname="/etc/x", flag=0)
    ev.fields["ppid"] = 4410
    s = one(mapper.map(ev), "syscall")
    assert {k: s[k] for k in ("ProcessId", "Comm", "ParentProcessId", "ParentImage", "Uid",
                              "TargetFilename")} == {
        "ProcessId": 9999, "Comm": "ghost", "ParentProcessId": 4410,
        "ParentImage": "/bin/bash", "Uid": 1000, "TargetFilename": "/etc/x"}
    assert "Image" not in s


def test_non_mapped_events_give_nothing(mapper: Mapper) -> None:
    assert mapper.map(fork(1, 4410, 5555)) == []
    ev = Event(2, 0, 5555, 5555, "x", "sched:sched_process_exit", "bpf:syscalls",
               {"exit_code": 0, "start_boottime": 1})
    assert mapper.map(ev) == []


def test_needed_syscalls() -> None:
    every = needed_syscalls(None, SYSCALLS)
    assert set(every) <= set(WATCH_SYSCALLS) and "execve" in every and "ptrace" in every

    class R:
        def __init__(self, kind: str | None, index: Any = None, corr: str | None = None
                     ) -> None:
            self.kind, self.kinds, self.index, self.correlation = (
                kind, [kind] if kind else [], index, corr)

    class RS:
        def __init__(self, *rules: R) -> None:
            self.rules = list(rules)

    few = needed_syscalls(RS(R("process_creation"), R(None, corr="temporal")), SYSCALLS)
    assert "ptrace" not in few and set(few) <= set(CORE_SYSCALLS)
    # only syscalls this kernel has a tracepoint for: arm64 has dup3 but no dup2
    from probewatch.detect.mapping import _syscall_tracepoints

    have = _syscall_tracepoints()
    assert "execve" in few and ("dup2" in few) == (have is None or "dup2" in have)
    # syscall rules indexed on Syscall: just those (known to this table) and the core
    sc = needed_syscalls(RS(R("syscall", ("Syscall", frozenset({"PTRACE", "bpf"})))),
                         SYSCALLS)
    assert "ptrace" in sc and "bpf" in sc and "setsockopt" not in sc
    # an unindexed syscall rule, or an auditd SYSCALL rule: everything
    assert needed_syscalls(RS(R("syscall")), SYSCALLS) == every
    assert needed_syscalls(RS(R("auditd", ("type", frozenset({"syscall"})))),
                           SYSCALLS) == every
    ex = needed_syscalls(RS(R("auditd", ("type", frozenset({"execve"})))), SYSCALLS)
    assert "ptrace" not in ex and "execve" in ex


def test_kinds_filter_keeps_state(mapper: Mapper) -> None:
    m = Mapper(mapper.table, SYSCALLS, kinds=["network_connection"])
    start_python(m)
    assert m.map(sc(200, 4502, "python3", "socket", 3, family=2, type=1, protocol=0)) == []
    addr = struct.pack("<H", 2) + struct.pack(">H", 80) + bytes([1, 2, 3, 4]) + b"\0" * 8
    sevs = m.map(sc(201, 4502, "python3", "connect", 0, fd=3, uservaddr=addr, addrlen=16))
    assert kinds(sevs) == ["network_connection"]
    assert sevs[0].fields["Protocol"] == "tcp"  # the socket() was still tracked


def test_prctl_set_name_gives_the_new_name(mapper: Mapper) -> None:
    start_python(mapper)
    s = one(mapper.map(sc(200, 4502, "kworker/0:1", "prctl", 0, option=15, arg2=0x7FFE0000,
                          arg3=0, arg4=0, arg5=0)), "syscall")
    assert (s["option"], s["arg2"], s["NewName"], s["Comm"], s["Image"]) == (
        "PR_SET_NAME", 0x7FFE0000, "kworker/0:1", "kworker/0:1", "/usr/bin/python3")


_VALUES = st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(max_size=40),
                    st.binary(max_size=40), st.lists(st.text(max_size=8), max_size=4),
                    st.none())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(ARGS)), st.dictionaries(
    st.sampled_from(["fd", "dfd", "filename", "flags", "mode", "uservaddr", "oldfd", "newfd",
                     "request", "pid", "option", "family", "type", "level", "optname",
                     "oldname", "newname", "pathname", "uname", "cmd", "argv", "olddfd",
                     "newdfd", "addrlen", "flag", "arg2"]), _VALUES, max_size=8),
    st.one_of(st.integers(-4200, 2**31), st.none()))
def test_mapper_never_raises_on_odd_fields(name: str, fields: dict[str, Any],
                                           ret: int | None) -> None:
    t = ProcessTable(proc_root="/nonexistent-proc")
    t.live = False
    p = Process(4502, 1, 3)
    p.exe, p.argv, p.cwd = "/usr/bin/x", ["x"], "/w"
    t.procs[4502] = p
    m = Mapper(t, SYSCALLS)
    ev = Event(1, 0, 4502, 4502, "x", f"syscalls:{name}", "bpf:syscalls",
               {**fields, "ret": ret})
    for sev in m.map(ev):
        assert sev.kind in ("syscall", "auditd", "file_event", "network_connection")
        assert sev.fields["ProcessId"] == 4502
