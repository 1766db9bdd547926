"""PLT stubs: which library function each stub of an executable calls, at which address.

A call from a program into a shared library goes through a stub in the program's
procedure linkage table, which jumps through the function's GOT slot. The dynamic
relocations name the function of each slot (``R_X86_64_JUMP_SLOT`` /
``R_AARCH64_JUMP_SLOT`` in ``.rela.plt``, ``GLOB_DAT`` for ``.plt.got`` stubs), and each
stub's indirect jump names its slot. A uprobe on a stub fires exactly when the program
itself calls that function (not when a library calls it internally), which is what
ltrace shows; a uretprobe there fires when the function returns to the program.

Decoded stub forms (``objdump -d`` labels the same addresses ``<name@plt>``):

- x86_64 ``.plt.sec`` / ``.plt.got`` / lazy ``.plt``: ``[endbr64] [bnd] jmp *disp32(%rip)``;
- aarch64 ``.plt``: ``adrp x16, PAGE; ldr x17, [x16, #OFF]; add x16, x16, #OFF; br x17``.

Example::

    stubs = plt_stubs("/usr/bin/ls")
    stubs["malloc"].address      # the vaddr of malloc@plt in ls
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection, GNUVerSymSection
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from ..errors import NotFound
from ..files import open_regular

__all__ = ["PltStub", "plt_stubs", "got_slots", "needed", "linked_objects"]

_JUMP_SLOT = {"EM_X86_64": (7, 6), "EM_AARCH64": (1026, 1025)}  # (JUMP_SLOT, GLOB_DAT)


@dataclass(frozen=True)
class PltStub:
    """One stub: the function it calls, its vaddr and the section it lies in."""

    name: str
    address: int
    section: str
    version: str | None = None


def got_slots(elf: ELFFile) -> dict[int, tuple[str, str | None]]:
    """GOT slot vaddr -> (function name, version) from the dynamic relocations."""
    machine = elf.header["e_machine"]
    kinds = _JUMP_SLOT.get(machine)
    if kinds is None:
        raise NotFound(f"PLT decoding supports x86_64 and aarch64, not {machine}")
    versions = _symbol_versions(elf)
    slots: dict[int, tuple[str, str | None]] = {}
    for sec in elf.iter_sections():
        if not isinstance(sec, RelocationSection) or not sec.is_RELA():
            continue
        if sec["sh_link"] == 0:
            continue
        symtab = elf.get_section(sec["sh_link"])
        if not isinstance(symtab, SymbolTableSection):
            continue
        for rel in sec.iter_relocations():
            if rel["r_info_type"] not in kinds or rel["r_info_sym"] == 0:
                continue
            sym = symtab.get_symbol(rel["r_info_sym"])
            if sym is None or not sym.name:
                continue
            slots[rel["r_offset"]] = (sym.name, versions.get(rel["r_info_sym"]))
    return slots


def _symbol_versions(elf: ELFFile) -> dict[int, str]:
    sec = elf.get_section_by_name(".gnu.version")
    need = elf.get_section_by_name(".gnu.version_r")
    if not isinstance(sec, GNUVerSymSection) or not isinstance(need, GNUVerNeedSection):
        return {}
    names: dict[int, str] = {}
    for _verneed, auxes in need.iter_versions():
        for aux in auxes:
            names[aux["vna_other"]] = aux.name
    out = {}
    for i, sym in enumerate(sec.iter_symbols()):
        idx = sym["ndx"]
        if isinstance(idx, int) and idx in names:
            out[i] = names[idx]
    return out


def _x86_64_stubs(data: bytes, addr: int, entsize: int) -> list[tuple[int, int]]:
    """(stub vaddr, GOT slot vaddr) for each ``jmp *disp32(%rip)`` at an entry start."""
    out = []
    for start in range(0, len(data) - entsize + 1, entsize):
        ent = data[start:start + entsize]
        i = 0
        if ent[:4] == b"\xf3\x0f\x1e\xfa":  # endbr64
            i = 4
        if ent[i:i + 1] == b"\xf2":  # bnd prefix
            i += 1
        if ent[i:i + 2] != b"\xff\x25":
            continue
        (disp,) = struct.unpack_from("<i", ent, i + 2)
        out.append((addr + start, addr + start + i + 6 + disp))
    return out


def _aarch64_stubs(data: bytes, addr: int, entsize: int) -> list[tuple[int, int]]:
    out = []
    for start in range(0, len(data) - 16 + 1, entsize):
        adrp, ldr = struct.unpack_from("<II", data, start)
        # adrp x16, page
        if adrp & 0x9F00001F != 0x90000010:
            continue
        # ldr x17, [x16, #imm12*8]
        if ldr & 0xFFC003FF != 0xF9400211:
            continue
        immlo = (adrp >> 29) & 3
        immhi = (adrp >> 5) & 0x7FFFF
        imm = (immhi << 2) | immlo
        if imm & (1 << 20):
            imm -= 1 << 21
        pc = addr + start
        page = (pc & ~0xFFF) + (imm << 12)
        off = ((ldr >> 10) & 0xFFF) * 8
        out.append((pc, page + off))
    return out


def plt_stubs(path: str) -> dict[str, PltStub]:
    """Every PLT stub of ``path`` by function name (NotFound if it is not a readable ELF).

    A function with stubs in two sections (``.plt`` lazy entries and ``.plt.sec``) maps
    to the one the program's calls go to (``.plt.sec`` when present).
    """
    try:
        with open_regular(path) as f:
            elf = ELFFile(f)
            machine = elf.header["e_machine"]
            slots = got_slots(elf)
            found: dict[str, PltStub] = {}
            names = [".plt.sec", ".plt.got", ".plt"]
            if machine == "EM_AARCH64":
                names = [".plt"]
            have_sec = elf.get_section_by_name(".plt.sec") is not None
            for sname in names:
                sec = elf.get_section_by_name(sname)
                if sec is None or sec["sh_type"] != "SHT_PROGBITS":
                    continue
                if sname == ".plt" and have_sec:
                    continue  # lazy-binding entries; the calls go to .plt.sec
                data = sec.data()
                addr = sec["sh_addr"]
                if machine == "EM_AARCH64":
                    pairs = _aarch64_stubs(data, addr, 16)
                else:
                    entsize = 8 if sname == ".plt.got" and sec["sh_entsize"] == 8 else 16
                    pairs = _x86_64_stubs(data, addr, entsize)
                for stub, slot in pairs:
                    hit = slots.get(slot)
                    if hit is None or hit[0] in found:
                        continue
                    found[hit[0]] = PltStub(hit[0], stub, sname, hit[1])
            return found
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file") from None
    except (ELFError, ValueError, struct.error) as e:
        raise NotFound(f"{path} is not a valid ELF file ({e})") from None
    except OSError as e:
        raise NotFound(f"{path}: {e.strerror}") from None


def _dynamic(path: str) -> tuple[list[str], list[str]]:
    """(DT_NEEDED names, library search directories from DT_RUNPATH or DT_RPATH)."""
    try:
        with open_regular(path) as f:
            elf = ELFFile(f)
            dyn = elf.get_section_by_name(".dynamic")
            if not isinstance(dyn, DynamicSection):
                return [], []
            names: list[str] = []
            rpath: list[str] = []
            runpath: list[str] = []
            for t in dyn.iter_tags():
                tag = t.entry.d_tag
                if tag == "DT_NEEDED":
                    names.append(str(getattr(t, "needed", "")))
                elif tag == "DT_RUNPATH":
                    runpath += str(getattr(t, "runpath", "")).split(":")
                elif tag == "DT_RPATH":
                    rpath += str(getattr(t, "rpath", "")).split(":")
    except (ELFError, ValueError, struct.error, OSError) as e:
        raise NotFound(f"{path}: cannot read its dynamic section ({e})") from None
    origin = os.path.dirname(os.path.realpath(path))
    dirs = [d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin)
            for d in (runpath or rpath) if d]
    return names, dirs


def needed(path: str) -> list[str]:
    """The DT_NEEDED names of ``path`` (``[]`` for a static binary)."""
    return _dynamic(path)[0]


def linked_objects(path: str, pid: int | None = None) -> list[str]:
    """``path`` and the shared libraries it loads, in load order (breadth first, as
    ld.so does): from ``/proc/PID/maps`` for a running process, else each DT_NEEDED
    looked up as ld.so would (DT_RPATH/DT_RUNPATH, ``$LD_LIBRARY_PATH``, the ld.so
    cache). Libraries that cannot be found are left out."""
    from .libs import find_library, maps_paths

    if pid is not None:
        out = [path]
        for p in maps_paths(pid):
            if p not in out and ".so" in os.path.basename(p):
                out.append(p)
        return out
    env_dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    seen = [path]
    queue = [path]
    while queue:
        cur = queue.pop(0)
        names, dirs = _dynamic(cur)
        for name in names:
            lib = None
            for d in ([] if "/" in name else dirs + env_dirs):
                cand = os.path.join(d, name)
                if os.path.isfile(cand):
                    lib = os.path.realpath(cand)
                    break
            if lib is None:
                try:
                    lib = find_library(name) if "/" not in name else os.path.realpath(name)
                except NotFound:
                    continue
            if lib not in seen:
                seen.append(lib)
                queue.append(lib)
    return seen
