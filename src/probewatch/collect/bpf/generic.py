"""The generic BPF collector behind ``probewatch trace --backend bpf``.

``generic.bpf.c`` has one tracepoint program and one uprobe program; each is
attached many times, and the BPF cookie of an attachment (its *slot*) says which
probe fired. Tracepoint records carry the raw ftrace record bytes, decoded by the
tracepoint's own :class:`~probewatch.decode.format.EventFormat`; uprobe records carry
the arguments fetched as described by :class:`UArg` (compiled here from the spec's
``NAME=EXPR:TYPE`` arguments) and decode to the same field dict the ftrace backend
produces for the same spec.

Example::

    col = GenericCollector(pids=[1234])
    slot = col.add_tracepoint(fmt)              # fmt: an EventFormat
    col.load(emit=True)
    col.attach()
    col.poll(100)                               # records land in col.raw
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...decode.format import KIND_DATA_LOC, KIND_REL_LOC, KIND_TAIL, EventFormat
from ...errors import ProbewatchError, SpecError
from ...sources.args import ArchABI
from ...sources.spec import ArgRef, ArgSpec, Deref, Expr, ProbeSpec, Register, Retval
from . import libbpf
from .agg import AggSetup, read_agg, read_agg_stats
from .loader import STAT_MAX, STAT_READ_FAIL, STAT_TRUNC, object_bytes, parse_stats

if TYPE_CHECKING:
    from ...sources.probes import ResolvedProbe

# probewatch.h
GEN_TP, GEN_UPROBE = 16, 17
GEN_TRUNC = 1
GEN_STACK = 2  # the record ends in a struct pw_stack_hdr and the stacks (probewatch.h)
STACK_KERNEL, STACK_USER = 1, 2  # rodata stack_mode bits
STACK_HDR = struct.Struct("<III4x")  # struct pw_stack_hdr: kernel, user, build-id bytes
DLOC_REL = 0x8000
UARG_INT, UARG_STR, UARG_ARRAY = 0, 1, 2
UVAL_FAULT, UVAL_TRUNC = 1, 2
GEN_SLOTS = 4096
TP_DATA_MAX = 4096
TP_DLOC_MAX = 8
UARGS_MAX = 8
UDEREF_MAX = 4
USTR_AREA = 4096
TAIL_SLACK = 256  # bytes copied past the fixed part of a format ending in a NAME[] field

HDR = struct.Struct("<HHIQIIII16s")  # struct pw_gen_hdr, 48 bytes
TPCONF = struct.Struct(f"<HHHH{TP_DLOC_MAX}H")  # struct pw_tpconf
UARG = struct.Struct(f"<BBBBHH{UDEREF_MAX}i")  # struct pw_uarg, 24 bytes
UCONF_HEAD = struct.Struct("<II")
UREC_HEAD = struct.Struct("<QQ")
UVAL = struct.Struct("<QHHI")  # struct pw_uval, 16 bytes
UREC_SIZE = UREC_HEAD.size + UARGS_MAX * UVAL.size  # 144

# x86_64 struct pt_regs, as u64 words
PT_REGS_X86_64 = (
    "r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx",
    "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss",
)
# arm64 struct pt_regs starts with struct user_pt_regs: regs[31], sp, pc, pstate
PT_REGS_ARM64 = tuple(f"x{n}" for n in range(31)) + ("sp", "pc", "pstate")
PT_REGS = {"x86_64": PT_REGS_X86_64, "arm64": PT_REGS_ARM64}


def comm_bytes(comm: str) -> bytes:
    """A comm as the kernel holds it: the bytes of the command-line argument it came
    from (undecodable bytes ride in surrogate escapes, as Python decodes argv).

    Example::

        comm_bytes("\udcff\udcfe")  # b"\xff\xfe"
    """
    return comm.encode("utf-8", "surrogateescape")


def tp_config(fmt: EventFormat, tp_max: int = TP_DATA_MAX) -> bytes:
    """The ``struct pw_tpconf`` of a format: event id, fixed size, dynamic locators."""
    fixed = 0
    dloc: list[int] = []
    tail = False
    for f in fmt.all_fields:
        fixed = max(fixed, f.offset + f.size)
        if f.kind == KIND_DATA_LOC:
            dloc.append(f.offset)
        elif f.kind == KIND_REL_LOC:
            dloc.append(f.offset | DLOC_REL)
        elif f.kind == KIND_TAIL:
            tail = True
    if tail:
        fixed = min(fixed + TAIL_SLACK, tp_max)
    fixed = min(fixed, TP_DATA_MAX)
    dl = dloc[:TP_DLOC_MAX]
    return TPCONF.pack(fmt.id & 0xFFFF, fixed, len(dl), 0, *(dl + [0] * (TP_DLOC_MAX - len(dl))))


# ------------------------------------------------------------------ uprobe arguments


@dataclass(frozen=True)
class UArg:
    """One compiled uprobe argument (``struct pw_uarg``) and how to decode its value."""

    name: str
    reg: int
    offs: tuple[int, ...]
    kind: int
    size: int  # INT: bytes; ARRAY: total bytes
    signed: bool = False
    elem_size: int = 0  # ARRAY: bytes per element
    elem_bytes: bool = False  # ARRAY of u8/x8: decodes to bytes (as ftrace's formats do)

    def pack(self) -> bytes:
        offs = list(self.offs) + [0] * (UDEREF_MAX - len(self.offs))
        return UARG.pack(self.reg, len(self.offs), self.kind, 0, self.size, 0, *offs)


def _reg_index(spec: ProbeSpec, name: str, abi: ArchABI, pos: int | None) -> int:
    regs = PT_REGS.get(abi.name)
    if regs is None:
        raise spec.error(f"the BPF backend has no pt_regs table for {abi.name}", pos=pos)
    try:
        return regs.index(name)
    except ValueError:
        raise spec.error(f"register %{name} cannot be read by the BPF backend", pos=pos) \
            from None


def _compile_expr(spec: ProbeSpec, e: Expr, abi: ArchABI) -> tuple[int, list[int], int]:
    """-> (pt_regs index, memory-read offsets innermost first, implied int size or 0)."""
    if isinstance(e, ArgRef):
        if e.index < len(abi.arg_registers):
            return _reg_index(spec, abi.arg_registers[e.index], abi, e.pos), [], 0
        slot = abi.first_stack_slot + e.index - len(abi.arg_registers)
        return _reg_index(spec, "sp", abi, e.pos), [slot * abi.word_size], 0
    if isinstance(e, Retval):
        return _reg_index(spec, "ax" if abi.name == "x86_64" else "x0", abi, e.pos), [], 0
    if isinstance(e, Register):
        ref = abi.register(e.name)
        if ref is None:
            names = ", ".join(abi.register_names())
            raise spec.error(
                f"unknown register '%{e.name}' for {abi.name} (expected one of: {names})",
                pos=e.pos,
            )
        if ref.shift:
            raise spec.error(
                f"%{e.name} is the middle of a register: the BPF backend cannot read it"
                " (use --backend ftrace)", pos=e.pos)
        size = ref.size if ref.size and ref.size < abi.word_size else 0
        return _reg_index(spec, ref.name, abi, e.pos), [], size
    assert isinstance(e, Deref)
    reg, offs, _ = _compile_expr(spec, e.inner, abi)
    return reg, offs + [e.offset], 0


def compile_uarg(spec: ProbeSpec, a: ArgSpec, abi: ArchABI) -> UArg:
    """Compile ``NAME=EXPR[:TYPE]`` into a :class:`UArg` (SpecError when BPF cannot)."""
    reg, offs, implied = _compile_expr(spec, a.expr, abi)
    t = a.arg_type
    if t is not None and t.needs_memory and not isinstance(a.expr, Deref):
        offs = offs + [0]  # arg0:string is the string arg0 points to (as for ftrace)
    if len(offs) > UDEREF_MAX:
        raise spec.error(
            f"{a.name}: at most {UDEREF_MAX} memory reads per argument with the BPF backend",
            pos=a.pos)
    if t is None:
        size = implied or abi.word_size
        return UArg(a.name, reg, tuple(offs), UARG_INT, size, False)
    if t.is_string:
        return UArg(a.name, reg, tuple(offs), UARG_STR, 0)
    esize = t.bits // 8
    if t.count is not None:
        total = esize * t.count
        return UArg(a.name, reg, tuple(offs), UARG_ARRAY, total, t.signed, esize,
                    elem_bytes=esize == 1 and not t.signed)
    return UArg(a.name, reg, tuple(offs), UARG_INT, esize, t.signed)


def uprobe_config(args: list[UArg]) -> bytes:
    """The ``struct pw_uconf`` of a probe's compiled arguments."""
    body = b"".join(a.pack() for a in args)
    body += bytes(UARG.size * (UARGS_MAX - len(args)))
    return UCONF_HEAD.pack(len(args), 0) + body


