"""Library-call prototypes and their ltrace-style rendering.

A prototype says how to show a call's arguments and its return value. They come from
a built-in table of common libc functions (written in a small C-like notation below)
or, for functions it does not list, ltrace's default: four arguments, each shown in
decimal between -10000 and 10000 and in hex outside, and a return value shown alike.

Types: ``int`` ``uint`` ``long`` ``ulong`` (decimal), ``default`` (no prototype:
decimal from -10000 to 10000, hex outside), ``hex`` (``0x1f``), ``octal``
(``0644``), ``char`` (``'a'``), ``addr`` (a pointer: ``0x55d0...``, ``0`` for NULL),
``string`` (``"text"``, C escapes, quotes as they are; ``nil`` for NULL; cut at the
string limit with ``...``),
``format`` (a printf format followed by the variadic arguments it asks for),
``void`` (return only: ``<void>``).

Example::

    p = prototype("malloc")
    p.ret, p.args                                   # ('addr', ('ulong',))
    render_call(p, [16], {}, 32)                    # 'malloc(16'
    render_value("addr", 0x55d0c2a6b2a0, None, 32)  # '0x55d0c2a6b2a0'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..sources.returns import NO_RETURN, RETURNS_TWICE

__all__ = [
    "RETURNS_TWICE",
    "NO_RETURN",
    "Prototype",
    "TYPES",
    "prototype",
    "known_functions",
    "render_value",
    "render_call",
    "render_string",
    "format_conversions",
    "DEFAULT",
]

TYPES = frozenset({"int", "uint", "long", "ulong", "hex", "octal", "char", "addr",
                   "string", "format", "void", "default"})

# The built-in table: the libc calls programs make most, with the argument types that
# make their lines readable. ``void f()`` takes no arguments.
_TABLE = """
addr malloc(ulong)
addr calloc(ulong, ulong)
addr realloc(addr, ulong)
addr reallocarray(addr, ulong, ulong)
void free(addr)
int posix_memalign(addr, ulong, ulong)
addr aligned_alloc(ulong, ulong)
addr memalign(ulong, ulong)
addr valloc(ulong)
addr memcpy(addr, addr, ulong)
addr memmove(addr, addr, ulong)
addr memset(addr, char, long)
int memcmp(addr, addr, ulong)
addr memchr(addr, char, ulong)
ulong strlen(string)
ulong strnlen(string, ulong)
int strcmp(string, string)
int strncmp(string, string, ulong)
int strcasecmp(string, string)
int strncasecmp(string, string, ulong)
addr strcpy(addr, string)
addr strncpy(addr, string, ulong)
addr strcat(addr, string)
addr strncat(addr, string, ulong)
string strdup(string)
string strndup(string, ulong)
string strchr(string, char)
string strrchr(string, char)
string strstr(string, string)
ulong strspn(string, string)
ulong strcspn(string, string)
string strpbrk(string, string)
string strtok(string, string)
string strerror(int)
long strtol(string, addr, int)
ulong strtoul(string, addr, int)
long strtoll(string, addr, int)
ulong strtoull(string, addr, int)
int atoi(string)
long atol(string)
long atoll(string)
int puts(string)
int putchar(char)
int fputs(string, addr)
int fputc(char, addr)
int putc(char, addr)
int printf(format)
int fprintf(addr, format)
int dprintf(int, format)
int sprintf(addr, format)
int snprintf(addr, ulong, format)
int asprintf(addr, format)
int sscanf(string, format)
addr fopen(string, string)
addr fdopen(int, string)
addr freopen(string, string, addr)
int fclose(addr)
int fflush(addr)
ulong fread(addr, ulong, ulong, addr)
ulong fwrite(addr, ulong, ulong, addr)
int fgetc(addr)
int getc(addr)
int getchar()
addr fgets(addr, int, addr)
int fileno(addr)
int feof(addr)
int ferror(addr)
int fseek(addr, long, int)
long ftell(addr)
int setvbuf(addr, addr, int, ulong)
int open(string, int, octal)
int open64(string, int, octal)
int openat(int, string, int, octal)
int creat(string, octal)
int close(int)
long read(int, addr, ulong)
long write(int, string, ulong)
long pread(int, addr, ulong, long)
long pwrite(int, string, ulong, long)
long lseek(int, long, int)
int dup(int)
int dup2(int, int)
int pipe(addr)
int unlink(string)
int rmdir(string)
int mkdir(string, octal)
int chdir(string)
string getcwd(addr, ulong)
int access(string, int)
int chmod(string, octal)
int chown(string, int, int)
int rename(string, string)
int symlink(string, string)
long readlink(string, addr, ulong)
string realpath(string, addr)
addr opendir(string)
addr fdopendir(int)
addr readdir(addr)
addr readdir64(addr)
int closedir(addr)
int isatty(int)
int ioctl(int, hex, addr)
int fcntl(int, int, long)
int stat(string, addr)
int lstat(string, addr)
int fstat(int, addr)
string getenv(string)
string secure_getenv(string)
int setenv(string, string, int)
int unsetenv(string)
int putenv(string)
int getpid()
int getppid()
uint getuid()
uint geteuid()
uint getgid()
uint getegid()
int setuid(uint)
int setgid(uint)
int fork()
int vfork()
int execve(string, addr, addr)
int execv(string, addr)
int execvp(string, addr)
int system(string)
void exit(int)
void _exit(int)
void abort()
int atexit(addr)
int kill(int, int)
int raise(int)
addr signal(int, addr)
int sigaction(int, addr, addr)
int sigprocmask(int, addr, addr)
uint sleep(uint)
int usleep(uint)
int nanosleep(addr, addr)
long time(addr)
int gettimeofday(addr, addr)
int clock_gettime(int, addr)
addr localtime(addr)
addr gmtime(addr)
ulong strftime(addr, ulong, string, addr)
int socket(int, int, int)
int connect(int, addr, uint)
int bind(int, addr, uint)
int listen(int, int)
int accept(int, addr, addr)
long send(int, addr, ulong, int)
long recv(int, addr, ulong, int)
long sendto(int, addr, ulong, int, addr, uint)
long recvfrom(int, addr, ulong, int, addr, addr)
int shutdown(int, int)
int setsockopt(int, int, int, addr, uint)
int getaddrinfo(string, string, addr, addr)
void freeaddrinfo(addr)
uint htonl(uint)
uint ntohl(uint)
addr dlopen(string, int)
addr dlsym(addr, string)
int dlclose(addr)
string dlerror()
addr mmap(addr, ulong, int, int, int, long)
int munmap(addr, ulong)
int mprotect(addr, ulong, int)
int rand()
void srand(uint)
long random()
void srandom(uint)
void qsort(addr, ulong, ulong, addr)
addr bsearch(addr, addr, ulong, ulong, addr)
int abs(int)
int tolower(int)
int toupper(int)
string setlocale(int, string)
string nl_langinfo(int)
string bindtextdomain(string, string)
string textdomain(string)
string gettext(string)
string dcgettext(string, string, int)
addr __errno_location()
int pthread_create(addr, addr, addr, addr)
int pthread_join(ulong, addr)
int pthread_mutex_lock(addr)
int pthread_mutex_unlock(addr)
ulong pthread_self()
int __printf_chk(int, format)
int __fprintf_chk(addr, int, format)
int __dprintf_chk(int, int, format)
int __sprintf_chk(addr, int, ulong, format)
int __snprintf_chk(addr, ulong, int, ulong, format)
int __asprintf_chk(addr, int, format)
addr __memcpy_chk(addr, addr, ulong, ulong)
addr __memmove_chk(addr, addr, ulong, ulong)
addr __memset_chk(addr, char, ulong, ulong)
addr __strcpy_chk(addr, string, ulong)
addr __strncpy_chk(addr, string, ulong, ulong)
addr __strcat_chk(addr, string, ulong)
long __read_chk(int, addr, ulong, ulong)
addr __fgets_chk(addr, ulong, int, addr)
long __readlink_chk(string, addr, ulong, ulong)
string __getcwd_chk(addr, ulong, ulong)
int __open_2(string, int)
int __open64_2(string, int)
void __stack_chk_fail()
int __libc_start_main(addr, int, addr, addr, addr, addr, addr)
void __cxa_finalize(addr)
int __cxa_atexit(addr, addr, addr)
"""

_LINE = re.compile(r"^\s*(\w+)\s+(\w+)\(([^)]*)\)\s*$")


@dataclass(frozen=True)
class Prototype:
    """How one function's call is shown: return type and argument types."""

    name: str
    ret: str
    args: tuple[str, ...]
    known: bool = True

    @property
    def variadic(self) -> bool:
        return bool(self.args) and self.args[-1] == "format"


