"""The central collector: a durable JetStream consumer into one store, with detection.

:class:`Collector` pulls batches from the ``PROBEWATCH`` stream through a durable pull
consumer, checks each one (the host in its meta must be the host of the subject it was
published on, which the server's permissions tie to the agent's credentials),
stores it in the fleet store (:mod:`.store`; deduplicated by host, boot id and
sequence) and acknowledges it only after the store's transaction committed: a
collector killed in between gets the batch again and the store skips it.

With ``rules`` the detection engine runs here on the events of each host whose agent
runs no rules of its own (batch meta ``rules`` 0; one
engine, process table and collapse state per host, the table seeded from the process
records the agent sends), for agents that run no rules (``probewatch record --watch
--export``). Alerts, the agents' own and the central ones, are stored and handed to
the ``on_alert`` callbacks (the web console). :attr:`Collector.hosts` keeps the
per-host status: last seen, events/s, drops.

Example::

    col = Collector("nats://nats:4222", "fleet.db", rules=RuleSet.load([], default=True))
    asyncio.run(col.run(stop_event))
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProbewatchError
from .connect import Creds, TlsFiles, connect_kwargs
from .store import FleetStore
from .wire import PREFIX, STREAM, WireError, decode_batch, record_event

__all__ = ["Collector", "HostState", "DURABLE"]

DURABLE = "probewatch-collector"


@dataclass
class HostState:
    """What the collector knows about one agent host."""

    host: str
    boot: str = ""
    backend: str = ""
    last_seen: float = 0.0       # collector wall clock of the last batch
    events: int = 0              # events stored
    alerts: int = 0
    batches: int = 0
    duplicates: int = 0
    rejected: int = 0            # batches refused (bad meta, wrong host)
    detect_errors: int = 0       # batches stored but not judged (a detection failure)
    dropped: int = 0             # the agent's spill drops (its latest report)
    lost: int = 0                # the agent's kernel drops (its latest report)
    rate: float = 0.0            # events/s over the last few seconds
    wall_offset_ns: int = 0
    _window: deque[tuple[float, int]] = field(default_factory=deque, repr=False)
    detector: Any = field(default=None, repr=False)
    table: Any = field(default=None, repr=False)

    def note(self, n: int, now: float) -> None:
        w = self._window
        w.append((now, n))
        while w and now - w[0][0] > 5.0:
            w.popleft()
        span = max(now - w[0][0], 1.0) if w else 1.0
        self.rate = sum(x for _, x in w) / span

    def to_dict(self) -> dict[str, Any]:
        now = time.time()
        if self._window and now - self._window[-1][0] > 5.0:
            self.rate = 0.0
        return {"host": self.host, "boot": self.boot, "backend": self.backend,
                "last_seen": self.last_seen, "age": round(now - self.last_seen, 3)
                if self.last_seen else None, "events": self.events, "alerts": self.alerts,
                "batches": self.batches, "duplicates": self.duplicates,
                "rejected": self.rejected, "detect_errors": self.detect_errors,
                "dropped": self.dropped, "lost": self.lost,
                "events_per_s": round(self.rate, 1)}


class Collector:
    """See the module docs. ``rules``: a RuleSet to detect with (None: store only);
    ``track``: keep a process table per host even without rules (the console's
    process trees)."""

    def __init__(
        self,
        url: str,
        output: str,
        *,
        creds: str | Creds | None = None,
        tls: TlsFiles | None = None,
        rules: Any = None,
        level: str = "low",
        track: bool = False,
        durable: str = DURABLE,
        stream: str = STREAM,
        fetch: int = 64,
        ack_wait: float = 30.0,
        window_s: float = 60.0,
    ) -> None:
        self._kw = connect_kwargs(url, creds=creds, tls=tls, name="probewatch-collector")
        self.store = FleetStore(output)
        self.rules = rules
        self.level = level
        self.track = track or rules is not None
        self.durable = durable
        self.stream = stream
        self.fetch = fetch
        self.ack_wait = ack_wait
        self.window_s = window_s
        self.hosts: dict[str, HostState] = {}
        self.alerts: deque[dict[str, Any]] = deque(maxlen=500)
        self.on_alert: list[Callable[[dict[str, Any]], None]] = []
        self.latencies: deque[float] = deque(maxlen=100_000)  # agent made -> stored (s)
        self.messages = 0
        self.rejected = 0
        self.last_error = ""
        self.connected = False

    # ------------------------------------------------------------------ per message
    def _host(self, name: str) -> HostState:
        h = self.hosts.get(name)
        if h is None:
            h = self.hosts[name] = HostState(name)
        return h

    def handle(self, subject: str, data: bytes) -> bool:
        """Check, store and detect on one message (inside a store transaction).
        False: refused (malformed, or its meta names another host)."""
        self.messages += 1
        parts = subject.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            self.rejected += 1
            return False
        h = self._host(parts[1])
        try:
            meta, records = decode_batch(data)
            if meta["host"] != parts[1] or meta["kind"] != parts[2]:
                raise WireError("the batch meta does not match its subject")
            evs = [record_event(r) for r in records] if meta["kind"] == "events" else None
        except WireError as e:
            h.rejected += 1
            self.rejected += 1
            self.last_error = f"{subject}: {e}"
            return False
        now = time.time()
        if h.boot != meta["boot"]:
            if h.boot:
                h.detector = h.table = None  # a new boot: pids and clocks start over
            h.boot = meta["boot"]
        h.last_seen = now
        h.batches += 1
        h.backend = str(meta.get("backend") or h.backend)
        off = meta.get("wall_offset_ns")
        if isinstance(off, int):
            h.wall_offset_ns = off
        for k in ("dropped", "lost"):
            v = meta.get(k)
            if isinstance(v, int):
                setattr(h, k, v)
        if not self.store.store_batch(meta, records, evs):
            h.duplicates += 1
            return True
        kind = meta["kind"]
        made = meta.get("made")
        if kind == "alerts" and isinstance(made, int | float):
            self.latencies.append(now - made)
        if evs:
            h.events += len(evs)
            h.note(len(evs), now)
            if self.track:
                try:
                    self._detect(h, meta, evs)
                except Exception as e:  # noqa: BLE001 - storing must go on
                    self._detect_error(h, e)
        elif kind == "processes" and self.track:
            try:
                self._ensure(h, meta)
                from ..detect.pipeline import restore_table

                restore_table(h.table, [r for r in records if isinstance(r, dict)])
            except Exception as e:  # noqa: BLE001 - storing must go on
                self._detect_error(h, e)
        elif kind == "alerts":
            for row in records:
                if isinstance(row, dict):
                    self._publish_alert(h, row, "agent", meta)
        return True

    def _detect_error(self, h: HostState, e: Exception) -> None:
        """Detection failed on a batch (it is stored all the same): counted, and the
        host's detector starts afresh with the next batch."""
        h.detect_errors += 1
        self.last_error = f"{h.host}: detection: {type(e).__name__}: {e}"
        h.detector = h.table = None

    def _ensure(self, h: HostState, meta: dict[str, Any]) -> None:
        if h.table is not None:
            return
        from ..detect.pipeline import Detector, new_mapper, new_table, restore_table

        h.table = new_table(replay=True)
        # what the store already holds of this host and boot: a restarted collector
        # knows the processes the agent described before
        snap = self.store.snapshot(meta)
        if snap:
            restore_table(h.table, snap)
        if self.rules is None or meta.get("rules"):
            return  # no rules here, or the agent runs its own: keep the table only
        from ..detect.engine import Engine
        from ..detect.pipeline import alert_row

        def emit(a: Any) -> None:
            row = alert_row(a)
            self.store.add_alert(meta_now, row, source="central")
            if a.kind == "alert":
                self._publish_alert(h, row, "central", meta_now)

        meta_now = {"host": h.host, "boot": h.boot}
        h.detector = Detector(Engine(self.rules, min_level=self.level), table=h.table,
                              mapper=new_mapper(h.table, self.rules), emit=emit,
                              window_s=self.window_s, wall_offset_ns=h.wall_offset_ns)

    def _detect(self, h: HostState, meta: dict[str, Any], evs: list[Any]) -> None:
        self._ensure(h, meta)
        det = h.detector
        if det is not None:
            feed = det.feed
            for ev in evs:
                feed(ev)
        else:
            on = h.table.on_event
            for ev in evs:
                on(ev)

    def _publish_alert(self, h: HostState, row: dict[str, Any], source: str,
                       meta: dict[str, Any]) -> None:
        import json

        h.alerts += 1
        try:
            full = json.loads(row.get("alert") or "{}")
        except ValueError:
            full = {}
        item = {
            "host": h.host, "source": source, "received": time.time(),
            "made": meta.get("made"), "id": f"{h.host}:{source}:{row.get('id')}",
            "level": row.get("level"), "title": row.get("title"),
            "rule_id": row.get("rule_id"), "pid": row.get("pid"),
            "time": row.get("time"), "lineage": row.get("lineage"),
            "matched": row.get("matched"), "ancestry": full.get("ancestry") or [],
            "process": full.get("process") or {},
        }
        self.alerts.append(item)
        for cb in list(self.on_alert):
            try:
                cb(item)
            except Exception:  # noqa: BLE001 - a console problem must not stop storing
                pass

    def tree(self, alert_id: str) -> dict[str, Any] | None:
        """The process tree around an alert: its ancestry (from the alert), the process,
        and the children the host's process table knows."""
        a = next((x for x in self.alerts if x["id"] == alert_id), None)
        if a is None:
            return None
        h = self.hosts.get(a["host"])
        pid = a.get("pid") or 0
        children: list[dict[str, Any]] = []
        tbl = getattr(h, "table", None)
        if tbl is not None:
            def kids(p: int, depth: int) -> list[dict[str, Any]]:
                if depth > 4:
                    return []
                return [{"pid": c.pid, "name": c.name, "cmd": c.command_line[:200],
                         "children": kids(c.pid, depth + 1)}
                        for c in list(tbl.procs.values()) if c.ppid == p and c.pid != p][:50]
            children = kids(pid, 0)
        return {"host": a["host"], "ancestry": a["ancestry"], "pid": pid,
                "process": a["process"], "children": children}

    # ------------------------------------------------------------------ the loop
    async def run(self, stop: asyncio.Event, ready: Callable[[], None] | None = None) -> None:
        """Consume until ``stop`` is set (reconnecting by itself)."""
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        async def on_error(e: Exception) -> None:
            self.last_error = str(e) or type(e).__name__

        nc = None
        while nc is None and not stop.is_set():
            try:
                nc = await nats.connect(**self._kw, error_cb=on_error)
            except Exception as e:  # noqa: BLE001 - retry until the server is there
                self.last_error = str(e) or type(e).__name__
                await asyncio.sleep(0.5)
        if nc is None:
            return
        js = nc.jetstream(timeout=5)
        psub = None
        try:
            while not stop.is_set():
                if psub is None:
                    try:
                        psub = await js.pull_subscribe(
                            f"{PREFIX}.>", durable=self.durable, stream=self.stream,
                            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT,
                                                  deliver_policy=DeliverPolicy.ALL,
                                                  max_ack_pending=20_000,
                                                  ack_wait=self.ack_wait))
                        self.connected = True
                        if ready is not None:
                            ready()
                            ready = None
                    except Exception as e:  # noqa: BLE001 - no stream/leader yet: retry
                        self.last_error = str(e) or type(e).__name__
                        await asyncio.sleep(0.5)
                        continue
                try:
                    msgs = await psub.fetch(self.fetch, timeout=0.2)
                except TimeoutError:
                    continue
                except Exception as e:  # noqa: BLE001 - leader change, reconnect: retry
                    self.last_error = str(e) or type(e).__name__
                    await asyncio.sleep(0.2)
                    continue
                with self.store.transaction():
                    for m in msgs:
                        self.handle(m.subject, m.data)
                for m in msgs:
                    try:
                        await m.ack()
                    except Exception as e:  # noqa: BLE001 - redelivered later: deduped
                        self.last_error = str(e) or type(e).__name__
        finally:
            try:
                await asyncio.wait_for(nc.close(), 3)
            except Exception:  # noqa: BLE001
                pass

    def finish(self) -> None:
        """Close the open correlations and collapse windows; close the store."""
        with self.store.transaction():
            for h in self.hosts.values():
                if h.detector is not None:
                    h.detector.finish()
        self.store.close()


def check_stream_error(e: Exception) -> ProbewatchError:
    return ProbewatchError(f"JetStream: {e}")
