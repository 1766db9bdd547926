"""ProcessTable on recorded lifecycle Events; the exec-info record decoder; /proc parsing."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import missing  # tests/conftest.py
from probewatch.analyze.proctable import (
    NO_AUID,
    PROCESS_EVENT,
    Process,
    ProcessTable,
    container_id,
    read_proc_process,
)
from probewatch.collect.bpf import libbpf
from probewatch.collect.bpf.loader import (
    EV_EXEC_INFO,
    EV_FORK_INFO,
    EXEC_INFO,
    EXIT,
    FORK_INFO,
    HDR,
    RecordDecoder,
    object_bytes,
    pick_env,
    split_argv,
    syscall_table,
)
from probewatch.event import Event

S = 1_000_000_000
CID = "0123456789abcdef" * 4


def fork(ts: int, parent: int, child: int, cstart: int, pstart: int = 0) -> Event:
    return Event(ts, 0, parent, parent, "sh", "sched:sched_process_fork", "bpf:syscalls",
                 {"ppid": 1, "uid": 0, "gid": 0, "cgroup": 1, "child_pid": child,
                  "child_tid": child, "child_start_ns": cstart,
                  "child_start_boottime": cstart, "parent_start_boottime": pstart})


def exec_(ts: int, pid: int, ppid: int, start: int, filename: str, argv: list[str],
          cwd: str = "/tmp", comm: str = "", uid: int = 1000, euid: int = 1000,
          env: dict[str, str] | None = None, auid: int = 1000, cgname: str = "",
          cgroup: int = 1) -> Event:
    return Event(ts, 0, pid, pid, comm or filename.rsplit("/", 1)[-1][:15],
                 "sched:sched_process_exec", "bpf:syscalls",
                 {"ppid": ppid, "uid": uid, "gid": uid, "cgroup": cgroup, "old_pid": pid,
                  "filename": filename, "argv": argv, "cwd": cwd, "env": env or {},
                  "euid": euid, "egid": uid, "suid": euid, "sgid": uid, "loginuid": auid,
                  "sessionid": 3, "start_ns": start, "start_boottime": start,
                  "parent_start_boottime": 0, "cap_effective": 0, "cgroup_name": cgname,
                  "exe_name": filename.rsplit("/", 1)[-1]})


def exit_(ts: int, pid: int, start: int, code: int = 0) -> Event:
    return Event(ts, 0, pid, pid, "x", "sched:sched_process_exit", "bpf:syscalls",
                 {"ppid": 1, "uid": 0, "gid": 0, "cgroup": 1, "exit_code": code,
                  "start_ns": start, "start_boottime": start})


def chain_table(tmp_path: Path) -> ProcessTable:
    """init(1) > sshd(812) > bash(4410) > python3(4502), built from events only."""
    t = ProcessTable(proc_root=str(tmp_path))  # an empty /proc: nothing from the host
    init = Process(1, 0, 1)
    init.exe, init.argv, init.comm = "/sbin/init", ["/sbin/init"], "init"
    t.procs[1] = init
    for ev in (
        fork(10, 1, 812, 10, 1),
        exec_(11, 812, 1, 10, "/usr/sbin/sshd", ["sshd", "-D"], cwd="/", uid=0, euid=0,
              auid=NO_AUID),
        fork(20, 812, 4410, 20, 10),
        exec_(21, 4410, 812, 20, "/bin/bash", ["-bash"], cwd="/home/u",
              env={"SSH_CONNECTION": "10.0.0.1 5 10.0.0.2 22"}),
        fork(30, 4410, 4502, 30, 20),
        exec_(31, 4502, 4410, 30, "/usr/bin/python3", ["python3", "x.py"], cwd="/home/u",
              env={"LD_PRELOAD": "/tmp/evil.so"}),
    ):
        t.on_event(ev)
    return t


def test_ancestry_and_rendering(tmp_path: Path) -> None:
    t = chain_table(tmp_path)
    assert t.render_ancestry(4502) == "init(1) > sshd(812) > bash(4410) > python3(4502)"
    assert [p.pid for p in t.ancestry(4502)] == [4502, 4410, 812, 1]
    p = t.get(4502)
    assert p is not None
    assert (p.exe, p.argv, p.cwd, p.uid, p.euid, p.auid) == (
        "/usr/bin/python3", ["python3", "x.py"], "/home/u", 1000, 1000, 1000)
    assert p.env == {"LD_PRELOAD": "/tmp/evil.so"}
    assert p.source == "exec" and not p.late and p.exe_name == "python3"
    # the fork copied the parent's context until the exec replaced it
    bash = t.get(4410)
    assert bash is not None and bash.env == {"SSH_CONNECTION": "10.0.0.1 5 10.0.0.2 22"}
    assert t.user_name(0) == "root"
    assert t.user_name(4000000) == "4000000"


def test_fork_inherits_and_exit_grace(tmp_path: Path) -> None:
    t = chain_table(tmp_path)
    t.grace_ns = 30 * S
    t.on_event(fork(40, 4502, 4600, 40, 30))
    child = t.get(4600)
    assert child is not None
    assert (child.exe, child.argv, child.cwd, child.ppid) == (
        "/usr/bin/python3", ["python3", "x.py"], "/home/u", 4502)
    t.on_event(exit_(50, 4600, 40, 256))
    assert child.exit_ts == 50 and child.exit_code == 256 and not child.alive
    # still there (grace), and its lineage too
    t.on_event(exit_(60, 4502, 30))
    assert t.render_ancestry(4600).endswith("python3(4502) > python3(4600)")
    # 30 s of event time later both are gone; the live ones stay
    t.on_event(fork(50 + 30 * S, 4410, 4700, 50 + 30 * S, 20))
    assert 4600 not in t and 4502 in t  # 4502 exited at 60: 10 ns left
    t.on_event(fork(61 + 30 * S, 4410, 4701, 61 + 30 * S, 20))
    assert 4502 not in t and 4410 in t and 4700 in t


def test_pid_reuse_keeps_the_old_parent(tmp_path: Path) -> None:
    t = chain_table(tmp_path)
    t.on_event(fork(40, 4502, 5000, 40, 30))
    t.on_event(exit_(41, 4502, 30))                    # the parent exits...
    t.on_event(fork(42, 4410, 4502, 42, 20))           # ...and its pid is reused
    t.on_event(exec_(43, 4502, 4410, 42, "/usr/bin/ls", ["ls"]))
    new = t.get(4502)
    assert new is not None and new.exe == "/usr/bin/ls" and new.start == 42
    old = t.get(4502, start=30)
    assert old is not None and old.exe == "/usr/bin/python3"
    # the orphan's lineage goes through the old python3, not the new ls
    assert t.render_ancestry(5000) == (
        "init(1) > sshd(812) > bash(4410) > python3(4502) > python3(5000)")
    # an exit with another start time is not this process's
    t.on_event(exit_(44, 4502, 30))
    assert new.alive


def test_exec_relative_path_and_memfd(tmp_path: Path) -> None:
    t = chain_table(tmp_path)
    t.on_event(fork(40, 4502, 4800, 40, 30))
    t.on_event(exec_(41, 4800, 4502, 40, "./tool", ["./tool", "-x"], cwd="/opt/app/bin"))
    p = t.get(4800)
    assert p is not None and p.exe == "/opt/app/bin/tool"
    t.on_event(fork(42, 4502, 4801, 42, 30))
    q = t.get(4801)
    assert q is not None
    q.set_fd(3, "memfd:payload")
    t.on_event(exec_(43, 4801, 4502, 42, "/dev/fd/3", ["x"]))
    assert q.exe == "/memfd:payload (deleted)"


def test_same_event_twice_is_applied_once(tmp_path: Path) -> None:
    t = chain_table(tmp_path)
    ev = fork(40, 4502, 4900, 40, 30)
    t.on_event(ev)
    t.get(4900).argv = ["changed"]  # type: ignore[union-attr]
    t.on_event(ev)
    assert t.get(4900).argv == ["changed"]  # type: ignore[union-attr]


def test_hard_cap_drops_exited_first(tmp_path: Path) -> None:
    t = ProcessTable(grace_ns=3600 * S, max_entries=64, proc_root=str(tmp_path))
    t.procs[1] = Process(1, 0, 1)
    for i in range(500):
        pid = 1000 + i
        t.on_event(fork(10 * i + 1, 1, pid, 10 * i + 1, 1))
        t.on_event(exit_(10 * i + 2, pid, 10 * i + 1))
    assert len(t) <= 64
    assert 1 in t and 1499 in t     # init and the newest stay
    assert 1000 not in t             # the oldest exited ones went first
    assert t.dropped >= 436


def test_live_entries_without_exit_are_swept(tmp_path: Path) -> None:
    # lost exit records: live entries whose pid is not in /proc go when the table is full
    # (swept at most once a second of event time; live ones in /proc are kept)
    for pid in range(2000, 2005):
        (tmp_path / str(pid)).mkdir()
    t = ProcessTable(max_entries=32, proc_root=str(tmp_path))
    for i in range(100):
        t.on_event(fork((i + 1) * S, 1, 2000 + i, (i + 1) * S, 0))
    assert len(t) <= 33
    assert all(pid in t for pid in range(2000, 2005)) and 2099 in t and 2050 not in t


def test_threads_from_plain_fork_records_are_not_processes(tmp_path: Path) -> None:
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "status").write_text("Name:\tx\nTgid:\t70\nPid:\t77\n")
    t = ProcessTable(proc_root=str(tmp_path))
    ev = Event(1, 0, 70, 70, "x", "sched:sched_process_fork", "bpf:syscalls",
               {"ppid": 1, "uid": 0, "gid": 0, "cgroup": 1, "child_pid": 77, "child_tid": 77})
    assert t.on_event(ev) is None and 77 not in t


def test_chdir_moves_cwd(tmp_path: Path) -> None:
    t = chain_table(tmp_path)
    t.on_event(Event(50, 0, 4410, 4410, "bash", "syscalls:chdir", "bpf:syscalls",
                     {"filename": "../../etc", "ret": 0}))
    assert t.get(4410).cwd == "/etc"  # type: ignore[union-attr]
    t.on_event(Event(51, 0, 4410, 4410, "bash", "syscalls:chdir", "bpf:syscalls",
                     {"filename": "/nonexistent", "ret": -2}))
    assert t.get(4410).cwd == "/etc"  # type: ignore[union-attr]


def test_snapshot_restore_round_trip(tmp_path: Path) -> None:
    t = chain_table(tmp_path)
    t.get(4502).set_fd(3, "socket:AF_INET:SOCK_STREAM:1.2.3.4:4444")  # type: ignore[union-attr]
    snap = t.snapshot()
    import json

    snap = json.loads(json.dumps(snap))
    (tmp_path / "4600").mkdir()  # a pid of the machine the replay runs on
    (tmp_path / "4600" / "stat").write_text("4600 (other) S 1 0 0 0 0 0 0 0 0 0 0 0 0 0 "
                                            "20 0 1 0 5 0\n")
    t2 = ProcessTable(proc_root=str(tmp_path))
    t2.restore(snap)
    assert not t2.live and t2.get(4600) is None  # replay: /proc is not consulted
    assert t2.render_ancestry(4502) == t.render_ancestry(4502)
    p = t2.get(4502)
    assert p is not None and p.env == {"LD_PRELOAD": "/tmp/evil.so"}
    assert p.fd(3) == "socket:AF_INET:SOCK_STREAM:1.2.3.4:4444"


@pytest.mark.parametrize("path, want", [
    (f"/system.slice/docker-{CID}.scope", CID),
    (f"/docker/{CID}", CID),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-pod1.slice/cri-containerd-{CID}.scope",
     CID),
    (f"/machine.slice/libpod-{CID}.scope/container", CID),
    (f"/kubepods/besteffort/pod5b2e/{CID}", CID),
    (f"crio-{CID}.scope", CID),
    ("/user.slice/user-0.slice/session-2.scope", None),
    ("/", None),
    ("", None),
    (f"/docker/{CID}0", None),
])
def test_container_id(path: str, want: str | None) -> None:
    assert container_id(path) == want


def test_read_proc_process_parses_a_fake_proc(tmp_path: Path) -> None:
    d = tmp_path / "321"
    d.mkdir()
    # a comm with spaces and parentheses
    (d / "stat").write_text("321 (we ird) (x)) S 42 321 321 0 -1 4194560 1 0 0 0 0 0 0 0 "
                            "20 0 1 0 1234 0 0\n")
    (d / "status").write_text("Name:\tx\nTgid:\t321\nUid:\t1000\t0\t0\t0\nGid:\t100\t101\t0\t0\n")
    (d / "cmdline").write_bytes(b"/usr/bin/prog\0-a\0b c\0")
    (d / "loginuid").write_text("1000")
    (d / "cgroup").write_text(f"0::/system.slice/docker-{CID}.scope\n")
    (d / "environ").write_bytes(b"HOME=/root\0LD_PRELOAD=/x.so\0PATH=/bin\0")
    os.symlink("/usr/bin/prog (deleted)", d / "exe")
    os.symlink("/srv", d / "cwd")
    p = read_proc_process(321, str(tmp_path))
    assert p is not None
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    assert (p.pid, p.ppid, p.start, p.comm) == (321, 42, 1234 * tick, "we ird) (x)")
    assert (p.uid, p.euid, p.gid, p.egid, p.auid) == (1000, 0, 100, 101, 1000)
    assert p.argv == ["/usr/bin/prog", "-a", "b c"]
    assert (p.exe, p.cwd, p.container) == ("/usr/bin/prog", "/srv", CID)
    assert p.env == {"LD_PRELOAD": "/x.so"}
    # a thread's tid is not a process
    (d / "status").write_text("Tgid:\t320\n")
    assert read_proc_process(321, str(tmp_path)) is None
    assert read_proc_process(999, str(tmp_path)) is None


def test_seed_reads_this_machine() -> None:
    t = ProcessTable()
    n = t.seed()
    assert n >= 3
    me = t.get(os.getpid())
    assert me is not None and me.ppid == os.getppid()
    assert me.cwd == os.getcwd() and me.uid == os.getuid()
    assert t.ancestry(os.getpid())[-1].pid == 1


def test_pick_env_and_split_argv() -> None:
    blob = b"A=1\0LD_PRELOAD=/a.so\0HISTFILE=/dev/null\0=x\0noeq\0LD_PRELOAD=/second\0"
    assert pick_env(blob) == {"LD_PRELOAD": "/a.so", "HISTFILE": "/dev/null"}
    assert split_argv(b"ls\0-l\0\0x\0") == ["ls", "-l", "", "x"]
    assert split_argv(b"") == []
    assert split_argv(b"\xff\0") == ["\udcff"]


def _exec_record(fn: bytes, cwd: bytes, argv: bytes, env: bytes, cg: bytes, flags: int = 0,
                 exe: bytes = b"prog") -> bytes:
    hdr = HDR.pack(EV_EXEC_INFO, 0, 1, 123, 50, 50, 40, 1000, 1001, 0, 7, b"prog\0")
    body = EXEC_INFO.pack(50, flags, 0, 1002, 0, 1002, 1000, 3, 11, 12, 13, 0xFF,
                          len(fn), len(cwd), len(argv), len(env), len(cg), len(exe))
    return hdr + body + fn + cwd + argv + env + cg + exe


def test_decoder_exec_info_record() -> None:
    dec = RecordDecoder(syscall_table(""))
    rec = _exec_record(b"/bin/prog\0", b"/home/u", b"prog\0-x\0", b"LD_AUDIT=/a\0X=1\0",
                       b"docker-" + CID.encode() + b".scope", flags=0x4 | 0x2)
    ev = dec.decode(rec)
    assert ev is not None and ev.event == "sched:sched_process_exec"
    f = ev.fields
    assert (ev.pid, ev.comm, f["ppid"], f["uid"], f["gid"]) == (50, "prog", 40, 1000, 1001)
    assert (f["filename"], f["cwd"], f["argv"], f["env"]) == (
        "/bin/prog", "/home/u", ["prog", "-x"], {"LD_AUDIT": "/a"})
    assert (f["euid"], f["egid"], f["loginuid"], f["start_boottime"]) == (0, 1002, 1000, 12)
    assert f["cgroup_name"] == f"docker-{CID}.scope"
    assert f["exe_name"] == "prog"
    assert f["truncated"] == ["cwd", "argv"]
    fork_rec = HDR.pack(EV_FORK_INFO, 0, 0, 5, 40, 40, 1, 0, 0, 0, 7, b"sh\0") + \
        FORK_INFO.pack(50, 0, 100, 101, 102)
    fe = dec.decode(fork_rec)
    assert fe is not None and fe.event == "sched:sched_process_fork"
    assert (fe.fields["child_pid"], fe.fields["child_start_boottime"],
            fe.fields["parent_start_boottime"]) == (50, 101, 102)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=HDR.size + EXEC_INFO.size + 64), st.binary(max_size=300))
def test_decoder_exec_info_fuzz(head: bytes, tail: bytes) -> None:
    """Any bytes after an exec-info header decode or are counted; never an exception."""
    dec = RecordDecoder(syscall_table(""))
    rec = struct.pack("<H", EV_EXEC_INFO) + head[2:] + tail
    if len(rec) < HDR.size + EXEC_INFO.size:
        rec = rec.ljust(HDR.size + EXEC_INFO.size, b"\0")
    ev = dec.decode(rec)
    assert ev is not None
    assert isinstance(ev.fields["argv"], list) and isinstance(ev.fields["env"], dict)


def test_btf_layouts_of_exec_info_records() -> None:
    """pw_exec_info / pw_fork_info / pw_exit in the built object match loader.py."""
    import ctypes

    try:
        L = libbpf.lib()
    except Exception as e:  # noqa: BLE001
        missing(f"libbpf unavailable (apt-get install libbpf1): {e}")
    obj = libbpf.BpfObject.open(object_bytes("syscalls"), "btf")
    sizes = {}
    try:
        btf = L.bpf_object__btf(obj._ptr)
        for name in ("pw_exec_info", "pw_fork_info", "pw_exit", "pw_xscratch"):
            tid = L.btf__find_by_name_kind(btf, name.encode(), 4)
            if tid > 0:
                t = L.btf__type_by_id(btf, tid)
                sizes[name] = (ctypes.c_uint32 * 3).from_address(t)[2]
    finally:
        obj.close()
    assert sizes["pw_exec_info"] == HDR.size + EXEC_INFO.size == 144
    assert sizes["pw_fork_info"] == HDR.size + FORK_INFO.size
    assert sizes.get("pw_exit", HDR.size + EXIT.size) == HDR.size + EXIT.size
    assert sizes["pw_xscratch"] <= 32768  # a per-CPU map value's limit


def test_exec_without_exec_info_reads_proc_late(tmp_path: Path) -> None:
    """tracefs / plain BPF exec records carry the path only: the rest comes from /proc
    while the process still runs that program (marked late), else stays unknown."""
    d = tmp_path / "600"
    d.mkdir()
    (d / "stat").write_text("600 (ls) S 4410 600 600 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0\n")
    (d / "status").write_text("Tgid:\t600\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t0\t0\n")
    (d / "cmdline").write_bytes(b"ls\0-la\0")
    (d / "environ").write_bytes(b"LD_LIBRARY_PATH=/opt/lib\0")
    os.symlink("/usr/bin/ls", d / "exe")
    os.symlink("/var", d / "cwd")
    t = ProcessTable(proc_root=str(tmp_path))
    plain = Event(5, 0, 600, 600, "ls", "sched:sched_process_exec", "bpf:syscalls",
                  {"ppid": 4410, "uid": 1000, "gid": 1000, "cgroup": 1, "old_pid": 600,
                   "filename": "/usr/bin/ls"})
    p = t.on_event(plain)
    assert p is not None and p.late and p.source == "exec-late"
    assert (p.exe, p.argv, p.cwd, p.euid, p.env) == (
        "/usr/bin/ls", ["ls", "-la"], "/var", 0, {"LD_LIBRARY_PATH": "/opt/lib"})
    # gone from /proc: path and header ids only; argv from the execve record after
    gone = Event(6, 0, 601, 601, "cat", "sched:sched_process_exec", "bpf:syscalls",
                 {"ppid": 4410, "uid": 1000, "gid": 1000, "cgroup": 1, "old_pid": 601,
                  "filename": "/usr/bin/cat"})
    q = t.on_event(gone)
    assert q is not None and (q.exe, q.argv, q.uid, q.cwd) == ("/usr/bin/cat", [], 1000, "")
    t.on_event(Event(7, 0, 601, 601, "cat", "syscalls:execve", "bpf:syscalls",
                     {"filename": "/usr/bin/cat", "argv": ["cat", "/etc/passwd"], "ret": 0}))
    assert q.argv == ["cat", "/etc/passwd"]


def test_exec_after_the_parent_died_keeps_the_forker(tmp_path: Path) -> None:
    t = chain_table(tmp_path)
    t.on_event(fork(40, 4502, 4900, 40, 30))
    t.on_event(exit_(41, 4502, 30))
    # the orphan execs: the kernel's real_parent is now init
    t.on_event(exec_(42, 4900, 1, 40, "/tmp/payload", ["payload"]))
    assert t.render_ancestry(4900) == (
        "init(1) > sshd(812) > bash(4410) > python3(4502) > payload(4900)")


def test_lookups_can_be_stored_and_replayed(tmp_path: Path) -> None:
    """A process read from /proc mid-run is handed to on_lookup; its process_event
    teaches a replay table the same record."""
    d = tmp_path / "700"
    d.mkdir()
    (d / "stat").write_text("700 (late) S 1 0 0 0 0 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0\n")
    (d / "cmdline").write_bytes(b"late\0--x\0")
    live = ProcessTable(proc_root=str(tmp_path))
    seen: list[Event] = []
    live.on_lookup = lambda p: seen.append(live.process_event(p, ts=9))
    assert live.get(700) is not None and len(seen) == 1
    import json

    stored = Event(**{**json.loads(json.dumps(seen[0].to_dict()))})
    replay = ProcessTable(proc_root=str(tmp_path / "none"))
    replay.restore([])
    replay.on_event(stored)
    p = replay.get(700)
    assert p is not None and (p.argv, p.comm, p.ppid) == (["late", "--x"], "late", 1)
    assert stored.event == PROCESS_EVENT


def test_setuid_family_changes_ids(tmp_path: Path) -> None:
    t = chain_table(tmp_path)  # python3(4502): uid 1000, euid 1000
    p = t.get(4502)
    assert p is not None

    def call(name: str, ret: int, **args: int) -> None:
        t.on_event(Event(99, 0, 4502, 4502, "python3", f"syscalls:{name}", "bpf:syscalls",
                         {**args, "ret": ret}))

    call("setuid", -1, uid=0)                      # EPERM: nothing changes
    assert (p.uid, p.euid) == (1000, 1000)
    call("setresuid", 0, ruid=0xFFFFFFFF, euid=0, suid=0xFFFFFFFF)
    assert (p.uid, p.euid) == (1000, 0)
    call("setuid", 0, uid=0)                       # privileged: all ids
    assert (p.uid, p.euid) == (0, 0)
    call("setregid", 0, rgid=5, egid=6)
    assert (p.gid, p.egid) == (5, 6)


_ODD = st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(max_size=20), st.none(),
                 st.lists(st.one_of(st.text(max_size=5), st.integers()), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=5),
                                                                st.integers()), max_size=2),
                 st.binary(max_size=10))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["sched:sched_process_fork", "sched:sched_process_exec",
                        "sched:sched_process_exit", "syscalls:execve", "syscalls:chdir",
                        "syscalls:setuid", "syscalls:setresuid", "probewatch:process"]),
       st.dictionaries(st.sampled_from(
           ["child_pid", "child_start_boottime", "parent_start_boottime", "filename", "argv",
            "cwd", "env", "uid", "euid", "gid", "egid", "loginuid", "cgroup", "cgroup_name",
            "start_boottime", "ppid", "exit_code", "group_dead", "ret", "truncated", "pid",
            "exe", "fds", "ruid"]), _ODD, max_size=10))
def test_table_never_raises_on_odd_fields(name: str, fields: dict) -> None:
    """A corrupt capture or an odd backend must not stop watch: the table copes."""
    t = ProcessTable(proc_root="/nonexistent-proc")
    t.live = False
    p = Process(50, 1, 3)
    t.procs[50] = p
    t.on_event(Event(10, 0, 50, 50, "x", name, "bpf:syscalls", fields))
    # the process is still known, whatever the event said
    assert t.render_ancestry(50).endswith("(50)")
    assert 50 in {r["pid"] for r in t.snapshot()}


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(list(Process.__slots__)), _ODD, max_size=12))
def test_restore_never_raises_on_odd_records(rec: dict) -> None:
    t = ProcessTable(proc_root="/nonexistent-proc")
    t.restore([rec, {"pid": 7, "exit_ts": 5, "start": 1}])
    t.on_event(fork(10**12, 7, 8, 10**12, 1))
    t.expire(10**13)
    # the fork after the restore is applied: its child is known (and still alive)
    assert 8 in {r["pid"] for r in t.snapshot()}
