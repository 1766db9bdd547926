"""probewatch audit on the live kernel: bpftrace's programs with their attach points and
pid, a uprobe another tool wrote into uprobe_events, a ptrace-attached process, an
LD_PRELOAD process, this run's own objects left out, a baseline and a diff that names
exactly what changed. Everything a test creates is removed in its finally."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl  # noqa: F401 - maps libssl into this process: the TLS library to probe
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import run_cli, wait_for

pytestmark = pytest.mark.integration


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: bpf(2) listing, tracefs and /proc of every process")


def _libssl() -> str:
    with open("/proc/self/maps") as f:
        for ln in f:
            p = ln.split()[-1]
            if "/libssl.so" in p:
                return os.path.realpath(p)
    raise AssertionError("python's ssl module maps no libssl")


def _offset(path: str, sym: str) -> int:
    from probewatch.elf.symbols import open_image

    img = open_image(path)
    s = [x for x in img.lookup(sym) if img.is_function(x)][0]
    return img.vaddr_to_offset(s.address)


def _audit(*args: str) -> dict[str, Any]:
    r = run_cli("audit", "--json", "--quick", *args, timeout=60)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def _alerts() -> list[dict[str, Any]]:
    r = run_cli("audit", "--alerts", "--json", "--quick", timeout=60)
    assert r.returncode == 0, r.stderr
    return [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]


def _stop(p: subprocess.Popen[Any], sig: int = signal.SIGINT) -> None:
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
def bpftrace() -> Iterator[tuple[subprocess.Popen[str], str]]:
    _need_root()
    exe = shutil.which("bpftrace")
    assert exe, "bpftrace is needed (apt-get install bpftrace; scripts/install.sh WITH_TESTS)"
    ssl_path = _libssl()
    prog = ("tracepoint:syscalls:sys_enter_getppid { @a = count(); } "
            f"uprobe:{ssl_path}:SSL_read {{ @b = count(); }}")
    p = subprocess.Popen([exe, "-e", prog], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        while line and "Attaching" not in line:
            line = p.stdout.readline()
        assert "Attaching" in line, "bpftrace did not attach"
        yield p, ssl_path
    finally:
        _stop(p)


def test_bpftrace_programs_with_attach_point_and_pid(
        bpftrace: tuple[subprocess.Popen[str], str]) -> None:
    p, ssl_path = bpftrace

    def progs() -> list[dict[str, Any]]:
        return [f for f in _audit("--kind", "bpf_prog", "--kind", "perf_event")["findings"]
                if p.pid in f["pids"]]

    found = progs()
    bpf = {f["detail"]["probe_type"]: f for f in found if f["kind"] == "bpf_prog"}
    assert set(bpf) == {"tracepoint", "uprobe"}, found
    tp = bpf["tracepoint"]
    assert tp["detail"]["attach"] == ["tracepoint syscalls/sys_enter_getppid"]
    assert tp["detail"]["prog_type"] == "tracepoint" and tp["owner"] == "bpftrace"
    assert tp["detail"]["holders"] == [f"bpftrace({p.pid})"]
    assert len(tp["detail"]["tag"]) == 16 and tp["detail"]["map_ids"]
    assert abs(tp["detail"]["load_time"] - time.time()) < 120
    up = bpf["uprobe"]
    assert up["detail"]["attach"] == [f"uprobe {ssl_path}:SSL_read"]
    assert up["detail"]["symbol"] == "SSL_read" and up["detail"]["target_class"] == "tls"
    assert up["detail"]["offset"] == _offset(ssl_path, "SSL_read")
    perf = [f for f in found if f["kind"] == "perf_event"]
    assert len(perf) == 1 and perf[0]["detail"]["count"] >= 2
    # the shipped rule flags the TLS uprobe of a foreign tool, not the tracepoint
    mine = [a for a in _alerts() if p.pid in a["finding"]["pids"]]
    assert [a["rule"]["title"] for a in mine] == [
        "Probe On A TLS, PAM Or Login Library By A Foreign Tool"], mine
    assert mine[0]["finding"]["detail"]["symbol"] == "SSL_read"


def _write_probe(tracefs: str, line: str) -> None:
    """What another tool does: append a definition to uprobe_events (one write)."""
    fd = os.open(os.path.join(tracefs, "uprobe_events"), os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _remove_probe(tracefs: str, event: str) -> None:
    try:
        _write_probe(tracefs, f"-:{event}")
    except OSError:
        pass


def test_uprobe_written_by_another_tool(tracefs: str) -> None:
    ssl_path = _libssl()
    off = _offset(ssl_path, "SSL_write")
    me = os.getpid()
    foreign = f"sniff{me}/ssl_write"
    bcc = f"uprobes/p_{os.path.basename(ssl_path).replace('.', '_')}_0x{off:x}_bcc_{me}"
    try:
        _write_probe(tracefs, f"p:{foreign} {ssl_path}:0x{off:x}")
        _write_probe(tracefs, f"p:{bcc} {ssl_path}:0x{off:x}")
        rows = {f["detail"]["event"]: f for f in _audit("--kind", "dynamic_event")["findings"]}
        f = rows[foreign]
        assert f["what"] == f"uprobe {foreign} on {ssl_path}:SSL_write"
        assert f["owner"] == "unknown" and f["pids"] == []
        assert f["detail"]["group"] == f"sniff{me}" and f["detail"]["offset"] == off
        assert f["detail"]["target_class"] == "tls"
        b = rows[bcc]
        assert b["owner"] == "bcc" and b["pids"] == [me]
        flagged = {a["finding"]["detail"]["event"] for a in _alerts()
                   if a["finding"]["kind"] == "dynamic_event"}
        assert {foreign, bcc} <= flagged
    finally:
        _remove_probe(tracefs, foreign)
        _remove_probe(tracefs, bcc)
    left = [f["detail"]["event"] for f in _audit("--kind", "dynamic_event")["findings"]]
    assert foreign not in left and bcc not in left


def test_ptraced_and_preloaded_processes() -> None:
    _need_root()
    strace = shutil.which("strace")
    assert strace, "strace is needed (apt-get install strace)"
    env = {**os.environ, "LD_PRELOAD": "/nonexistent/pw-audit-hook.so"}
    pre = subprocess.Popen(["sleep", "30"], env=env, stderr=subprocess.DEVNULL)
    tracee = subprocess.Popen(["sleep", "30"])
    tr = subprocess.Popen([strace, "-p", str(tracee.pid), "-o", "/dev/null"],
                          stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: _tracer(tracee.pid) == tr.pid, 10)
        fs = _audit("--kind", "ptrace", "--kind", "preload")["findings"]
        pt = [f for f in fs if f["kind"] == "ptrace" and tracee.pid in f["pids"]]
        assert len(pt) == 1 and pt[0]["pids"] == [tracee.pid, tr.pid]
        assert pt[0]["owner"] == "strace"
        assert pt[0]["what"] == f"sleep({tracee.pid}) is traced by strace({tr.pid})"
        pl = [f for f in fs if f["kind"] == "preload" and pre.pid in f["pids"]]
        assert len(pl) == 1
        assert pl[0]["detail"]["value"] == "/nonexistent/pw-audit-hook.so"
        assert not [f for f in fs if f["kind"] == "preload" and tracee.pid in f["pids"]]
        rules = {(a["finding"]["kind"], tuple(a["finding"]["pids"])): a["rule"]["title"]
                 for a in _alerts()}
        assert rules[("ptrace", (tracee.pid, tr.pid))] == "Process Being Traced With Ptrace"
        assert rules[("preload", (pre.pid,))] == "Running Process With LD_PRELOAD Or LD_AUDIT"
    finally:
        _stop(tr)
        for p in (pre, tracee):
            p.kill()
            p.wait()


def _tracer(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("TracerPid:"):
                return int(ln.split()[1])
    return 0


def test_own_objects_left_out() -> None:
    """A BPF program this process holds is not listed by an audit run from it, and is
    listed (with this pid) when the audit excludes nobody."""
    _need_root()
    from probewatch.audit.scan import Scanner
    from probewatch.kernel import bpfsys

    fd = bpfsys.prog_load(bpfsys.BPF_PROG_TYPE_TRACEPOINT, name="pw_audit_own")
    try:
        rep = Scanner(full=False).scan()
        own = [f for f in rep.findings
               if f.kind == "bpf_prog" and f.detail["name"] == "pw_audit_own"]
        assert own == []
        # a kernel without loadable modules says so; taint as the kernel reports it
        if not os.path.exists("/proc/modules"):
            assert ("no /proc/modules: this kernel has no loadable modules "
                    "(CONFIG_MODULES=n); nothing to audit there") in rep.notes
        with open("/proc/sys/kernel/tainted") as t:
            tainted = int(t.read())
        taint = [f for f in rep.findings if f.kind == "taint"]
        assert [f.detail["value"] for f in taint] == ([tainted] if tainted else [])
        every = [f for f in Scanner(exclude_pids=set(), full=False).scan().findings
                 if f.kind == "bpf_prog" and f.detail["name"] == "pw_audit_own"]
        assert len(every) == 1 and every[0].pids == [os.getpid()]
        assert every[0].detail["attached"] is False and every[0].detail["uid"] == 0
    finally:
        os.close(fd)


def test_baseline_and_diff_name_exactly_what_changed(tracefs: str, tmp_path: Path) -> None:
    base = tmp_path / "base.json"
    r = run_cli("audit", "--quick", "--baseline", str(base), timeout=60)
    assert r.returncode == 0 and "saved" in r.stderr, r.stderr
    assert json.loads(base.read_text())["findings"] is not None
    r = run_cli("audit", "--quick", "--baseline", str(base), timeout=60)
    assert r.returncode == 1 and "file exists" in r.stderr
    me = os.getpid()
    event = f"diff{me}/probe"
    env = {**os.environ, "LD_PRELOAD": "/nonexistent/pw-diff.so"}
    pre = subprocess.Popen(["sleep", "30"], env=env, stderr=subprocess.DEVNULL)
    try:
        _write_probe(tracefs, f"p:{event} {sys.executable}:0x{_entry(sys.executable):x}")
        r = run_cli("audit", "--quick", "--json", "--diff", str(base), timeout=60)
        assert r.returncode == 3, r.stderr
        changes = json.loads(r.stdout)["changes"]
        ours = [(c["change"], c["finding"]["kind"]) for c in changes
                if event in c["finding"]["key"] or pre.pid in c["finding"]["pids"]]
        assert sorted(ours) == [("added", "dynamic_event"), ("added", "preload")]
        old_keys = {f["key"] for f in json.loads(base.read_text())["findings"]}
        for c in changes:  # every change is a real one
            assert (c["finding"]["key"] in old_keys) == (c["change"] != "added")
        text = run_cli("audit", "--quick", "--diff", str(base), timeout=60).stdout
        assert f"+ dynamic_event uprobe {event} on {sys.executable}:" in text
        assert f"+ preload sleep({pre.pid}) runs with LD_PRELOAD=/nonexistent/pw-diff.so" \
            f" (owner sleep, pids {pre.pid})" in text
    finally:
        _remove_probe(tracefs, event)
        pre.kill()
        pre.wait()


def _entry(path: str) -> int:
    from probewatch.elf.symbols import open_image

    img = open_image(path)
    for name in ("Py_BytesMain", "main", "Py_Main"):
        for s in img.lookup(name):
            if img.is_function(s):
                return img.vaddr_to_offset(s.address)
    raise AssertionError(f"no main in {path}")


def test_diff_of_a_file_that_is_no_audit(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"x": 1}')
    r = run_cli("audit", "--diff", str(bad), timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"probewatch: error: --diff {bad}: not an audit saved by "
                                "--baseline (no 'findings' list)")


def test_watch_audit_alerts_present_and_new_findings() -> None:
    """watch --audit: a ptrace there at start is alerted as present; a preloaded
    process started afterwards as new, within the poll interval."""
    _need_root()
    strace = shutil.which("strace")
    assert strace, "strace is needed (apt-get install strace)"
    tracee = subprocess.Popen(["sleep", "60"])
    tr = subprocess.Popen([strace, "-p", str(tracee.pid), "-o", "/dev/null"],
                          stderr=subprocess.DEVNULL)
    late: subprocess.Popen[bytes] | None = None
    w = subprocess.Popen([sys.executable, "-m", "probewatch", "watch", "--audit", "1",
                          "--json", "-d", "60"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    alerts: list[dict[str, Any]] = []
    try:
        assert wait_for(lambda: _tracer(tracee.pid) == tr.pid, 10)
        assert w.stdout is not None

        def next_alert() -> dict[str, Any]:
            assert w.stdout is not None
            line = w.stdout.readline()
            assert line, f"watch ended: {w.stderr.read() if w.stderr else ''}"
            a = json.loads(line)
            alerts.append(a)
            return dict(a)

        while True:
            a = next_alert()
            f = a["events"][0]["fields"]
            if f.get("Finding") == "ptrace" and f.get("TracedPid") == tracee.pid:
                break
        assert a["rule"]["title"] == "Process Being Traced With Ptrace"
        assert f["Change"] == "present" and f["ProcessId"] == tr.pid
        assert a["process"]["pid"] == tr.pid
        t0 = time.monotonic()
        late = subprocess.Popen(["sleep", "60"], stderr=subprocess.DEVNULL,
                                env={**os.environ, "LD_PRELOAD": "/nonexistent/late.so"})
        while True:
            a = next_alert()
            f = a["events"][0]["fields"]
            if f.get("Finding") == "preload" and f.get("ProcessId") == late.pid:
                break
        assert time.monotonic() - t0 < 15
        assert f["Change"] == "new" and f["Value"] == "/nonexistent/late.so"
        assert a["rule"]["title"] == "Running Process With LD_PRELOAD Or LD_AUDIT"
    finally:
        _stop(w, signal.SIGTERM)
        _stop(tr)
        for p in (tracee, late):
            if p is not None:
                p.kill()
                p.wait()
    assert w.returncode == 0


def test_bpf_links_of_another_probewatch_run(bpf: None) -> None:
    """probewatch's own eBPF tool in another process: its links (perf_event links on
    tracepoints) appear with their targets, its pid and owner probewatch; its
    programs list the same attach points."""
    from probewatch.audit.scan import Scanner

    p = subprocess.Popen([sys.executable, "-m", "probewatch", "execsnoop", "-d", "60"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sc = Scanner(full=False)
        links: list[Any] = []

        def have() -> bool:
            links[:] = [f for f in sc.scan().findings
                        if f.kind == "bpf_link" and p.pid in f.pids]
            return any("sys_enter_execve" in f.what for f in links)

        assert wait_for(have, 30, 0.5), links
        ex = next(f for f in links if f.what.endswith("at tracepoint syscalls/sys_enter_execve"))
        assert ex.owner == "probewatch" and ex.pids == [p.pid]
        assert ex.detail["link_type"] == "perf_event"
        progs = {f.detail["prog_id"]: f for f in sc.scan().findings if f.kind == "bpf_prog"}
        prog = progs[ex.detail["prog_id"]]
        assert "tracepoint syscalls/sys_enter_execve" in prog.detail["attach"]
        assert p.pid in prog.pids and prog.detail["prog_type"] == "tracepoint"
    finally:
        _stop(p)


def test_foreign_instance_with_enabled_event_filter_and_trigger(tracefs: str) -> None:
    """Another tool's tracefs instance: the instance, its enabled event, the filter and
    the trigger on it, each a finding in that instance; gone once it is removed."""
    from probewatch.audit.scan import Scanner

    name = f"othertool_{os.getpid()}"
    inst = os.path.join(tracefs, "instances", name)
    ev = os.path.join(inst, "events", "sched", "sched_process_exec")

    def put(path: str, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    os.mkdir(inst)
    try:
        put(os.path.join(ev, "filter"), "common_pid == 1")
        put(os.path.join(ev, "trigger"), "traceoff")
        put(os.path.join(ev, "enable"), "1")
        found = {(f.kind, f.key): f for f in Scanner().scan().findings if f.where == name}
        key = f"{name}:sched/sched_process_exec"
        assert set(found) == {("instance", f"instance:{name}"),
                              ("enabled_event", f"enabled_event:{key}"),
                              ("event_filter", f"event_filter:{key}"),
                              ("event_trigger", f"event_trigger:{key}:traceoff:unlimited")}
        assert found[("event_filter", f"event_filter:{key}")].detail["filter"] == \
            "common_pid == 1"
        assert found[("instance", f"instance:{name}")].owner == "unknown"
    finally:
        for rel, text in (("enable", "0"), ("trigger", "!traceoff"), ("filter", "0")):
            try:
                put(os.path.join(ev, rel), text)
            except OSError:
                pass
        os.rmdir(inst)
    assert not [f for f in Scanner(full=False).scan().findings if f.where == name]


def test_pinned_program_without_holder(tmp_path: Path) -> None:
    """A program kept only by a pin in a bpffs mount (its loader gone): listed with the
    pin's path, no holder process, owner unknown."""
    _need_root()
    from probewatch.audit.scan import Scanner
    from probewatch.kernel import bpfsys

    mnt = tmp_path / "bpffs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "bpf", "bpf", str(mnt)], check=True)
    pin = mnt / "pw_audit_pinned"
    try:
        fd = bpfsys.prog_load(bpfsys.BPF_PROG_TYPE_TRACEPOINT, name="pw_audit_pin")
        try:
            bpfsys.obj_pin(fd, str(pin))
        finally:
            os.close(fd)
        got = [f for f in Scanner(full=False).scan().findings
               if f.kind == "bpf_prog" and f.detail["name"] == "pw_audit_pin"]
        assert len(got) == 1, got
        f = got[0]
        assert f.detail["pinned"] == [str(pin)] and f.pids == [] and f.owner == "unknown"
        assert f.what.endswith(f"(not attached by a link or perf event), pinned at {pin}")
    finally:
        if pin.exists():
            pin.unlink()
        subprocess.run(["umount", str(mnt)], check=True)
    assert not [f for f in Scanner(full=False).scan().findings
                if f.kind == "bpf_prog" and f.detail["name"] == "pw_audit_pin"]
