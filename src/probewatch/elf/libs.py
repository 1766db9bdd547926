"""Find the file behind a probe target: a path, a library short name, or a program.

Library short names (``libc``, ``libssl``, ``libpthread``) are looked up in the dynamic
linker's cache (``/etc/ld.so.cache``, read directly, with ``ldconfig -p`` as the
fallback), keeping only entries for the running architecture. With a pid, the names
come from ``/proc/PID/maps`` instead and the path is returned under
``/proc/PID/root`` so that containers and non-standard library paths work.

Example::

    find_library("libc")                 # '/lib/x86_64-linux-gnu/libc.so.6'
    find_library("libc", pid=1234)       # '/proc/1234/root/usr/lib/x86_64-linux-gnu/libc.so.6'
    resolve_target("/bin/bash")          # '/usr/bin/bash'
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass

from ..errors import NotFound

__all__ = [
    "LdCacheEntry",
    "LD_SO_CACHE",
    "parse_ld_so_cache",
    "parse_ldconfig_output",
    "ld_cache_entries",
    "find_library",
    "find_in_maps",
    "maps_paths",
    "resolve_target",
    "short_name_matches",
]

LD_SO_CACHE = "/etc/ld.so.cache"

# glibc elf/cache.h: the low byte is the type (FLAG_ELF_LIBC6 = 3), the next the arch
_FLAG_REQUIRED_MASK = 0xFF00
_ARCH_FLAGS = {
    "x86_64": 0x0300,  # FLAG_X8664_LIB64, "libc6,x86-64"
    "aarch64": 0x0A00,  # FLAG_AARCH64_LIB64, "libc6,AArch64"
    "i686": 0x0000,
    "i386": 0x0000,
}
_ARCH_TAGS = {"x86_64": "x86-64", "aarch64": "AArch64"}
_TAG_FLAGS = {"x86-64": 0x0300, "AArch64": 0x0A00, "64bit": 0x0500}

_NEW_MAGIC = b"glibc-ld.so.cache1.1"
_OLD_MAGIC = b"ld.so-1.7.0"


@dataclass(frozen=True)
class LdCacheEntry:
    """One ld.so cache entry: ``name`` (``libc.so.6``), ``path``, ``flags`` (arch bits)."""

    name: str
    path: str
    flags: int

    @property
    def arch_flags(self) -> int:
        return self.flags & _FLAG_REQUIRED_MASK


def parse_ld_so_cache(data: bytes) -> list[LdCacheEntry]:
    """Parse the binary ``/etc/ld.so.cache`` (glibc's "new" format, 1.1).

    Raises ValueError when the data holds no new-format cache.
    """
    start = data.find(_NEW_MAGIC)
    if start < 0 or (start and not data.startswith(_OLD_MAGIC)):
        raise ValueError("not a glibc ld.so.cache (no glibc-ld.so.cache1.1 header)")
    hdr = struct.Struct("<20sIIB3xI12x")
    if len(data) < start + hdr.size:
        raise ValueError("truncated ld.so.cache header")
    _, nlibs, _len_strings, endian, _ext = hdr.unpack_from(data, start)
    # flags byte: 0 unset (host order), 1 invalid, 2 little, 3 big endian
    order = ">" if endian == 3 else "<"
    if endian == 3:
        _, nlibs, _len_strings, _, _ext = struct.unpack_from(">20sIIB3xI12x", data, start)
    entry = struct.Struct(order + "iIIIQ")
    base = start + hdr.size
    if base + nlibs * entry.size > len(data):
        raise ValueError("truncated ld.so.cache entry table")

    def cstr(off: int) -> str:
        at = start + off
        end = data.find(b"\0", at)
        if at >= len(data) or end < 0:
            raise ValueError("bad string offset in ld.so.cache")
        return data[at:end].decode("utf-8", "replace")

    out = []
    for i in range(nlibs):
        flags, key, value, _osv, _hwcap = entry.unpack_from(data, base + i * entry.size)
        out.append(LdCacheEntry(cstr(key), cstr(value), flags))
    return out


_LDCONFIG_LINE = re.compile(r"^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(.+?)\s*$")


def parse_ldconfig_output(text: str) -> list[LdCacheEntry]:
    """Parse ``ldconfig -p`` lines: ``libc.so.6 (libc6,x86-64) => /lib/.../libc.so.6``."""
    out = []
    for line in text.splitlines():
        m = _LDCONFIG_LINE.match(line)
        if not m:
            continue
        tags = [t.strip() for t in m.group(2).split(",")]
        flags = 0x0003 if tags and tags[0] == "libc6" else 0x0001
        for t in tags[1:]:
            flags |= _TAG_FLAGS.get(t, 0)
        out.append(LdCacheEntry(m.group(1), m.group(3), flags))
    return out


def ld_cache_entries(path: str = LD_SO_CACHE) -> list[LdCacheEntry]:
    """All ld.so cache entries (binary cache first, ``ldconfig -p`` as fallback)."""
    try:
        with open(path, "rb") as f:
            return parse_ld_so_cache(f.read())
    except (OSError, ValueError):
        pass
    ldconfig = shutil.which("ldconfig") or (
        "/sbin/ldconfig" if os.path.exists("/sbin/ldconfig") else None
    )
    if not ldconfig:
        return []
    try:
        text = subprocess.run(
            [ldconfig, "-p"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_ldconfig_output(text)


def _version_key(name: str, short: str) -> tuple[int, ...]:
    rest = name[len(short) :]
    nums = re.findall(r"\d+", rest)
    return tuple(int(n) for n in nums)


def short_name_matches(short: str, file_name: str) -> bool:
    """Does a library file name answer to ``short``?

    ``libc`` matches ``libc.so.6`` and ``libc-2.31.so`` (not ``libcrypt.so.1``);
    a full name (``libc.so.6``) matches only itself.
    """
    if file_name == short:
        return True
    if re.fullmatch(re.escape(short) + r"\.so(\.\d+)*", file_name):
        return True
    return bool(re.fullmatch(re.escape(short) + r"-[0-9][0-9.]*\.so", file_name))


def _candidates(name: str) -> list[str]:
    c = [name]
    if not name.startswith("lib") and "/" not in name:
        c.append("lib" + name)
    return c


def find_library(name: str, pid: int | None = None, machine: str | None = None) -> str:
    """Path of a library short name (``libc``), for the running arch or a process.

    Raises NotFound naming what was searched.
    """
    if pid is not None:
        p = find_in_maps(pid, name)
        if p is None:
            raise NotFound(
                f"no library {name!r} is mapped by process {pid} (searched /proc/{pid}/maps)"
            )
        return p
    m = machine or platform.machine()
    want = _ARCH_FLAGS.get(m)
    entries = ld_cache_entries()
    best: list[tuple[tuple[int, ...], int, LdCacheEntry]] = []
    for short in _candidates(name):
        for e in entries:
            if want is not None and e.arch_flags != want:
                continue
            if short_name_matches(short, e.name):
                # prefer versioned runtime names (libssl.so.3) over the dev symlink
                best.append((_version_key(e.name, short), len(e.name), e))
        if best:
            break
    if not best:
        # Android: no ld.so cache; bionic and the system libraries by directory
        from .. import android

        found = android.find_library(name)
        if found is not None:
            return found
        tag = _ARCH_TAGS.get(m, m)
        raise NotFound(
            f"no library {name!r} for {tag} in the ld.so cache ({LD_SO_CACHE}; see"
            " ldconfig -p); give its path instead"
        )
    best.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return best[0][2].path


def maps_paths(pid: int) -> list[str]:
    """Distinct file paths mapped by ``pid`` (as the process sees them), in map order."""
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise NotFound(f"no process {pid} (/proc/{pid}/maps does not exist)") from None
    except PermissionError:
        raise NotFound(f"/proc/{pid}/maps: permission denied") from None
    seen: dict[str, None] = {}
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue
        path = parts[5]
        if not path.startswith("/") or path.endswith(" (deleted)"):
            continue
        seen.setdefault(path, None)
    return list(seen)


def find_in_maps(pid: int, name: str) -> str | None:
    """A file mapped by ``pid`` whose name answers to ``name``, under ``/proc/PID/root``.

    ``name`` is a short name (``libc``), a file name (``libc.so.6``) or a path as the
    process sees it.
    """
    paths = maps_paths(pid)
    root = f"/proc/{pid}/root"
    if "/" in name:
        return root + name if name in paths else None
    for short in _candidates(name):
        for p in paths:
            if short_name_matches(short, os.path.basename(p)):
                return root + p
    return _find_in_mapped_apks(pid, root, paths, name)


def _maps_file_ranges(pid: int) -> dict[str, list[tuple[int, int]]]:
    """path -> [(file offset, end)] of every file mapping of ``pid``."""
    out: dict[str, list[tuple[int, int]]] = {}
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        lo, _, hi = parts[0].partition("-")
        try:
            off = int(parts[2], 16)
            size = int(hi, 16) - int(lo, 16)
        except ValueError:
            continue
        out.setdefault(parts[5], []).append((off, off + size))
    return out


def _find_in_mapped_apks(pid: int, root: str, paths: list[str], name: str) -> str | None:
    """Android: a library that ``pid`` maps straight from an APK (``/proc/PID/maps``
    shows the APK with an offset) -> ``/proc/PID/root/APK!/lib/ABI/libNAME.so``. Of
    several ABIs the one whose bytes the process maps wins."""
    apks = [p for p in paths if p.endswith(".apk")]
    if not apks:
        return None
    from .apk import apk_libraries

    ranges = _maps_file_ranges(pid)
    for short in _candidates(name):
        hits = []
        for apk in apks:
            try:
                libs = apk_libraries(root + apk)
            except NotFound:
                continue
            for m in libs:
                if short_name_matches(short, os.path.basename(m.name)):
                    mapped = any(lo <= m.data_offset < hi or m.data_offset <= lo
                                 < m.data_offset + m.size for lo, hi in ranges.get(apk, []))
                    hits.append((not mapped, m.path))
        if hits:
            return min(hits)[1]
    return None


def _real(path: str) -> str:
    """The path with symlinks resolved, unless that brings in whitespace (which a
    uprobe definition cannot carry) and the given path has none."""
    real = os.path.realpath(path)
    if any(c.isspace() for c in real) and not any(c.isspace() for c in path):
        return os.path.abspath(path)
    return real


def _is_library_name(name: str) -> bool:
    return name.startswith("lib") or ".so" in name


def resolve_target(target: str, pid: int | None = None) -> str:
    """The file a uprobe/usdt TARGET names.

    - a path (contains ``/``): itself, or with a pid ``/proc/PID/root/PATH``;
    - with a pid, any other name is looked up in ``/proc/PID/maps`` (the executable or
      a library);
    - without a pid, ``lib*`` names go through the ld.so cache, other names through
      ``$PATH`` then the ld.so cache.

    A library stored in an APK is ``APK!/ENTRY`` (the APK part resolved as a path).
    Paths outside ``/proc`` are returned with symlinks resolved. Raises NotFound.
    """
    from .apk import SEP, split_member

    apk, member = split_member(target)
    if member is not None and "/" in apk:
        return f"{resolve_target(apk, pid)}{SEP}{member}"
    if "/" in target:
        if pid is not None and target.startswith("/"):
            p = f"/proc/{pid}/root{target}"
            if not os.path.exists(p):
                raise NotFound(f"{target} does not exist in the mount namespace of process {pid}")
            return p
        if not os.path.exists(target):
            raise NotFound(f"{target}: no such file")
        return _real(target)
    if pid is not None:
        found = find_in_maps(pid, target)
        if found is None:
            raise NotFound(
                f"process {pid} maps no file named {target!r} (searched /proc/{pid}/maps)"
            )
        return found
    tried = []
    if not _is_library_name(target):
        exe = shutil.which(target)
        if exe:
            return _real(exe)
        tried.append("$PATH")
    try:
        return _real(find_library(target))
    except NotFound:
        tried.append(f"the ld.so cache ({LD_SO_CACHE})")
    if _is_library_name(target):
        exe = shutil.which(target)
        if exe:
            return _real(exe)
        tried.append("$PATH")
    raise NotFound(
        f"cannot find target {target!r} (searched {' and '.join(tried)}); give its full path"
    )
