"""The text trace_pipe fallback of the ftrace backend on the live kernel: the same
events as the binary trace_pipe_raw reader, losses counted, the same lifecycle."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from probewatch.collect.ftrace import TEXT_ENV, FtraceCollector

from .helpers import CLI, json_lines, our_instances, run_cli, summary_of, wait_armed, wait_for

pytestmark = pytest.mark.integration

GETPPID = "t:syscalls:sys_enter_getppid"


def env(text: bool) -> dict[str, str]:
    e = dict(os.environ)
    e.pop(TEXT_ENV, None)
    if text:
        e[TEXT_ENV] = "1"
    return e


def trace(
    tracefs: str, text: bool, *args: str
) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    r = run_cli("trace", "--json", *args, env=env(text))
    assert r.returncode == 0, r.stderr
    assert our_instances(tracefs, r.pid) == []
    return json_lines(r.stdout), summary_of(r.stderr), r.stderr


def shape(e: dict[str, Any]) -> dict[str, Any]:
    return {k: e[k] for k in ("comm", "event", "probe", "fields")}


def test_getppid_exact_count_and_same_fields(tracefs: str, getppid_n: Path) -> None:
    text, ts, err = trace(tracefs, True, GETPPID, "--", str(getppid_n), "3000")
    binary, bs, _ = trace(tracefs, False, GETPPID, "--", str(getppid_n), "3000")
    assert len(text) == 3000 and len(binary) == 3000
    assert [shape(e) for e in text] == [shape(e) for e in binary]
    assert text[0]["fields"] == {"__syscall_nr": 110} and text[0]["comm"] == "getppid_n"
    assert len({e["pid"] for e in text}) == 1 and all(e["pid"] == e["tid"] for e in text)
    stamps = [e["ts"] for e in text]
    assert stamps == sorted(stamps) and all(t % 1000 == 0 for t in stamps)  # microseconds
    assert ts["events"] == bs["events"] == {GETPPID: 3000}
    assert ts["lost"] == 0 and ts["reader"] == "text" and bs["reader"] == "pages"
    warnings = [ln for ln in err.splitlines() if ln.startswith("probewatch: warning:")]
    assert len(warnings) == 1
    assert "text trace_pipe" in warnings[0] and f"{TEXT_ENV}=1 is set" in warnings[0]


def test_exec_filenames_same_as_binary(tracefs: str) -> None:
    cmd = ["--", "sh", "-c", "/bin/true; /bin/echo hi >/dev/null"]
    text, _, _ = trace(tracefs, True, "t:sched:sched_process_exec", *cmd)
    binary, _, _ = trace(tracefs, False, "t:sched:sched_process_exec", *cmd)
    files = [e["fields"]["filename"] for e in text]
    assert files == [e["fields"]["filename"] for e in binary]
    assert files[-2:] == ["/bin/true", "/bin/echo"] and len(files) == 3
    assert [e["comm"] for e in text] == [e["comm"] for e in binary]


def test_openat_dfd_is_at_fdcwd(tracefs: str) -> None:
    cmd = ["--", "sh", "-c", "cat /etc/hostname >/dev/null"]
    text, _, _ = trace(tracefs, True, "t:syscalls:sys_enter_openat", *cmd)
    binary, _, _ = trace(tracefs, False, "t:syscalls:sys_enter_openat", *cmd)
    assert text and any(e["fields"]["dfd"] == -100 for e in text)
    assert all(e["fields"]["filename"] is None for e in text)  # char *: not in the text

    def strip(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in e["fields"].items() if k != "filename"} for e in evs]

    assert strip(text) == strip(binary)


@pytest.mark.parametrize("text", [True, False], ids=["text", "pages"])
def test_losses_counted_per_cpu(tracefs: str, getppid_n: Path, text: bool) -> None:
    """A tiny --buffer-kb loses events; both readers (text trace_pipe and the binary
    page reader) account for every one of them. The page reader keeps up with more
    (its consumer decodes pages as columns): it gets a longer firehose to fall behind."""
    n = 50000 if text else 400000
    evs, s, _ = trace(tracefs, text, "--backend", "ftrace", "--buffer-kb", "8", GETPPID, "--",
                      str(getppid_n), str(n))
    assert s["reader"] == ("text" if text else "pages")
    assert s["lost"] > 0, s
    # the lost count may include the session's own exec/rename events (2 at most)
    assert n <= len(evs) + s["lost"] <= n + 2
    assert s["lost"] == sum(s["lost_per_cpu"].values())
    if text:
        # the [LOST N EVENTS] lines say what the per-CPU stats say
        assert s["page_missed"] == s["lost"]
        assert s["missed_per_cpu"] == {c: v for c, v in s["lost_per_cpu"].items() if v}


def test_count_mode(tracefs: str, getppid_n: Path) -> None:
    r = run_cli("trace", "--backend", "ftrace", "--count", "--json", GETPPID, "--",
                str(getppid_n), "20000", env=env(True))
    assert r.returncode == 0, r.stderr
    s = summary_of(r.stderr)
    assert s["reader"] == "text" and s["events"] == {GETPPID: 20000} and s["lost"] == 0


# -- how the fallback is chosen (in-process Sessions) ---------------------------------


def _run_session(tracefs: str, getppid_n: Path, n: int) -> tuple[Any, list[Any]]:
    import probewatch

    with probewatch.Session() as s:
        s.add(GETPPID)
        s.trace_command([str(getppid_n), str(n)])
        evs = list(s.events(duration=30))
        assert our_instances(tracefs, os.getpid())
    assert our_instances(tracefs, os.getpid()) == []
    return s, evs


def test_header_layout_failure_falls_back(
    tracefs: str, getppid_n: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import probewatch.session as session
    from probewatch.errors import DecodeError

    monkeypatch.delenv(TEXT_ENV, raising=False)

    def broken(page: str, event: str) -> Any:
        raise DecodeError("header_event has no 'type_len' bit width")

    monkeypatch.setattr(session, "parse_header_layout", broken)
    s, evs = _run_session(tracefs, getppid_n, 321)
    assert len(evs) == 321 and {e.event for e in evs} == {"syscalls:sys_enter_getppid"}
    assert s.reader == "text"
    [w] = [w for w in s.warnings if "trace_pipe" in w]
    assert "page layout cannot be parsed" in w and "type_len" in w
    assert s.summary().reader == "text"


def _deny_raw(monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def deny(path: Any, flags: int, *a: Any, **kw: Any) -> int:
        if str(path).endswith("trace_pipe_raw"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", deny)


def test_trace_pipe_raw_not_openable_falls_back(
    tracefs: str, getppid_n: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TEXT_ENV, raising=False)
    _deny_raw(monkeypatch)
    s, evs = _run_session(tracefs, getppid_n, 200)
    assert len(evs) == 200 and s.reader == "text"
    [w] = [w for w in s.warnings if "trace_pipe" in w]
    assert "trace_pipe_raw cannot be opened (Permission denied)" in w


def test_trace_pipe_raw_failing_only_at_start(
    tracefs: str, getppid_n: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TEXT_ENV, raising=False)
    monkeypatch.setattr(FtraceCollector, "raw_unavailable", lambda self: None)
    _deny_raw(monkeypatch)
    s, evs = _run_session(tracefs, getppid_n, 200)
    assert len(evs) == 200 and s.reader == "text"
    assert len([w for w in s.warnings if "trace_pipe" in w]) == 1


def test_binary_reader_by_default(tracefs: str, getppid_n: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TEXT_ENV, raising=False)
    s, evs = _run_session(tracefs, getppid_n, 100)
    assert len(evs) == 100 and s.reader == "pages" and s.text_reason is None
    assert not [w for w in s.warnings if "trace_pipe" in w]


# -- leave no trace behind ------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_cleans_up(tracefs: str, sig: int) -> None:
    p = subprocess.Popen([*CLI, "trace", "t:sched:sched_switch", "-d", "60"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env=env(True))
    try:
        wait_armed(tracefs, p)
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert "Traceback" not in err and "text trace_pipe" in err
    assert p.returncode == (0 if sig == signal.SIGINT else 143), (p.returncode, err)
    assert our_instances(tracefs, p.pid) == []


def _children_of(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        if int(st.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d))
    return out


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_sigkill_drainer_dies_with_parent(tracefs: str) -> None:
    p = subprocess.Popen([*CLI, "trace", "t:sched:sched_switch", "-d", "60"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(True))
    try:
        assert wait_for(lambda: our_instances(tracefs, p.pid) != [])
        assert wait_for(lambda: _children_of(p.pid) != [])
        drainer = _children_of(p.pid)[0]
    finally:
        p.kill()
        p.wait()
    assert wait_for(lambda: _gone(drainer), timeout=10)
    left = our_instances(tracefs, p.pid)
    assert left  # stale until swept, as on the binary path
    r = run_cli("cleanup")
    assert r.returncode == 0, r.stderr
    assert our_instances(tracefs, p.pid) == []
