"""Where TLS plaintext can be caught: the TLS libraries and functions in a file or process.

A *TLS target* is one ELF file (a shared library or an executable) and the TLS API
functions it defines, each with the file offset a uprobe needs:

- OpenSSL 1.1 / 3 (``libssl.so.*`` or linked statically): ``SSL_write``, ``SSL_read``,
  ``SSL_write_ex``, ``SSL_read_ex``;
- GnuTLS (``libgnutls.so.*``): ``gnutls_record_send``, ``gnutls_record_recv``;
- Go's crypto/tls in a Go executable with symbols: ``crypto/tls.(*Conn).Write`` and
  ``crypto/tls.(*Conn).Read``, with the offsets of their RET instructions (a Go
  function gets uprobes on its returns, not a uretprobe: goroutine stacks move).

Where they are looked for: the ld.so cache (``libssl``, ``libgnutls``), the files a
process maps (``/proc/PID/maps``, under ``/proc/PID/root``), an executable's own
symbols (static OpenSSL, Go), and its ``DT_NEEDED`` libraries.

Example::

    t = tls_target("/lib/x86_64-linux-gnu/libssl.so.3")
    [(f.name, hex(f.offset)) for f in t.functions]   # [('SSL_write', '0x3a2b0'), ...]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..errors import NotFound, ProbewatchError

__all__ = [
    "OPENSSL_FUNCS",
    "GNUTLS_FUNCS",
    "GO_FUNCS",
    "TlsFunction",
    "TlsTarget",
    "tls_target",
    "system_tls_libraries",
    "process_tls_files",
    "needed_libraries",
    "tls_dependencies",
    "go_ret_offsets",
    "searched_text",
    "is_tls_library_name",
]

#: function -> (kind: "ssl" | "ssl_ex" | "go", direction)
OPENSSL_FUNCS = {
    "SSL_write": ("ssl", "write"),
    "SSL_read": ("ssl", "read"),
    "SSL_write_ex": ("ssl_ex", "write"),
    "SSL_read_ex": ("ssl_ex", "read"),
}
GNUTLS_FUNCS = {
    "gnutls_record_send": ("ssl", "write"),
    "gnutls_record_recv": ("ssl", "read"),
}
GO_FUNCS = {
    "crypto/tls.(*Conn).Write": ("go", "write"),
    "crypto/tls.(*Conn).Read": ("go", "read"),
}

_LIB_RE = re.compile(r"^(libssl|libgnutls)\.so(\.\d+)*$")


def is_tls_library_name(name: str) -> bool:
    """``libssl.so.3``, ``libssl.so.1.1``, ``libgnutls.so.30`` (a file's base name)."""
    return bool(_LIB_RE.match(name))


@dataclass(frozen=True)
class TlsFunction:
    """One function to probe: ``name``, ``kind`` (ssl, ssl_ex, go), ``direction``
    (read/write), ``offset`` (file offset of its entry) and, for Go, ``rets``."""

    name: str
    kind: str
    direction: str
    offset: int
    rets: tuple[int, ...] = ()


@dataclass
class TlsTarget:
    """A file and its TLS functions; ``library`` names the TLS stack
    (``openssl``, ``gnutls``, ``go``)."""

    path: str
    library: str
    functions: list[TlsFunction] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, int]:
        """(st_dev, st_ino): one uprobe per inode, whatever path reached it."""
        st = os.stat(self.path)
        return (st.st_dev, st.st_ino)


def _funcs(img: object, table: dict[str, tuple[str, str]]) -> list[tuple[str, object]]:
    out = []
    for name in table:
        syms = [s for s in img.lookup(name) if img.is_function(s)]  # type: ignore[attr-defined]
        if syms:
            out.append((name, syms[0]))
    return out


def go_ret_offsets(path: str, sym: object) -> tuple[int, ...]:
    """File offsets of the RET instructions of a Go function (x86_64).

    The function's bytes are decoded instruction by instruction (the ``capstone``
    disassembler when installed, else ``objdump -d`` from binutils): a 0xC3 byte that
    is part of another instruction is not a RET. Raises ProbewatchError when neither
    decoder is available or the architecture is not x86_64."""
    from .symbols import open_image

    img = open_image(path)
    addr, size = sym.address, sym.size  # type: ignore[attr-defined]
    if not size:
        raise ProbewatchError(f"{path}: {sym.name} has no size: cannot find its returns")  # type: ignore[attr-defined]
    off = img.vaddr_to_offset(addr)
    with open(path, "rb") as f:
        f.seek(off)
        code = f.read(size)
    if os.uname().machine != "x86_64":
        raise ProbewatchError("Go TLS capture needs x86_64 (RET decoding)")
    rets: list[int] = []
    try:
        import capstone  # type: ignore[import-not-found]

        md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        md.skipdata = True
        for insn in md.disasm(code, addr):
            if insn.mnemonic in ("ret", "retq"):
                rets.append(insn.address - addr + off)
        return tuple(rets)
    except ImportError:
        pass
    return _objdump_rets(path, addr, size, off)


