"""probewatch watch attacked from the monitored host, with real processes.

- hostile names: a comm set with prctl(PR_SET_NAME) to ESC/newline/non-UTF-8 bytes, a
  program whose file name forges an alert line, argv with newlines and escapes, a cwd
  nested 40 directories of 200 bytes deep (8 KiB, past the kernel exec record's 4 KiB):
  alerts still fire, the text lines are escaped (one line per alert, no ESC), the JSON
  parses, and the deep cwd is the real one (followed through chdir), never a
  truncated tail that reads as an absolute path;
- an exec storm with the longest argv/env an exec record holds, into a 4 KiB ring
  buffer: the kernel's drops are said on stderr while they happen, not only at the end;
- stdout not read (a stuck log shipper): the drops are still said on stderr;
- a full disk under -o: watching goes on (alerts printed), exit status 1 at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import build_c, missing  # tests/conftest.py

from .helpers import CLI, run_cli, summary_of

pytestmark = pytest.mark.integration

SHADOW = str(Path(__file__).resolve().parent.parent / "watch" / "shadow.yml")
SHADOW_ID = "0b7e5c1a-7d0e-4f7b-9a51-5e0c0a7a0001"
FORGED = b"x\n2026-01-01 00:00:00.000 CRITICAL forged\x1b[2J"

HOSTILE = r"""
import ctypes, os, sys
d = sys.argv[1].encode()
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(15, b"\x1b[31m\nsshd\xff", 0, 0, 0)   # PR_SET_NAME
prog = d + b"/" + FORGED
with open("/bin/cat", "rb") as src, open(prog, "wb") as dst:
    dst.write(src.read())
os.chmod(prog, 0o755)
pid = os.fork()
if pid == 0:
    os.execv(prog, [b"\x1b]0;title\x07cat", b"/etc/shadow", b"arg\nnext\xff"])
os.waitpid(pid, 0)
os.chdir(d)
for _ in range(40):
    os.mkdir(b"y" * 200)
    os.chdir(b"y" * 200)
deep = d + b"/" + b"/".join([b"y" * 200] * 40)
pid = os.fork()
if pid == 0:
    os.execv(b"/bin/cat", [b"cat", b"/etc/shadow"])
