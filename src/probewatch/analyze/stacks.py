"""User stacks as the kernel records them with build-ids, symbolized through ELF files.

A BPF stack map made with ``BPF_F_STACK_BUILD_ID`` stores each frame as (status,
20-byte build-id, file offset) instead of a virtual address: the kernel resolved the
mapping when it took the stack, so the frame can be named after the process is gone.
:class:`Symbolizer` finds the file of a build-id among candidate files (the traced
program and the libraries it loads, and whatever else it is told about), turns the
file offset into a virtual address through the PT_LOAD segments and names the
function around it.

Example::

    sym = Symbolizer(["/usr/bin/ls", "/usr/lib/x86_64-linux-gnu/libc.so.6"])
    sym.frame(build_id, 0x28d90)
    # Frame(addr=0x28d90, symbol='__libc_start_call_main', offset=0x80, module='libc.so.6')
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from ..elf.symbols import ElfImage, open_image
from ..errors import NotFound

__all__ = ["Frame", "Symbolizer", "parse_build_id_stack", "BUILD_ID_FRAME"]

#: struct bpf_stack_build_id: s32 status, u8 build_id[20], u64 offset-or-ip
BUILD_ID_FRAME = struct.Struct("<i20sQ")
# status values (include/uapi/linux/bpf.h: enum bpf_stack_build_id_status)
EMPTY, VALID, IP = 0, 1, 2


@dataclass(frozen=True)
class Frame:
    """One frame: ``addr`` is the file offset (or the raw ip when the kernel could not
    resolve the mapping); ``symbol`` None when unknown."""

    addr: int
    symbol: str | None
    offset: int
    module: str | None

    def text(self) -> str:
        if self.symbol is None:
            where = self.module or "?"
            return f"[{where}+0x{self.addr:x}]" if self.module else f"0x{self.addr:x}"
        return f"{self.symbol}+0x{self.offset:x}" + (f" ({self.module})" if self.module else "")

    def to_dict(self) -> dict[str, object]:
        return {"addr": self.addr, "symbol": self.symbol, "offset": self.offset,
                "module": self.module}


def parse_build_id_stack(raw: bytes) -> list[tuple[int, bytes, int]]:
    """The frames of one stack-map value: (status, build_id, offset_or_ip), up to the
    first empty frame."""
    out = []
    for status, bid, off in BUILD_ID_FRAME.iter_unpack(
            raw[: len(raw) - len(raw) % BUILD_ID_FRAME.size]):
        if status == EMPTY:
            break
        out.append((status, bid, off))
    return out


class _Funcs:
    """One file's functions sorted by address, and its segments."""

    def __init__(self, img: ElfImage) -> None:
        funcs = sorted({(s.address, s.size, s.name) for s in img.symbols
                        if img.is_function(s) and s.address})
        self.addrs = [a for a, _, _ in funcs]
        self.funcs = funcs
        self.img = img

    def vaddr(self, file_off: int) -> int | None:
        for seg in self.img.segments:
            if seg.offset <= file_off < seg.offset + seg.filesz:
                return file_off - seg.offset + seg.vaddr
        return None

    def lookup(self, vaddr: int) -> tuple[str, int] | None:
        i = bisect.bisect_right(self.addrs, vaddr) - 1
        while i >= 0:
            a, size, name = self.funcs[i]
            if vaddr < a + max(size, 1):
                return name, vaddr - a
            if size:  # a sized function that ends before: no match
                return None
            i -= 1
        return None


class Symbolizer:
    """Names frames by build-id among the files it knows (see module docs)."""

    def __init__(self, paths: Iterable[str] = ()) -> None:
        self._by_id: dict[bytes, str] = {}
        self._funcs: dict[str, _Funcs | None] = {}
        self._seen: set[str] = set()
        for p in paths:
            self.add(p)

    def add(self, path: str) -> None:
        """Know one more file (its build-id read now)."""
        try:
            img = open_image(path)
        except NotFound:
            return
        if img.build_id:
            self._by_id.setdefault(bytes.fromhex(img.build_id), path)

    def add_process(self, pid: int) -> None:
        """Know the files process ``pid`` maps now (what it exec'd, what it dlopen'd)."""
        from ..elf.libs import maps_paths

        try:
            paths = maps_paths(pid)
        except (OSError, NotFound):
            return
        for p in paths:
            if p not in self._seen:
                self._seen.add(p)
                self.add(f"/proc/{pid}/root{p}" if p.startswith("/") else p)

    def _file_funcs(self, path: str) -> _Funcs | None:
        if path not in self._funcs:
            try:
                img = open_image(path)
                self._funcs[path] = _Funcs(img)
                if img.stripped:
                    from ..elf.symbols import find_debug_file

                    dbg = find_debug_file(img)
                    if dbg.found:
                        f = _Funcs(open_image(dbg.found))
                        f.img = img  # segments of the file itself
                        self._funcs[path] = f
            except NotFound:
                self._funcs[path] = None
        return self._funcs[path]

    def frame(self, build_id: bytes, file_off: int, status: int = VALID) -> Frame:
        """The frame at ``file_off`` of the file with ``build_id``."""
        if status != VALID:
            return Frame(file_off, None, 0, None)
        path = self._lookup_id(build_id)
        if path is None:
            return Frame(file_off, None, 0, f"buildid:{build_id.hex()[:12]}")
        module = path.rsplit("/", 1)[-1]  # /proc/PID/root/usr/bin/x -> x
        funcs = self._file_funcs(path)
        if funcs is None:
            return Frame(file_off, None, 0, module)
        va = funcs.vaddr(file_off)
        hit = funcs.lookup(va) if va is not None else None
        if hit is None:
            return Frame(file_off, None, 0, module)
        return Frame(file_off, hit[0], hit[1], module)

    def _lookup_id(self, build_id: bytes) -> str | None:
        hit = self._by_id.get(build_id)
        if hit is not None:
            return hit
        # build-ids shorter than 20 bytes (md5: 16) are zero-padded by the kernel
        trimmed = build_id.rstrip(b"\0")
        for bid, path in self._by_id.items():
            if bid.rstrip(b"\0") == trimmed:
                return path
        return None

    def stack(self, raw: bytes) -> list[Frame]:
        """Every frame of one build-id stack-map value."""
        return [self.frame(bid, off, st) for st, bid, off in parse_build_id_stack(raw)]
