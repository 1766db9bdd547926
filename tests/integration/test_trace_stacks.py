"""``probewatch trace --stack user|kernel|both``: stacks in JSON (fields.stack) and in
text (one frame a line under the event, as perf script), on perf, bpf and ftrace
(kernel stacks only, through the instance's stacktrace option)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import build_c  # tests/conftest.py (pytest puts tests/ on sys.path)
from integration.helpers import json_lines, run_cli, summary_of

pytestmark = pytest.mark.integration

#: a frame line of the text output: tab, address, symbol+0xoff or [unknown], (module)
FRAME = re.compile(r"^\t *([0-9a-f]+) (\S+) \((.*)\)$")


@pytest.fixture(scope="module")
def target(tracefs: str) -> Path:
    # -O0 keeps the frame pointers the kernel's user unwinder walks
    return build_c("stack_target", "-fno-omit-frame-pointer", "-O0")


def _names(frames: list[dict]) -> list[str | None]:
    return [f["symbol"] for f in frames]


def _text_stacks(out: str) -> list[tuple[str, list[tuple[int, str, str]]]]:
    """(event line, [(addr, symbol+off, module)]) per event of the text output."""
    evs: list[tuple[str, list[tuple[int, str, str]]]] = []
    for line in out.splitlines()[1:]:  # the header first
        m = FRAME.match(line)
        if m:
            evs[-1][1].append((int(m.group(1), 16), m.group(2), m.group(3)))
        else:
            evs.append((line, []))
    return evs


@pytest.mark.parametrize("backend", ["auto", "perf", "bpf"])
def test_user_stack_json(target: Path, backend: str) -> None:
    if backend == "bpf":
        from conftest import require_bpf

        require_bpf()
    r = run_cli("trace", "--json", "--backend", backend, "--stack", "user",
                f"u:{target}:st_f2", "x=arg0:s32", "--", str(target), "3")
    assert r.returncode == 0, r.stderr
    evs = json_lines(r.stdout)
    assert [e["fields"]["x"] for e in evs] == [1, 2, 3]
    assert summary_of(r.stderr)["backend"] == ("perf" if backend == "auto" else backend)
    for e in evs:
        st = e["fields"]["stack"]
        assert _names(st)[:3] == ["st_f2", "st_f1", "main"], st
        assert [f["module"] for f in st[:3]] == [str(target)] * 3
        assert st[0]["offset"] == 0 and st[1]["offset"] > 0 and st[2]["offset"] > 0
        assert st[0]["addr"] == e["fields"]["__probe_ip"]
        assert all(f["addr"] < 1 << 47 for f in st)  # user frames only


@pytest.mark.parametrize("backend", ["perf", "bpf"])
def test_user_stack_text_like_perf_script(target: Path, backend: str) -> None:
    if backend == "bpf":
        from conftest import require_bpf

        require_bpf()
    r = run_cli("trace", "--backend", backend, "--stack", "user", f"u:{target}:st_f2",
                "--", str(target), "2")
    assert r.returncode == 0, r.stderr
    evs = _text_stacks(r.stdout)
    assert len(evs) == 2, r.stdout
    for line, frames in evs:
        assert "st_f2" in line and "__probe_ip=0x" in line and "stack=" not in line
        assert [f[1].split("+")[0] for f in frames[:3]] == ["st_f2", "st_f1", "main"]
        assert frames[0][1] == "st_f2+0x0"
        assert {f[2] for f in frames[:3]} == {str(target)}
        ip = int(line.split("__probe_ip=0x")[1].split()[0], 16)
        assert frames[0][0] == ip


def test_kernel_stack_of_syscall_on_ftrace(target: Path) -> None:
    r = run_cli("trace", "--json", "--backend", "ftrace", "--stack", "kernel",
                "t:syscalls:sys_enter_getppid", "--", str(target), "1")
    assert r.returncode == 0, r.stderr
    evs = json_lines(r.stdout)
    assert len(evs) == 1  # the stacktrace records are not events of their own
    st = evs[0]["fields"]["stack"]
    names = _names(st)
    assert all(f["module"] == "kernel" and f["addr"] >= 1 << 63 for f in st)
    # the syscall's entry path, innermost first
    assert "do_syscall_64" in names, names
    assert any(n and n.startswith("entry_SYSCALL_64") for n in names), names
    assert names.index("do_syscall_64") < max(
        i for i, n in enumerate(names) if n and n.startswith("entry_SYSCALL_64"))
    assert summary_of(r.stderr)["events"] == {"t:syscalls:sys_enter_getppid": 1}


def test_kernel_stack_text_auto_picks_ftrace_for_syscalls(target: Path) -> None:
    # perf samples a syscall tracepoint with the user registers (no kernel callchain):
    # auto takes ftrace's stacktrace for them
    r = run_cli("trace", "--stack", "kernel", "t:syscalls:sys_enter_getppid", "--",
                str(target), "1")
    assert r.returncode == 0, r.stderr
    evs = _text_stacks(r.stdout)
    assert len(evs) == 1
    syms = [f[1].split("+")[0] for f in evs[0][1]]
    assert "do_syscall_64" in syms and all(f[2] == "kernel" for f in evs[0][1])


def test_kernel_stack_perf_exec(target: Path) -> None:
    r = run_cli("trace", "--json", "--backend", "perf", "--stack", "both",
                "t:sched:sched_process_exec", "--", str(target), "1")
    assert r.returncode == 0, r.stderr
    (ev,) = json_lines(r.stdout)
    names = _names(ev["fields"]["stack"])
    assert "bprm_execve" in names and "do_syscall_64" in names


def test_user_stack_on_ftrace_is_refused(target: Path, tracefs: str) -> None:
    import os

    before = set(os.listdir(os.path.join(tracefs, "instances")))
    for kind in ("user", "both"):
        r = run_cli("trace", "--backend", "ftrace", "--stack", kind,
                    "t:syscalls:sys_enter_getppid", "--", str(target), "1")
        assert r.returncode != 0
        assert "Traceback" not in r.stderr
        assert (f"the ftrace backend records kernel stacks only (--stack kernel, through "
                f"the instance's stacktrace option), not {kind} stacks: use --backend perf"
                in r.stderr), r.stderr
        assert r.stdout == ""
    assert set(os.listdir(os.path.join(tracefs, "instances"))) <= before


def test_stack_with_count_is_refused() -> None:
    r = run_cli("trace", "--count", "--stack", "user", "t:syscalls:sys_enter_getppid",
                "-d", "0.1")
    assert r.returncode != 0 and "--stack shows each event's stack and --count" in r.stderr


def test_kernel_and_user_stack_of_syscall_on_bpf(target: Path) -> None:
    from conftest import require_bpf

    require_bpf()
    r = run_cli("trace", "--json", "--backend", "bpf", "--stack", "both",
                "t:syscalls:sys_enter_getppid", "--", str(target), "1")
    assert r.returncode == 0, r.stderr
    (ev,) = json_lines(r.stdout)
    st = ev["fields"]["stack"]
    kern = [f for f in st if f["module"] == "kernel"]
    user = st[len(kern):]
    assert st[: len(kern)] == kern and kern and user  # kernel frames first, then user
    names = _names(kern)
    assert "do_syscall_64" in names, names
    assert any(n and n.startswith("entry_SYSCALL_64") for n in names), names
    assert all(f["addr"] < 1 << 47 for f in user)
    # the syscall's libc wrapper, named from its build-id after the target exited
    assert user[0]["symbol"] == "syscall" and user[0]["module"].endswith("libc.so.6")


def test_no_stack_no_stack_field(target: Path) -> None:
    from conftest import require_bpf

    require_bpf()
    r = run_cli("trace", "--json", "--backend", "bpf", f"u:{target}:st_f2", "--",
                str(target), "1")
    assert r.returncode == 0, r.stderr
    (ev,) = json_lines(r.stdout)
    assert "stack" not in ev["fields"]


def test_perfetto_export_of_real_stacks(target: Path) -> None:
    import io

    from probewatch.perf_trace import PerfTraceSession
    from probewatch.sinks.perfetto import PerfettoWriter, check_trace_events

    buf = io.StringIO()
    w = PerfettoWriter(buf)
    with PerfTraceSession(stack="user") as s:
        s.add(f"u:{target}:st_f2")
        s.trace_command([str(target), "2"])
        for ev in s.events():
            w.write(ev)
    w.close()
    doc = json.loads(buf.getvalue())
    check_trace_events(doc)
    insts = [e for e in doc["traceEvents"] if e["ph"] == "i"]
    assert len(insts) == 2
    frames = doc["stackFrames"]
    for e in insts:
        assert e["args"]["stack"][0] == f"st_f2+0x0 ({target})"
        assert [x.split("+")[0] for x in e["args"]["stack"][1:3]] == ["st_f1", "main"]
        chain, fid = [], e["sf"]
        while fid is not None:
            chain.append(frames[fid]["name"].split("+")[0])
            fid = frames[fid].get("parent")
        assert chain[:3] == ["st_f2", "st_f1", "main"]
    assert insts[0]["sf"] == insts[1]["sf"]  # the same stack: the same node
