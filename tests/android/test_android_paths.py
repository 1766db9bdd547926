"""Android's places, on a fake device laid out in a directory (PROBEWATCH_ANDROID_ROOT):
tracefs fallbacks, bionic's libraries by short name, app uids named by package; and the
APK reader's errors."""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probewatch import android
from probewatch.analyze.proctable import Process, ProcessTable
from probewatch.decode.syscalls import SyscallTable, parse_syscall_format
from probewatch.detect.mapping import Mapper
from probewatch.elf import apk as apkmod
from probewatch.elf.libs import find_library, resolve_target
from probewatch.errors import NotFound
from probewatch.event import Event
from probewatch.kernel.tracefs import find_tracefs

PACKAGES = (
    "com.example.app 10123 0 /data/user/0/com.example.app default:targetSdkVersion=30 3003\n"
    "com.android.shell 2000 0 /data/user_de/0/com.android.shell platform 3003\n"
    "org.shared.one 10200 0 /data/user/0/org.shared.one default none\n"
    "org.shared.two 10200 0 /data/user/0/org.shared.two default none\n"
    "garbage line\n"
)


@pytest.fixture
def device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for d in ("apex/com.android.runtime/lib64/bionic", "system/lib64", "vendor/lib64",
              "data/system", "sys/kernel/debug/tracing/events"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "system/build.prop").write_text("ro.build.version.sdk=34\n")
    for lib in ("libc.so", "libdl.so", "libm.so"):
        (tmp_path / "apex/com.android.runtime/lib64/bionic" / lib).write_bytes(b"\x7fELF")
    for lib in ("libc.so", "liblog.so", "libpwfakeandroid.so"):  # libc here is the stub
        (tmp_path / "system/lib64" / lib).write_bytes(b"\x7fELF")
    (tmp_path / "sys/kernel/debug/tracing/trace").write_text("")
    (tmp_path / "data/system/packages.list").write_text(PACKAGES)
    monkeypatch.setenv("PROBEWATCH_ANDROID_ROOT", str(tmp_path))
    return tmp_path


def test_tracefs_fallback_order(device: Path) -> None:
    # only the debugfs place: the fallback; once /sys/kernel/tracing is there, it wins
    assert find_tracefs(str(device)) == str(device / "sys/kernel/debug/tracing")
    (device / "sys/kernel/tracing/events").mkdir(parents=True)
    (device / "sys/kernel/tracing/trace").write_text("")
    assert find_tracefs(str(device)) == str(device / "sys/kernel/tracing")
    assert find_tracefs(str(device / "nothing")) is None


def test_bionic_libraries_by_short_name(device: Path) -> None:
    bionic = device / "apex/com.android.runtime/lib64/bionic"
    assert android.is_android()
    assert android.find_library("libc") == str(bionic / "libc.so")  # the APEX first
    assert android.find_library("libdl") == str(bionic / "libdl.so")
    assert android.find_library("liblog") == str(device / "system/lib64/liblog.so")
    assert android.find_library("log") == str(device / "system/lib64/liblog.so")
    assert android.find_library("libnope") is None
    assert android.library_dirs() == [str(bionic), str(device / "system/lib64"),
                                      str(device / "vendor/lib64")]
    # the generic short-name lookup falls back to Android's directories (no ld.so
    # cache entry has this name), for find_library and for a probe TARGET alike
    want = str(device / "system/lib64/libpwfakeandroid.so")
    assert find_library("libpwfakeandroid") == want
    assert resolve_target("libpwfakeandroid") == want


def test_not_android_without_its_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBEWATCH_ANDROID_ROOT", str(tmp_path))
    assert not android.is_android()
    assert android.app_name(10123) is None  # a Linux uid 10123 keeps its passwd name
    with pytest.raises(NotFound, match="ld.so cache"):
        find_library("libpwfakeandroid")


def test_app_uids_named_by_package(device: Path) -> None:
    assert android.read_packages_list(PACKAGES) == {
        10123: "com.example.app", 2000: "com.android.shell", 10200: "org.shared.one"}
    assert android.app_name(10123) == "com.example.app"
    assert android.app_name(1010123) == "com.example.app@u10"  # user 10's copy
    assert android.app_name(10999) == "u0_a999"  # an app not in the list
    assert android.app_name(2000) is None  # system uids: passwd names (bionic's)
    assert android.app_name(0) is None
    t = ProcessTable(proc_root=str(device / "proc"))
    assert t.user_name(10123) == "com.example.app"
    assert t.user_name(0) == "root"


def test_app_uid_in_sigma_events(device: Path) -> None:
    t = ProcessTable(proc_root=str(device / "proc"))
    p = Process(4242, 1, 5)
    p.exe, p.argv, p.comm, p.uid, p.euid = "/system/bin/app_process64", ["com.example.app"], \
        "example.app", 10123, 10123
    t.procs[4242] = p
    fmt = parse_syscall_format("\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;\n"
                               "\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;\n"
                               "\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;\n"
                               "\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;")
    m = Mapper(t, SyscallTable({56: "openat"}, {"openat": fmt}))
    ev = Event(100, 0, 4242, 4242, "example.app", "syscalls:openat", "bpf:syscalls",
               {"ppid": 1, "uid": 10123, "gid": 10123, "cgroup": 1, "nr": 56, "dfd": -100,
                "filename": "/data/data/com.example.app/x", "flags": 0, "mode": 0, "ret": 3,
                "duration_ns": 10})
    sevs = m.map(ev)
    assert sevs and {s.fields.get("User") for s in sevs} == {"com.example.app"}


