"""Fleet benchmark: one agent's exporter into a real nats-server (JetStream), and the
collector reading it back.

Measures
- events/s exported by one agent (add -> batched, compressed, published, PubAck'd),
  and the agent's CPU per event (user+system of this process over the run);
- agent-to-collector alert latency p50/p99 (add_alert -> stored and handed to the
  console by a running collector);
- collector ingest rate into the store (a fresh durable consumer over the stream).

Run:  PYTHONPATH=src python3 bench/fleet_export.py [--events 500000]
Needs nats-server (Debian nats-server) on PATH; starts its own on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = int(s.getsockname()[1])
    s.close()
    return p


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--alerts", type=int, default=200)
    a = ap.parse_args()

    from probewatch.event import Event
    from probewatch.fleet.admin import init_stream
    from probewatch.fleet.collector import Collector
    from probewatch.fleet.exporter import Exporter

    tmp = tempfile.mkdtemp(prefix="pw-fleet-bench-")
    port = free_port()
    conf = os.path.join(tmp, "s.conf")
    with open(conf, "w") as f:
        f.write(f'listen: "127.0.0.1:{port}"\njetstream {{ store_dir: "{tmp}/js" }}\n')
    srv = subprocess.Popen([shutil.which("nats-server") or "nats-server", "-c", conf],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"nats://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        asyncio.run(init_stream(url))

        # ---- 1. export throughput
        evs = [Event(1_000_000_000 + i, i % 2, 4000 + i % 50, 4000 + i % 50, "python3",
                     "syscalls:openat", "bpf:syscalls",
                     {"ppid": 1, "cgroup": 1234, "nr": 257, "dfd": -100,
                      "filename": f"/usr/lib/python3/dist-packages/mod{i % 97}.py",
                      "flags": 524288, "mode": 0, "ret": 3 + i % 5,
                      "duration_ns": 1200 + i % 300})
               for i in range(min(a.events, 50_000))]
        ex = Exporter(url, host="bench", spill_dir=os.path.join(tmp, "spill"))
        ex.start()
        while not ex.stats.connected:
            time.sleep(0.01)
        c0, t0 = cpu(), time.perf_counter()
        add, n, k = ex.add, a.events, len(evs)
        for i in range(n):
            add(evs[i % k])
            if i & 4095 == 0:
                ex.check()
        st = ex.close(timeout=120)
        t1, c1 = time.perf_counter(), cpu()
        assert st.records == n and st.left_in_spill == 0, st
        rate = n / (t1 - t0)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"export: {n} events in {t1 - t0:.2f} s = {rate:,.0f} events/s acknowledged "
              f"({st.batches} batches, {st.spilled} spilled); agent CPU "
              f"{(c1 - c0) / n * 1e6:.2f} us/event")

        # ---- 2. collector ingest (a fresh durable over the whole stream)
        col = Collector(url, os.path.join(tmp, "fleet.db"), durable="bench-ingest",
                        fetch=256)
        loop_box: dict[str, object] = {}
        ready = threading.Event()

        def run_col(col: Collector = col) -> None:
            async def m() -> None:
                stop = asyncio.Event()
                loop_box["loop"], loop_box["stop"] = asyncio.get_running_loop(), stop
                await col.run(stop, ready=ready.set)
            asyncio.run(m())

        th = threading.Thread(target=run_col, daemon=True)
        c0, t0 = cpu(), time.perf_counter()
        th.start()
        while col.store.events < n and time.perf_counter() - t0 < 300:
            time.sleep(0.05)
        t1, c1 = time.perf_counter(), cpu()
        loop: asyncio.AbstractEventLoop = loop_box["loop"]  # type: ignore[assignment]
        loop.call_soon_threadsafe(loop_box["stop"].set)  # type: ignore[union-attr]
        th.join(10)
        col.finish()
        print(f"collector ingest: {col.store.events} events in {t1 - t0:.2f} s = "
              f"{col.store.events / (t1 - t0):,.0f} events/s into the store; collector "
              f"CPU {(c1 - c0) / max(1, col.store.events) * 1e6:.2f} us/event")

        # ---- 3. alert latency through a running collector
        col2 = Collector(url, os.path.join(tmp, "fleet2.db"), durable="bench-alerts")
        lat: list[float] = []
        col2.on_alert.append(lambda item: lat.append(time.time() - float(item["time"])))
        ready2 = threading.Event()
        box2: dict[str, object] = {}

        def run_col2() -> None:
            async def m() -> None:
                stop = asyncio.Event()
                box2["loop"], box2["stop"] = asyncio.get_running_loop(), stop
                await col2.run(stop, ready=ready2.set)
            asyncio.run(m())

        th2 = threading.Thread(target=run_col2, daemon=True)
        th2.start()
        ready2.wait(30)
        # catch up with the backlog of part 1 first
        while col2.store.events < n:
            time.sleep(0.05)
        ex2 = Exporter(url, host="bench2", spill_dir=os.path.join(tmp, "spill2"))
        ex2.start()
        while not ex2.stats.connected:
            time.sleep(0.01)
        for i in range(a.alerts):
            ex2.add_alert({"id": i + 1, "ts": i, "time": time.time(), "count": 1,
                           "level": "high", "rule_id": "bench", "title": "bench alert",
                           "alert": "{}"})
            for e in evs[:200]:  # events flow meanwhile, as on a busy host
                ex2.add(e)
            time.sleep(0.02)
        ex2.close(timeout=30)
        end = time.time() + 10
        while len(lat) < a.alerts and time.time() < end:
            time.sleep(0.05)
        loop2: asyncio.AbstractEventLoop = box2["loop"]  # type: ignore[assignment]
        loop2.call_soon_threadsafe(box2["stop"].set)  # type: ignore[union-attr]
        th2.join(10)
        col2.finish()
        lat.sort()
        p50 = statistics.median(lat) * 1e3
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3
        print(f"alert latency agent -> collector: {len(lat)} alerts, p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms, max {lat[-1] * 1e3:.1f} ms")
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
