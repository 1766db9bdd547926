"""The whole fleet for real: nats-server, `probewatch fleet init`, `probewatch collect
--detect --ui`, two agents on this host (`watch --export` with its own rules, and
`record --watch --export` whose events the collector's rules judge), and the console
in Debian's chromium driven by Playwright: each attack's alert is in the page within
2 s of the attack, with its process tree."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .natsd import Natsd, free_port

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"


def pw(*args: str, **kw: object) -> subprocess.Popen[str]:
    env = dict(os.environ)
    return subprocess.Popen([sys.executable, "-m", "probewatch", *args], text=True,
                            env=env, **kw)  # type: ignore[call-overload]


def wait_line(path: Path, needle: str, proc: subprocess.Popen[str], timeout: float) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = path.read_text() if path.exists() else ""
        if needle in text:
            return text
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not seen: {path.read_text() if path.exists() else ''}")


def stop(p: subprocess.Popen[str]) -> int:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        return p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait()


def attack(tmp: Path, name: str) -> list[str]:
    """Reading /etc/shadow from a shell (shadow_read): the time it happens goes to a
    file first."""
    t0 = tmp / f"{name}.t0"
    return ["sh", "-c", f"sleep 1.5; date +%s.%N > {t0}; cat /etc/shadow > /dev/null; "
            "sleep 0.5"]


def test_attack_alert_reaches_the_browser_within_2s(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "chromium is not installed (apt chromium)"
    nd = Natsd(tmp_path).start()
    procs: list[subprocess.Popen[str]] = []
    try:
        r = subprocess.run([sys.executable, "-m", "probewatch", "fleet", "init", nd.url],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert '"replicas": 1' in r.stdout and '"probewatch.>"' in r.stdout
        port = free_port()
        col_err = tmp_path / "collect.err"
        col_out = tmp_path / "collect.out"
        col = pw("collect", "--from", nd.url, "-o", str(tmp_path / "fleet.db"), "--detect",
                 "--ui", f"127.0.0.1:{port}", stdout=open(col_out, "w"),
                 stderr=open(col_err, "w"))
        procs.append(col)
        wait_line(col_err, "collecting from", col, 60)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.getElementById('status').textContent == 'live'",
                                   timeout=10_000)
            errs = {n: tmp_path / f"{n}.err" for n in ("agent1", "agent2")}
            a1 = pw("watch", "--export", nd.url, "--host", "agent1", "--spill-dir",
                    str(tmp_path / "sp1"), "--", *attack(tmp_path, "agent1"),
                    stdout=subprocess.DEVNULL, stderr=open(errs["agent1"], "w"))
            procs.append(a1)
            a2 = pw("record", "--watch", "--export", nd.url, "--host", "agent2",
                    "--spill-dir", str(tmp_path / "sp2"), "--", *attack(tmp_path, "agent2"),
                    stdout=subprocess.DEVNULL, stderr=open(errs["agent2"], "w"))
            procs.append(a2)
            seen: dict[str, float] = {}
            end = time.monotonic() + 60
            while len(seen) < 2 and time.monotonic() < end:
                for host in ("agent1", "agent2"):
                    if host in seen:
                        continue
                    row = page.query_selector(
                        f"#alerts tr.alert[data-host='{host}'][data-rule]")
                    if row is not None and "Password Hash" in (row.text_content() or ""):
                        seen[host] = time.time()
                page.wait_for_timeout(20)
            for host, err in errs.items():
                assert host in seen, (host, err.read_text(), col_err.read_text())
            for host in seen:
                t0 = float((tmp_path / f"{host}.t0").read_text())
                assert 0 < seen[host] - t0 <= 2.0, (host, seen[host] - t0)
            sources = {h: page.get_attribute(f"#alerts tr[data-host='{h}']", "data-id")
                       for h in seen}
            assert ":agent:" in str(sources["agent1"]) and ":central:" in str(
                sources["agent2"]), sources
            # the process tree around agent2's (central) alert
            page.click("#alerts tr[data-host='agent2']")
            page.wait_for_function(
                "document.getElementById('tree').textContent.includes('<== alert')",
                timeout=5000)
            tree = page.text_content("#tree") or ""
            assert "cat(" in tree and "sh(" in tree, tree
            # per-host status: both hosts, events counted
            page.wait_for_function("document.querySelectorAll('#hosts tbody tr').length >= 2",
                                   timeout=5000)
            cells = page.eval_on_selector(
                "#hosts tr[data-host='agent2']",
                "tr => Array.from(tr.children).map(td => td.textContent)")
            assert cells[0] == "agent2" and int(cells[3]) > 0, cells
            browser.close()
        for a in (a1, a2):
            assert a.wait(30) == 0
        assert "acknowledged as host agent1" in errs["agent1"].read_text()
    finally:
        for pr in reversed(procs):
            stop(pr)
        nd.stop()
    c = sqlite3.connect(tmp_path / "fleet.db")
    hosts = dict(c.execute("SELECT host, count(*) FROM host_events GROUP BY host"))
    titles = [r[0] for r in c.execute("SELECT title FROM alerts")]
    c.close()
    assert hosts.get("agent1", 0) > 0 and hosts.get("agent2", 0) > 0, hosts
    assert sum("Password Hash" in t for t in titles) >= 2, titles
