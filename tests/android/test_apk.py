"""Libraries inside APKs, probed as Android runs them: the APK file at the entry's data
offset plus the symbol's offset (``u:APK!/lib/ABI/libfoo.so:SYMBOL``), listed with
``list symbols`` and found through ``-p PID`` (maps show the APK with an offset).

The APK is built here (tests/android/apkbuild.py); pw_apk_loader maps the library's
code from it the way Android's linker does. Runs on this machine's architecture.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from probewatch.elf.apk import apk_member
from probewatch.sources.spec import parse_spec
from probewatch.sources.uprobe import resolve_uprobe
from probewatch.sources.usdt import resolve_usdt

from .apkbuild import LIB, build_apk, compile_lib, compile_loader, loader_args

ABI = {"x86_64": "x86_64", "aarch64": "arm64-v8a"}.get(platform.machine(), platform.machine())
TRACEFS = "/sys/kernel/tracing"


@pytest.fixture(scope="module")
def apk(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cc = shutil.which("gcc")
    if cc is None:
        pytest.fail("gcc is needed to build the APK's library (apt-get install gcc)")
    d = tmp_path_factory.mktemp("apk")
    so = d / LIB
    from targets.build import have_sdt

    if not have_sdt():
        pytest.fail("<sys/sdt.h> missing: apt-get install systemtap-sdt-dev")
    lib = compile_lib(cc, so, "-DPW_HAVE_SDT")
    app = d / "data" / "app" / "org.probewatch.test-1" / "base.apk"
    app.parent.mkdir(parents=True)
    offsets = build_apk(app, {ABI: lib, "armeabi-v7a": lib})
    entry = f"lib/{ABI}/{LIB}"
    la = loader_args(so, offsets[entry])
    return {"apk": app, "entry": entry, "data_offset": offsets[entry], "la": la,
            "loader": compile_loader(cc, d / "pw_apk_loader"), "so": so}


def _cli(*args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probewatch", *args], capture_output=True,
                          text=True, timeout=timeout, **kw)


def _loader_argv(a: dict[str, Any], n: int, *extra: str) -> list[str]:
    la = a["la"]
    return [str(a["loader"]), str(a["apk"]), str(la.map_offset), str(la.map_len),
            str(la.func_delta), str(n), *extra]


def _want(n: int) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for k in range(n):
        b = -k * 1000000007
        out.append(("entry", {"a": k, "b": b, "s": f"apk-{k}"}))
        out.append(("ret", {"r": k + b + len(f"apk-{k}")}))
    return out


def test_entry_is_stored_and_page_aligned(apk: dict[str, Any]) -> None:
    m = apk_member(f"{apk['apk']}!/{apk['entry']}")
    assert (m.data_offset, m.page_aligned, m.size) == (
        apk["data_offset"], True, apk["so"].stat().st_size)
    with open(apk["apk"], "rb") as f:
        f.seek(m.data_offset)
        assert f.read(m.size) == apk["so"].read_bytes()


def test_resolve_uprobe_points_at_the_apk(apk: dict[str, Any]) -> None:
    target = f"{apk['apk']}!/{apk['entry']}"
    [p] = resolve_uprobe(parse_spec(f"u:{target}:pw_apk_add a=arg0:s32"), group="pwtest")
    off = apk["data_offset"] + apk["la"].elf_offset
    assert (p.target_path, p.offset, p.elf_path) == (str(apk["apk"]), off, target)
    assert f" {apk['apk']}:0x{off:016x} " in p.definition


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["ftrace", "bpf"])
def test_trace_library_inside_apk(apk: dict[str, Any], backend: str, tracefs: str) -> None:
    if backend == "bpf":
        from probewatch.bpf_session import bpf_available

        ok, why = bpf_available()
        if not ok:
            pytest.skip(f"BPF backend unavailable: {why}")
    target = f"{apk['apk']}!/{apk['entry']}"
    entry = f"u:{target}:pw_apk_add a=arg0:s32 b=arg1:s64 s=arg2:string"
    ret = f"ur:{target}:pw_apk_add r=retval:s64"
    r = _cli("trace", "--json", "--backend", backend, entry, ret, "--", *_loader_argv(apk, 3))
    assert r.returncode == 0, r.stderr
    evs = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    got = [("entry" if e["probe"] == entry else "ret",
            {k: v for k, v in e["fields"].items() if not k.startswith("__")}) for e in evs]
    assert got == _want(3)
    assert "2 -2000000007" in r.stdout  # the loader's own result for k=2


@pytest.mark.integration
def test_usdt_in_library_inside_apk(apk: dict[str, Any], tracefs: str) -> None:
    target = f"{apk['apk']}!/{apk['entry']}"
    spec = f"U:{target}:pwapk:add k=arg0:s32 s=arg2:string"
    [p] = resolve_usdt(parse_spec(spec), group="pwtest")
    assert p.target_path == str(apk["apk"]) and p.offset > apk["data_offset"]
    r = _cli("trace", "--json", spec, "--", *_loader_argv(apk, 2))
    assert r.returncode == 0, r.stderr
    evs = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert [(e["fields"]["k"], e["fields"]["s"]) for e in evs] == [(0, "apk-0"), (1, "apk-1")]


@pytest.mark.integration
def test_list_symbols_and_pid_maps(apk: dict[str, Any], tracefs: str) -> None:
    target = f"{apk['apk']}!/{apk['entry']}"
    r = _cli("list", "symbols", target, "pw_apk_*", "--json")
    assert r.returncode == 0, r.stderr
    [row] = json.loads(r.stdout)
    off = apk["data_offset"] + apk["la"].elf_offset
    assert (row["name"], row["path"], row["offset"], row["elf_offset"]) == (
        "pw_apk_add", target, off, apk["la"].elf_offset)
    p = subprocess.Popen(_loader_argv(apk, 2, "wait"), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline().strip() == f"ready {p.pid}"
        maps = Path(f"/proc/{p.pid}/maps").read_text()
        assert f"{apk['la'].map_offset:08x}" in maps and str(apk["apk"]) in maps
        # the library is known by its short name: found in the APK the process maps
        r = _cli("list", "symbols", "-p", str(p.pid), "libpwapk", "pw_apk_add", "--json")
        assert r.returncode == 0, r.stderr
        [row] = json.loads(r.stdout)
        assert (row["path"], row["offset"]) == (
            f"/proc/{p.pid}/root{apk['apk']}!/{apk['entry']}", off)
        spec = "u:libpwapk:pw_apk_add a=arg0:s32 s=arg2:string"
        t = subprocess.Popen([sys.executable, "-m", "probewatch", "trace", "--json", "-n", "2",
                              "-d", "20", "-p", str(p.pid), spec],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 15
            while str(apk["apk"]) not in Path(f"{TRACEFS}/uprobe_events").read_text():
                assert time.monotonic() < deadline and t.poll() is None, "probe never armed"
                time.sleep(0.05)
            time.sleep(0.3)  # enabled after the definition is written
            p.stdin.write("go\n")
            p.stdin.flush()
            out, err = t.communicate(timeout=30)
        finally:
            if t.poll() is None:
                t.kill()
                t.wait()
        assert t.returncode == 0, err
        evs = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
        assert [(e["pid"], e["fields"]["a"], e["fields"]["s"]) for e in evs] == [
            (p.pid, 0, "apk-0"), (p.pid, 1, "apk-1")]
    finally:
        p.kill()
        p.wait()
    assert os.path.exists(apk["apk"])
