"""Custom events (probewatch.mark) on the live kernel: marks from a Python and a C
program interleave in the right order with the syscall events of the same thread;
marks of this process go to its own session's instance; a recorded run exports marks
as Perfetto slices and instants."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import build_c  # tests/conftest.py (pytest puts tests/ on sys.path)

from .helpers import json_lines, run_cli

pytestmark = pytest.mark.integration

PY_CHILD = """
import os, probewatch
for i in range(3):
    probewatch.mark("pymark", i=i, tag="x y")
    os.getppid()
with probewatch.span("pyspan", n=1):
    os.getppid()
"""


def _need_copy(tracefs: str) -> None:
    if not os.path.exists(os.path.join(tracefs, "options", "copy_trace_marker")):
        pytest.skip("kernel without the copy_trace_marker option (Linux 6.17+): marks "
                    "of other processes cannot reach a private instance")


def _seq(evs: list[dict[str, Any]], pid: int) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for e in evs:
        if e.get("pid") != pid:
            continue
        assert e["tid"] == pid
        f = e["fields"]
        if e["event"] == "ftrace:print":
            out.append((f["phase"], f["mark"], f.get("i")))
        elif e["event"] == "syscalls:sys_enter_getppid":
            out.append(("getppid",))
    return out


def test_python_and_c_marks_interleave_with_syscalls(tracefs: str) -> None:
    _need_copy(tracefs)
    cmarks = build_c("marks")
    r = run_cli("trace", "marker", "t:syscalls:sys_enter_getppid", "--json", "--",
                "sh", "-c", f'{sys.executable} -c "$PYCHILD" && exec {cmarks} 3',
                env={**os.environ, "PYCHILD": PY_CHILD}, timeout=90)
    assert r.returncode == 0, r.stderr
    evs = [e for e in json_lines(r.stdout) if "event" in e]
    pids = []
    for e in evs:
        if e["event"] == "ftrace:print" and e["fields"]["mark"] in ("pymark", "cspan") \
                and e["pid"] not in pids:
            pids.append(e["pid"])
    assert len(pids) == 2, evs
    py, c = pids
    got = _seq(evs, py)
    first = got.index(("i", "pymark", 0))
    assert got[first:] == [
        ("i", "pymark", 0), ("getppid",), ("i", "pymark", 1), ("getppid",),
        ("i", "pymark", 2), ("getppid",), ("B", "pyspan", None), ("getppid",),
        ("E", "pyspan", None)]
    one = next(e for e in evs if e["pid"] == py and e["event"] == "ftrace:print")
    assert one["fields"] == {"mark": "pymark", "phase": "i", "i": 0, "tag": "x y",
                             "buf": 'pymark {"i":0,"tag":"x y"}'}
    assert one["probe"] == "marker"
    got = _seq(evs, c)  # sh (the same pid before exec) calls getppid itself
    assert got[got.index(("B", "cspan", None)):] == [
        ("B", "cspan", None), ("i", "cmark", 0), ("getppid",), ("i", "cmark", 1),
        ("getppid",), ("i", "cmark", 2), ("getppid",), ("E", "cspan", None)]
    ts = [e["ts"] for e in evs]
    assert ts == sorted(ts)


def test_marks_of_this_process_go_to_its_session(tracefs: str) -> None:
    import probewatch
    from probewatch import marks
    from probewatch.session import Session

    with Session() as s:
        s.add("marker")
        s.start()
        inst = s._collector.instance.path
        assert marks._active == [inst]
        probewatch.mark("inproc", n=5)
        probewatch.mark_raw(b"\x00\x01\xff", id=9)
        got = [ev for ev in s.events(duration=0.5) if ev.pid == os.getpid()]
    assert [(e.event, e.fields.get("mark"), e.fields.get("n")) for e in got] == [
        ("ftrace:print", "inproc", 5), ("ftrace:raw_data", None, None)]
    assert got[1].fields["id"] == 9
    assert marks._active == [] and not os.path.exists(inst)
    with pytest.raises(ValueError, match="without spaces"):
        probewatch.mark("two words")


def test_filter_on_marks_is_refused(tracefs: str) -> None:
    r = run_cli("trace", "marker", "--filter", "common_pid == 1", "-d", "0.1", timeout=60)
    assert r.returncode == 1
    assert "--filter does not apply to 'marker'" in r.stderr


def test_recorded_marks_export_as_perfetto_slices(tracefs: str, tmp_path: Path) -> None:
    cmarks = build_c("marks")
    cap = tmp_path / "m.db"
    r = run_cli("record", "marker", "-o", str(cap), "--", str(cmarks), "2", timeout=90)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "m.json"
    r = run_cli("export", str(cap), "--perfetto", str(out), timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    mine = [e for e in doc["traceEvents"] if e["ph"] != "M" and
            e["name"] in ("cspan", "cmark")]
    assert [(e["name"], e["ph"]) for e in mine] == [("cmark", "i"), ("cmark", "i"),
                                                    ("cspan", "X")]
    assert [e["args"]["i"] for e in mine[:2]] == [0, 1]
    span = mine[2]
    assert span["ts"] <= mine[0]["ts"] and span["ts"] + span["dur"] >= mine[1]["ts"]


def test_bpf_backend_refuses_marks(tracefs: str) -> None:
    r = run_cli("trace", "--backend", "bpf", "t:ftrace:print", "-d", "0.1", timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == ("probewatch: error: 't:ftrace:print': marks (trace_marker "
                                "writes) reach only a tracefs instance: use the ftrace "
                                "backend, not bpf")
