"""Where Android keeps what probewatch looks for (a rooted device, e.g. Python in Termux).

- libraries: no ld.so cache; bionic's libc, libdl, libm and liblog live in the runtime
  APEX (``/apex/com.android.runtime/lib64/bionic``), the rest in ``/system/lib64``,
  ``/system_ext/lib64``, ``/vendor/lib64`` and ``/apex/*/lib64``;
- tracefs: ``/sys/kernel/tracing`` or, on older kernels, ``/sys/kernel/debug/tracing``
  (kernel/tracefs.py tries both);
- app uids: ``/data/system/packages.list`` (readable by root) names each app's uid by
  its package; without it an app uid reads as Android does, ``u0_a123``.

Every path is taken under :func:`root` (``PROBEWATCH_ANDROID_ROOT``, default ``/``), so
tests can lay out a fake device in a directory.

Example::

    android.find_library("liblog")            # '/system/lib64/liblog.so' on a device
    android.app_name(10123)                   # 'com.example.app'
"""

from __future__ import annotations

import os
import threading

__all__ = ["root", "is_android", "LIB_DIRS", "LIB_DIRS_32", "library_dirs", "find_library",
           "PACKAGES_LIST", "read_packages_list", "app_name", "AID_APP_START",
           "AID_USER_OFFSET"]

#: bionic's own libraries first (the runtime APEX), then the system partitions
LIB_DIRS = ("/apex/com.android.runtime/lib64/bionic", "/system/lib64", "/system_ext/lib64",
            "/product/lib64", "/vendor/lib64", "/apex/com.android.art/lib64",
            "/apex/com.android.conscrypt/lib64", "/apex/com.android.i18n/lib64")
LIB_DIRS_32 = tuple(d.replace("lib64", "lib") for d in LIB_DIRS)
PACKAGES_LIST = "/data/system/packages.list"
AID_APP_START = 10000  # the first app uid (AID_APP_START in android_filesystem_config.h)
AID_USER_OFFSET = 100000  # uid = user * 100000 + app id


def root() -> str:
    """The directory Android's paths are taken under (``PROBEWATCH_ANDROID_ROOT``, /)."""
    return os.environ.get("PROBEWATCH_ANDROID_ROOT") or "/"


def _at(path: str, base: str | None = None) -> str:
    return os.path.join(base or root(), path.lstrip("/"))


def is_android(base: str | None = None) -> bool:
    """This looks like Android: /system/build.prop or the runtime APEX is there."""
    return (os.path.exists(_at("/system/build.prop", base))
            or os.path.isdir(_at("/apex/com.android.runtime", base)))


def library_dirs(word_size: int = 8, base: str | None = None) -> list[str]:
    """Android's library directories that exist (under the root), in search order."""
    dirs = LIB_DIRS if word_size == 8 else LIB_DIRS_32
    return [_at(d, base) for d in dirs if os.path.isdir(_at(d, base))]


def find_library(name: str, word_size: int = 8, base: str | None = None) -> str | None:
    """``libc`` / ``liblog`` / ``libfoo.so`` -> the first ``NAME.so`` in Android's library
    directories; None when there is none (or this is not Android)."""
    file = name if ".so" in name else f"{name}.so"
    if not file.startswith("lib") and "/" not in file:
        file = f"lib{file}"
    for d in library_dirs(word_size, base):
        p = os.path.join(d, file)
        if os.path.isfile(p):
            return p
    return None


def read_packages_list(text: str) -> dict[int, str]:
    """``packages.list`` lines (``NAME UID DEBUGGABLE DATADIR SEINFO GIDS ...``) -> app
    id -> package name (the first package of a shared uid wins)."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            continue
        out.setdefault(int(parts[1]), parts[0])
    return out


_lock = threading.Lock()
_cache: dict[str, tuple[tuple[int, int], dict[int, str]]] = {}


def _packages(base: str | None) -> dict[int, str]:
    path = _at(PACKAGES_LIST, base)
    try:
        st = os.stat(path)
    except OSError:
        return {}
    key = (st.st_mtime_ns, st.st_size)
    with _lock:
        hit = _cache.get(path)
        if hit and hit[0] == key:
            return hit[1]
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            table = read_packages_list(f.read())
    except OSError:
        table = {}
    with _lock:
        _cache[path] = (key, table)
    return table


def app_name(uid: int, base: str | None = None) -> str | None:
    """The package an app uid belongs to (``com.example.app``; another user's copy is
    ``com.example.app@u10``), else Android's ``u0_a123`` for an app uid; None for a
    uid that is not an app's (system uids keep their passwd names)."""
    if uid < AID_APP_START:
        return None
    user, appid = divmod(uid, AID_USER_OFFSET)
    if appid < AID_APP_START or appid > 19999:
        return None
    pkg = _packages(base).get(appid)
    if pkg:
        return pkg if user == 0 else f"{pkg}@u{user}"
    if not is_android(base):
        return None
    return f"u{user}_a{appid - AID_APP_START}"
