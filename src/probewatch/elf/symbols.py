"""ELF symbols -> file offsets (what a uprobe needs), on pyelftools.

Reads ``.symtab`` and ``.dynsym`` (with GNU symbol versions, so ``malloc@@GLIBC_2.2.5``
answers to ``malloc``), turns a virtual address into a file offset through the
``PT_LOAD`` segments (``offset = vaddr - p_vaddr + p_offset``), and, for stripped
binaries, finds the separate debug file through the build-id, ``.gnu_debuglink`` and
``/usr/lib/debug/<path>``. Parsed files are cached per (path, st_dev, st_ino, mtime).

Example::

    [r] = resolve_symbol("/usr/lib/x86_64-linux-gnu/libc.so.6", "malloc")
    r.address, r.offset, r.warnings      # (0x98930, 0x98930, ())
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerSymSection
from elftools.elf.sections import NoteSection, SymbolTableSection

from ..errors import NotFound, SpecError
from ..files import check_regular, open_regular

__all__ = [
    "DEBUG_ROOTS",
    "DEFAULT_MAX_MATCHES",
    "Segment",
    "SectionInfo",
    "Symbol",
    "ElfImage",
    "DebugSearch",
    "ResolvedSymbol",
    "open_image",
    "clear_cache",
    "find_debug_file",
    "resolve_symbol",
    "address_to_offset",
    "symbol_address",
]

#: where separate debug files live (gdb's debug-file-directory)
DEBUG_ROOTS: tuple[str, ...] = ("/usr/lib/debug",)
DEFAULT_MAX_MATCHES = 64

# pyelftools names STT_GNU_IFUNC (10) after the range start it shares: STT_LOOS
_TYPE_NAMES = {"STT_LOOS": "IFUNC", "STT_GNU_IFUNC": "IFUNC"}
_FUNC_TYPES = frozenset({"FUNC", "IFUNC"})


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD program header."""

    vaddr: int
    memsz: int
    offset: int
    filesz: int
    flags: int

    @property
    def executable(self) -> bool:
        return bool(self.flags & 1)  # PF_X

    def contains(self, vaddr: int, file_backed: bool = True) -> bool:
        size = self.filesz if file_backed else self.memsz
        return self.vaddr <= vaddr < self.vaddr + size


@dataclass(frozen=True)
class SectionInfo:
    name: str
    type: str
    addr: int
    offset: int
    size: int


@dataclass(frozen=True)
class Symbol:
    """One defined symbol. ``type`` is FUNC, IFUNC, OBJECT, NOTYPE, ...; ``file`` is the
    source file a LOCAL symbol came from (from the preceding STT_FILE), when known."""

    name: str
    address: int
    size: int
    type: str
    bind: str
    version: str | None = None
    default_version: bool = True
    table: str = ".symtab"
    file: str | None = None

    @property
    def full_name(self) -> str:
        if not self.version:
            return self.name
        return f"{self.name}{'@@' if self.default_version else '@'}{self.version}"