def _objdump_rets(path: str, addr: int, size: int, off: int) -> tuple[int, ...]:
    import shutil
    import subprocess

    od = shutil.which("objdump")
    if not od:
        raise ProbewatchError(
            "finding the RET instructions of a Go function needs a disassembler: "
            "pip install capstone, or install binutils (objdump)")
    r = subprocess.run([od, "-d", "--no-show-raw-insn", f"--start-address={addr:#x}",
                        f"--stop-address={addr + size:#x}", path],
                       capture_output=True, text=True, timeout=60, check=False)
    if r.returncode != 0:
        raise ProbewatchError(f"objdump -d {path} failed: {r.stderr.strip()[:200]}")
    rets = []
    for line in r.stdout.splitlines():
        m = re.match(r"^\s*([0-9a-f]+):\s+(\S+)", line)
        if m and m.group(2) in ("ret", "retq"):
            rets.append(int(m.group(1), 16) - addr + off)
    return tuple(rets)


def tls_target(path: str) -> TlsTarget | None:
    """The TLS functions ``path`` defines (None: none). NotFound for a missing file."""
    from .symbols import open_image

    img = open_image(path)
    name = os.path.basename(path)
    found = _funcs(img, OPENSSL_FUNCS)
    if found:
        t = TlsTarget(path, "openssl")
        for n, s in found:
            kind, d = OPENSSL_FUNCS[n]
            t.functions.append(TlsFunction(n, kind, d, img.vaddr_to_offset(s.address)))  # type: ignore[attr-defined]
        return t
    found = _funcs(img, GNUTLS_FUNCS)
    if found:
        t = TlsTarget(path, "gnutls")
        for n, s in found:
            kind, d = GNUTLS_FUNCS[n]
            t.functions.append(TlsFunction(n, kind, d, img.vaddr_to_offset(s.address)))  # type: ignore[attr-defined]
        return t
    if name.startswith("lib"):
        return None
    found = _funcs(img, GO_FUNCS)
    if found:
        t = TlsTarget(path, "go")
        for n, s in found:
            kind, d = GO_FUNCS[n]
            try:
                rets = go_ret_offsets(path, s)
            except ProbewatchError as e:
                t.warnings.append(str(e))
                continue
            if not rets:
                t.warnings.append(f"{path}: {n} has no RET instruction: not probed")
                continue
            t.functions.append(TlsFunction(n, kind, d, img.vaddr_to_offset(s.address),  # type: ignore[attr-defined]
                                           rets))
        return t
    return None


def system_tls_libraries() -> list[str]:
    """libssl / libgnutls runtime libraries in the ld.so cache (this architecture)."""
    from .libs import find_library

    out = []
    for short in ("libssl.so.3", "libssl.so.1.1", "libgnutls.so.30"):
        try:
            p = find_library(short)
        except NotFound:
            continue
        if os.path.exists(p):
            out.append(os.path.realpath(p))
    return out


def process_tls_files(pid: int) -> list[str]:
    """Files mapped by ``pid`` that may hold TLS functions: its TLS libraries
    (under /proc/PID/root) — the executable is checked by the caller."""
    from .libs import maps_paths

    try:  # most processes map no TLS library: a look at the raw bytes first
        with open(f"/proc/{pid}/maps", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    if b"/libssl.so" not in raw and b"/libgnutls.so" not in raw:
        return []
    try:
        paths = maps_paths(pid)
    except NotFound:
        return []
    root = f"/proc/{pid}/root"
    return [root + p for p in paths if is_tls_library_name(os.path.basename(p))]


def needed_libraries(path: str) -> list[str]:
    """The DT_NEEDED names of an ELF file ([] for a static one or a non-ELF)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            out: list[str] = []
            for sec in elf.iter_sections():
                if isinstance(sec, DynamicSection):
                    out.extend(str(getattr(t, "needed", "")) for t in sec.iter_tags()
                               if t.entry.d_tag == "DT_NEEDED")
            return out
    except (OSError, ELFError, ValueError):
        return []


def tls_dependencies(path: str, depth: int = 4) -> list[str]:
    """The TLS libraries ``path`` loads through DT_NEEDED, directly or through other
    libraries (names resolved in the ld.so cache; ``depth`` levels)."""
    from .libs import find_library

    seen: set[str] = set()
    found: list[str] = []
    level = [path]
    for _ in range(depth):
        nxt = []
        for p in level:
            for name in needed_libraries(p):
                if name in seen:
                    continue
                seen.add(name)
                if is_tls_library_name(name):
                    found.append(name)
                    continue
                try:
                    nxt.append(find_library(name))
                except NotFound:
                    continue
        level = nxt
    return found


def searched_text(path: str) -> str:
    """What was searched in ``path`` for TLS functions (for the "none found" line)."""
    return (f"{path} has no TLS library: searched its symbols for "
            f"{', '.join([*OPENSSL_FUNCS, *GNUTLS_FUNCS, *GO_FUNCS])} and the libraries it "
            "needs (DT_NEEDED, transitively) for libssl.so*/libgnutls.so*")