def record_stacks(rec: bytes, start: int, size: int) -> tuple[list[int], list[int], bytes]:
    """The stacks at the end of a GEN_STACK record whose data (``size`` bytes) starts at
    ``start``: (kernel ips, user ips, user build-id frames as raw bytes)."""
    o = start + ((size + 7) & ~7)
    if o + STACK_HDR.size > len(rec):
        return [], [], b""
    k, u, b = STACK_HDR.unpack_from(rec, o)
    o += STACK_HDR.size
    k = min(k, max(0, len(rec) - o)) // 8
    kips = list(struct.unpack_from(f"<{k}Q", rec, o)) if k else []
    o += 8 * k
    u = min(u, max(0, len(rec) - o)) // 8
    uips = list(struct.unpack_from(f"<{u}Q", rec, o)) if u else []
    o += 8 * u
    return kips, uips, bytes(rec[o : o + b])


def _cstr(b: bytes) -> str:
    return b.partition(b"\0")[0].decode("utf-8", "surrogateescape")  # lossless


class UprobeDecoder:
    """Decode the data of a PW_GEN_UPROBE record into the ftrace backend's field dict.

    uprobes: ``{"__probe_ip": ..., args...}``; uretprobes: ``{"__probe_func": ...,
    "__probe_ret_ip": ..., args...}``. Failed reads give 0 / "" as ftrace's do.
    """

    def __init__(self, args: list[UArg], retprobe: bool) -> None:
        self.args = args
        self.retprobe = retprobe
        self._vals = struct.Struct("<" + "QHHI" * len(args))
        self.faults = 0

    def decode(self, rec: bytes, start: int, end: int) -> dict[str, Any]:
        ip, ret_ip = UREC_HEAD.unpack_from(rec, start)
        if self.retprobe:
            out: dict[str, Any] = {"__probe_func": ip, "__probe_ret_ip": ret_ip}
        else:
            out = {"__probe_ip": ip}
        vals = self._vals.unpack_from(rec, start + UREC_HEAD.size)
        data = start + UREC_SIZE
        for i, a in enumerate(self.args):
            val, ln, flags = vals[4 * i], vals[4 * i + 1], vals[4 * i + 2]
            if flags & UVAL_FAULT:
                self.faults += 1
            if a.kind == UARG_INT:
                bits = a.size * 8
                v = val & ((1 << bits) - 1)
                if a.signed and v >> (bits - 1):
                    v -= 1 << bits
                out[a.name] = v
            elif a.kind == UARG_STR:
                o = data + val
                out[a.name] = _cstr(rec[o : min(o + ln, end)]) if ln else ""
            else:
                o = data + val
                raw = rec[o : min(o + ln, end)].ljust(a.size, b"\0")
                if a.elem_bytes:
                    out[a.name] = raw
                else:
                    code = {1: "b", 2: "h", 4: "i", 8: "q"}[a.elem_size]
                    if not a.signed:
                        code = code.upper()
                    out[a.name] = struct.unpack(f"<{a.size // a.elem_size}{code}", raw)
        return out


