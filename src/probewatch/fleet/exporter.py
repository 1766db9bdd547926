"""The agent's exporter: Events, alerts and process records into NATS JetStream.

The tracing loop only appends to in-memory queues (:meth:`Exporter.add` is a
``deque.append``); the exporter's own thread runs an asyncio loop that

- every ``flush_s`` (0.1 s), or at once for an alert, turns what is queued into
  batches of at most ``batch_events`` (500) records and ``batch_bytes`` (256 KB
  before compression), each one compressed message (:mod:`.wire`) with the message id
  ``host:boot:seq``;
- publishes them, ``window`` (16) at a time, and lets a batch go only when the
  server's PubAck for it arrived. Each publish has its own deadline
  (``publish_timeout``): after a kill -9 of the server a plain publish future is
  never resolved. A failed batch is retried with the same message id, so the stream
  stores it once (its dedupe window is 2 minutes; the collector dedupes by
  sequence as well);
- keeps unacknowledged batches in RAM up to ``mem_max`` bytes and moves the oldest to
  the disk spill (:mod:`.spill`) beyond that, and at exit whatever is still
  unacknowledged. A spill left by an earlier run is sent first. Only a full spill drops
  (counted in :attr:`ExportStats.dropped_events`, sent to the collector in every
  batch's meta and shown in the summary).

Nothing here ever waits on the network in the caller's thread: when the queue of
Events grows past ``queue_max`` (the exporter thread fell behind),
:meth:`Exporter.check` encodes the surplus into batches in the caller's thread (into
the RAM buffer, its overflow into the spill).

Example::

    ex = Exporter("nats://collector:4222", creds="web1.creds")
    ex.start()
    for ev in session.events():
        ex.add(ev)
    stats = ex.close(timeout=5)      # sends what it can in 5 s, spills the rest
    print(stats.line())
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ProbewatchError
from ..event import Event
from .connect import Creds, TlsFiles, connect_kwargs, read_creds
from .spill import Pending, Spill
from .wire import (
    MAGIC,
    boot_id,
    default_host,
    host_token,
    msg_id,
    subject,
)

__all__ = ["Exporter", "ExportStats", "default_spill_dir"]


@dataclass
class ExportStats:
    """What the exporter did (``--export`` summary)."""

    host: str = ""
    events: int = 0            # events handed to the exporter
    batches: int = 0           # batches acknowledged by the server
    records: int = 0           # records in them (events, alerts, processes)
    duplicates: int = 0        # acks saying the stream already had the batch
    retries: int = 0           # publishes that failed and were retried
    spilled: int = 0           # batches written to the disk spill
    left_in_spill: int = 0     # batches still on disk at exit (sent by the next run)
    dropped_events: int = 0    # records dropped because the spill was full
    dropped_batches: int = 0
    connected: bool = False
    disconnects: int = 0
    last_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        s = (f"export: {self.records} records in {self.batches} batches acknowledged "
             f"as host {self.host}")
        if self.spilled or self.left_in_spill:
            s += f", {self.spilled} batches spilled to disk, {self.left_in_spill} left there"
        s += f", dropped {self.dropped_events}"
        if self.dropped_events:
            s += f" (spill full: {self.dropped_batches} batches)"
        if self.last_error and (self.left_in_spill or not self.connected):
            s += f"; last error: {self.last_error}"
        return s


def default_spill_dir(host: str) -> str:
    """/var/lib/probewatch/spill/HOST (root), else ~/.local/state/probewatch/spill/HOST."""
    base = "/var/lib/probewatch/spill"
    if os.geteuid() != 0:
        st = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        base = os.path.join(st, "probewatch", "spill")
    return os.path.join(base, host)


class Exporter:
    """Ship Events, alerts and process records to JetStream (see the module docs)."""

    def __init__(
        self,
        url: str,
        *,
        host: str | None = None,
        creds: str | Creds | None = None,
        tls: TlsFiles | None = None,
        spill_dir: str | None = None,
        spill_max: int = 1 << 30,
        mem_max: int = 32 << 20,
        queue_max: int = 100_000,
        flush_s: float = 0.1,
        batch_bytes: int = 256 * 1024,
        batch_events: int = 500,
        window: int = 16,
        publish_timeout: float = 2.0,
        heartbeat_s: float = 1.0,
        wall_offset_ns: int | None = None,
        backend: str = "",
    ) -> None:
        c = read_creds(creds) if isinstance(creds, str) else creds
        self.host = host_token(host or (c.host if c and c.host else "") or default_host())
        self.boot = boot_id()
        self._kw = connect_kwargs(url, creds=c, tls=tls, name=f"probewatch-agent-{self.host}")
        self.spill = Spill(spill_dir or default_spill_dir(self.host), self.boot, spill_max)
        self.mem_max = mem_max
        self.queue_max = queue_max
        self.flush_s = flush_s
        self.batch_bytes = batch_bytes
        self.batch_events = batch_events
        self.window = window
        self.publish_timeout = publish_timeout
        self.heartbeat_s = heartbeat_s
        self.wall_offset_ns = (time.time_ns() - time.monotonic_ns()
                               if wall_offset_ns is None else wall_offset_ns)
        self.backend = backend
        self.agent = f"{os.getpid()}-{time.time_ns()}"
        #: events the kernel dropped (set by the caller; sent in every batch's meta)
        self.lost = 0
        #: rules the agent runs itself (0: the collector's --detect judges its events)
        self.rules = 0
        self.stats = ExportStats(host=self.host)
        self._q: deque[Event] = deque()
        #: the hot path: append one Event (thread-safe, never waits)
        self.add = self._q.append
        self._alerts: deque[dict[str, Any]] = deque()
        self._procs: deque[dict[str, Any]] = deque()
        self._urgent: deque[Pending] = deque()   # alert batches: sent first
        self._mem: deque[Pending] = deque()      # the rest, in sequence order
        self._mem_bytes = 0
        self._inflight_spill: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._send_wake: asyncio.Event | None = None
        self._stop = threading.Event()
        self._deadline = 0.0
        self._nc: Any = None
        self._js: Any = None
        self._last_batch = 0.0
        self._closed = False

    # ---------------------------------------------------------------- producer side
    def add_many(self, evs: Iterable[Event]) -> None:
        self._q.extend(evs)

    def add_alert(self, row: Mapping[str, Any]) -> None:
        """Queue one alert (its ``alerts`` row); it leaves in the next loop turn."""
        self._alerts.append(dict(row))
        self._poke()

    def note_processes(self, procs: Iterable[Mapping[str, Any]]) -> None:
        """Queue process-table records (the table the agent started from, look-ups)."""
        self._procs.extend(dict(p) for p in procs)

    def backlog(self) -> int:
        return len(self._q)

    def check(self) -> None:
        """Call now and then from the producer: past ``queue_max`` queued Events, encode
        the surplus into batches here (into the RAM buffer, its overflow to the spill:
        bounded memory; the network is never waited on). Under such overload the
        batches of the two threads may interleave: events stay whole, but not all in
        order."""
        q = self._q
        n = len(q)
        if n >= self.batch_events * 4:
            self._poke()  # a few batches' worth: do not wait for the next tick
        if n <= self.queue_max:
            return
        while len(q) > self.queue_max // 2:
            recs = []
            try:
                for _ in range(self.batch_events):
                    recs.append(q.popleft())
            except IndexError:
                pass
            if not recs:
                break
            self.stats.events += len(recs)
            self._enqueue(self._encode("events", _recs(recs)))

    def _poke(self) -> None:
        loop, w = self._loop, self._wake
        if loop is not None and w is not None:
            try:
                loop.call_soon_threadsafe(w.set)
            except RuntimeError:
                pass

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the exporter thread (it connects in the background: an unreachable
        server only means batches go to the spill)."""
        started = threading.Event()

        def run() -> None:
            asyncio.run(self._main(started))

        self._thread = threading.Thread(target=run, name="probewatch-export", daemon=True)
        self._thread.start()
        started.wait(5)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float = 5.0) -> ExportStats:
        """Send what is queued for up to ``timeout`` seconds; spill what is left."""
        if self._closed:
            return self.stats
        self._closed = True
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        self._poke()
        t = self._thread
        if t is not None:
            t.join(timeout + self.publish_timeout + 10)
        else:
            self._finish_sync()
        st = self.stats
        st.connected = self._connected_at_end
        st.left_in_spill = len(self.spill)
        st.dropped_events = self.spill.dropped_events
        st.dropped_batches = self.spill.dropped_batches
        self.spill.close()
        return st

    # ---------------------------------------------------------------- batching
    def _meta(self, kind: str, seq: int) -> dict[str, Any]:
        return {"host": self.host, "boot": self.boot, "seq": seq, "kind": kind,
                "agent": self.agent, "wall_offset_ns": self.wall_offset_ns,
                "made": time.time(), "lost": int(self.lost),
                "dropped": self.spill.dropped_events, "events_total": self.stats.events,
                "backend": self.backend, "rules": self.rules}

    def _encode(self, kind: str, records: list[Any]) -> list[Pending]:
        """Records -> batches of at most batch_events and batch_bytes (before zlib)."""
        import zlib

        from .wire import _codec, _escape_surrogates

        enc, _ = _codec()
        out: list[Pending] = []
        step = self.batch_events
        i = 0
        while i < len(records) or (not records and not out):
            chunk = records[i:i + step]
            seq = self.spill.next_seq()
            meta = self._meta(kind, seq)
            try:
                raw = enc.encode([meta, chunk])
            except UnicodeEncodeError:
                raw = enc.encode([meta, _escape_surrogates(chunk)])
            if len(raw) > self.batch_bytes and len(chunk) > 1:
                step = max(1, len(chunk) // 2)  # too big: halve (the seq is simply skipped)
                continue
            body = MAGIC + zlib.compress(raw, 1)
            out.append(Pending(seq, subject(self.host, kind), msg_id(self.host, self.boot, seq),
                               body, len(chunk), kind))
            i += len(chunk)
            if not records:
                break
        return out

    def _make_batches(self) -> None:
        made: list[Pending] = []
        if self._alerts:
            rows = _drain(self._alerts)
            urgent = self._encode("alerts", rows)
            with self._lock:
                self._urgent.extend(urgent)
        if self._procs:
            made += self._encode("processes", _drain(self._procs))
        q = self._q
        while q:
            evs = []
            try:
                for _ in range(self.batch_events * 8):
                    evs.append(q.popleft())
            except IndexError:
                pass
            if not evs:
                break
            self.stats.events += len(evs)
            made += self._encode("events", _recs(evs))
        now = time.monotonic()
        connected = self._nc is not None and self._nc.is_connected
        if (not made and connected and now - self._last_batch >= self.heartbeat_s
                and not self._mem and not self._urgent):
            made = self._encode("status", [])
        if made or self._urgent:
            self._last_batch = now
        if made:
            self._enqueue(made)

    def _enqueue(self, made: list[Pending]) -> None:
        """Batches into the RAM buffer; past mem_max its oldest go to the disk spill."""
        spill_now: list[Pending] = []
        with self._lock:
            for p in made:
                self._mem.append(p)
                self._mem_bytes += len(p.body)
            while self._mem_bytes > self.mem_max and self._mem:
                p = self._mem.popleft()
                self._mem_bytes -= len(p.body)
                spill_now.append(p)
        for p in spill_now:
            self._to_spill(p)

    def _to_spill(self, p: Pending) -> None:
        if p.kind == "status":
            return  # a heartbeat is worth nothing later
        if self.spill.put(p):
            self.stats.spilled += 1

    # ---------------------------------------------------------------- the loop
    async def _main(self, started: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._send_wake = asyncio.Event()
        started.set()
        conn = asyncio.create_task(self._connector())
        sender = asyncio.create_task(self._sender())
        try:
            while not self._stop.is_set():
                try:
                    await asyncio.wait_for(self._wake.wait(), self.flush_s)
                except TimeoutError:
                    pass
                self._wake.clear()
                self._make_batches()
                self._send_wake.set()
            self._make_batches()
            self._send_wake.set()
            away = 0.0
            while time.monotonic() < self._deadline and self._unsent():
                await asyncio.sleep(0.01)
                self._send_wake.set()
                nc = self._nc
                away = 0.0 if nc is not None and nc.is_connected else away + 0.01
                if away > 1.0:
                    break  # no server: the spill keeps it for the next run
        finally:
            self._sending = False
            self._send_wake.set()
            try:
                await asyncio.wait_for(sender, self.publish_timeout + 2)
            except (TimeoutError, asyncio.CancelledError, Exception):  # noqa: BLE001
                sender.cancel()
            conn.cancel()
            with self._lock:
                # a sender cancelled mid-window: its batches were not acknowledged
                rest = [p for p in self._flying if not p.spilled]
                rest += list(self._urgent) + list(self._mem)
                self._flying = []
                self._urgent.clear()
                self._mem.clear()
                self._mem_bytes = 0
            for p in rest:
                self._to_spill(p)
            nc = self._nc
            if nc is not None:
                self._connected_at_end = bool(nc.is_connected)
                try:
                    await asyncio.wait_for(nc.close(), 2)
                except Exception:  # noqa: BLE001 - closing a dead connection
                    pass

    def _unsent(self) -> bool:
        return bool(self._urgent or self._mem or len(self.spill) or self._inflight)

    def _finish_sync(self) -> None:
        """close() without start(): everything queued goes to the spill."""
        self._make_batches()
        for p in list(self._urgent) + list(self._mem):
            self._to_spill(p)
        self._urgent.clear()
        self._mem.clear()

    async def _connector(self) -> None:
        import nats

        delay = 0.2

        async def on_error(e: Exception) -> None:
            self.stats.last_error = str(e) or type(e).__name__

        async def on_disc() -> None:
            if self.stats.connected:
                self.stats.disconnects += 1
            self.stats.connected = False

        async def on_reconn() -> None:
            self.stats.connected = True
            if self._send_wake is not None:
                self._send_wake.set()

        while self._sending:
            try:
                nc = await nats.connect(**self._kw, error_cb=on_error, disconnected_cb=on_disc,
                                        reconnected_cb=on_reconn)
            except Exception as e:  # noqa: BLE001 - unreachable: retry, keep spilling
                self.stats.last_error = str(e) or type(e).__name__
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._nc = nc
            self._js = nc.jetstream(timeout=self.publish_timeout)
            self.stats.connected = True
            if self._send_wake is not None:
                self._send_wake.set()
            return

    _sending = True
    _inflight = 0
    _flying: list[Pending] = []
    _connected_at_end = False

    def _take(self, n: int) -> list[Pending]:
        out: list[Pending] = []
        with self._lock:
            while self._urgent and len(out) < n:
                out.append(self._urgent.popleft())
        if len(out) < n and len(self.spill):
            for seq in self.spill.seqs():
                if len(out) >= n:
                    break
                if seq in self._inflight_spill:
                    continue
                p = self.spill.load(seq)
                if p is not None:
                    self._inflight_spill.add(seq)
                    out.append(p)
        with self._lock:
            while self._mem and len(out) < n:
                p = self._mem.popleft()
                self._mem_bytes -= len(p.body)
                out.append(p)
        return out

    def _give_back(self, failed: list[Pending]) -> None:
        with self._lock:
            for p in reversed(failed):
                if p.spilled:
                    self._inflight_spill.discard(p.seq)
                elif p.kind == "alerts":
                    self._urgent.appendleft(p)
                else:
                    self._mem.appendleft(p)
                    self._mem_bytes += len(p.body)

    async def _publish(self, p: Pending) -> Any:
        try:
            ack = await asyncio.wait_for(
                self._js.publish(p.subject, p.body, timeout=self.publish_timeout,
                                 headers={"Nats-Msg-Id": p.msg_id}),
                self.publish_timeout + 0.5)
        except Exception as e:  # noqa: BLE001 - any failure: the batch is retried
            return e
        return ack

    async def _sender(self) -> None:
        backoff = 0.05
        assert self._send_wake is not None
        while self._sending:
            nc = self._nc
            if nc is None or not nc.is_connected:
                await asyncio.sleep(0.05)
                continue
            batch = self._take(self.window)
            if not batch:
                self._send_wake.clear()
                try:
                    await asyncio.wait_for(self._send_wake.wait(), 0.5)
                except TimeoutError:
                    pass
                continue
            self._inflight = len(batch)
            self._flying = batch
            results = await asyncio.gather(*(self._publish(p) for p in batch))
            self._flying = []
            self._inflight = 0
            failed = []
            st = self.stats
            for p, r in zip(batch, results, strict=True):
                if isinstance(r, BaseException) or r is None:
                    if isinstance(r, BaseException):
                        st.last_error = str(r) or type(r).__name__
                    failed.append(p)
                    continue
                st.batches += 1
                st.records += p.count
                if getattr(r, "duplicate", False):
                    st.duplicates += 1
                if p.spilled:
                    self.spill.remove(p.seq)
                    self._inflight_spill.discard(p.seq)
            if failed:
                st.retries += len(failed)
                self._give_back(failed)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            else:
                backoff = 0.05


def _drain(d: deque[Any]) -> list[Any]:
    out = []
    try:
        while True:
            out.append(d.popleft())
    except IndexError:
        pass
    return out


def _recs(evs: list[Event]) -> list[Any]:
    """Events -> their wire records (tuples: msgpack arrays), inline for speed."""
    return [(e.ts, e.cpu, e.pid, e.tid, e.comm, e.event, e.probe, e.fields) for e in evs]


def check_export_args(url: str | None, creds: str | None) -> None:
    if url is None and creds is not None:
        raise ProbewatchError("--creds applies to --export")