os.waitpid(pid, 0)
os.chdir("/")
print(deep.decode())
""".replace("FORGED", repr(FORGED))

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [A-Z]+ ")


@pytest.fixture(scope="module")
def storm() -> Path:
    return build_c("exec_storm")


def test_hostile_names_and_deep_cwd(bpf: None, tmp_path: Path) -> None:
    cap = tmp_path / "h.db"
    r = run_cli("watch", "--json", "--window", "0", "--level", "informational",
                "-o", str(cap), "--", sys.executable, "-c", HOSTILE, str(tmp_path))
    assert r.returncode == 0, r.stderr
    alerts = [json.loads(x) for x in r.stdout.splitlines() if x.startswith('{"type"')]
    deep = [x for x in r.stdout.splitlines() if x.startswith(str(tmp_path))]
    assert len(deep) == 1 and len(deep[0]) > 8000
    shadow = [a for a in alerts if "/etc/shadow" in json.dumps(a["matched"])]
    # python's own open? no: the renamed copy of cat and the deep cat
    images = sorted(str(a["process"]["image"]) for a in shadow)
    assert len(shadow) == 2, images
    forged = next(a for a in shadow if a["process"]["image"] != "/bin/cat")
    raw = forged["process"]["image"]
    assert isinstance(raw, str) and raw.encode() == bytes(tmp_path) + b"/" + FORGED
    cat = next(a for a in shadow if a["process"]["image"] == "/bin/cat")
    assert cat["process"]["cwd"] == deep[0]  # the whole path, not its last 4 KiB
    renamed = [a for a in alerts if "prctl" in json.dumps(a["matched"])]
    assert renamed, [a["rule"]["title"] for a in alerts]
    name = renamed[0]["matched"]["NewName"]
    assert name == {"b64": "G1szMW0Kc3NoZP8="}  # b"\x1b[31m\nsshd\xff", exact
    # the same alerts as text lines (report --alerts renders them as watch does)
    t = run_cli("report", str(cap), "--alerts")
    assert t.returncode == 0, t.stderr
    lines = t.stdout.splitlines()
    assert len(lines) == len(alerts)
    assert all(LINE.match(x) for x in lines), lines
    assert "\x1b" not in t.stdout and "\x07" not in t.stdout
    assert sum("\\nsshd\\xff" in x for x in lines) >= 1
    assert sum("x\\n2026-01-01 00:00:00.000 CRITICAL forged\\x1b[2J" in x
               for x in lines) >= 1


def _warnings(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(x)["warning"] for x in stderr.splitlines()
            if x.startswith('{"warning"')]


def test_exec_storm_drops_are_said_while_they_happen(bpf: None, storm: Path) -> None:
    r = run_cli("watch", "--json", "--no-default-rules", "--rules", SHADOW,
                "--ringbuf-kb", "4", "--", str(storm), "7", "big")
    assert r.returncode == 0, r.stderr
    warns = _warnings(r.stderr)
    st = summary_of(r.stderr)
    assert warns, r.stderr[-2000:]
    assert all(w["lost"] > 0 for w in warns)
    assert warns[-1]["lost_total"] == sum(w["lost"] for w in warns)
    assert 0 < warns[-1]["lost_total"] <= st["lost"]
    # the warnings came before the end: the first one within the first ~6 s
    assert warns[0]["seconds"] <= 6.5


def test_unread_stdout_drops_are_said(bpf: None, storm: Path, tmp_path: Path) -> None:
    """stdout a pipe nobody reads: watch blocks on it, the ring buffer overflows, and
    stderr says so while stdout is stuck."""
    err = tmp_path / "err"
    script = (f"{storm} 6 big & for i in $(seq 400); do cat /etc/shadow; done >/dev/null; "
              "wait")
    with open(err, "w") as ef, subprocess.Popen(
            [*CLI, "watch", "--json", "--window", "0", "--no-default-rules", "--rules",
             SHADOW, "--ringbuf-kb", "64", "--", "sh", "-c", script],
            stdout=subprocess.PIPE, stderr=ef) as p:
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not _warnings(err.read_text()):
                time.sleep(0.2)
            said = _warnings(err.read_text())
            assert p.poll() is None  # still stuck on stdout
            out = p.stdout.read()  # type: ignore[union-attr]
            rc = p.wait(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
    assert said and said[0]["lost"] > 0, err.read_text()[-2000:]
    assert rc == 0
    n = sum(1 for x in out.splitlines() if x.startswith(b'{"type"'))
    st = summary_of(err.read_text())
    assert st["lost"] >= said[0]["lost_total"] > 0
    # the cats whose events were dropped while stdout was stuck have no alert; the
    # loss says so (the first ones filled the pipe)
    assert 1 <= n < 400 and st["alerts"] == n


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if m.returncode != 0:
        missing(f"cannot mount a tmpfs (needs root): {m.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)]).returncode != 0:
            subprocess.run(["umount", "-l", str(where)])


def test_full_disk_does_not_blind_watch(bpf: None, storm: Path, tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "small", "256k") as small:
        r = run_cli("watch", "--no-default-rules", "--rules", SHADOW, "-o",
                    str(small / "w.db"), "--", "sh", "-c",
                    f"{storm} 2 big >/dev/null; sleep 0.5; cat /etc/shadow >/dev/null")
    assert r.returncode == 1, r.stderr
    assert "watching goes on without -o" in r.stderr
    assert re.search(r"probewatch: error: .*disk full", r.stderr), r.stderr
    alerts = [x for x in r.stdout.splitlines() if LINE.match(x)]
    assert len(alerts) == 1 and "TargetFilename=/etc/shadow" in alerts[0], r.stdout
    assert "Traceback" not in r.stderr
    assert os.path.exists("/dev/null") and os.path.exists("/dev/full")


PRELOAD_RULE = str(Path(__file__).resolve().parents[2] / "src" / "probewatch" / "detect"
                   / "rules" / "ld_preload_exec.yml")
BIG_ENV = r"""
import resource, subprocess, sys
# the kernel then takes up to 6 MiB of argv + environment
resource.setrlimit(resource.RLIMIT_STACK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
big = {f"V{i}": "x" * 100000 for i in range(40)}            # 4 MB of long strings
many = {f"V{i}": "" for i in range(200000)}                 # 200,000 strings
subprocess.run(["/bin/true"], env={**big, "LD_PRELOAD": "/nonexistent/big.so"})
subprocess.run(["/bin/sleep", "0.5"], env={**many, "LD_PRELOAD": "/nonexistent/many.so"})
"""


def test_ld_preload_behind_a_huge_environment(bpf: None) -> None:
    """LD_PRELOAD after 4 MB of other variables (the kernel's walk went 2 MiB before),
    and after 200,000 variables (more than the kernel loop walks: flagged truncated,
    the rest read from /proc/PID/environ while the program runs): both alert."""
    r = run_cli("watch", "--json", "--no-default-rules", "--rules", PRELOAD_RULE, "--",
                sys.executable, "-c", BIG_ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    alerts = [json.loads(x) for x in r.stdout.splitlines() if x.startswith('{"type"')]
    got = sorted(a["matched"].get("LD_PRELOAD", "") for a in alerts)
    assert got == ["/nonexistent/big.so", "/nonexistent/many.so"], r.stdout[-3000:]


def test_tls_rescan_work_is_bounded(bpf: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes with 60,000 mappings each (~60 ms to read /proc/PID/maps): watch's
    rescan for newly mapped TLS libraries reads each once, skips it while its start
    time and size stay the same, scans again one that mapped more, and stops at its
    time budget (going on from there next time) — the event loop is never held for
    seconds (dozens of such processes used to hold it ~60 ms each, every 5 s)."""
    import probewatch.ssl_session as ssl_session
    from probewatch.detect.pipeline import live_events

    many = build_c("many_maps")
    heavy = [subprocess.Popen([str(many), "60000", "60"]) for _ in range(3)]
    grower = subprocess.Popen([sys.executable, "-c", "import mmap, sys; sys.stdin.readline();"
                               " m = mmap.mmap(-1, 1 << 24); print('ok', flush=True);"
                               " sys.stdin.readline()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        with live_events() as src:
            src.start()
            u = src.user
            assert u is not None
            scanned: list[int] = []
            real = u._scan_pid

            def record(pid: int, *a: Any, **kw: Any) -> bool:
                scanned.append(pid)
                return bool(real(pid, *a, **kw))

            u._scan_pid = record
            for _ in range(20):  # a full pass, however the budget splits it
                u.rescan()
                if u._scan_next == 0:
                    break
            ids = {p.pid for p in heavy} | {grower.pid}
            assert ids <= set(scanned)
            scanned.clear()
            t = time.monotonic()
            u.rescan()
            took = time.monotonic() - t
            assert not ids & set(scanned) and took < 0.15, (took, scanned)
            assert grower.stdin is not None and grower.stdout is not None
            grower.stdin.write("go\n")
            grower.stdin.flush()
            assert grower.stdout.readline().strip() == "ok"  # 16 MiB more mapped
            u.rescan()
            assert grower.pid in scanned and not {p.pid for p in heavy} & set(scanned)
            # the budget: with none left, one process per call, the next from there
            monkeypatch.setattr(ssl_session, "RESCAN_BUDGET_S", 0.0)
            u._scanned.clear()
            scanned.clear()
            u.rescan()
            assert len(scanned) == 1 and u._scan_next > scanned[0]
    finally:
        for p in [*heavy, grower]:
            p.kill()
            p.wait()
