"""ELF reading: symbols -> file offsets, debug files, library lookup, USDT notes.

Offsets are checked against binutils (nm, readelf, objdump -F) on binaries built from
tests/targets/pw_target.c.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import missing  # tests/conftest.py
from probewatch.elf import libs, symbols, usdt
from probewatch.elf.symbols import open_image, resolve_symbol
from probewatch.errors import NotFound, SpecError
from targets.build import build_for_tests

# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_for_tests(tmp_path_factory, "targets", skip_unavailable=True)


@pytest.fixture(scope="module")
def no_debug_root(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return [str(tmp_path_factory.mktemp("emptydebug"))]


def _sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def nm_address(path: Path, name: str) -> int:
    """Address of a symbol from nm (first match)."""
    for line in _sh("nm", str(path)).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise AssertionError(f"nm: no {name} in {path}")


def readelf_loads(path: Path) -> list[tuple[int, int, int, int]]:
    """(offset, vaddr, filesz, memsz) of each PT_LOAD, from readelf -lW."""
    out = []
    for line in _sh("readelf", "-lW", str(path)).splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            out.append((int(f[1], 16), int(f[2], 16), int(f[4], 16), int(f[5], 16)))
    return out


def objdump_file_offset(path: Path, name: str) -> int:
    """File offset objdump -F reports for a function."""
    out = _sh("objdump", "-d", "-F", f"--disassemble={name}", str(path))
    m = re.search(rf"<{re.escape(name)}> \(File Offset: 0x([0-9a-f]+)\):", out)
    assert m, out[:2000]
    return int(m.group(1), 16)


def readelf_section(path: Path, name: str) -> tuple[int, int]:
    """(sh_addr, sh_offset) of a section, from readelf -SW."""
    for line in _sh("readelf", "-SW", str(path)).splitlines():
        m = re.search(rf"\]\s+{re.escape(name)}\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
        if m:
            return int(m.group(1), 16), int(m.group(2), 16)
    raise AssertionError(f"no section {name} in {path}")


# ------------------------------------------------------------------ symbols


@pytest.mark.parametrize("variant", ["pie", "nopie"])
@pytest.mark.parametrize("func", ["pw_add", "pw_greet", "pw_many", "__pw_ifunc_fast"])
def test_offsets_match_binutils(targets: Any, variant: str, func: str) -> None:
    path = targets.variants[variant]
    [r] = resolve_symbol(str(path), func)
    vaddr = nm_address(path, func)
    assert r.address == vaddr
    loads = readelf_loads(path)
    seg = [s for s in loads if s[1] <= vaddr < s[1] + s[2]]
    assert len(seg) == 1
    assert r.offset == vaddr - seg[0][1] + seg[0][0]
    assert r.offset == objdump_file_offset(path, func)
    assert r.source == str(path)
    assert r.name == func and r.warnings == ()


def test_pie_and_nopie_images(targets: Any) -> None:
    pie = open_image(str(targets.pie))
    nopie = open_image(str(targets.nopie))
    lib = open_image(str(targets.lib))
    assert pie.elf_type == "ET_DYN" and pie.is_pie
    assert nopie.elf_type == "ET_EXEC" and not nopie.is_pie
    assert lib.elf_type == "ET_DYN" and not lib.is_pie
    assert pie.machine == nopie.machine
    # non-PIE: the vaddr is not the file offset
    [r] = resolve_symbol(str(targets.nopie), "pw_add")
    assert r.address >= 0x400000 and r.offset < 0x100000
    assert [(s.offset, s.vaddr, s.filesz, s.memsz) for s in nopie.segments] == readelf_loads(
        targets.nopie
    )


def test_shared_library_offset(targets: Any) -> None:
    [r] = resolve_symbol(str(targets.lib), "pw_lib_mul")
    assert r.offset == objdump_file_offset(targets.lib, "pw_lib_mul")
    assert r.symbol.table == ".symtab"


def test_vaddr_to_offset_errors(targets: Any) -> None:
    img = open_image(str(targets.nopie))
    with pytest.raises(NotFound, match=r"address 0x10 is not inside any loadable segment"):
        img.vaddr_to_offset(0x10)
    assert symbols.address_to_offset(str(targets.nopie), 0x401000) == 0x1000


def test_versioned_names_libc() -> None:
    try:
        path = libs.find_library("libc")
    except NotFound:
        missing("no libc in the ld.so cache (libc6)")
    img = open_image(path)
    assert any(s.version for s in img.symbols), "glibc's symbols are versioned"
    [plain] = resolve_symbol(path, "malloc")
    assert plain.symbol.version and plain.symbol.default_version
    full = plain.symbol.full_name
    assert full.startswith("malloc@@GLIBC_")
    [versioned] = resolve_symbol(path, full)
    assert versioned.offset == plain.offset
    # the single-@ spelling names the same version
    [single] = resolve_symbol(path, full.replace("@@", "@"))
    assert single.offset == plain.offset
    dyn = _sh("readelf", "--dyn-syms", "-W", path)
    m = re.search(r"\s([0-9a-f]{16})\s+\d+\s+FUNC\s+GLOBAL\s+DEFAULT\s+\d+\s+malloc@@GLIBC", dyn)
    assert m and int(m.group(1), 16) == plain.address


def test_several_versions_prefer_default() -> None:
    try:
        path = libs.find_library("libc")
    except NotFound:
        missing("no libc in the ld.so cache (libc6)")
    img = open_image(path)
    multi: dict[str, set[tuple[int, bool]]] = {}
    for s in img.symbols:
        if s.version and s.table == ".dynsym":
            multi.setdefault(s.name, set()).add((s.address, s.default_version))
    name = next(
        (n for n, v in sorted(multi.items())
         if len({a for a, _ in v}) > 1 and sum(1 for _, d in v if d) == 1
         and all(img.is_function(s) for s in img.lookup(n))),
        None,
    )
    # glibc keeps old versions of a few functions (e.g. memcpy@GLIBC_2.2.5 beside
    # memcpy@@GLIBC_2.14 on x86_64, pthread_cond_* everywhere)
    assert name is not None, "no function with several versions in this libc"
    [r] = resolve_symbol(path, name)
    assert r.symbol.default_version and r.symbol.full_name.startswith(f"{name}@@")
    # the one readelf marks as the default version (name@@VER), not an older name@VER
    dyn = _sh("readelf", "--dyn-syms", "-W", path)
    want = {int(a, 16) for a in re.findall(
        rf"\s([0-9a-f]{{16}})\s+\d+\s+\w+\s+\w+\s+\w+\s+\d+\s+{re.escape(name)}@@\S+$",
        dyn, re.M)}
    assert want == {r.address}


def test_glob(targets: Any) -> None:
    rs = resolve_symbol(str(targets.pie), "pw_[ag]*")
    assert [r.name for r in rs] == ["pw_add", "pw_greet"]
    rs = resolve_symbol(str(targets.pie), "pw_*")
    names = [r.name for r in rs]
    # the two static pw_local functions both match (one probe each)
    assert names.count("pw_local") == 2
    assert "pw_counter" not in names  # data, not a function
    assert len(rs) == len({(r.name, r.address) for r in rs})


def test_glob_cap(targets: Any) -> None:
    with pytest.raises(SpecError) as ei:
        resolve_symbol(str(targets.pie), "pw_*", max_matches=3)
    msg = ei.value.message
    assert "'pw_*' matches" in msg and "more than the limit of 3" in msg
    assert "narrow the glob" in msg
    with pytest.raises(NotFound, match=r"no function in .* matches 'zz_\*'"):
        resolve_symbol(str(targets.pie), "zz_*")


def test_missing_symbol_names_closest(targets: Any) -> None:
    with pytest.raises(NotFound) as ei:
        resolve_symbol(str(targets.pie), "pw_ad")
    msg = str(ei.value)
    assert "no function 'pw_ad' in" in msg and "did you mean: pw_add" in msg
    with pytest.raises(NotFound) as ei:
        resolve_symbol(str(targets.pie), "completely_unrelated_name_xyz")
    assert "did you mean" not in str(ei.value)


def test_data_symbol_is_not_a_function(targets: Any) -> None:
    with pytest.raises(NotFound, match=r"'pw_counter' in .* is not a function \(object symbol"):
        resolve_symbol(str(targets.pie), "pw_counter")
    assert symbols.symbol_address(str(targets.pie), "pw_counter") == nm_address(
        targets.pie, "pw_counter"
    )
    with pytest.raises(NotFound, match="no symbol 'nope'"):
        symbols.symbol_address(str(targets.pie), "nope")
    with pytest.raises(NotFound, match="ambiguous"):
        symbols.symbol_address(str(targets.pie), "pw_local")


def test_ambiguous_local_functions(targets: Any) -> None:
    with pytest.raises(SpecError) as ei:
        resolve_symbol(str(targets.pie), "pw_local")
    msg = ei.value.message
    addrs = sorted(
        int(line.split()[0], 16)
        for line in _sh("nm", str(targets.pie)).splitlines()
        if line.endswith(" pw_local")
    )
    assert len(addrs) == 2
    assert "'pw_local' is ambiguous" in msg and "2 functions at different addresses" in msg
    for a in addrs:
        assert f"0x{a:x}" in msg
    assert "pw_target.c" in msg and "pw_sem.c" in msg  # the STT_FILE each came from
    assert f"u:{targets.pie}:0x{addrs[0]:x}" in msg


def test_ifunc_warning_names_implementations(targets: Any) -> None:
    [r] = resolve_symbol(str(targets.pie), "pw_ifunc")
    assert r.symbol.type == "IFUNC"
    [w] = r.warnings
    assert "pw_ifunc" in w and "IFUNC" in w and "resolver" in w
    assert "__pw_ifunc_fast" in w and "__pw_ifunc_generic" in w


def test_ifunc_libc_strlen() -> None:
    try:
        path = libs.find_library("libc")
    except NotFound:
        missing("no libc in the ld.so cache (libc6)")
    [r] = resolve_symbol(path, "strlen")
    # glibc picks strlen by CPU (SSE2/AVX2/EVEX on x86_64, ASIMD/SVE on arm64)
    assert r.symbol.type == "IFUNC", r.symbol
    [w] = r.warnings
    assert "strlen" in w and "IFUNC" in w
    # named from libc's debug symbols when installed, else the warning says how to get them
    assert "__strlen_" in w


def test_stripped_with_debuglink(targets: Any, no_debug_root: list[str]) -> None:
    img = open_image(str(targets.stripped))
    assert img.stripped and img.debuglink is not None
    assert img.debuglink[0] == "pw_stripped.debug"
    search = symbols.find_debug_file(img, no_debug_root)
    assert search.found == str(targets.stripped_debug)
    [r] = resolve_symbol(str(targets.stripped), "pw_add", debug_roots=no_debug_root)
    assert r.source == str(targets.stripped_debug)
    assert r.offset == objdump_file_offset(targets.pie, "pw_add")
    assert r.path == str(targets.stripped)
    # globs and IFUNC implementations come from the debug file too
    assert [x.name for x in resolve_symbol(str(targets.stripped), "pw_[ag]*")] == [
        "pw_add", "pw_greet",
    ]
    symbols.clear_cache()
    [f] = resolve_symbol(str(targets.stripped), "pw_ifunc", debug_roots=no_debug_root)
    assert f.symbol.type == "IFUNC" and f.source == str(targets.stripped_debug)
    assert "__pw_ifunc_fast" in f.warnings[0]


def test_stripped_without_debug_file(targets: Any, no_debug_root: list[str]) -> None:
    with pytest.raises(NotFound) as ei:
        resolve_symbol(str(targets.nodebug), "pw_add", debug_roots=no_debug_root)
    msg = str(ei.value)
    assert "is stripped" in msg
    assert "no debug file found" in msg
    bid = open_image(str(targets.nodebug)).build_id
    # the note as binutils reads it
    [want] = re.findall(r"Build ID: ([0-9a-f]+)", _sh("readelf", "-n", str(targets.nodebug)))
    assert bid == want and len(bid) == 40  # gcc's default --build-id=sha1
    root = no_debug_root[0]
    assert f"{root}/.build-id/{bid[:2]}/{bid[2:]}.debug" in msg
    assert f"{root}{os.path.realpath(targets.nodebug)}" in msg
    assert f"u:{targets.nodebug}:0xADDRESS" in msg
    with pytest.raises(NotFound, match="is stripped"):
        resolve_symbol(str(targets.nodebug), "pw_*", debug_roots=no_debug_root)


def test_build_id_debug_root(targets: Any) -> None:
    img = open_image(str(targets.buildid))
    assert img.debuglink is None and img.build_id
    search = symbols.find_debug_file(img, [str(targets.debug_root)])
    assert search.found is not None and "/.build-id/" in search.found
    [r] = resolve_symbol(str(targets.buildid), "pw_add", debug_roots=[str(targets.debug_root)])
    assert r.offset == objdump_file_offset(targets.pie, "pw_add")


def test_debug_by_path_and_mismatches(targets: Any, tmp_path: Path) -> None:
    # ROOT/<path>.debug
    root = tmp_path / "root"
    real = os.path.realpath(targets.nodebug)
    dest = Path(str(root) + real + ".debug")
    dest.parent.mkdir(parents=True)
    shutil.copy(targets.stripped_debug, dest)
    search = symbols.find_debug_file(open_image(str(targets.nodebug)), [str(root)])
    assert search.found == str(dest)
    # a debug file with another build-id is rejected, and said so
    other = tmp_path / "other"
    bin2 = other / "pw_nodebug_copy"
    other.mkdir()
    shutil.copy(targets.nodebug, bin2)
    wrong = Path(str(root) + os.path.realpath(bin2))
    wrong.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(targets.lib, wrong)  # a different ELF (other build-id)
    search = symbols.find_debug_file(open_image(str(bin2)), [str(root)])
    assert search.found is None
    assert any("does not match" in n for n in search.notes)


def test_debuglink_crc_checked(targets: Any, tmp_path: Path) -> None:
    d = tmp_path / "crc"
    d.mkdir()
    b = d / "prog"
    shutil.copy(targets.stripped, b)
    # strip the build-id note so only the CRC can validate the debug file
    subprocess.run(["objcopy", "--remove-section=.note.gnu.build-id", str(b)], check=True)
    dbg = d / "pw_stripped.debug"
    shutil.copy(targets.stripped_debug, dbg)
    subprocess.run(["objcopy", "--remove-section=.note.gnu.build-id", str(dbg)], check=True)
    img = open_image(str(b))
    assert img.build_id is None and img.debuglink
    search = symbols.find_debug_file(img, [])
    assert search.found is None  # the debug file changed: its CRC no longer matches
    assert any("CRC" in n for n in search.notes)


def test_cache(targets: Any, tmp_path: Path) -> None:
    p = tmp_path / "copy"
    shutil.copy(targets.pie, p)
    a = open_image(str(p))
    assert open_image(str(p)) is a
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    b = open_image(str(p))
    assert b is not a
    symbols.clear_cache()
    assert open_image(str(p)) is not b


def test_not_elf_and_missing(tmp_path: Path) -> None:
    p = tmp_path / "text"
    p.write_text("hello")
    with pytest.raises(NotFound, match="not a valid ELF file"):
        open_image(str(p))
    with pytest.raises(NotFound, match="no such file"):
        open_image(str(tmp_path / "missing"))
    with pytest.raises(NotFound, match="is a directory"):
        open_image(str(tmp_path))


def test_image_is_parsed_once(targets: Any, tmp_path: Path) -> None:
    """Repeated resolves reuse the parsed image (the speed is measured in
    bench/elf_lookup.py, not asserted here); a changed file is parsed again."""
    img = open_image(str(targets.pie))
    for _ in range(3):
        assert open_image(str(targets.pie)) is img
        [r] = resolve_symbol(str(targets.pie), "pw_add")
        assert r.name == "pw_add"
    copy = tmp_path / "copy"
    shutil.copy(targets.pie, copy)
    first = open_image(str(copy))
    os.utime(copy, ns=(0, 0))  # a new mtime: the cache key changes
    assert open_image(str(copy)) is not first


# ------------------------------------------------------------------ libraries


def _fake_cache(entries: list[tuple[int, str, str]]) -> bytes:
    """A glibc 'new format' ld.so.cache with the given (flags, name, path) entries."""
    hdr_size, ent_size = 48, 24
    strings = b""
    offs = []
    base = hdr_size + ent_size * len(entries)
    for _, name, path in entries:
        k = base + len(strings)
        strings += name.encode() + b"\0"
        v = base + len(strings)
        strings += path.encode() + b"\0"
        offs.append((k, v))
    hdr = struct.pack("<20sIIB3xI12x", b"glibc-ld.so.cache1.1", len(entries), len(strings), 2, 0)
    body = b"".join(
        struct.pack("<iIIIQ", f, k, v, 0, 0)
        for (f, _, _), (k, v) in zip(entries, offs, strict=True)
    )
    return hdr + body + strings


def test_parse_ld_so_cache_synthetic() -> None:
    data = _fake_cache([
        (0x0303, "libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"),
        (0x0A03, "libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6"),
        (0x0003, "libc.so.6", "/lib/i386-linux-gnu/libc.so.6"),
    ])
    es = libs.parse_ld_so_cache(data)
    assert [(e.name, e.path, e.arch_flags) for e in es] == [
        ("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6", 0x0300),
        ("libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", 0x0A00),
        ("libc.so.6", "/lib/i386-linux-gnu/libc.so.6", 0x0000),
    ]
    # old-format prefix followed by the new format also parses
    assert libs.parse_ld_so_cache(b"ld.so-1.7.0" + b"\0" * 5 + data) == es
    with pytest.raises(ValueError):
        libs.parse_ld_so_cache(b"garbage")


def test_find_library_picks_arch(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [
        libs.LdCacheEntry("libssl.so", "/x86/libssl.so", 0x0303),
        libs.LdCacheEntry("libssl.so.3", "/x86/libssl.so.3", 0x0303),
        libs.LdCacheEntry("libssl.so.1.1", "/x86/libssl.so.1.1", 0x0303),
        libs.LdCacheEntry("libssl3.so", "/x86/libssl3.so", 0x0303),
        libs.LdCacheEntry("libssl.so.3", "/arm/libssl.so.3", 0x0A03),
        libs.LdCacheEntry("libc.so.6", "/arm/libc.so.6", 0x0A03),
        libs.LdCacheEntry("libc.so.6", "/i386/libc.so.6", 0x0003),
    ]
    monkeypatch.setattr(libs, "ld_cache_entries", lambda path=libs.LD_SO_CACHE: entries)
    assert libs.find_library("libssl", machine="x86_64") == "/x86/libssl.so.3"
    assert libs.find_library("ssl", machine="x86_64") == "/x86/libssl.so.3"
    assert libs.find_library("libssl", machine="aarch64") == "/arm/libssl.so.3"
    assert libs.find_library("libc", machine="aarch64") == "/arm/libc.so.6"
    with pytest.raises(NotFound, match="no library 'libc' for x86-64 in the ld.so cache"):
        libs.find_library("libc", machine="x86_64")


def test_parse_ldconfig_output() -> None:
    text = (
        "578 libs found in cache `/etc/ld.so.cache'\n"
        "\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6\n"
        "\tlibc.so.6 (libc6) => /lib/i386-linux-gnu/libc.so.6\n"
        "\tlibm.so.6 (libc6,AArch64, OS ABI: Linux 3.7.0) => /lib/aarch64-linux-gnu/libm.so.6\n"
        "\tlibfoo.so (libc6,x86-64, hwcap: 0x0000000000000002) => /opt/lib/libfoo.so\n"
        "Cache generated by: ldconfig (GNU libc) stable release version 2.36\n"
    )
    es = libs.parse_ldconfig_output(text)
    assert [(e.name, e.path, e.arch_flags) for e in es] == [
        ("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6", 0x0300),
        ("libc.so.6", "/lib/i386-linux-gnu/libc.so.6", 0),
        ("libm.so.6", "/lib/aarch64-linux-gnu/libm.so.6", 0x0A00),
        ("libfoo.so", "/opt/lib/libfoo.so", 0x0300),
    ]


def test_ld_so_cache_matches_ldconfig() -> None:
    if not os.path.exists(libs.LD_SO_CACHE) or shutil.which("ldconfig") is None:
        missing("no ld.so cache / ldconfig (libc-bin)")
    with open(libs.LD_SO_CACHE, "rb") as f:
        binary = libs.parse_ld_so_cache(f.read())
    text = libs.parse_ldconfig_output(_sh("ldconfig", "-p"))
    key = sorted((e.name, e.path, e.arch_flags) for e in binary)
    assert key == sorted((e.name, e.path, e.arch_flags) for e in text)


@pytest.mark.parametrize(
    "short,name,ok",
    [
        ("libc", "libc.so.6", True),
        ("libc", "libc-2.31.so", True),
        ("libc", "libcrypt.so.1", False),
        ("libc", "libc.so", True),
        ("libssl", "libssl3.so", False),
        ("libssl", "libssl.so.1.1", True),
        ("libc.so.6", "libc.so.6", True),
        ("libc.so.6", "libc.so.7", False),
        ("libpthread", "libpthread.so.0", True),
    ],
)
def test_short_name_matches(short: str, name: str, ok: bool) -> None:
    assert libs.short_name_matches(short, name) is ok


def test_real_short_names() -> None:
    for short in ("libc", "libpthread"):
        try:
            p = libs.find_library(short)
        except NotFound:
            missing(f"no {short} in the ld.so cache (libc6)")
        assert os.path.exists(p)
        assert os.path.basename(p).startswith(short + ".so")
        assert open_image(p).machine in ("EM_X86_64", "EM_AARCH64")


@pytest.fixture
def waiting_target(targets: Any) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [str(targets.pie), "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_find_in_maps(targets: Any, waiting_target: subprocess.Popen[str]) -> None:
    pid = waiting_target.pid
    root = f"/proc/{pid}/root"
    p = libs.find_in_maps(pid, "libpw")
    assert p == root + str(targets.lib)
    assert os.path.samefile(p, targets.lib)
    assert libs.find_library("libpw", pid=pid) == p
    libc = libs.find_in_maps(pid, "libc")
    assert libc is not None and libc.startswith(root + "/") and "libc" in libc
    assert libs.find_in_maps(pid, "libnothere") is None
    with pytest.raises(NotFound, match=rf"searched /proc/{pid}/maps"):
        libs.find_library("libnothere", pid=pid)
    # the executable, by name and by path, through the process's root
    assert libs.resolve_target("pw_pie", pid=pid) == root + str(targets.pie)
    assert libs.resolve_target(str(targets.pie), pid=pid) == root + str(targets.pie)
    assert str(targets.pie) in libs.maps_paths(pid)


def test_resolve_target_without_pid(targets: Any) -> None:
    assert libs.resolve_target(str(targets.pie)) == os.path.realpath(targets.pie)
    with pytest.raises(NotFound, match="no such file"):
        libs.resolve_target("/nonexistent/prog")
    sh = shutil.which("sh")
    if sh:
        assert libs.resolve_target("sh") == os.path.realpath(sh)
    with pytest.raises(NotFound, match="cannot find target 'libdefinitelynothere'"):
        libs.resolve_target("libdefinitelynothere")
    with pytest.raises(NotFound, match=r"no process 999999999"):
        libs.maps_paths(999_999_999)


# ------------------------------------------------------------------ USDT notes


def readelf_notes(path: Path) -> list[dict[str, str]]:
    out = _sh("readelf", "-n", str(path))
    notes: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Provider:"):
            cur = {"provider": line.split(":", 1)[1].strip()}
            notes.append(cur)
        elif line.startswith("Name:") and cur:
            cur["name"] = line.split(":", 1)[1].strip()
        elif line.startswith("Location:") and cur:
            m = re.findall(r"0x[0-9a-f]+", line)
            cur["pc"], cur["base"], cur["sem"] = m
        elif line.startswith("Arguments:") and cur:
            cur["args"] = line.split(":", 1)[1].strip()
    return notes


@pytest.mark.parametrize("variant", ["pie", "nopie", "stripped"])
def test_usdt_notes_match_readelf(targets: Any, variant: str) -> None:
    if not targets.has_sdt:
        missing("no <sys/sdt.h> (apt-get install systemtap-sdt-dev)")
    path = targets.variants[variant]
    probes = usdt.read_usdt_probes(str(path))
    notes = readelf_notes(path)
    assert len(probes) == len(notes) >= 7
    img = open_image(str(path))
    probes_addr, probes_off = readelf_section(path, ".probes")
    for p, n in zip(probes, notes, strict=True):
        assert (p.provider, p.name, p.args_text) == (n["provider"], n["name"], n.get("args", ""))
        assert p.pc == int(n["pc"], 16) and p.base == int(n["base"], 16)
        assert p.offset == img.vaddr_to_offset(p.pc)
        sem = int(n["sem"], 16)
        assert p.semaphore == sem
        if sem:
            # the semaphore lives in .probes: its file offset follows from that section
            assert p.semaphore_offset == sem - probes_addr + probes_off
        else:
            assert p.semaphore_offset is None
    names = {p.full_name for p in probes}
    assert {"pwtest:add", "pwtest:konst", "pwtest:global", "pwtest:twice", "pwother:add",
            "pwtest:withsem"} <= names
    assert sum(p.full_name == "pwtest:twice" for p in probes) == 2
    assert usdt.read_usdt_probes(str(path)) == probes  # cached


def test_usdt_none(targets: Any) -> None:
    assert usdt.read_usdt_probes(str(targets.lib)) == []
    with pytest.raises(NotFound):
        usdt.read_usdt_probes("/nonexistent/x")


def test_usdt_prelink_adjustment() -> None:
    # a note recorded with base 0x2000 in a file whose .stapsdt.base now sits at 0x3000
    desc = struct.pack("<QQQ", 0x1100, 0x2000, 0x4050) + b"prov\0name\0-4@%edi\0"
    p = usdt._note_to_probe("/x", "EM_X86_64", desc, 8, "little", 0x3000, lambda v: v - 0x1000)
    assert (p.provider, p.name, p.args_text) == ("prov", "name", "-4@%edi")
    assert p.pc == 0x2100 and p.offset == 0x1100
    assert p.semaphore == 0x5050 and p.semaphore_offset == 0x4050
    # 32-bit, big endian, no semaphore
    desc32 = struct.pack(">III", 0x100, 0x200, 0) + b"a\0b\0\0"
    q = usdt._note_to_probe("/y", "EM_X86_64", desc32, 4, "big", 0x200, lambda v: v)
    assert (q.pc, q.semaphore, q.semaphore_offset, q.args) == (0x100, 0, None, ())


@pytest.mark.parametrize(
    "text,kind,size,signed,register,offset,const,symbol",
    [
        ("-4@%edi", "reg", 4, True, "edi", 0, None, None),
        ("8@%rax", "reg", 8, False, "rax", 0, None, None),
        ("-1@%al", "reg", 1, True, "al", 0, None, None),
        ("2@%r12w", "reg", 2, False, "r12w", 0, None, None),
        ("8@-16(%rbp)", "mem", 8, False, "rbp", -16, None, None),
        ("-4@28(%rsp)", "mem", 4, True, "rsp", 28, None, None),
        ("8@(%rdi)", "mem", 8, False, "rdi", 0, None, None),
        ("8@0x10(%rsi)", "mem", 8, False, "rsi", 16, None, None),
        ("4@$5", "const", 4, False, None, 0, 5, None),
        ("-4@$-3", "const", 4, True, None, 0, -3, None),
        ("8@$0x20", "const", 8, False, None, 0, 32, None),
        ("8@foo(%rip)", "sym", 8, False, "rip", 0, None, "foo"),
        ("-8@pw_counter+8(%rip)", "sym", 8, True, "rip", 8, None, "pw_counter"),
        ("8@bar", "sym", 8, False, None, 0, None, "bar"),
        ("8@(%rax,%rdx,8)", "unsupported", 8, False, None, 0, None, None),
        ("8@16(%rip)", "unsupported", 8, False, "rip", 16, None, None),
        ("%rdi", "reg", 8, False, "rdi", 0, None, None),
    ],
)
def test_parse_usdt_arg_x86(
    text: str, kind: str, size: int, signed: bool, register: str | None, offset: int,
    const: int | None, symbol: str | None,
) -> None:
    a = usdt.parse_usdt_arg(text)
    assert (a.kind, a.size, a.signed, a.register, a.offset, a.const, a.symbol) == (
        kind, size, signed, register, offset, const, symbol,
    )
    assert a.type == f"{'s' if signed else 'u'}{size * 8}"
    assert str(a) == text


@pytest.mark.parametrize(
    "text,kind,size,signed,register,offset,const",
    [
        ("-4@x0", "reg", 4, True, "x0", 0, None),
        ("8@x29", "reg", 8, False, "x29", 0, None),
        ("-4@w3", "reg", 4, True, "w3", 0, None),
        ("8@[sp, 16]", "mem", 8, False, "sp", 16, None),
        ("8@[x1]", "mem", 8, False, "x1", 0, None),
        ("-4@[x29, -12]", "mem", 4, True, "x29", -12, None),
        ("4@5", "const", 4, False, None, 0, 5),
        ("4@#7", "const", 4, False, None, 0, 7),
    ],
)
def test_parse_usdt_arg_arm64(
    text: str, kind: str, size: int, signed: bool, register: str | None, offset: int,
    const: int | None,
) -> None:
    a = usdt.parse_usdt_arg(text, "EM_AARCH64")
    assert (a.kind, a.size, a.signed, a.register, a.offset, a.const) == (
        kind, size, signed, register, offset, const,
    )


def test_parse_usdt_args_splitting() -> None:
    got = usdt.parse_usdt_args("-4@x0 8@[sp, 16] 4@5", "EM_AARCH64")
    assert [a.text for a in got] == ["-4@x0", "8@[sp, 16]", "4@5"]
    assert [a.kind for a in usdt.parse_usdt_args("  -4@%edi   8@%rax ")] == ["reg", "reg"]
    assert usdt.parse_usdt_args("") == ()
    with pytest.raises(ValueError, match="bad USDT argument size 3"):
        usdt.parse_usdt_arg("3@%eax")
    with pytest.raises(ValueError):
        usdt.parse_usdt_arg("8@")


def test_default_glob_limit_is_64_on_libc() -> None:
    """README: a uprobe SYMBOL glob gives one probe per function, at most 64. The
    function names per glob are counted with readelf (libc's .dynsym), not the resolver."""
    try:
        path = libs.find_library("libc")
    except NotFound:
        missing("no libc in the ld.so cache (libc6)")
    dyn = _sh("readelf", "--dyn-syms", "-W", path)
    funcs = {f[7].split("@")[0] for f in (ln.split() for ln in dyn.splitlines())
             if len(f) >= 8 and f[3] in ("FUNC", "IFUNC") and f[6] != "UND"}
    count = {g: len([n for n in funcs if n.startswith(g)])
             for g in ("wcs", "sig", "str", "pthread_", "mem", "mbr")}
    small = next(g for g, n in count.items() if 1 < n <= 64)
    big = next(g for g, n in count.items() if n > 64)
    # (libc's debug symbols, when installed, add local helpers such as wcsrchr_ifunc)
    rs = resolve_symbol(path, small + "*")
    names = {r.name for r in rs}
    assert {n for n in funcs if n.startswith(small)} <= names and len(names) <= 64
    with pytest.raises(SpecError) as ei:
        resolve_symbol(path, big + "*")
    m = re.search(rf"'{re.escape(big)}\*' matches (\d+)", ei.value.message)
    assert m and int(m.group(1)) >= count[big] > 64, ei.value.message
    assert "more than the limit of 64" in ei.value.message
