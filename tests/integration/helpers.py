"""Small helpers for integration tests: run the CLI, parse JSON lines, wait for files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "probewatch"]


class Result(subprocess.CompletedProcess):  # type: ignore[type-arg]
    pid: int


def run_cli(*args: str, timeout: float = 120, **kw: Any) -> Result:
    """Run ``python -m probewatch ARGS``; the result also carries the process's pid."""
    with subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **kw) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        r = Result(p.args, p.returncode, out, err)
        r.pid = p.pid
        return r


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def summary_of(stderr: str) -> dict[str, Any]:
    for line in reversed(stderr.splitlines()):
        if line.startswith('{"summary"'):
            return json.loads(line)["summary"]
    raise AssertionError(f"no JSON summary in stderr: {stderr!r}")


def our_instances(tracefs: str, pid: int | None = None) -> list[str]:
    names = os.listdir(os.path.join(tracefs, "instances"))
    pre = "probewatch-" if pid is None else f"probewatch-{pid}-"
    return [n for n in names if n.startswith(pre)]


def wait_for(pred: Any, timeout: float = 20.0, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return False


def require_uprobe_events(tracefs: str) -> str:
    """The tracefs root, when this kernel has uprobe events; skip otherwise."""
    if not os.path.exists(os.path.join(tracefs, "uprobe_events")):
        from conftest import kernel_lacks

        kernel_lacks("uprobe_events (CONFIG_UPROBE_EVENTS)")
    return tracefs


def instance_armed(tracefs: str, pid: int) -> bool:
    """A private instance of probewatch PID has tracing on: every probe is armed."""
    for n in os.listdir(os.path.join(tracefs, "instances")):
        if n.startswith(f"probewatch-{pid}-"):
            try:
                with open(os.path.join(tracefs, "instances", n, "tracing_on")) as f:
                    if f.read().strip() == "1":
                        return True
            except OSError:
                pass
    return False


def wait_armed(tracefs: str, p: subprocess.Popen, timeout: float = 30) -> None:  # type: ignore[type-arg]
    """Poll until the ftrace CLI process P has armed its probes (not a fixed sleep)."""
    assert wait_for(lambda: p.poll() is not None or instance_armed(tracefs, p.pid), timeout)
    assert p.poll() is None, f"probewatch exited ({p.returncode}) before arming"


def bpf_links(pid: int) -> int:
    """How many BPF links (attached programs) process PID holds."""
    n = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:bpf_link":
                n += 1
        except OSError:
            pass
    return n


def wait_bpf_attached(p: subprocess.Popen, timeout: float = 30) -> int:  # type: ignore[type-arg]
    """Poll until the BPF CLI process P holds its links (a count that is > 0 and has
    stopped growing for 0.3 s: the programs attach one after another, then the reader
    starts); returns the count."""
    end = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < end:
        assert p.poll() is None, f"probewatch exited ({p.returncode}) before attaching"
        n = bpf_links(p.pid)
        if n != last:
            last, since = n, time.monotonic()
        elif n > 0 and time.monotonic() - since >= 0.3:
            return n
        time.sleep(0.02)
    raise AssertionError(f"no stable set of BPF links in pid {p.pid} after {timeout}s")


def children_of(pid: int) -> list[int]:
    """The child pids of PID (/proc/PID/task/*/children)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def bpf_progs_of(pid: int) -> set[int]:
    """Ids of the BPF programs process PID holds an fd of (/proc/PID/fdinfo)."""
    ids: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return ids
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                ids.update(int(ln.split()[1]) for ln in f if ln.startswith("prog_id:"))
        except OSError:
            continue
    return ids


def loaded_bpf_progs() -> set[int]:
    """Ids of every BPF program loaded in the kernel (bpftool)."""
    from conftest import need_tool

    out = subprocess.run([need_tool("bpftool"), "-j", "prog", "show"], capture_output=True,
                         text=True, check=True).stdout
    return {p["id"] for p in json.loads(out or "[]")}


def bpf_progs_gone(ids: set[int], timeout: float = 10.0) -> bool:
    """True once none of these programs is loaded any more (freeing is RCU-deferred).
    By id: other BPF users on the machine (pw_* programs of other runs) do not count."""
    return wait_for(lambda: not ids & loaded_bpf_progs(), timeout, 0.1)


def trace_then_reuse_pid(trace_args: list[str], getppid_n: Path,
                         tmp_path: Path) -> tuple[int, bool, str, str, int]:
    """``probewatch trace ARGS -- bash -c ...`` whose child makes 5 getppid calls and
    exits; while the trace goes on (bash sleeps 3 s), an unrelated process making 1000
    calls is started with the child's pid again, through ns_last_pid. Returns (the
    child's pid, whether the pid was had again, stdout, stderr, exit status)."""
    f = tmp_path / "child"
    script = f'{getppid_n} 5 & echo $! > {f}.tmp; wait; mv {f}.tmp {f}; sleep 3'
    p = subprocess.Popen([*CLI, "trace", *trace_args, "--", "bash", "-c", script],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(f.exists, timeout=30, interval=0.02)
        child = int(f.read_text())
        reused = False
        for _ in range(20):  # another fork on the machine may take the pid first
            with open("/proc/sys/kernel/ns_last_pid", "w") as fh:
                fh.write(str(child - 1))
            q = subprocess.Popen([str(getppid_n), "1000"])
            q.wait()
            if q.pid == child:
                reused = True
                break
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    return child, reused, out, err, p.returncode
