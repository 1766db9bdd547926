"""Stack symbolization: kernel frames through /proc/kallsyms, user frames through the
process's mappings and the ELF symbols of the mapped files.

Mappings are what the kernel said (perf MMAP2 records, :meth:`Symbolizer.add_mapping`)
or, for a process seen first, ``/proc/PID/maps`` read at that moment; they are kept per
pid, so frames stay right after the process has exited. ELF images are cached per
file (:func:`probewatch.elf.symbols.open_image`).

A frame is ``{"addr", "symbol", "offset", "module"}``: ``symbol`` None when unknown,
``offset`` from the symbol's start, ``module`` the file (user) or ``"kernel"`` / the
module name (kernel).

BPF stack maps made with ``BPF_F_STACK_BUILD_ID`` store each user frame as (status,
20-byte build-id, file offset): the kernel resolved the mapping when it took the
stack, so such frames are named after the process is gone, through the file with that
build-id among those the symbolizer was told about (:meth:`Symbolizer.add_file`,
:meth:`Symbolizer.add_process_files`; see :meth:`Symbolizer.build_id_frames`).

Example::

    sym = Symbolizer()
    sym.frames(pid, [0xffffffff81001234], kernel=True)
    # [{'addr': 18446744071578866228, 'symbol': 'do_syscall_64', 'offset': 52,
    #   'module': 'kernel'}]
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProbewatchError

KALLSYMS = "/proc/kallsyms"
#: struct bpf_stack_build_id: s32 status, u8 build_id[20], u64 offset-or-ip
BUILD_ID_FRAME = struct.Struct("<i20sQ")
# enum bpf_stack_build_id_status (include/uapi/linux/bpf.h)
BUILD_ID_EMPTY, BUILD_ID_VALID, BUILD_ID_IP = 0, 1, 2


@dataclass
class _FuncTable:
    """Sorted (start, size, name) of one image's functions, for bisect."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def lookup(self, addr: int) -> tuple[str, int] | None:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i < 0 or addr >= self.ends[i]:
            return None
        return self.names[i], addr - self.starts[i]


class KernelSymbols:
    """/proc/kallsyms, sorted once (addresses are 0 without privilege: then empty)."""

    def __init__(self, path: str = KALLSYMS) -> None:
        rows: list[tuple[int, str, str]] = []
        try:
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) < 3 or parts[1] not in "tTwW":
                        continue
                    a = int(parts[0], 16)
                    if a:
                        mod = parts[3].strip("[]") if len(parts) > 3 else "kernel"
                        rows.append((a, parts[2], mod))
        except OSError:
            rows = []
        rows.sort()
        self._addrs = [r[0] for r in rows]
        self._rows = rows

    def lookup(self, addr: int) -> tuple[str, int, str] | None:
        """(symbol, offset, module) of the function holding ``addr``, or None."""
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0:
            return None
        a, name, mod = self._rows[i]
        if addr - a > 1 << 20:  # past the last symbol of a region: not a function
            return None
        return name, addr - a, mod


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    pgoff: int
    path: str


