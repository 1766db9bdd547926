"""The process table on the live kernel: exec context captured in the kernel for a
process that exits at once, ancestry up to pid 1, bounded memory under churn."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import kernel_lacks  # tests/conftest.py
from probewatch.analyze.proctable import CWD_CUT, Process, ProcessTable
from probewatch.detect.mapping import Mapper, open_watch_session
from probewatch.detect.model import SigmaEvent

pytestmark = pytest.mark.integration



def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_until(session: object, table: ProcessTable, mapper: Mapper | None,
              done: Callable[[], bool], timeout: float = 20.0,
              sink: list[SigmaEvent] | None = None) -> None:
    """Feed the session's events to the table (and mapper) until done() or timeout."""
    end = time.monotonic() + timeout
    events: Iterator = session.events(duration=timeout)  # type: ignore[attr-defined]
    for ev in events:
        table.on_event(ev)
        if mapper is not None:
            out = mapper.map(ev)
            if sink is not None:
                sink.extend(out)
        if done() or time.monotonic() > end:
            session.stop()  # type: ignore[attr-defined]


def _exited(table: ProcessTable, pid: int) -> Callable[[], bool]:
    def check() -> bool:
        p = table.procs.get(pid)
        return p is not None and p.exit_ts is not None
    return check


def test_exec_and_exit_at_once_is_known_right(bpf: None, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    work = tmp_path / "wd"
    work.mkdir(mode=0o755)
    true = shutil.which("true") or "/bin/true"
    table = ProcessTable()
    table.seed()
    mapper = Mapper(table)
    sevs: list[SigmaEvent] = []
    with open_watch_session(syscalls=["execve"]) as s:
        s.start()
        env = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": "/nonexistent/pw-preload.so",
               "HISTFILE": "/dev/null", "SECRET_NOT_KEPT": "x"}
        p = subprocess.Popen([true, "first arg", "--x=1", ""], cwd=work, env=env,
                             user=65534, group=65534, stderr=subprocess.DEVNULL)
        p.wait()
        run_until(s, table, mapper, _exited(table, p.pid), sink=sevs)
        assert s.losses().lost == 0
    proc = table.procs.get(p.pid)
    assert proc is not None, f"pid {p.pid} never seen"
    assert proc.source == "exec" and not proc.late
    assert proc.exe == true and proc.exe_name == os.path.basename(os.path.realpath(true))
    assert proc.argv == [true, "first arg", "--x=1", ""]
    assert proc.cwd == os.path.realpath(work)
    assert proc.env == {"LD_PRELOAD": "/nonexistent/pw-preload.so", "HISTFILE": "/dev/null"}
    assert (proc.uid, proc.euid, proc.gid, proc.egid) == (65534, 65534, 65534, 65534)
    assert proc.ppid == os.getpid()
    assert proc.exit_code == 0 and proc.exit_ts is not None
    me = table.get(os.getpid())
    assert me is not None
    assert table.render_ancestry(p.pid).endswith(f"{me.name}({os.getpid()}) > true({p.pid})")
    pc = [e for e in sevs if e.kind == "process_creation" and e.pid == p.pid]
    assert len(pc) == 1
    f = pc[0].fields
    assert (f["Image"], f["CommandLine"], f["CurrentDirectory"], f["LD_PRELOAD"],
            f["User"], f["Uid"], f["ParentProcessId"]) == (
        true, f"{true} first arg --x=1 ", os.path.realpath(work),
        "/nonexistent/pw-preload.so", table.user_name(65534), 65534, os.getpid())
    au = [e for e in sevs if e.kind == "auditd" and e.pid == p.pid
          and e.fields["type"] == "EXECVE"]
    assert [au[0].fields[f"a{i}"] for i in range(4)] == [true, "first arg", "--x=1", ""]


def test_env_behind_junk_cwd_on_other_mount_and_deep_cwd(bpf: None, tmp_path: Path) -> None:
    """LD_PRELOAD after 40 KB of other variables is still seen; a cwd on another mount
    (/dev/shm) is walked across it; a cwd deeper than the walk is flagged truncated."""
    import tempfile

    shm = Path(tempfile.mkdtemp(prefix="pw-cwd-", dir="/dev/shm"))
    deep = tmp_path
    for _ in range(140):
        deep = deep / "d"
    deep.mkdir(parents=True)
    true = shutil.which("true") or "/bin/true"
    table = ProcessTable()
    try:
        with open_watch_session(syscalls=["execve"]) as s:
            s.start()
            env = {"JUNK": "j" * 20000, **{f"V{i}": "v" * 60 for i in range(300)},
                   "LD_PRELOAD": "/nonexistent/late.so"}
            a = subprocess.Popen([true], cwd=shm, env=env, stderr=subprocess.DEVNULL)
            a.wait()
            b = subprocess.Popen([true, "deep"], cwd=deep)
            b.wait()
            run_until(s, table, None,
                      lambda: _exited(table, a.pid)() and _exited(table, b.pid)())
    finally:
        shm.rmdir()
    pa, pb = table.procs.get(a.pid), table.procs.get(b.pid)
    assert pa is not None and pb is not None
    assert pa.env == {"LD_PRELOAD": "/nonexistent/late.so"}
    assert pa.cwd == str(shm)
    assert "cwd" in pb.truncated
    # the innermost 128 components, marked cut (this session traces no chdir, so the
    # table has no whole cwd to keep): never a tail that passes for an absolute path
    assert pb.cwd == CWD_CUT + "/d" * 128


