"""Libraries inside APKs (Android): ``/data/app/.../base.apk!/lib/arm64-v8a/libfoo.so``.

Android loads a native library straight out of its APK when the zip entry is stored
(not compressed) and page-aligned: the dynamic linker maps the APK at the entry's data
offset, so ``/proc/PID/maps`` shows the APK with an offset and a uprobe goes on the
APK file at *entry data offset + the symbol's file offset in the ELF*. This module
finds that data offset (from the entry's local file header: the central directory's
``extra`` field may differ from the local one, which is what the alignment padding
uses) and gives the ELF bytes to the ELF reader.

Example::

    m = apk_member("/data/app/x/base.apk!/lib/arm64-v8a/libfoo.so")
    m.apk, m.name, m.data_offset      # ('/data/app/x/base.apk', 'lib/arm64-v8a/libfoo.so', 4096)
    probe_file("/data/app/x/base.apk!/lib/arm64-v8a/libfoo.so")   # (m.apk, 4096)
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import NotFound
from ..files import open_regular

__all__ = ["SEP", "ApkMember", "split_member", "apk_member", "probe_file", "apk_libraries",
           "open_member", "PAGE_SIZE"]

#: how Android (and probewatch) write "a file inside an APK"
SEP = "!/"
PAGE_SIZE = 4096
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # zip local file header, 30 bytes
_LOCAL_SIG = b"PK\x03\x04"


@dataclass(frozen=True)
class ApkMember:
    """One stored zip entry: the APK path, the entry name, where its bytes start."""

    apk: str
    name: str
    data_offset: int
    size: int

    @property
    def path(self) -> str:
        return f"{self.apk}{SEP}{self.name}"

    @property
    def page_aligned(self) -> bool:
        return self.data_offset % PAGE_SIZE == 0


def split_member(path: str) -> tuple[str, str | None]:
    """``(apk, entry)`` for ``APK!/ENTRY`` (the last ``.apk!/`` or ``.zip!/``); ``(path,
    None)`` for a plain path."""
    for ext in (".apk", ".zip", ".jar"):
        i = path.rfind(ext + SEP)
        if i >= 0:
            cut = i + len(ext)
            return path[:cut], path[cut + len(SEP):]
    return path, None


def _member(zf: zipfile.ZipFile, f: BinaryIO, apk: str, info: zipfile.ZipInfo) -> ApkMember:
    name = info.filename
    if info.compress_type != zipfile.ZIP_STORED:
        raise NotFound(
            f"{apk}{SEP}{name} is compressed in the APK, so Android does not map it from"
            " there: it extracts it (look under the app's lib/ directory, e.g."
            " /data/app/.../lib/arm64/) and that file is the one to probe")
    f.seek(info.header_offset)
    raw = f.read(_LOCAL.size)
    if len(raw) != _LOCAL.size or raw[:4] != _LOCAL_SIG:
        raise NotFound(f"{apk}: no local file header for {name} at {info.header_offset}"
                       " (damaged zip)")
    fields = _LOCAL.unpack(raw)
    name_len, extra_len = fields[9], fields[10]
    data = info.header_offset + _LOCAL.size + name_len + extra_len
    return ApkMember(apk, name, data, info.file_size)


def apk_member(path: str) -> ApkMember:
    """The stored entry ``APK!/ENTRY`` names; NotFound (missing, not a zip, no such
    entry, compressed) with the reason."""
    apk, name = split_member(path)
    if name is None:
        raise NotFound(f"{path} names no file inside an APK (write APK{SEP}ENTRY)")
    with open_regular(apk, "an APK (zip) file") as f:
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise NotFound(f"{apk} is not a zip/APK file ({e})") from None
        with zf:
            try:
                info = zf.getinfo(name)
            except KeyError:
                libs = [n for n in zf.namelist() if n.endswith(".so")]
                hint = f" (its libraries: {', '.join(libs[:8])})" if libs else ""
                raise NotFound(f"{apk} has no entry {name}{hint}") from None
            return _member(zf, f, apk, info)


def open_member(path: str) -> BinaryIO:
    """The bytes of ``APK!/ENTRY`` as a seekable file (what the ELF reader parses)."""
    m = apk_member(path)
    with open_regular(m.apk, "an APK (zip) file") as f:
        f.seek(m.data_offset)
        data = f.read(m.size)
    if len(data) != m.size:
        raise NotFound(f"{m.path}: the APK ends inside the entry (truncated file)")
    return io.BytesIO(data)


def probe_file(path: str) -> tuple[str, int]:
    """``(file, base offset)`` a uprobe on ``path`` goes on: the APK and the entry's data
    offset for ``APK!/ENTRY``, else ``(path, 0)``."""
    if split_member(path)[1] is None:
        return path, 0
    m = apk_member(path)
    return m.apk, m.data_offset


def apk_libraries(apk: str) -> list[ApkMember]:
    """Every stored ``*.so`` entry of an APK, in zip order (compressed ones are left out:
    Android extracts those)."""
    out: list[ApkMember] = []
    with open_regular(apk, "an APK (zip) file") as f:
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise NotFound(f"{apk} is not a zip/APK file ({e})") from None
        with zf:
            for info in zf.infolist():
                if info.filename.endswith(".so") and info.compress_type == zipfile.ZIP_STORED:
                    out.append(_member(zf, f, apk, info))
    return out


def is_apk_path(path: str) -> bool:
    return split_member(path)[1] is not None or path.endswith(".apk")


def exists(path: str) -> bool:
    """``os.path.exists`` that understands ``APK!/ENTRY`` (the APK must exist)."""
    apk, name = split_member(path)
    return os.path.exists(apk if name is not None else path)
