"""USDT (SystemTap SDT) probes: read ``.note.stapsdt`` and parse their argument specs.

Each note's descriptor holds the probe address, the link-time address of the
``.stapsdt.base`` section, the semaphore address (each one word), then
``provider\\0name\\0args\\0``. The probe address is corrected by the difference
between the recorded base and the actual ``.stapsdt.base`` address (prelink), and
both addresses are turned into file offsets through the PT_LOAD segments: the probe
for the uprobe location, the semaphore for the uprobe ``(ref_ctr_offset)``.

Argument specs look like ``-4@%edi`` (signed 4-byte register), ``8@-16(%rbp)``
(memory), ``4@$5`` (constant), ``8@foo(%rip)`` / ``8@foo+8(%rip)`` (a global);
on arm64 ``-4@x0``, ``8@[sp, 16]``, ``4@5``.

Example::

    for p in read_usdt_probes("/usr/bin/python3"):
        print(p.provider, p.name, hex(p.offset), [str(a) for a in p.args])
"""

from __future__ import annotations

import os
import re
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection

from ..errors import NotFound
from ..files import check_regular
from .symbols import open_image

__all__ = ["UsdtArg", "UsdtProbe", "parse_usdt_arg", "parse_usdt_args", "read_usdt_probes"]


@dataclass(frozen=True)
class UsdtArg:
    """One parsed USDT argument.

    ``kind`` is ``reg`` (value of ``register``), ``mem`` (memory at ``register`` +
    ``offset``), ``const`` (``const``), ``sym`` (memory at the address of ``symbol`` +
    ``offset``, ``register`` is ``rip`` or None) or ``unsupported`` (e.g. an indexed
    ``(%rax,%rdx,8)`` operand, which a uprobe fetch-arg cannot express).
    """

    text: str
    size: int
    signed: bool
    kind: str
    register: str | None = None
    offset: int = 0
    const: int | None = None
    symbol: str | None = None

    @property
    def type(self) -> str:
        """The matching probe type: ``s32`` for ``-4@...``, ``u64`` for ``8@...``."""
        return f"{'s' if self.signed else 'u'}{self.size * 8}"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class UsdtProbe:
    """One USDT probe location. ``pc`` and ``semaphore`` are (prelink-corrected) virtual
    addresses; ``offset`` / ``semaphore_offset`` the file offsets a uprobe needs."""

    path: str
    provider: str
    name: str
    pc: int
    base: int
    semaphore: int
    args_text: str
    args: tuple[UsdtArg, ...]
    offset: int
    semaphore_offset: int | None

    @property
    def full_name(self) -> str:
        return f"{self.provider}:{self.name}"


_SIZE_RE = re.compile(r"^(-?)(\d+)@(.*)$")
_NUM = r"[-+]?(?:0[xX][0-9A-Fa-f]+|\d+)"
_X86_REG = re.compile(r"^%([a-z][a-z0-9]*)$")
_X86_CONST = re.compile(rf"^\$({_NUM})$")
_X86_MEM = re.compile(rf"^({_NUM})?\(%([a-z][a-z0-9]*)\)$")
_X86_SYM = re.compile(rf"^([A-Za-z_.$][\w.$@]*)({_NUM})?(?:\(%(rip|eip)\))?$")
_X86_SIB = re.compile(r"^[^()]*\(%?[a-z0-9]*,\s*%[a-z0-9]+(?:,\s*\d+)?\)$")
_ARM_REG = re.compile(r"^([xw](?:[12]?\d|30)|sp|wsp|lr|fp)$")
_ARM_MEM = re.compile(rf"^\[\s*([xw](?:[12]?\d|30)|sp|fp|lr)\s*(?:,\s*#?({_NUM}))?\s*\]$")
_ARM_CONST = re.compile(rf"^#?({_NUM})$")


def _num(s: str | None) -> int:
    if not s:
        return 0
    neg = s.startswith("-")
    s = s.lstrip("+-")
    v = int(s, 16) if s[:2].lower() == "0x" else int(s, 10)
    return -v if neg else v