#: ltrace's default for functions it knows nothing about
DEFAULT = ("default", ("default", "default", "default", "default"))


@lru_cache(maxsize=1)
def _table() -> dict[str, Prototype]:
    out: dict[str, Prototype] = {}
    for raw in _TABLE.strip().splitlines():
        m = _LINE.match(raw)
        if m is None:
            raise ValueError(f"bad prototype line: {raw!r}")
        ret, name, arglist = m.groups()
        args = tuple(a.strip() for a in arglist.split(",") if a.strip())
        for t in (ret, *args):
            if t not in TYPES:
                raise ValueError(f"{name}: unknown type {t!r}")
        out[name] = Prototype(name, ret, args)
    return out


def known_functions() -> list[str]:
    return sorted(_table())


def prototype(name: str) -> Prototype:
    """The prototype of ``name`` (versioned names like ``malloc@GLIBC_2.2.5`` too)."""
    base = name.split("@", 1)[0]
    p = _table().get(base)
    if p is not None:
        return p
    # 64-bit and C99/C23 scanf aliases show as their plain function
    for prefix, suffix in (("", "64"), ("__isoc99_", ""), ("__isoc23_", "")):
        if base.startswith(prefix) and base.endswith(suffix) and len(base) > len(prefix) + len(
                suffix):
            q = _table().get(base[len(prefix):len(base) - len(suffix)])
            if q is not None:
                return Prototype(base, q.ret, q.args)
    return Prototype(base, DEFAULT[0], DEFAULT[1], known=False)


