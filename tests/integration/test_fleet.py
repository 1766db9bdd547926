"""Fleet export into a real nats-server (JetStream) and the central collector:
no loss and no doubles across a kill -9 of the server, an agent restart with a full
spill, permissions per host, TLS."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from probewatch.event import Event
from probewatch.fleet.admin import init_stream
from probewatch.fleet.collector import Collector
from probewatch.fleet.connect import TlsFiles, quiet
from probewatch.fleet.exporter import Exporter
from probewatch.fleet.wire import decode_batch

from .natsd import Natsd, cluster

pytestmark = pytest.mark.integration


class RunningCollector:
    """A Collector consuming in a thread of its own until stop()."""

    def __init__(self, col: Collector) -> None:
        self.col = col
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_ev: asyncio.Event | None = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        assert self.ready.wait(30), col.last_error

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.stop_ev = asyncio.Event()
            await self.col.run(self.stop_ev, ready=self.ready.set)

        asyncio.run(main())

    def wait_events(self, n: int, timeout: float) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.col.store.events >= n:
                time.sleep(0.3)  # and nothing more arrives (doubles would)
                return self.col.store.events
            time.sleep(0.05)
        return self.col.store.events

    def stop(self) -> None:
        assert self.loop is not None and self.stop_ev is not None
        self.loop.call_soon_threadsafe(self.stop_ev.set)
        self.t.join(10)
        self.col.finish()


def ev(i: int, host: str = "") -> Event:
    return Event(1_000_000 + i, i % 2, 100 + i % 7, 100 + i % 7, "bench",
                 "syscalls:openat", "bpf:syscalls",
                 {"i": i, "filename": f"/tmp/f{i % 13}", "raw": b"\x00\xff", "ret": 3})


def stored_is(db: Path, host: str | None = None) -> list[int]:
    c = sqlite3.connect(db)
    q = "SELECT json_extract(fields, '$.i') FROM host_events"
    rows = c.execute(q + (" WHERE host = ?" if host else ""), (host,) if host else ()).fetchall()
    c.close()
    return sorted(r[0] for r in rows)


def stream_create(url: str, **kw: Any) -> dict[str, Any]:
    return asyncio.run(init_stream(url, **kw))


@pytest.fixture
def natsd(tmp_path: Path):
    n = Natsd(tmp_path).start()
    yield n
    n.stop()


def test_kill9_server_mid_stream_every_event_once(natsd: Natsd, tmp_path: Path) -> None:
    stream_create(natsd.url)
    ex = Exporter(natsd.url, host="h1", spill_dir=str(tmp_path / "spill"),
                  publish_timeout=0.5)
    ex.start()
    n = 60_000
    for i in range(n):
        if 20_000 < i <= 25_000:
            continue  # added while the server was stopped
        ex.add(ev(i))
        if i == 20_000:
            time.sleep(0.15)
            # mid-stream, with publishes in flight: a stopped server never answers them
            # (only the exporter's own deadline ends them), then it dies
            natsd.signal(signal.SIGSTOP)
            for j in range(i, i + 5000):
                ex.add(ev(j + 1))
            time.sleep(1.2)
            natsd.kill9()
        if i % 1000 == 0:
            ex.check()
            time.sleep(0.002)
    time.sleep(0.3)
    natsd.start()
    st = ex.close(timeout=20)
    assert st.left_in_spill == 0 and st.dropped_events == 0, st
    assert st.retries > 0 and st.disconnects >= 1  # the kill was felt
    col = RunningCollector(Collector(natsd.url, str(tmp_path / "fleet.db")))
    got = col.wait_events(n, 20)
    col.stop()
    assert got == n
    assert stored_is(tmp_path / "fleet.db", "h1") == list(range(n))


def test_agent_restart_with_spill_nothing_lost_nothing_doubled(tmp_path: Path) -> None:
    nd = Natsd(tmp_path)   # not started: the agent spills everything
    spill = tmp_path / "spill"
    ex = Exporter(nd.url, host="h2", spill_dir=str(spill), publish_timeout=0.5)
    ex.start()
    for i in range(5000):
        ex.add(ev(i))
    st = ex.close(timeout=0.5)
    assert st.batches == 0 and st.left_in_spill >= 10 and st.dropped_events == 0
    files = sorted(p.name for p in spill.glob("*.pwb"))
    assert len(files) == st.left_in_spill
    # a second run, still no server, spills more beside it
    ex = Exporter(nd.url, host="h2", spill_dir=str(spill), publish_timeout=0.5)
    ex.start()
    for i in range(5000, 8000):
        ex.add(ev(i))
    st2 = ex.close(timeout=0.5)
    assert st2.left_in_spill > st.left_in_spill
    nd.start()
    try:
        stream_create(nd.url)
        ex = Exporter(nd.url, host="h2", spill_dir=str(spill), publish_timeout=1)
        ex.start()
        for i in range(8000, 9000):
            ex.add(ev(i))
        st3 = ex.close(timeout=15)
        assert st3.left_in_spill == 0 and not list(spill.glob("*.pwb"))
        assert st3.records >= 9000
        col = RunningCollector(Collector(nd.url, str(tmp_path / "fleet.db")))
        got = col.wait_events(9000, 15)
        col.stop()
        assert got == 9000
        assert stored_is(tmp_path / "fleet.db") == list(range(9000))
    finally:
        nd.stop()


def test_full_spill_drops_are_counted(tmp_path: Path) -> None:
    nd = Natsd(tmp_path)  # never started
    ex = Exporter(nd.url, host="h3", spill_dir=str(tmp_path / "spill"), spill_max=20_000,
                  mem_max=1)
    ex.start()
    for i in range(20_000):
        ex.add(ev(i))
    st = ex.close(timeout=0.3)
    assert st.dropped_events > 0 and st.dropped_batches > 0
    assert st.spilled * 500 + st.dropped_events >= 20_000 - 500
    assert "dropped" in st.line() and str(st.dropped_events) in st.line()


def test_collector_dedupes_by_host_boot_seq(natsd: Natsd, tmp_path: Path) -> None:
    """A batch published again under a new message id (past the stream's window) is
    stored once: the collector's (host, boot, seq) key catches it."""
    stream_create(natsd.url)
    ex = Exporter(natsd.url, host="h4", spill_dir=str(tmp_path / "spill"))
    ex.start()
    for i in range(1000):
        ex.add(ev(i))
    assert ex.close(timeout=10).left_in_spill == 0

    async def republish() -> int:
        import nats

        nc = await nats.connect(natsd.url)
        js = nc.jetstream()
        psub = await js.pull_subscribe("probewatch.h4.events", durable="copy")
        msgs = await psub.fetch(100, timeout=2)
        for m in msgs:
            meta, _ = decode_batch(m.data)
            await js.publish(m.subject, m.data, headers={"Nats-Msg-Id": f"again-{meta['seq']}"})
        await nc.close()
        return len(msgs)

    assert asyncio.run(republish()) >= 2
    col = RunningCollector(Collector(natsd.url, str(tmp_path / "fleet.db")))
    col.wait_events(1000, 10)
    time.sleep(0.5)
    col.stop()
    assert stored_is(tmp_path / "fleet.db") == list(range(1000))
    assert col.col.store.duplicates >= 2


def test_collector_kill9_and_restart_every_event_once(natsd: Natsd, tmp_path: Path) -> None:
    """probewatch collect killed -9 mid-stream: the batches it had not acknowledged
    come again, those it had committed are recognised; every event once."""
    import sys

    stream_create(natsd.url)
    ex = Exporter(natsd.url, host="k1", spill_dir=str(tmp_path / "spill"))
    ex.start()
    n = 40_000
    for i in range(n):
        ex.add(ev(i))
    assert ex.close(timeout=20).left_in_spill == 0
    db = tmp_path / "fleet.db"
    argv = [sys.executable, "-m", "probewatch", "collect", "--from", natsd.url, "-o",
            str(db), "--ack-wait", "1"]
    p = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        got = 0
        if db.exists():  # (connecting would create it: the collector must)
            try:
                c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                got = c.execute("SELECT count(*) FROM event_rows").fetchone()[0]
                c.close()
            except sqlite3.Error:
                pass
        if got >= 5000:
            break
        time.sleep(0.01)
    p.kill()
    p.wait()
    assert 0 < got < n  # killed mid-stream
    r = subprocess.run(argv + ["-d", "4"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert stored_is(db, "k1") == list(range(n))
    assert f"{n} events in" in r.stderr, r.stderr  # the summary counts the whole store


def test_record_spec_export_with_capture(natsd: Natsd, tmp_path: Path) -> None:
    """probewatch record SPEC --export: the capture and the collector hold the same
    events (the command's 300 getppid calls)."""
    import json
    import sys

    stream_create(natsd.url)
    prog = "import os\nfor _ in range(300): os.getppid()\n"
    r = subprocess.run(
        [sys.executable, "-m", "probewatch", "record", "t:syscalls:sys_enter_getppid",
         "-o", str(tmp_path / "cap.db"), "--export", natsd.url, "--host", "rec1",
         "--spill-dir", str(tmp_path / "sp"), "--json", "--", sys.executable, "-c", prog],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "acknowledged as host rec1, dropped 0" in r.stderr, r.stderr
    col = RunningCollector(Collector(natsd.url, str(tmp_path / "fleet.db")))
    col.wait_events(300, 15)
    col.stop()
    c = sqlite3.connect(tmp_path / "fleet.db")
    rows = c.execute("SELECT event, comm, fields FROM host_events WHERE host = 'rec1'"
                     ).fetchall()
    c.close()
    c = sqlite3.connect(tmp_path / "cap.db")
    local = c.execute("SELECT event, comm, fields FROM events").fetchall()
    c.close()
    assert len(rows) >= 300 and sorted(rows) == sorted(local)
    assert {json.loads(f).get("__syscall_nr") for _, _, f in rows} == {110}


def test_permissions_host_cannot_publish_for_another(tmp_path: Path) -> None:
    import sys

    r = subprocess.run([sys.executable, "-m", "probewatch", "fleet", "auth", "web1", "db1",
                        "-o", str(tmp_path / "auth")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    files = dict(line.split(": ", 1) for line in r.stdout.splitlines())
    assert set(files) == {"web1", "db1", "collector", "admin", "auth.conf"}
    assert all(os.stat(p).st_mode & 0o777 == 0o600 for p in files.values())
    # nats-server resolves an include relative to the including file
    inc = os.path.relpath(files["auth.conf"], tmp_path / "nats-n1")
    nd = Natsd(tmp_path, conf=f'include "{inc}"').start()
    try:
        stream_create(nd.url, creds=files["admin"])
        errors: list[str] = []

        async def as_web1() -> tuple[bool, bool]:
            import nats

            from probewatch.fleet.connect import connect_kwargs

            async def err(e: Exception) -> None:
                errors.append(str(e))

            nc = await nats.connect(**connect_kwargs(nd.url, creds=files["web1"]),
                                    error_cb=err)
            js = nc.jetstream(timeout=1)
            ok = await js.publish("probewatch.web1.events", b"x")
            try:
                await js.publish("probewatch.db1.events", b"forged")
                forged = True
            except Exception:
                forged = False
            await nc.close()
            return ok.seq == 1, forged

        own, forged = asyncio.run(as_web1())
        assert own and not forged
        assert any("permissions violation" in e.lower() for e in errors), errors
        # the default inbox is not web1's: without the per-host prefix no ack arrives

        async def default_inbox() -> str:
            import nats

            from probewatch.fleet.connect import connect_kwargs

            kw = connect_kwargs(nd.url, creds=files["web1"])
            kw["inbox_prefix"] = "_INBOX"
            nc = await nats.connect(**kw, error_cb=quiet)
            try:
                await nc.jetstream(timeout=1).publish("probewatch.web1.events", b"y")
                return "acked"
            except Exception as e:
                return type(e).__name__
            finally:
                await nc.close()

        assert asyncio.run(default_inbox()) != "acked"
        # the real exporter with web1's creds: stored under web1 only
        ex = Exporter(nd.url, creds=files["web1"], spill_dir=str(tmp_path / "sp"))
        assert ex.host == "web1"
        ex.start()
        for i in range(100):
            ex.add(ev(i))
        assert ex.close(timeout=10).left_in_spill == 0
        col = RunningCollector(Collector(nd.url, str(tmp_path / "fleet.db"),
                                         creds=files["collector"]))
        col.wait_events(100, 10)
        col.stop()
        assert stored_is(tmp_path / "fleet.db", "web1") == list(range(100))
        assert set(col.col.hosts) == {"web1"}
    finally:
        nd.stop()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def test_tls_client_certificates(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    d.mkdir()
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=pw-test-ca", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                      ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
                 f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile",
                 f"{name}.ext", cwd=d)
    conf = (f'tls {{ cert_file: "{d}/server.pem", key_file: "{d}/server.key", '
            f'ca_file: "{d}/ca.pem", verify: true, timeout: 2 }}')
    nd = Natsd(tmp_path, conf=conf).start()
    url = f"tls://127.0.0.1:{nd.port}"
    tls = TlsFiles(ca=str(d / "ca.pem"), cert=str(d / "client.pem"), key=str(d / "client.key"))
    try:
        stream_create(url, tls=tls)
        ex = Exporter(url, host="t1", tls=tls, spill_dir=str(tmp_path / "sp"))
        ex.start()
        for i in range(300):
            ex.add(ev(i))
        assert ex.close(timeout=10).left_in_spill == 0
        # no client certificate: the server refuses the connection, the batch waits
        ex2 = Exporter(url, host="t2", tls=TlsFiles(ca=str(d / "ca.pem")),
                       spill_dir=str(tmp_path / "sp2"))
        ex2.start()
        ex2.add(ev(0))
        st2 = ex2.close(timeout=1)
        assert st2.batches == 0 and st2.left_in_spill == 1 and not st2.connected
        col = RunningCollector(Collector(url, str(tmp_path / "fleet.db"), tls=tls))
        col.wait_events(300, 10)
        col.stop()
        assert stored_is(tmp_path / "fleet.db", "t1") == list(range(300))
    finally:
        nd.stop()


def test_cluster_leader_kill_every_event_once(tmp_path: Path) -> None:
    nodes = cluster(tmp_path)
    urls = ",".join(n.url for n in nodes)
    try:
        info = stream_create(urls, replicas=3, wait=40)
        assert info["replicas"] == 3

        async def leader() -> str:
            import nats

            nc = await nats.connect(servers=urls.split(","))
            si = await nc.jetstream().stream_info("PROBEWATCH")
            await nc.close()
            return str(si.cluster.leader)

        lead = asyncio.run(leader())
        victim = next(n for n in nodes if n.name == lead)
        ex = Exporter(urls, host="hc", spill_dir=str(tmp_path / "spill"), publish_timeout=1)
        ex.start()
        n = 30_000
        for i in range(n):
            ex.add(ev(i))
            if i == 10_000:
                time.sleep(0.3)
                victim.kill9()
            if i % 1000 == 0:
                ex.check()
                time.sleep(0.003)
        st = ex.close(timeout=30)
        assert st.left_in_spill == 0 and st.dropped_events == 0, st
        assert st.retries > 0, st  # the election was felt (no responders, timeouts)
        live = ",".join(nd.url for nd in nodes if nd is not victim)
        col = RunningCollector(Collector(live, str(tmp_path / "fleet.db")))
        got = col.wait_events(n, 30)
        col.stop()
        assert got == n
        assert stored_is(tmp_path / "fleet.db") == list(range(n))
    finally:
        for nd in nodes:
            nd.stop()