class Symbolizer:
    """Frames for (pid, addresses); caches mappings per pid and symbols per file."""

    def __init__(self) -> None:
        self._kernel: KernelSymbols | None = None
        self._maps: dict[int, list[Mapping]] = {}
        self._funcs: dict[str, _FuncTable | None] = {}
        self._by_build_id: dict[bytes, str] = {}
        self._bid_name: dict[bytes, str] = {}
        self._files_seen: set[str] = set()

    # -- files by build-id (BPF build-id stacks)
    def add_file(self, path: str, name: str | None = None) -> None:
        """Know ``path`` by its build-id (for :meth:`build_id_frames`); ``name``: the
        path to show for it (``/usr/lib/x.so`` for ``/proc/PID/root/usr/lib/x.so``).
        Only the build-id note is read here; the symbols when a frame needs them."""
        raw = read_build_id(path)
        if raw is None:
            from ..elf.symbols import open_image

            try:
                img = open_image(path)
            except ProbewatchError:
                return
            if not img.build_id:
                return
            raw = bytes.fromhex(img.build_id)
        bid = raw[:20].ljust(20, b"\0")
        self._by_build_id.setdefault(bid, path)
        self._bid_name.setdefault(bid, name or path)

    def add_process_files(self, pid: int) -> None:
        """Know the files ``pid`` maps now (what it exec'd, what it dlopen'd)."""
        for m in _read_maps(pid):
            if m.path not in self._files_seen:
                self._files_seen.add(m.path)
                root = f"/proc/{pid}/root{m.path}"
                self.add_file(root, m.path)

    def build_id_frames(self, raw: bytes) -> list[dict[str, Any]]:
        """The frames of one build-id stack-map value (innermost first). ``addr`` is the
        file offset (the raw ip when the kernel could not resolve the mapping); an
        unknown file's ``module`` is ``buildid:<first 12 hex digits>``."""
        out: list[dict[str, Any]] = []
        for status, bid, off in parse_build_id_stack(raw):
            sym: str | None = None
            ofs = 0
            mod: str | None = None
            if status == BUILD_ID_VALID:
                path = self._by_build_id.get(bid)
                if path is None:
                    mod = f"buildid:{bid.hex()[:12]}"
                else:
                    mod = path.rsplit("/", 1)[-1]
                    hit = self._file_offset_lookup(path, off)
                    if hit is not None:
                        sym, ofs = hit
            out.append({"addr": off, "symbol": sym, "offset": ofs, "module": mod})
        return out

    def user_frames(self, pid: int, ips: list[int], build_id_raw: bytes) -> list[dict[str, Any]]:
        """One user stack taken twice by BPF (``bpf_get_stack``): as addresses ``ips`` and
        as build-id frames ``build_id_raw``. ``addr`` is the address; the function and
        file come from the build-id frame where the file is known (right after the
        process exited), else from the process's mappings."""
        bframes = parse_build_id_stack(build_id_raw)
        out: list[dict[str, Any]] = []
        for i, ip in enumerate(ips):
            hit = None
            if i < len(bframes) and bframes[i][0] == BUILD_ID_VALID:
                _, bid, off = bframes[i]
                path = self._by_build_id.get(bid)
                if path is not None:
                    h = self._file_offset_lookup(path, off)
                    sym, ofs = h if h is not None else (None, 0)
                    hit = {"addr": ip, "symbol": sym, "offset": ofs,
                           "module": self._bid_name.get(bid, path)}
            out.append(hit if hit is not None else self.frames(pid, [ip], False)[0])
        return out

    # -- mappings
    def add_mapping(self, pid: int, start: int, length: int, pgoff: int, path: str) -> None:
        """A file mapping of ``pid`` (from a perf MMAP2 record)."""
        if not path.startswith("/"):
            return
        maps = self._maps.setdefault(pid, [])
        maps.append(Mapping(start, start + length, pgoff, path))

    def forget(self, pid: int) -> None:
        """An exec replaced the image of ``pid``: its old mappings are void."""
        self._maps.pop(pid, None)

    def _maps_of(self, pid: int) -> list[Mapping]:
        maps = self._maps.get(pid)
        if maps is None:
            maps = self._maps[pid] = _read_maps(pid)
        return maps

    # -- frames
    def frames(self, pid: int, addrs: list[int], kernel: bool) -> list[dict[str, Any]]:
        """Symbolize ``addrs`` (innermost first) of one stack."""
        out = []
        for a in addrs:
            sym: str | None = None
            off = 0
            mod: str | None = None
            if kernel:
                if self._kernel is None:
                    self._kernel = KernelSymbols()
                hit = self._kernel.lookup(a)
                if hit is not None:
                    sym, off, mod = hit
            else:
                m = _find(self._maps_of(pid), a)
                if m is not None:
                    mod = m.path
                    hit2 = self._user_lookup(m, a)
                    if hit2 is not None:
                        sym, off = hit2
            out.append({"addr": a, "symbol": sym, "offset": off, "module": mod})
        return out

    def _user_lookup(self, m: Mapping, addr: int) -> tuple[str, int] | None:
        table = self._funcs.get(m.path, _MISSING)
        if table is _MISSING:
            table = self._funcs[m.path] = _func_table(m.path)
        if table is None:
            return None
        from ..elf.symbols import open_image

        try:
            img = open_image(m.path)
        except ProbewatchError:
            return None
        return _lookup_file_offset(img, table, addr - m.start + m.pgoff)

    def _file_offset_lookup(self, path: str, file_off: int) -> tuple[str, int] | None:
        table = self._funcs.get(path, _MISSING)
        if table is _MISSING:
            table = self._funcs[path] = _func_table(path)
        if table is None:
            return None
        from ..elf.symbols import open_image

        try:
            img = open_image(path)
        except ProbewatchError:
            return None
        return _lookup_file_offset(img, table, file_off)


