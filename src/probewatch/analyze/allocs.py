"""Allocation tracking in the kernel (collect/bpf/mallocs.bpf.c) and what it adds up to.

:class:`MallocSession` is the BPF session of ``probewatch mallocs``: uprobes on the
allocator functions of the C library the program uses (or of the program itself when
it brings its own malloc), the pid filter followed through fork, and no per-call
record: :meth:`MallocSession.snapshot` reads the maps (size histogram, outstanding
bytes per call site, counters) whenever asked.

Example::

    with MallocSession(pids=[pid], objects=["/usr/lib/x86_64-linux-gnu/libc.so.6"]) as s:
        s.start()
        time.sleep(1)
        snap = s.snapshot(top=5)
        snap.hist, snap.sites[0].bytes, snap.sites[0].frames
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..bpf_session import BpfSession
from ..collect.bpf import libbpf
from ..elf.symbols import open_image
from ..errors import NotFound, ProbewatchError
from .stacks import Symbolizer

__all__ = ["MallocSession", "Site", "Snapshot", "ALLOCATORS", "allocator_object",
           "log2_rows"]

#: function -> (entry program, return program); the entry programs read the size from
#: the argument registers by position (see mallocs.bpf.c)
ALLOCATORS: dict[str, tuple[str, str]] = {
    "malloc": ("pwm_malloc", "pwm_ret"),
    "calloc": ("pwm_calloc", "pwm_ret"),
    "realloc": ("pwm_realloc", "pwm_realloc_ret"),
    "aligned_alloc": ("pwm_aligned", "pwm_ret"),
    "memalign": ("pwm_aligned", "pwm_ret"),
    "valloc": ("pwm_malloc", "pwm_ret"),
    "pvalloc": ("pwm_malloc", "pwm_ret"),
    "posix_memalign": ("pwm_memalign_posix", "pwm_memalign_posix_ret"),
    "free": ("pwm_free", ""),
}

_STATS = ("calls", "failed", "frees", "free_unknown", "full", "no_stack")
_SITE_KEY = struct.Struct("<Ii")
_SITE = struct.Struct("<QQ")


def allocator_object(objects: Sequence[str]) -> str:
    """The first of ``objects`` (in load order: the program, then its libraries) that
    defines malloc: the one whose malloc every call goes to."""
    for path in objects:
        try:
            img = open_image(path)
        except NotFound:
            continue
        if any(s.address and img.is_function(s) for s in img.lookup("malloc")):
            return path
    raise NotFound("no malloc in " + ", ".join(objects) + " (searched their symbol tables)")


@dataclass
class Site:
    """Outstanding allocations of one process from one call stack."""

    pid: int
    bytes: int
    count: int
    frames: list[dict[str, Any]]  # {addr, symbol, offset, module}, innermost first

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "bytes": self.bytes, "count": self.count,
                "stack": list(self.frames)}


@dataclass
class Snapshot:
    """What the maps held at one moment."""

    ts: float
    hist: list[int]  # hist[i]: allocation calls asking for [2^i, 2^(i+1)) bytes (i=0: 0-1)
    sites: list[Site]  # the top call sites by outstanding bytes
    outstanding_bytes: int
    outstanding_count: int
    stats: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hist": [{"lo": lo, "hi": hi, "count": n} for lo, hi, n in log2_rows(self.hist)],
            "outstanding": {"bytes": self.outstanding_bytes, "count": self.outstanding_count},
            "top": [s.to_dict() for s in self.sites],
            "stats": dict(self.stats),
        }


def log2_rows(hist: list[int]) -> list[tuple[int, int, int]]:
    """(lo, hi, count) for the buckets from the first to the last non-empty one."""
    used = [i for i, n in enumerate(hist) if n]
    if not used:
        return []
    return [(0 if i == 0 else 1 << i, (1 << (i + 1)) - 1, hist[i])
            for i in range(used[0], used[-1] + 1)]


class MallocSession(BpfSession):
    """The mallocs BPF object attached to the allocator in ``objects`` (see module);
    ``probewatch.Session(tool="mallocs", objects=[...])`` returns one."""

    def __init__(self, tool: str = "mallocs", *, objects: Sequence[str], min_size: int = 0,
                 max_allocs: int = 1 << 18, mmap_min: int = 0, **kw: Any) -> None:
        """``mmap_min``: also count anonymous mmaps of at least this many bytes that the
        program makes itself (outside the allocator), freed by munmap; 0: not. Other
        options: those of :class:`~probewatch.bpf_session.BpfSession` (``pids``, ...)."""
        if tool != "mallocs":
            raise ProbewatchError(f"MallocSession is the mallocs tool, not {tool!r}")
        self._objects = list(objects)
        self._min_size = min_size
        self._mmap_min = mmap_min
        self._max_allocs = max_allocs
        self.allocator = allocator_object(self._objects)
        self.symbolizer = Symbolizer()
        for o in self._objects:
            self.symbolizer.add_file(o)
        super().__init__("mallocs", ringbuf_kb=4, **kw)

    def _configure(self, obj: libbpf.BpfObject) -> None:
        super()._configure(obj)
        obj.rodata["min_size"] = self._min_size
        obj.rodata["mmap_min"] = self._mmap_min
        obj.set_max_entries("allocs", self._max_allocs)
        for prog in ("pwm_mmap_enter", "pwm_mmap_exit", "pwm_munmap"):
            obj.set_autoload(prog, self._mmap_min > 0)

    def _attach(self, obj: libbpf.BpfObject) -> None:
        from ..elf.symbols import resolve_symbol

        obj.attach_tracepoint("pw_fork", "sched", "sched_process_fork")
        if self._mmap_min:
            obj.attach_tracepoint("pwm_mmap_enter", "syscalls", "sys_enter_mmap")
            obj.attach_tracepoint("pwm_mmap_exit", "syscalls", "sys_exit_mmap")
            obj.attach_tracepoint("pwm_munmap", "syscalls", "sys_enter_munmap")
        img = open_image(self.allocator)
        for name, (entry, ret) in ALLOCATORS.items():
            if not any(s.address and img.is_function(s) for s in img.lookup(name)):
                continue  # this C library has no such function
            off = resolve_symbol(self.allocator, name)[0].offset
            obj.attach_uprobe(entry, self.allocator, off)
            if ret:
                obj.attach_uprobe(ret, self.allocator, off, retprobe=True)

    def ticks(self, interval: float | None, duration: float | None = None) -> Iterator[bool]:
        """Yield every ``interval`` seconds (False) and once at the end (True): the end
        of ``duration``, the traced command's exit, or stop()."""
        self.start()
        rb = self._rb
        assert rb is not None
        t0 = self._t0
        deadline = None if duration is None else t0 + duration
        nxt = None if interval is None else t0 + interval
        cmd = self._command
        tracking = cmd.pid != 0
        try:
            while True:
                now = time.monotonic()
                done = self._stopped or (deadline is not None and now >= deadline) or (
                    tracking and cmd.exited())
                if done:
                    break
                if nxt is not None and now >= nxt:
                    nxt += interval or 0
                    yield False
                    continue
                wake = min(t for t in (deadline, nxt, now + 0.1) if t is not None)
                self._in_poll = True
                try:
                    rb.poll(max(0, int((wake - now) * 1000)))
                finally:
                    self._in_poll = False
        finally:
            self._t1 = time.monotonic()
        self._raise_signalled()
        yield True

    def snapshot(self, top: int = 10) -> Snapshot:
        """Read the maps now: the histogram, the ``top`` call sites by bytes, counters."""
        obj = self._obj
        if obj is None or obj.closed:
            raise NotFound("the mallocs session is not running")
        ncpu = libbpf.num_possible_cpus()
        hist = []
        hm = obj.map("hist")
        for i in range(64):
            v = hm.lookup(struct.pack("<I", i), percpu=True) or b""
            hist.append(sum(struct.unpack_from("<Q", v, c * 8)[0] for c in range(ncpu)
                            if len(v) >= (c + 1) * 8))
        stats = {}
        sm = obj.map("mstats")
        for i, name in enumerate(_STATS):
            v = sm.lookup(struct.pack("<I", i), percpu=True) or b""
            stats[name] = sum(struct.unpack_from("<Q", v, c * 8)[0] for c in range(ncpu)
                              if len(v) >= (c + 1) * 8)
        rows = []
        total_b = total_n = 0
        for k, v in obj.map("sites").items():
            pid, sid = _SITE_KEY.unpack(k)
            b, n = _SITE.unpack(v)
            if n == 0 or n >= 1 << 63:  # all freed (or a free raced an add): nothing left
                continue
            total_b += b
            total_n += n
            rows.append((b, n, pid, sid))
        rows.sort(key=lambda r: (-r[0], -r[1], r[2], r[3]))
        stacks = obj.map("stacks")
        sites = []
        for pid in {r[2] for r in rows[:top]}:  # what they exec'd or loaded since
            self.symbolizer.add_process_files(pid)
        for b, n, pid, sid in rows[:top]:
            frames: list[dict[str, Any]] = []
            if sid >= 0:
                raw = stacks.lookup(struct.pack("<I", sid))
                if raw is not None:
                    frames = self.symbolizer.build_id_frames(raw)
            sites.append(Site(pid, b, n, frames))
        return Snapshot(time.monotonic(), hist, sites, total_b, total_n, stats)