def parse_usdt_arg(text: str, machine: str = "EM_X86_64") -> UsdtArg:
    """Parse one argument spec (``-4@%edi``) for an ELF ``e_machine`` (x86_64 or arm64).

    Raises ValueError for text that is not an argument spec at all.
    """
    t = text.strip()
    m = _SIZE_RE.match(t)
    if m:
        signed, size, op = m.group(1) == "-", int(m.group(2)), m.group(3)
        if size not in (1, 2, 4, 8):
            raise ValueError(f"bad USDT argument size {size} in {text!r}")
    else:
        signed, size, op = False, 8, t
    if not op:
        raise ValueError(f"empty USDT argument operand in {text!r}")
    arm = machine in ("EM_AARCH64", "aarch64", "arm64")
    if arm:
        if rm := _ARM_REG.match(op):
            return UsdtArg(t, size, signed, "reg", register=rm.group(1))
        if mm := _ARM_MEM.match(op):
            return UsdtArg(t, size, signed, "mem", register=mm.group(1), offset=_num(mm.group(2)))
        if cm := _ARM_CONST.match(op):
            return UsdtArg(t, size, signed, "const", const=_num(cm.group(1)))
        return UsdtArg(t, size, signed, "unsupported")
    if rm := _X86_REG.match(op):
        return UsdtArg(t, size, signed, "reg", register=rm.group(1))
    if cm := _X86_CONST.match(op):
        return UsdtArg(t, size, signed, "const", const=_num(cm.group(1)))
    if mm := _X86_MEM.match(op):
        reg = mm.group(2)
        if reg in ("rip", "eip"):
            return UsdtArg(t, size, signed, "unsupported", register=reg, offset=_num(mm.group(1)))
        return UsdtArg(t, size, signed, "mem", register=reg, offset=_num(mm.group(1)))
    if sm := _X86_SYM.match(op):
        return UsdtArg(
            t, size, signed, "sym", register=sm.group(3), offset=_num(sm.group(2)),
            symbol=sm.group(1),
        )
    if _X86_SIB.match(op):
        return UsdtArg(t, size, signed, "unsupported")
    return UsdtArg(t, size, signed, "unsupported")


def parse_usdt_args(text: str, machine: str = "EM_X86_64") -> tuple[UsdtArg, ...]:
    """Parse a note's whole argument string (space separated; ``[sp, 8]`` kept whole)."""
    parts: list[str] = []
    depth = 0
    cur = ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        if ch.isspace() and depth == 0:
            if cur:
                parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return tuple(parse_usdt_arg(p, machine) for p in parts)


_cache: OrderedDict[tuple[str, int, int, int, int], list[UsdtProbe]] = OrderedDict()
_lock = threading.Lock()


def read_usdt_probes(path: str) -> list[UsdtProbe]:
    """Every USDT probe location in ``path`` (cached per path, dev, inode, mtime).

    Raises NotFound if the file is missing or not ELF; returns [] for a file without
    ``.note.stapsdt``.
    """
    from .apk import split_member
    from .symbols import _open_elf

    apk, member = split_member(path)  # a library inside an APK: APK!/lib/ABI/libfoo.so
    try:
        st = os.stat(apk if member is not None else path)
    except OSError as e:
        raise NotFound(f"{path}: {e.strerror}") from None
    check_regular(path, st, "an ELF file")  # never open a FIFO, device or directory
    key = (path, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            return list(hit)
    img = open_image(path)
    probes: list[UsdtProbe] = []
    try:
        with _open_elf(path) as f:
            elf = ELFFile(f)
            word = 8 if elf.elfclass == 64 else 4
            order: Literal["little", "big"] = "little" if elf.little_endian else "big"
            base_sec = elf.get_section_by_name(".stapsdt.base")
            actual_base = base_sec["sh_addr"] if base_sec is not None else None
            for sec in elf.iter_sections():
                if not isinstance(sec, NoteSection) or sec.name != ".note.stapsdt":
                    continue
                for note in sec.iter_notes():
                    if note["n_name"] != "stapsdt":
                        continue
                    if note["n_type"] not in (3, "NT_GNU_BUILD_ID"):  # NT_STAPSDT = 3
                        continue
                    desc = bytes(note["n_descdata"])
                    probes.append(
                        _note_to_probe(
                            path, img.machine, desc, word, order, actual_base,
                            img.vaddr_to_offset,
                        )
                    )
    except ELFError as e:
        raise NotFound(f"{path} is not a valid ELF file ({e})") from None
    except OSError as e:
        raise NotFound(f"{path}: cannot read it as an ELF file ({e.strerror})") from None
    except (ValueError, struct.error, UnicodeDecodeError, IndexError) as e:
        raise NotFound(f"{path}: damaged USDT notes ({e})") from None
    with _lock:
        _cache[key] = probes
        while len(_cache) > 32:
            _cache.popitem(last=False)
    return list(probes)


def _note_to_probe(
    path: str,
    machine: str,
    desc: bytes,
    word: int,
    order: Literal["little", "big"],
    actual_base: int | None,
    to_offset: Callable[[int], int],
) -> UsdtProbe:
    def u(i: int) -> int:
        return int.from_bytes(desc[i * word : (i + 1) * word], order)

    pc, base, sem = u(0), u(1), u(2)
    strings = desc[3 * word :].split(b"\0")
    provider = strings[0].decode("utf-8", "replace") if strings else ""
    name = strings[1].decode("utf-8", "replace") if len(strings) > 1 else ""
    args_text = strings[2].decode("utf-8", "replace") if len(strings) > 2 else ""
    if actual_base is not None and base and actual_base != base:
        delta = actual_base - base  # prelinked: the note still has link-time addresses
        pc += delta
        if sem:
            sem += delta
    offset = to_offset(pc)
    sem_off = to_offset(sem) if sem else None
    return UsdtProbe(
        path=path,
        provider=provider,
        name=name,
        pc=pc,
        base=base,
        semaphore=sem,
        args_text=args_text,
        args=parse_usdt_args(args_text, machine),
        offset=offset,
        semaphore_offset=sem_off,
    )