def test_container_id_from_the_exec_cgroup(bpf: None) -> None:
    """A process moved into a docker-style cgroup (v2) before it execs: the exec record
    names the cgroup, the table gives its container id, the mapper ContainerId."""
    from probewatch.analyze.proctable import _cgroup2_mount

    root = _cgroup2_mount()
    if not root:
        kernel_lacks("a cgroup2 mount")
    cid = f"{os.getpid():08x}" + "c" * 56
    cg = Path(root) / f"docker-{cid}.scope"
    true = shutil.which("true") or "/bin/true"
    try:
        cg.mkdir()
    except OSError as e:
        kernel_lacks(f"a cgroup2 hierarchy we may create cgroups in: {e}")
    table = ProcessTable()
    mapper = Mapper(table)
    sevs: list[SigmaEvent] = []
    try:
        with open_watch_session(syscalls=["execve"]) as s:
            s.start()
            p = subprocess.Popen(["sh", "-c", f"echo $$ > {cg}/cgroup.procs && exec {true}"])
            p.wait()
            run_until(s, table, mapper, _exited(table, p.pid), sink=sevs)
    finally:
        for _ in range(50):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    assert p.returncode == 0
    proc = table.procs.get(p.pid)
    assert proc is not None and proc.exe == true
    assert proc.container == cid and proc.cgroup == f"/docker-{cid}.scope"
    pc = [e for e in sevs if e.kind == "process_creation" and e.pid == p.pid]
    assert pc and pc[-1].fields["ContainerId"] == cid


def test_three_level_chain_ancestry_reaches_pid_1(bpf: None, tmp_path: Path) -> None:
    table = ProcessTable()
    table.seed()
    mark = tmp_path / "leaf.pid"
    (tmp_path / "level3.sh").write_text(f"echo $$ > {mark}; exit 0\n")
    (tmp_path / "level2.sh").write_text(f"sh {tmp_path}/level3.sh; exit 0\n")
    with open_watch_session(syscalls=["execve"]) as s:
        s.start()
        top = subprocess.Popen(["sh", "-c", f"sh {tmp_path}/level2.sh; exit 0"])
        top.wait()
        leaf = int(mark.read_text())
        run_until(s, table, None, _exited(table, leaf))
    chain = table.ancestry(leaf)
    pids = [p.pid for p in chain]
    assert pids[0] == leaf and pids[2] == top.pid and pids[3] == os.getpid()
    assert chain[-1].pid == 1
    assert [p.name for p in chain[:3]] == ["sh", "sh", "sh"]
    assert chain[0].argv == ["sh", f"{tmp_path}/level3.sh"]
    assert chain[0].exe_name == os.path.basename(os.path.realpath(shutil.which("sh") or ""))
    assert chain[1].argv == ["sh", f"{tmp_path}/level2.sh"]
    assert table.render_ancestry(leaf).startswith(f"{chain[-1].name}(1) > ")


def test_churn_keeps_memory_flat(bpf: None) -> None:
    """3 x 300 short processes: the table stays under its cap, RSS stays flat
    (bench/proc_churn.py runs 100,000 with every watch syscall)."""
    table = ProcessTable(grace_ns=200_000_000, max_entries=512)
    table.seed()
    mapper = Mapper(table)
    rss: list[int] = []
    total = 0
    loop = ("i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done; "
            "/bin/echo pw-round-end >/dev/null; ")
    # only the churn's process tree is traced: other work on the machine stays out
    with open_watch_session(command=["sh", "-c", loop * 3], syscalls=["execve", "openat"],
                            ringbuf_kb=4096) as s:
        s.start()
        for ev in s.events(duration=60):
            table.on_event(ev)
            mapper.map(ev)
            total += 1
            if ev.event == "sched:sched_process_exec" and \
                    ev.fields.get("argv") == ["/bin/echo", "pw-round-end"]:
                rss.append(_rss_kb())
                assert len(table) <= 512
        lost = s.losses().lost
    assert len(rss) == 3
    assert lost == 0
    assert total > 3 * 300 * 3  # fork, exec, exit, execve ... per process
    # after the first round (allocator and ring warm), no growth beyond a few MB
    assert rss[2] - rss[0] < 8 * 1024, rss
    assert table.dropped + table.expire(10**18) >= 0
    assert isinstance(table.get(os.getpid()), Process)


def test_no_bpf_message_names_the_missing_feature(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the BPF object the session says so in words (what watch prints)."""
    from probewatch.collect.bpf import loader
    from probewatch.errors import FeatureUnavailable

    monkeypatch.setattr(loader, "machine", lambda: "no-such-arch")
    with pytest.raises(FeatureUnavailable, match="no BPF object syscalls.bpf.o"):
        with open_watch_session(syscalls=["execve"]) as s:
            s.start()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