_ESC = {0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r", 0x08: "\\b", 0x0C: "\\f", 0x0B: "\\v",
        0x07: "\\a", 0x5C: "\\\\"}


def render_string(raw: bytes, limit: int) -> str:
    """``"text"`` C-escaped, cut after ``limit`` bytes with ``...`` (as ltrace -s)."""
    cut = len(raw) > limit
    out = []
    for b in raw[:limit]:
        e = _ESC.get(b)
        if e is not None:
            out.append(e)
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"' + ("..." if cut else "")


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _char(v: int) -> str:
    b = v & 0xFF
    if b == 0:
        return "'\\0'"
    e = _ESC.get(b)
    if e is not None:
        return "'" + e + "'"
    if b == 0x27:
        return "'\\''"
    if 0x20 <= b < 0x7F:
        return f"'{chr(b)}'"
    return f"'\\{b:03o}'"


def render_value(typ: str, value: int, text: bytes | None, limit: int) -> str:
    """One argument or return value of type ``typ`` as ltrace shows it.

    ``value`` is the raw 64-bit register; ``text`` the string read where it points (None
    when it could not be read or was not asked for).
    """
    value &= (1 << 64) - 1
    if typ == "void":
        return "<void>"
    if typ == "int":
        return str(_signed(value, 32))
    if typ == "uint":
        return str(value & 0xFFFFFFFF)
    if typ == "long":
        return str(_signed(value, 64))
    if typ == "default":  # no prototype: small numbers in decimal, the rest in hex
        v = _signed(value, 64)
        if -10000 <= v <= 10000:
            return str(v)
        return f"0x{value:x}"
    if typ == "ulong":
        return str(value)
    if typ == "hex":
        return f"0x{value & 0xFFFFFFFF:x}"
    if typ == "octal":
        v = value & 0xFFFFFFFF
        return f"0{v:o}" if v else "0"
    if typ == "char":
        return _char(value)
    if typ in ("string", "format"):
        if value == 0:
            return "nil"
        if text is None:
            return f"0x{value:x}"
        return render_string(text, limit)
    # addr
    return f"0x{value:x}" if value else "0"


_CONV = re.compile(rb"%([-+ #0'I]*)(\*|\d+)?(?:\.(\*|\d+))?"
                   rb"(hh|h|ll|l|L|q|j|z|Z|t)?([diouxXcspfFeEgGaAnm%])")


def format_conversions(fmt: bytes) -> list[str]:
    """The types of the variadic arguments a printf format asks for, in order."""
    out: list[str] = []
    for m in _CONV.finditer(fmt):
        _flags, width, prec, length, conv = m.groups()
        if conv in (b"%", b"m"):
            continue
        if width == b"*":
            out.append("int")
        if prec == b"*":
            out.append("int")
        if conv in b"di":
            out.append("long" if length in (b"l", b"ll", b"q", b"j", b"z", b"Z", b"t")
                       else "int")
            if length in (b"l", b"ll", b"q", b"j", b"z", b"Z", b"t"):
                out[-1] = "slong"
        elif conv in b"ouxX":
            big = length in (b"l", b"ll", b"q", b"j", b"z", b"Z", b"t")
            out.append({b"o": "octal", b"u": "ulong" if big else "uint"}.get(conv, "hex64"
                                                                             if big else "hex"))
        elif conv == b"c":
            out.append("char")
        elif conv == b"s":
            out.append("string")
        elif conv in (b"p", b"n"):
            out.append("addr")
        else:
            out.append("double")
    return out


def _render_vararg(typ: str, value: int, text: bytes | None, limit: int) -> str:
    if typ == "slong":
        return str(_signed(value, 64))
    if typ == "hex64":
        return f"0x{value & ((1 << 64) - 1):x}"
    if typ == "double":
        return "?"  # in a vector register: not read by a uprobe here
    return render_value(typ, value, text, limit)


def render_call(
    proto: Prototype,
    values: Sequence[int],
    texts: Mapping[int, bytes],
    limit: int,
) -> str:
    """``name(arg, arg, ...`` (no closing parenthesis: the caller adds the return).

    ``values``: the raw argument registers/stack slots in order; ``texts``: for an index,
    the string read where that argument points. A ``format`` argument is followed by
    the variadic arguments its conversions ask for, as far as ``values`` reaches.
    """
    parts: list[str] = []
    i = 0
    for typ in proto.args:
        if i >= len(values):
            break
        parts.append(render_value(typ, values[i], texts.get(i), limit))
        if typ == "format":
            fmt = texts.get(i)
            i += 1
            if fmt is None:
                break
            for vt in format_conversions(fmt):
                if i >= len(values):
                    parts.append("...")
                    break
                parts.append(_render_vararg(vt, values[i], texts.get(i), limit))
                i += 1
            break
        i += 1
    return f"{proto.name}(" + ", ".join(parts)
