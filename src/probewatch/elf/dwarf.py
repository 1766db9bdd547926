"""Function prototypes from DWARF debug info (on pyelftools), for probewatch ltrace.

Each external function a file (or its separate debug file, found as gdb finds it)
defines becomes ``(return type, argument types)`` in the type names of
:mod:`probewatch.decode.protos`: ``char *`` -> ``string``, other pointers -> ``addr``,
integers by sign and size (``int``/``uint`` up to 4 bytes, ``long``/``ulong`` above),
``char`` -> ``char``, enums -> ``int``, no return type -> ``void``. A function with a
``...`` gets no types past its named arguments. Parsed files are cached.

Example::

    protos = dwarf_prototypes("/usr/lib/libfoo.so")
    protos["foo_open"]     # ('addr', ('string', 'int'))
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

from elftools.common.exceptions import DWARFError, ELFError
from elftools.elf.elffile import ELFFile

from ..errors import NotFound
from ..files import open_regular
from .symbols import find_debug_file, open_image

__all__ = ["dwarf_prototypes", "clear_cache"]

_lock = threading.Lock()
_cache: OrderedDict[tuple[str, int, int], dict[str, tuple[str, tuple[str, ...]]]] = (
    OrderedDict())
_CACHE_SIZE = 16
#: debug info larger than this is not read (libc's has ~750,000 DIEs and takes a
#: minute in pure Python): its functions show by the built-in table or the default
MAX_DEBUG_INFO = 8 << 20
#: ... nor debug info of more compilation units than this (compressed sections hide
#: their size): a library of one project has tens, a C library thousands
MAX_CUS = 400

_WRAPPERS = ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
             "DW_TAG_restrict_type", "DW_TAG_atomic_type")


def _type_name(die: Any, depth: int = 0) -> str:
    """The protos type of a DW_AT_type target."""
    while die is not None and die.tag in _WRAPPERS and depth < 16:
        die = die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in die.attributes \
            else None
        depth += 1
    if die is None:
        return "addr"  # void through a typedef: cannot happen for a value; be safe
    tag = die.tag
    if tag == "DW_TAG_pointer_type":
        if "DW_AT_type" not in die.attributes:
            return "addr"
        target = die.get_DIE_from_attribute("DW_AT_type")
        while target is not None and target.tag in _WRAPPERS:
            target = (target.get_DIE_from_attribute("DW_AT_type")
                      if "DW_AT_type" in target.attributes else None)
        if (target is not None and target.tag == "DW_TAG_base_type"
                and target.attributes.get("DW_AT_byte_size") is not None
                and target.attributes["DW_AT_byte_size"].value == 1
                and target.attributes["DW_AT_encoding"].value in (6, 8)):  # (un)signed char
            return "string"
        return "addr"
    if tag == "DW_TAG_enumeration_type":
        return "int"
    if tag == "DW_TAG_base_type":
        enc = die.attributes["DW_AT_encoding"].value if "DW_AT_encoding" in die.attributes \
            else 5
        size = die.attributes["DW_AT_byte_size"].value if "DW_AT_byte_size" in \
            die.attributes else 8
        if enc in (6, 8) and size == 1:
            return "char"
        if enc == 2:  # boolean
            return "int"
        if enc == 4:  # float: in a vector register, not read by a uprobe
            return "addr"
        signed = enc in (5, 13)
        if size <= 4:
            return "int" if signed else "uint"
        return "long" if signed else "ulong"
    return "addr"  # structs passed by value, arrays, functions: shown raw


def _read(path: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    with open_regular(path) as f:
        elf = ELFFile(f)
        if not elf.has_dwarf_info():
            return out
        dwarf = elf.get_dwarf_info()
        cus = []
        for cu in dwarf.iter_CUs():  # headers only: the DIEs are read below
            cus.append(cu)
            if len(cus) > MAX_CUS:
                return out
        for cu in cus:
            for die in cu.get_top_DIE().iter_children():  # C functions are top level
                if die.tag != "DW_TAG_subprogram":
                    continue
                attrs = die.attributes
                if "DW_AT_name" not in attrs or "DW_AT_declaration" in attrs:
                    continue
                if "DW_AT_external" not in attrs:
                    continue
                name = attrs["DW_AT_name"].value
                name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
                if name in out:
                    continue
                ret = _type_name(die.get_DIE_from_attribute("DW_AT_type")) \
                    if "DW_AT_type" in attrs else "void"
                args: list[str] = []
                for child in die.iter_children():
                    if child.tag == "DW_TAG_formal_parameter":
                        args.append(_type_name(child.get_DIE_from_attribute("DW_AT_type"))
                                    if "DW_AT_type" in child.attributes else "addr")
                    elif child.tag == "DW_TAG_unspecified_parameters":
                        break
                out[name] = (ret, tuple(args))
    return out


def dwarf_prototypes(path: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Function name -> (return type, argument types) from ``path``'s DWARF, or from
    its separate debug file; ``{}`` when there is no debug info (or more than
    :data:`MAX_DEBUG_INFO` bytes of it). NotFound if ``path`` cannot be read."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise NotFound(f"{path}: {e.strerror}") from None
    key = (path, st.st_ino, st.st_mtime_ns)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            return hit
    src = path
    try:
        img = open_image(path)
        if ".debug_info" not in img.sections:
            dbg = find_debug_file(img)
            if dbg.found is None:
                return {}
            src = dbg.found
            img = open_image(src)
        info = img.sections.get(".debug_info")
        if info is None or info.size > MAX_DEBUG_INFO:
            return {}
        protos = _read(src)
    except (ELFError, DWARFError, ValueError, KeyError, IndexError, AttributeError,
            UnicodeDecodeError) as e:
        raise NotFound(f"{src}: cannot read its DWARF ({e})") from None
    with _lock:
        _cache[key] = protos
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return protos


def clear_cache() -> None:
    with _lock:
        _cache.clear()