class ElfImage:
    """What probewatch needs from one ELF file, read once (see :func:`open_image`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sections: dict[str, SectionInfo] = {}
        self.segments: list[Segment] = []
        self.symbols: list[Symbol] = []
        self.build_id: str | None = None
        self.debuglink: tuple[str, int] | None = None
        try:
            with _open_elf(path) as f:
                self._read(ELFFile(f))
        except ELFError as e:
            raise NotFound(f"{path} is not a valid ELF file ({e})") from None
        except OSError as e:  # a file that says it is regular but cannot be read
            raise NotFound(f"{path}: cannot read it as an ELF file ({e.strerror})") from None
        except (ValueError, struct.error, UnicodeDecodeError) as e:
            raise NotFound(f"{path} is not a valid ELF file ({e})") from None
        self._by_name: dict[str, list[Symbol]] = {}
        for s in self.symbols:
            self._by_name.setdefault(s.name, []).append(s)

    def _read(self, elf: ELFFile) -> None:
        h = elf.header
        self.machine: str = str(h["e_machine"])
        self.elf_type: str = str(h["e_type"])
        self.elf_class: int = int(elf.elfclass)
        self.little_endian: bool = bool(elf.little_endian)
        has_interp = False
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD":
                self.segments.append(
                    Segment(
                        seg["p_vaddr"], seg["p_memsz"], seg["p_offset"], seg["p_filesz"],
                        seg["p_flags"],
                    )
                )
            elif seg["p_type"] == "PT_INTERP":
                has_interp = True
        self.is_pie: bool = self.elf_type == "ET_DYN" and has_interp
        for sec in elf.iter_sections():
            self.sections[sec.name] = SectionInfo(
                sec.name, str(sec["sh_type"]), sec["sh_addr"], sec["sh_offset"], sec["sh_size"]
            )
            if isinstance(sec, NoteSection) and sec["sh_type"] != "SHT_NOBITS":
                for note in sec.iter_notes():
                    if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                        self.build_id = str(note["n_desc"])
        link = elf.get_section_by_name(".gnu_debuglink")
        if link is not None and link["sh_type"] != "SHT_NOBITS":
            data = link.data()
            nul = data.find(b"\0")
            if nul > 0:
                crc_at = (nul + 4) & ~3
                crc = int.from_bytes(
                    data[crc_at : crc_at + 4], "little" if self.little_endian else "big"
                )
                self.debuglink = (data[:nul].decode("utf-8", "replace"), crc)
        self.has_symtab: bool = False
        self.has_dynsym: bool = False
        for sec in elf.iter_sections():
            if not isinstance(sec, SymbolTableSection) or sec["sh_type"] == "SHT_NOBITS":
                continue
            if sec["sh_type"] == "SHT_SYMTAB":
                self.has_symtab = True
                self.symbols.extend(_read_symtab(sec))
            elif sec["sh_type"] == "SHT_DYNSYM":
                self.has_dynsym = True
                self.symbols.extend(_read_dynsym(elf, sec))

    # -- addresses
    def vaddr_to_offset(self, vaddr: int, file_backed: bool = True) -> int:
        """File offset of a virtual address: ``vaddr - p_vaddr + p_offset`` of its PT_LOAD.

        Raises NotFound when no PT_LOAD holds it (``file_backed``: within p_filesz).
        """
        for seg in self.segments:
            if seg.contains(vaddr, file_backed):
                return vaddr - seg.vaddr + seg.offset
        ranges = ", ".join(f"0x{s.vaddr:x}-0x{s.vaddr + s.filesz:x}" for s in self.segments)
        raise NotFound(
            f"address 0x{vaddr:x} is not inside any loadable segment of {self.path}"
            f" (PT_LOAD ranges: {ranges or 'none'})"
        )

    def in_executable_segment(self, vaddr: int) -> bool:
        return any(s.executable and s.contains(vaddr) for s in self.segments)

    # -- symbols
    def lookup(self, name: str) -> list[Symbol]:
        """Symbols called ``name``; ``name@VER``/``name@@VER`` select one version."""
        if "@" in name:
            base, _, ver = name.partition("@")
            ver = ver.lstrip("@")
            return [s for s in self._by_name.get(base, []) if s.version == ver]
        return list(self._by_name.get(name, []))

    def match(self, pattern: str) -> list[Symbol]:
        """Function symbols whose name matches a shell glob."""
        return [
            s
            for n, syms in self._by_name.items()
            if fnmatch.fnmatchcase(n, pattern)
            for s in syms
            if self.is_function(s)
        ]

    def is_function(self, s: Symbol) -> bool:
        if s.type in _FUNC_TYPES:
            return True
        return s.type == "NOTYPE" and s.address != 0 and self.in_executable_segment(s.address)

    def function_names(self) -> list[str]:
        return sorted({s.name for s in self.symbols if s.type in _FUNC_TYPES})

    @property
    def stripped(self) -> bool:
        return not self.has_symtab


def _sym_type(raw: str) -> str:
    return _TYPE_NAMES.get(raw, raw[4:] if raw.startswith("STT_") else raw)


def _split_version(name: str) -> tuple[str, str | None, bool]:
    if "@" not in name:
        return name, None, True
    base, _, ver = name.partition("@")
    default = ver.startswith("@")
    return base, ver.lstrip("@") or None, default


def _read_symtab(sec: SymbolTableSection) -> Iterable[Symbol]:
    current_file: str | None = None
    for sym in sec.iter_symbols():
        info = sym["st_info"]
        typ = _sym_type(str(info["type"]))
        if typ == "FILE":
            current_file = sym.name or None
            continue
        if sym["st_shndx"] == "SHN_UNDEF" or not sym.name or typ == "SECTION":
            continue
        bind = str(info["bind"])[4:]
        name, ver, default = _split_version(sym.name)
        yield Symbol(
            name, sym["st_value"], sym["st_size"], typ, bind, ver, default, ".symtab",
            current_file if bind == "LOCAL" else None,
        )


def _read_dynsym(elf: ELFFile, sec: SymbolTableSection) -> Iterable[Symbol]:
    versym = elf.get_section_by_name(".gnu.version")
    verdef = elf.get_section_by_name(".gnu.version_d")
    names: dict[int, str] = {}
    if isinstance(verdef, GNUVerDefSection):
        for vd, aux in verdef.iter_versions():
            for a in aux:
                names[int(vd["vd_ndx"])] = a.name
                break
    vs = versym if isinstance(versym, GNUVerSymSection) else None
    for i, sym in enumerate(sec.iter_symbols()):
        if sym["st_shndx"] == "SHN_UNDEF" or not sym.name:
            continue
        info = sym["st_info"]
        typ = _sym_type(str(info["type"]))
        if typ in ("SECTION", "FILE"):
            continue
        ver: str | None = None
        default = True
        if vs is not None and names:
            ndx = vs.get_symbol(i)["ndx"]
            if isinstance(ndx, int):
                default = not ndx & 0x8000
                ver = names.get(ndx & 0x7FFF)
                if ver is not None and ndx & 0x7FFF == 1:
                    ver = None  # index 1 is the file's own soname, not a version
        name, v2, d2 = _split_version(sym.name)
        if v2 is not None:
            ver, default = v2, d2
        yield Symbol(
            name, sym["st_value"], sym["st_size"], typ, str(info["bind"])[4:], ver, default,
            ".dynsym",
        )


# ---------------------------------------------------------------------------- cache

_cache: OrderedDict[tuple[str, int, int, int, int], ElfImage] = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 32


def _open_elf(path: str) -> BinaryIO:
    """The ELF file ``path`` names: a regular file, or a library stored in an APK
    (``APK!/lib/arm64-v8a/libfoo.so``, see :mod:`probewatch.elf.apk`)."""
    from .apk import open_member, split_member

    if split_member(path)[1] is not None:
        return open_member(path)
    return open_regular(path)


def open_image(path: str) -> ElfImage:
    """Parse ``path`` (cached per path, st_dev, st_ino, mtime, size); NotFound if absent.

    ``APK!/ENTRY`` parses a library stored in an APK (the APK file is stat'ed)."""
    from .apk import split_member

    apk, member = split_member(path)
    try:
        st = os.stat(apk if member is not None else path)
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file") from None
    except PermissionError:
        raise NotFound(f"{path}: permission denied") from None
    except OSError as e:
        raise NotFound(f"{path}: {e.strerror}") from None
    check_regular(path, st, "an ELF file")  # never open a FIFO, device or directory
    key = (path, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    with _cache_lock:
        img = _cache.get(key)
        if img is not None:
            _cache.move_to_end(key)
            return img
    try:
        img = ElfImage(path)
    except IsADirectoryError:
        raise NotFound(f"{path} is a directory, not an ELF file") from None
    except PermissionError:
        raise NotFound(f"{path}: permission denied") from None
    with _cache_lock:
        _cache[key] = img
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return img


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


# ------------------------------------------------------------------- debug files


@dataclass
class DebugSearch:
    """Where a separate debug file was looked for, and what was found."""

    found: str | None
    looked: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _crc32_file(path: str) -> int:
    crc = 0
    with open_regular(path, "a debug file") as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc & 0xFFFFFFFF


def find_debug_file(img: ElfImage, debug_roots: Sequence[str] | None = None) -> DebugSearch:
    """Find the separate debug file of ``img`` the way gdb does.

    Order: ``ROOT/.build-id/xx/rest.debug``; the ``.gnu_debuglink`` name in the binary's
    directory, its ``.debug/`` subdirectory and ``ROOT/<dir>/``; then ``ROOT/<path>`` and
    ``ROOT/<path>.debug``. A candidate counts only if its build-id matches (or, without
    build-ids, its CRC matches the debuglink's).
    """
    roots = list(DEBUG_ROOTS if debug_roots is None else debug_roots)
    out = DebugSearch(found=None)
    real = os.path.realpath(img.path)
    d = os.path.dirname(real)
    cands: list[tuple[str, str]] = []
    if img.build_id and len(img.build_id) > 2:
        for r in roots:
            cands.append(
                (os.path.join(r, ".build-id", img.build_id[:2], img.build_id[2:] + ".debug"),
                 "build-id")
            )
    if img.debuglink:
        name = img.debuglink[0]
        cands.append((os.path.join(d, name), "debuglink"))
        cands.append((os.path.join(d, ".debug", name), "debuglink"))
        for r in roots:
            cands.append((os.path.join(r, d.lstrip("/"), name), "debuglink"))
    for r in roots:
        cands.append((os.path.join(r, real.lstrip("/")), "path"))
        cands.append((os.path.join(r, real.lstrip("/") + ".debug"), "path"))
    seen: set[str] = set()
    try:
        own = os.stat(real)
        own_id = (own.st_dev, own.st_ino)
    except OSError:
        own_id = (-1, -1)
    for path, how in cands:
        if path in seen:
            continue
        seen.add(path)
        out.looked.append(path)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == own_id:
            continue
        try:
            dbg = open_image(path)
        except NotFound as e:
            out.notes.append(f"{path}: {e}")
            continue
        if img.build_id and dbg.build_id and dbg.build_id != img.build_id:
            out.notes.append(f"{path}: build-id {dbg.build_id} does not match {img.build_id}")
            continue
        if how == "debuglink" and img.debuglink and not (img.build_id and dbg.build_id):
            crc = _crc32_file(path)
            if crc != img.debuglink[1]:
                out.notes.append(
                    f"{path}: CRC 0x{crc:08x} does not match the debuglink's"
                    f" 0x{img.debuglink[1]:08x}"
                )
                continue
        if not dbg.has_symtab:
            out.notes.append(f"{path}: has no .symtab")
            continue
        out.found = path
        return out
    return out


# --------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class ResolvedSymbol:
    """A function resolved for a uprobe: ``offset`` is the file offset in ``path``."""

    name: str
    address: int
    offset: int
    path: str
    symbol: Symbol
    source: str
    warnings: tuple[str, ...] = ()


def _debug_image(
    img: ElfImage, debug_roots: Sequence[str] | None
) -> tuple[ElfImage | None, DebugSearch]:
    search = find_debug_file(img, debug_roots)
    if search.found is None:
        return None, search
    return open_image(search.found), search


def _describe(s: Symbol) -> str:
    where = f" in {s.file}" if s.file else ""
    return f"0x{s.address:x} ({s.bind.lower()} {s.type.lower()}{where}, size {s.size})"


def _stripped_message(img: ElfImage, name: str, search: DebugSearch) -> str:
    looked = ", ".join(search.looked) or "nowhere"
    if any(c in name for c in "*?["):
        what = f"no function among its dynamic symbols matches {name!r}"
    else:
        what = f"{name!r} is not among its dynamic symbols"
    msg = (
        f"{img.path} is stripped (no .symtab) and {what}; no debug file found"
        f" (looked in: {looked})"
    )
    if search.notes:
        msg += "; rejected: " + "; ".join(search.notes)
    msg += (
        ". Install its debug symbols (e.g. the -dbg/-dbgsym package), or probe by"
        f" address: u:{img.path}:0xADDRESS (find the address with objdump -d)"
    )
    return msg


def _ifunc_warning(name: str, path: str, images: Sequence[ElfImage]) -> str:
    impls: set[str] = set()
    for im in images:
        impls.update(
            s.name
            for s in im.match(f"__{name}_*")
            if s.type != "IFUNC" and not s.name.endswith("_chk")
        )
    msg = (
        f"{name} in {path} is an IFUNC (GNU indirect function): the probe sits on its"
        " resolver, which runs once when the binary is loaded, not on the implementation"
        " the program calls"
    )
    if impls:
        shown = sorted(impls)
        more = f" and {len(shown) - 8} more" if len(shown) > 8 else ""
        msg += (
            f"; likely implementations: {', '.join(shown[:8])}{more}"
            " (probe the one this CPU uses instead)"
        )
    else:
        msg += f"; no implementation symbols (__{name}_*) found: install debug symbols to see them"
    return msg


def _closest(name: str, images: Sequence[ElfImage]) -> list[str]:
    names: set[str] = set()
    for im in images:
        names.update(s.name for s in im.symbols if im.is_function(s))
    return difflib.get_close_matches(name, sorted(names), n=5, cutoff=0.6)


def resolve_symbol(
    path: str,
    name: str,
    *,
    max_matches: int = DEFAULT_MAX_MATCHES,
    debug_roots: Sequence[str] | None = None,
) -> list[ResolvedSymbol]:
    """Resolve a function name (or shell glob) in ``path`` to file offsets.

    - a plain name gives one result; several different addresses (e.g. local static
      functions of several files) raise SpecError listing the candidates; a name with
      versions at several addresses picks the default (``@@``) one;
    - a glob gives one result per matching function name, at most ``max_matches``
      (SpecError past that);
    - a missing name raises NotFound naming the closest names, and for a stripped
      binary without a debug file, where the debug file was looked for;
    - an IFUNC gives a result carrying a warning that names the likely implementations.

    Example::

        resolve_symbol("/bin/bash", "readline")[0].offset
    """
    img = open_image(path)
    images: list[ElfImage] = [img]
    dbg: ElfImage | None = None
    search: DebugSearch | None = None
    glob = any(c in name for c in "*?[")

    def load_debug() -> None:
        nonlocal dbg, search
        if search is None and img.stripped:
            dbg, search = _debug_image(img, debug_roots)
            if dbg is not None:
                images.append(dbg)

    if glob:
        load_debug()
        by_name: dict[str, dict[int, tuple[Symbol, ElfImage]]] = {}
        for im in images:
            for s in im.match(name):
                slot = by_name.setdefault(s.name, {})
                prev = slot.get(s.address)
                if prev is None or (s.default_version and not prev[0].default_version):
                    slot[s.address] = (s, im)
        for n, slot in by_name.items():
            if len(slot) > 1:
                dflt = {a: p for a, p in slot.items() if p[0].version and p[0].default_version}
                if len(dflt) == 1:
                    by_name[n] = dflt
        if not by_name:
            msg = f"no function in {path} matches {name!r}"
            if img.stripped and search is not None and dbg is None:
                msg = _stripped_message(img, name, search)
            raise NotFound(msg)
        total = sum(len(slot) for slot in by_name.values())
        if total > max_matches:
            some = ", ".join(sorted(by_name)[:10])
            raise SpecError(
                f"{name!r} matches {total} functions in {path}, more than the limit of"
                f" {max_matches} ({some}, ...); narrow the glob or raise the limit"
            )
        return [
            _finish(img, images, *by_name[n][a])
            for n in sorted(by_name)
            for a in sorted(by_name[n])
        ]

    cands = [(s, img) for s in img.lookup(name)]
    if not any(img.is_function(s) for s, _ in cands):
        load_debug()
        if dbg is not None:
            cands += [(s, dbg) for s in dbg.lookup(name)]
    funcs = [(s, im) for s, im in cands if img.is_function(s)]
    if not funcs:
        if cands:
            s = cands[0][0]
            raise NotFound(
                f"{name!r} in {path} is not a function ({s.type.lower()} symbol at"
                f" 0x{s.address:x})"
            )
        if img.stripped and search is not None and dbg is None:
            raise NotFound(_stripped_message(img, name, search))
        close = _closest(name.partition("@")[0], images)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        raise NotFound(f"no function {name!r} in {path}{hint}")
    by_addr: dict[int, list[tuple[Symbol, ElfImage]]] = {}
    for pair in funcs:
        by_addr.setdefault(pair[0].address, []).append(pair)
    if len(by_addr) > 1 and "@" not in name:
        defaults = {
            a: ps
            for a, ps in by_addr.items()
            if any(s.default_version and s.version for s, _ in ps)
        }
        if len(defaults) == 1:
            by_addr = defaults
    if len(by_addr) > 1:
        lines = [_describe(ps[0][0]) for _, ps in sorted(by_addr.items())]
        first = min(by_addr)
        raise SpecError(
            f"{name!r} is ambiguous in {path}: {len(by_addr)} functions at different"
            f" addresses: {'; '.join(lines)}. Probe one by address, e.g."
            f" u:{path}:0x{first:x}"
        )
    pairs = next(iter(by_addr.values()))
    best = sorted(pairs, key=lambda p: (p[0].table != ".symtab", not p[0].default_version))[0]
    if best[0].type == "IFUNC":
        load_debug()  # the implementations are usually local symbols: in the debug file
    return [_finish(img, images, *best)]


def _finish(
    img: ElfImage, images: Sequence[ElfImage], s: Symbol, source: ElfImage
) -> ResolvedSymbol:
    warnings: list[str] = []
    if s.type == "IFUNC":
        warnings.append(_ifunc_warning(s.name, img.path, images))
    return ResolvedSymbol(
        name=s.name,
        address=s.address,
        offset=img.vaddr_to_offset(s.address),
        path=img.path,
        symbol=s,
        source=source.path,
        warnings=tuple(warnings),
    )


def address_to_offset(path: str, address: int) -> int:
    """File offset of a virtual address in ``path`` (NotFound outside every PT_LOAD)."""
    return open_image(path).vaddr_to_offset(address)


def symbol_address(path: str, name: str, debug_roots: Sequence[str] | None = None) -> int:
    """Address of any defined symbol (function or data) called ``name`` in ``path``.

    Looks in the separate debug file too when ``path`` is stripped. Raises NotFound
    when the name is missing or names several different addresses.
    """
    img = open_image(path)
    cands = img.lookup(name)
    if not cands and img.stripped:
        dbg, _ = _debug_image(img, debug_roots)
        if dbg is not None:
            cands = dbg.lookup(name)
    addrs = sorted({s.address for s in cands})
    if not addrs:
        raise NotFound(f"no symbol {name!r} in {path}")
    if len(addrs) > 1:
        listed = ", ".join(f"0x{a:x}" for a in addrs)
        raise NotFound(f"symbol {name!r} is ambiguous in {path} ({listed})")
    return addrs[0]