# ------------------------------------------------------------------ the collector


@dataclass
class Attachment:
    slot: int
    kind: str  # "tp" | "uprobe" | "uretprobe"
    conf: bytes
    system: str = ""
    name: str = ""
    path: str = ""
    offset: int = 0


@dataclass
class GenericCollector:
    """Load generic.bpf.o, attach it per slot, and collect raw ring-buffer records.

    ``raw`` receives every record (bytes) delivered by :meth:`poll` / :meth:`consume`.
    """

    pids: list[int] = field(default_factory=list)
    follow: bool = True
    comm: str | None = None
    ringbuf_bytes: int = 64 << 20
    tp_max: int = TP_DATA_MAX
    ustr_max: int = USTR_AREA
    exclude_self: bool = True
    raw: list[bytes] = field(default_factory=list)
    #: STACK_KERNEL | STACK_USER: records carry those stacks (flag GEN_STACK)
    stack_mode: int = 0
    #: aggregate in the kernel (agg.h): the *_agg programs update maps, emit nothing
    agg: AggSetup | None = None

    def __post_init__(self) -> None:
        self._attach: list[Attachment] = []
        self._obj: libbpf.BpfObject | None = None
        self._rb: libbpf.RingBuffer | None = None
        self._last_stats: dict[int, bytes] = {}
        self._last_counts: dict[int, int] = {}
        if self.comm is not None and len(comm_bytes(self.comm)) > 15:
            raise SpecError(f"comm {self.comm!r} is longer than 15 bytes (the kernel's comm)")

    # -- what to attach (before load)
    def _slot(self) -> int:
        n = len(self._attach)
        if n >= GEN_SLOTS:
            raise ProbewatchError(f"too many probes for the BPF backend (limit {GEN_SLOTS})")
        return n

    def add_tracepoint(self, fmt: EventFormat) -> int:
        slot = self._slot()
        self._attach.append(Attachment(slot, "tp", tp_config(fmt, self.tp_max), fmt.system,
                                    fmt.name))
        return slot

    def add_uprobe(self, path: str, offset: int, retprobe: bool, args: list[UArg]) -> int:
        if len(args) > UARGS_MAX:
            raise ProbewatchError(
                f"the BPF backend records at most {UARGS_MAX} arguments per uprobe")
        slot = self._slot()
        self._attach.append(Attachment(slot, "uretprobe" if retprobe else "uprobe",
                                    uprobe_config(args), path=path, offset=offset))
        return slot

    def arm(self, probe: ResolvedProbe, filter: str | None = None, **how: Any) -> int:
        """:class:`~probewatch.collect.base.Collector`: a tracepoint by its format, a
        uprobe by path + offset with its compiled arguments (``how["args"]``). Filters
        are evaluated by the session in user space (``filter`` is not used here)."""
        if probe.fmt is not None:
            return self.add_tracepoint(probe.fmt)
        dp = probe.dynamic
        if dp is None or probe.kind not in ("uprobe", "uretprobe"):
            raise ProbewatchError(f"the BPF backend cannot arm a {probe.kind} probe")
        return self.add_uprobe(dp.target_path, dp.offset, probe.kind == "uretprobe",
                               list(how.get("args", [])))

    def stop(self) -> None:
        """:class:`~probewatch.collect.base.Collector`: :meth:`detach`."""
        self.detach()

    @property
    def nslots(self) -> int:
        return len(self._attach)

    # -- load, attach
    def load(self, emit: bool = True) -> None:
        obj = libbpf.BpfObject.open(object_bytes("generic"), "generic")
        self._obj = obj
        ro = obj.rodata
        ro["self_pid"] = os.getpid() if self.exclude_self else 0
        ro["filter_pids"] = 1 if self.pids else 0
        ro["follow_forks"] = 1 if self.follow else 0
        if self.comm:
            ro["filter_comm"] = 1
            ro["targ_comm"] = comm_bytes(self.comm)[:15]
        ro["emit"] = 1 if emit else 0
        ro["tp_max"] = max(8, min(self.tp_max, TP_DATA_MAX))
        ro["ustr_max"] = max(1, min(self.ustr_max, USTR_AREA))
        ro["stack_mode"] = self.stack_mode
        # aggregating in the kernel: no records, the smallest ring will do
        obj.set_max_entries("events", self.ringbuf_bytes if self.agg is None
                            else os.sysconf("SC_PAGE_SIZE"))
        kinds = {a.kind for a in self._attach}
        obj.set_autoload("pw_gen_fork", bool(self.pids) and self.follow)
        agg = self.agg is not None
        for prog, kind in (("pw_tp", "tp"), ("pw_uprobe", "uprobe"),
                           ("pw_uretprobe", "uretprobe")):
            obj.set_autoload(prog, kind in kinds and not agg)
            obj.set_autoload(prog + "_agg", kind in kinds and agg)
        if self.agg is not None:
            ro["emit"] = 0
            self.agg.configure(obj)
        obj.load()
        pm = obj.map("pids")
        for p in self.pids:
            pm.update(struct.pack("<I", p), b"\x01")
        tpm = obj.map("tpconf")
        um = obj.map("uconf")
        for a in self._attach:
            (tpm if a.kind == "tp" else um).update(struct.pack("<I", a.slot), a.conf)
        if self.agg is not None:
            self.agg.write(obj)
        self._rb = obj.ring_buffer("events", self.raw.append)

    def attach(self) -> None:
        obj = self._obj
        assert obj is not None
        if self.pids and self.follow:
            obj.attach_tracepoint("pw_gen_fork", "sched", "sched_process_fork")
        sfx = "_agg" if self.agg is not None else ""
        for a in self._attach:
            if a.kind == "tp":
                obj.attach_tracepoint("pw_tp" + sfx, a.system, a.name, cookie=a.slot)
            else:
                retprobe = a.kind == "uretprobe"
                prog = "pw_uretprobe" if retprobe else "pw_uprobe"
                obj.attach_uprobe(prog + sfx, a.path, a.offset, retprobe, cookie=a.slot)

    def add_pids(self, pids: list[int]) -> None:
        assert self._obj is not None
        pm = self._obj.map("pids")
        for p in pids:
            pm.update(struct.pack("<I", p), b"\x01")

    # -- running
    def poll(self, timeout_ms: int) -> int:
        return self._rb.poll(timeout_ms) if self._rb is not None else 0

    def consume(self) -> int:
        return self._rb.consume() if self._rb is not None else 0

    def epoll_fd(self) -> int:
        return self._rb.epoll_fd() if self._rb is not None else -1

    def detach(self) -> None:
        if self._obj is not None and not self._obj.closed:
            self._obj.detach()

    @property
    def attachments(self) -> tuple[Attachment, ...]:
        """What was added, in slot order: tracepoints (system, name) and uprobes (path,
        offset)."""
        return tuple(self._attach)

    # -- counters
    def _refresh(self) -> None:
        obj = self._obj
        if obj is None or obj.closed:
            return
        m = obj.map("stats")
        for slot in range(STAT_MAX):
            v = m.lookup(struct.pack("<I", slot), percpu=True)
            if v is not None:
                self._last_stats[slot] = v
        cm = obj.map("slot_counts")
        ncpu = libbpf.num_possible_cpus()
        for a in self._attach:
            v = cm.lookup(struct.pack("<I", a.slot), percpu=True)
            if v is not None:
                self._last_counts[a.slot] = sum(
                    struct.unpack_from("<Q", v, 8 * c)[0] for c in range(ncpu))

    def slot_counts(self) -> dict[int, int]:
        """slot -> times the probe fired for a wanted task (counted in the kernel)."""
        self._refresh()
        return dict(self._last_counts)

    def agg_snapshot(self) -> tuple[dict[bytes, tuple[int, int]], list[int]]:
        """In-kernel aggregation so far: ({key bytes: (count, sum)}, agg_stats)."""
        obj = self._obj
        if obj is None or obj.closed or self.agg is None:
            return {}, []
        return read_agg(obj), read_agg_stats(obj)

    def losses(self) -> Any:
        """The :class:`~probewatch.collect.bpf.loader.Losses` counted so far."""
        self._refresh()
        n = libbpf.num_possible_cpus() if self._last_stats else 0
        return parse_stats(self._last_stats, n)

    def close(self) -> None:
        """Detach and free everything (links, ring buffer, maps, programs). Idempotent."""
        if self._obj is not None and not self._obj.closed:
            try:
                self._refresh()
            except ProbewatchError:
                pass
            self._obj.close()
        self._rb = None



__all__ = [
    "GenericCollector",
    "UArg",
    "comm_bytes",
    "UprobeDecoder",
    "compile_uarg",
    "tp_config",
    "uprobe_config",
    "HDR",
    "GEN_TP",
    "GEN_UPROBE",
    "GEN_TRUNC",
    "STAT_READ_FAIL",
    "STAT_TRUNC",
]
