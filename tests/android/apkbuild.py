"""Build an APK-like zip the way Android packs native code, and the loader's arguments.

``build_apk`` writes AndroidManifest.xml and classes.dex (deflated, as in a real APK)
and each ``lib/<abi>/libpwapk.so`` *stored* and page-aligned (zipalign -p: the local
header's extra field is padded with an 0xD935 record so the data starts on a 4096-byte
boundary). ``loader_args`` says where pw_apk_loader must map the APK to run
``pw_apk_add`` from it, as Android's linker would.
"""

from __future__ import annotations

import struct
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from probewatch.elf.symbols import open_image

HERE = Path(__file__).resolve().parent
PAGE = 4096
ALIGN_EXTRA_ID = 0xD935  # zipalign's alignment record
LIB = "libpwapk.so"


def _aligned_info(name: str, offset: int) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name, date_time=(2026, 12, 7, 0, 0, 0))
    zi.compress_type = zipfile.ZIP_STORED
    base = offset + 30 + len(name.encode()) + 4  # local header + the record's own header
    pad = (-base) % PAGE
    zi.extra = struct.pack("<HH", ALIGN_EXTRA_ID, pad) + bytes(pad)
    return zi


def build_apk(path: Path, libs: dict[str, bytes]) -> dict[str, int]:
    """Write the APK; -> entry name -> data offset of each stored library."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("AndroidManifest.xml", (2026, 12, 7, 0, 0, 0)),
                    b"<manifest package='org.probewatch.test'/>" * 20, zipfile.ZIP_DEFLATED)
        zf.writestr(zipfile.ZipInfo("classes.dex", (2026, 12, 7, 0, 0, 0)),
                    b"dex\n035\0" + bytes(3000), zipfile.ZIP_DEFLATED)
        for abi, data in libs.items():
            assert zf.fp is not None
            zi = _aligned_info(f"lib/{abi}/{LIB}", zf.fp.tell())
            zf.writestr(zi, data)
        # a compressed library too: Android extracts those, probewatch says so
        zf.writestr(zipfile.ZipInfo(f"lib/{next(iter(libs))}/libdeflated.so",
                                    (2026, 12, 7, 0, 0, 0)),
                    next(iter(libs.values())), zipfile.ZIP_DEFLATED)
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        for info in zf.infolist():
            if info.compress_type == zipfile.ZIP_STORED:
                f.seek(info.header_offset)
                h = f.read(30)
                n, m = struct.unpack_from("<HH", h, 26)
                out[info.filename] = info.header_offset + 30 + n + m
    return out


@dataclass(frozen=True)
class LoaderArgs:
    map_offset: int
    map_len: int
    func_delta: int
    elf_offset: int  # pw_apk_add's file offset inside the ELF


def loader_args(so: Path, data_offset: int, func: str = "pw_apk_add") -> LoaderArgs:
    """Where to map ``so`` (stored at ``data_offset`` in the APK) and call ``func``."""
    img = open_image(str(so))
    [sym] = [s for s in img.symbols if s.name == func and s.table == ".dynsym"]
    seg = next(s for s in img.segments if s.contains(sym.address))
    assert seg.executable
    lead = seg.offset % PAGE
    return LoaderArgs(
        map_offset=data_offset + seg.offset - lead,
        map_len=seg.filesz + lead,
        func_delta=sym.address - seg.vaddr + lead,
        elf_offset=img.vaddr_to_offset(sym.address),
    )


def compile_lib(cc: str, out: Path, *flags: str) -> bytes:
    """Compile pw_apk_lib.c into ``out`` (self-contained: no libc, no relocations);
    ``flags``: e.g. ``-DPW_HAVE_SDT -I DIR`` for its USDT probe."""
    subprocess.run([cc, "-O1", "-ffreestanding", "-fno-tree-loop-distribute-patterns",
                    "-fPIC", "-shared", "-nostdlib", "-I", str(HERE.parent / "targets"),
                    *flags, "-o", str(out), str(HERE / "pw_apk_lib.c")],
                   check=True, capture_output=True)
    return out.read_bytes()


def compile_loader(cc: str, out: Path) -> Path:
    subprocess.run([cc, "-O2", "-o", str(out), str(HERE / "pw_apk_loader.c")], check=True,
                   capture_output=True)
    return out