# ---------------------------------------------------------------------- APK reader


def _zip(path: Path, entries: list[tuple[str, bytes, int]]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, how in entries:
            zf.writestr(zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), data, how)


def test_apk_member_errors(tmp_path: Path) -> None:
    app = tmp_path / "base.apk"
    _zip(app, [("lib/arm64-v8a/libz.so", b"x" * 100, zipfile.ZIP_DEFLATED),
               ("lib/arm64-v8a/libok.so", b"\x7fELF" + bytes(60), zipfile.ZIP_STORED)])
    with pytest.raises(NotFound, match="compressed in the APK.*extracts it"):
        apkmod.apk_member(f"{app}!/lib/arm64-v8a/libz.so")
    with pytest.raises(NotFound, match=r"no entry lib/x86_64/libok.so \(its libraries: "
                                       r"lib/arm64-v8a/libz.so, lib/arm64-v8a/libok.so\)"):
        apkmod.apk_member(f"{app}!/lib/x86_64/libok.so")
    m = apkmod.apk_member(f"{app}!/lib/arm64-v8a/libok.so")
    assert app.read_bytes()[m.data_offset:m.data_offset + 4] == b"\x7fELF"
    assert not m.page_aligned and m.size == 64
    assert [x.name for x in apkmod.apk_libraries(str(app))] == ["lib/arm64-v8a/libok.so"]
    with pytest.raises(NotFound, match="is not a valid ELF"):
        from probewatch.elf.symbols import open_image

        open_image(f"{app}!/lib/arm64-v8a/libok.so")
    (tmp_path / "not.apk").write_bytes(b"PK but not a zip")
    with pytest.raises(NotFound, match="is not a zip/APK file"):
        apkmod.apk_member(f"{tmp_path / 'not.apk'}!/lib/a.so")
    with pytest.raises(NotFound, match="no such file"):
        apkmod.apk_member(f"{tmp_path / 'missing.apk'}!/lib/a.so")
    with pytest.raises(NotFound, match="no such file"):
        resolve_target(f"{tmp_path / 'missing.apk'}!/lib/a.so")
    # a local header that does not say PK\3\4 where the directory points
    raw = bytearray(app.read_bytes())
    info = zipfile.ZipFile(app).getinfo("lib/arm64-v8a/libok.so")
    raw[info.header_offset:info.header_offset + 4] = b"XXXX"
    bad = tmp_path / "bad.apk"
    bad.write_bytes(bytes(raw))
    with pytest.raises(NotFound, match="no local file header.*damaged"):
        apkmod.apk_member(f"{bad}!/lib/arm64-v8a/libok.so")


def test_split_member() -> None:
    assert apkmod.split_member("/data/app/x/base.apk!/lib/arm64-v8a/libfoo.so") == (
        "/data/app/x/base.apk", "lib/arm64-v8a/libfoo.so")
    assert apkmod.split_member("/a/b.apk!/c.apk!/lib/x.so") == ("/a/b.apk!/c.apk",
                                                               "lib/x.so")
    assert apkmod.split_member("/usr/lib/libc.so.6") == ("/usr/lib/libc.so.6", None)
    assert apkmod.probe_file("/usr/lib/libc.so.6") == ("/usr/lib/libc.so.6", 0)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400), st.text(max_size=30))
def test_fuzz_apk_reader_only_notfound(tmp_path_factory: pytest.TempPathFactory,
                                       data: bytes, name: str) -> None:
    # arbitrary bytes as an APK: a clean NotFound, never a traceback
    d = tmp_path_factory.mktemp("fz", numbered=True)
    p = d / "f.apk"
    p.write_bytes(data)
    for fn in (lambda: apkmod.apk_member(f"{p}!/{name or 'x'}"),
               lambda: apkmod.apk_libraries(str(p))):
        try:
            r = fn()
        except NotFound as e:
            assert str(e)
        else:
            assert r is not None


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab .\t\n0123456789/"), max_size=200))
def test_fuzz_packages_list(text: str) -> None:
    table = android.read_packages_list(text)
    for uid, pkg in table.items():
        assert uid >= 0 and pkg and not any(c.isspace() for c in pkg)
        # what the parser kept is the first line naming that uid
        first = next(ln.split() for ln in text.splitlines() if len(ln.split()) >= 2
                     and ln.split()[1].isdigit() and int(ln.split()[1]) == uid)
        assert first[0] == pkg


def test_stored_entry_aligned_by_extra_field(tmp_path: Path) -> None:
    # the zipalign way: an 0xD935 extra record pads the local header to a page boundary
    app = tmp_path / "a.apk"
    with zipfile.ZipFile(app, "w") as zf:
        zf.writestr(zipfile.ZipInfo("classes.dex", (2026, 1, 1, 0, 0, 0)), bytes(999),
                    zipfile.ZIP_DEFLATED)
        assert zf.fp is not None
        pos = zf.fp.tell()
        name = "lib/arm64-v8a/liba.so"
        pad = (-(pos + 30 + len(name) + 4)) % 4096
        zi = zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0))
        zi.extra = struct.pack("<HH", 0xD935, pad) + bytes(pad)
        zf.writestr(zi, b"\x7fELF" + bytes(12), zipfile.ZIP_STORED)
    m = apkmod.apk_member(f"{app}!/{name}")
    assert m.page_aligned and m.data_offset == 4096
    assert os.path.getsize(app) > 4096