def _lookup_file_offset(img: Any, table: _FuncTable, file_off: int) -> tuple[str, int] | None:
    """The function holding a file offset (through the PT_LOAD segments)."""
    for seg in img.segments:
        if seg.offset <= file_off < seg.offset + seg.filesz:
            return table.lookup(file_off - seg.offset + seg.vaddr)
    return None


_EHDR64 = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR64 = struct.Struct("<IIQQQQQQ")
_NHDR = struct.Struct("<III")
PT_NOTE, NT_GNU_BUILD_ID = 4, 3


def read_build_id(path: str) -> bytes | None:
    """The GNU build-id of a 64-bit little-endian ELF file from its PT_NOTE segments
    (a few small reads, no symbol tables); None when it has none or is another kind of
    file (callers then parse it whole).

    Example::

        read_build_id("/usr/lib/x86_64-linux-gnu/libc.so.6").hex()[:8]   # '6a981b07'
    """
    from ..files import open_regular

    try:
        f = open_regular(path)
    except ProbewatchError:
        return None
    try:
        with f:
            h = f.read(_EHDR64.size)
            if len(h) < _EHDR64.size or h[:4] != b"\x7fELF" or h[4] != 2 or h[5] != 1:
                return None
            e = _EHDR64.unpack(h)
            phoff, phentsize, phnum = e[5], e[9], e[10]
            if phentsize < _PHDR64.size or phnum > 256:
                return None
            f.seek(phoff)
            phs = f.read(phentsize * phnum)
            for i in range(len(phs) // phentsize):
                p_type, _fl, off, _va, _pa, filesz, _ms, _al = _PHDR64.unpack_from(
                    phs, i * phentsize)
                if p_type != PT_NOTE or filesz > 1 << 16:
                    continue
                f.seek(off)
                notes = f.read(filesz)
                pos = 0
                while pos + _NHDR.size <= len(notes):
                    namesz, descsz, ntype = _NHDR.unpack_from(notes, pos)
                    pos += _NHDR.size
                    name = notes[pos : pos + namesz]
                    pos += (namesz + 3) & ~3
                    desc = notes[pos : pos + descsz]
                    pos += (descsz + 3) & ~3
                    if ntype == NT_GNU_BUILD_ID and name.rstrip(b"\0") == b"GNU" and desc:
                        return bytes(desc)
    except (OSError, struct.error):
        return None
    return None


def parse_build_id_stack(raw: bytes) -> list[tuple[int, bytes, int]]:
    """The frames of one build-id stack-map value: (status, build_id, offset_or_ip), up
    to the first empty frame."""
    out = []
    usable = raw[: len(raw) - len(raw) % BUILD_ID_FRAME.size]
    for status, bid, off in BUILD_ID_FRAME.iter_unpack(usable):
        if status == BUILD_ID_EMPTY:
            break
        out.append((status, bid, off))
    return out


def frame_text(f: dict[str, Any]) -> str:
    """One frame as a line: ``func+0x1c (file)``, ``[file+0x1c]`` or ``0x7f...``."""
    if f.get("symbol") is None:
        mod = f.get("module")
        return f"[{mod}+0x{f['addr']:x}]" if mod else f"0x{f['addr']:x}"
    mod = f.get("module")
    return f"{f['symbol']}+0x{f['offset']:x}" + (f" ({mod})" if mod else "")


_MISSING: Any = object()


def _find(maps: list[Mapping], addr: int) -> Mapping | None:
    for m in reversed(maps):  # the latest mapping of a range wins
        if m.start <= addr < m.end:
            return m
    return None


def _func_table(path: str) -> _FuncTable | None:
    from ..elf.symbols import open_image

    try:
        img = open_image(path)
    except ProbewatchError:
        return None
    funcs = sorted({(s.address, s.size, s.name) for s in img.symbols
                    if s.type in ("FUNC", "IFUNC") and s.address})
    t = _FuncTable()
    for a, size, name in funcs:
        t.starts.append(a)
        t.ends.append(a + max(size, 1))
        t.names.append(name)
    return t


def _read_maps(pid: int) -> list[Mapping]:
    out: list[Mapping] = []
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) < 6 or not parts[5].startswith("/"):
                    continue
                lo, _, hi = parts[0].partition("-")
                out.append(Mapping(int(lo, 16), int(hi, 16), int(parts[2], 16),
                                   parts[5].rstrip("\n")))
    except (OSError, ValueError):
        return out
    return out


__all__ = ["Symbolizer", "KernelSymbols", "Mapping", "BUILD_ID_FRAME", "read_build_id",
           "parse_build_id_stack", "frame_text"]
