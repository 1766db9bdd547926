"""Cross-compile tests/arm64/pw_arm.c for arm64 on the host, and gather the pure-Python
packages the guest lacks.

The guest (run-in-arm64-kernel.sh) has Debian's arm64 userland but sees only the
current directory, so everything it runs from us is put under the repository:
``tests/targets/bin/arm64/`` (ignored by git).

Needs (Debian): gcc-aarch64-linux-gnu libc6-dev-arm64-cross, and systemtap-sdt-dev
(whose <sys/sdt.h> is architecture-neutral: it is copied beside the build).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
CROSS_CC = "aarch64-linux-gnu-gcc"
SDT_DIRS = ("/usr/include/sys", "/usr/include/x86_64-linux-gnu/sys",
            "/usr/include/aarch64-linux-gnu/sys")


class CrossUnavailable(RuntimeError):
    """The cross compiler or <sys/sdt.h> is missing (a test dependency: fail, not skip)."""


def build_pw_arm(out: Path) -> Path:
    """``out/pw_arm``: the arm64 target, -O2 with real USDT notes."""
    cc = shutil.which(CROSS_CC)
    if cc is None:
        raise CrossUnavailable(f"{CROSS_CC} not found (apt-get install gcc-aarch64-linux-gnu"
                               " libc6-dev-arm64-cross)")
    sdt = next((Path(d) for d in SDT_DIRS if (Path(d) / "sdt.h").exists()), None)
    if sdt is None:
        raise CrossUnavailable("<sys/sdt.h> missing (apt-get install systemtap-sdt-dev)")
    inc = out / "inc" / "sys"
    inc.mkdir(parents=True, exist_ok=True)
    for h in ("sdt.h", "sdt-config.h"):
        if (sdt / h).exists():
            shutil.copy2(sdt / h, inc / h)
    exe = out / "pw_arm"
    r = subprocess.run(
        [cc, "-O2", "-g", "-DPW_HAVE_SDT", "-I", str(out / "inc"), "-I",
         str(HERE.parent / "targets"), "-o", str(exe), str(HERE / "pw_arm.c")],
        capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise CrossUnavailable(f"{CROSS_CC} failed:\n{r.stderr}")
    return exe


def copy_site(out: Path, packages: tuple[str, ...] = ("sigma",)) -> Path:
    """Copy pure-Python packages of this interpreter into ``out/site`` for the guest's
    PYTHONPATH (pySigma is not packaged by Debian; its dependencies are, through
    A64_PKGS)."""
    site = out / "site"
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise CrossUnavailable(f"package {name} is not installed here")
        src = Path(list(spec.submodule_search_locations)[0])
        dst = site / name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return site


def build_apk_set(out: Path) -> dict[str, object]:
    """An APK with lib/arm64-v8a/libpwapk.so stored and page-aligned, and the arm64
    pw_apk_loader that runs it from there (tests/android/): what the guest's APK test
    needs, as JSON-able values (paths are under ``out``, which the guest sees)."""
    from android.apkbuild import LIB, build_apk, compile_lib, compile_loader, loader_args

    cc = shutil.which(CROSS_CC)
    if cc is None:
        raise CrossUnavailable(f"{CROSS_CC} not found (apt-get install gcc-aarch64-linux-gnu"
                               " libc6-dev-arm64-cross)")
    so = out / LIB
    lib = compile_lib(cc, so, "-DPW_HAVE_SDT", "-I", str(out / "inc"))  # after build_pw_arm
    apk = out / "data" / "app" / "org.probewatch.test-1" / "base.apk"
    apk.parent.mkdir(parents=True, exist_ok=True)
    offsets = build_apk(apk, {"arm64-v8a": lib})
    entry = f"lib/arm64-v8a/{LIB}"
    la = loader_args(so, offsets[entry])
    loader = compile_loader(cc, out / "pw_apk_loader")
    return {"apk": str(apk), "entry": entry, "loader": str(loader),
            "data_offset": offsets[entry], "map_offset": la.map_offset,
            "map_len": la.map_len, "func_delta": la.func_delta,
            "elf_offset": la.elf_offset}
