"""uprobe / kprobe definition text: a parsed spec -> the line for tracefs.

:func:`resolve_uprobe` finds the target file (path, library short name, or through a
pid's ``/proc/PID/maps``), resolves the symbol to a file offset and renders the exact
``uprobe_events`` line; :func:`kprobe_definition` renders a ``kprobe_events`` line.
Nothing here writes to tracefs: arming is a collection backend's job.

Argument mapping (see ``Documentation/trace/uprobetracer.rst``):

- ``argN`` -> the architecture's argument register (``%di``... on x86_64, ``%x0``...
  on arm64), then ``$stackN`` for arguments passed on the stack;
- ``retval`` -> ``$retval``; ``%REG`` -> the kernel's register name (``%rdi`` -> ``%di``);
- ``+OFF(EXPR)`` -> ``+OFF(...)``;
- ``string``/``ustring``/arrays read memory: a plain register gets an implied
  ``+0(...)`` (``arg0:string`` = the string arg0 points to); on uprobes every read is a
  user-memory read, so ``ustring`` is written ``string``.

Example::

    [p] = resolve_uprobe(parse_spec("u:libc:malloc size=arg0:u64"))
    p.definition
    # 'p:probewatch_1234/malloc_0 /usr/lib/x86_64-linux-gnu/libc.so.6:0x0000000000098930
    #  size=%di:u64'
"""

from __future__ import annotations

import itertools
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..elf.apk import probe_file
from ..elf.libs import resolve_target
from ..elf.symbols import DEFAULT_MAX_MATCHES, open_image, resolve_symbol
from ..errors import NotFound, SpecError
from .args import ArchABI, abi_for
from .returns import RETURNS_TWICE, base_name
from .spec import ArgRef, ArgSpec, ArgType, Deref, Expr, ProbeSpec, Register, Retval, has_glob

__all__ = [
    "DynamicProbe",
    "resolve_uprobe",
    "kprobe_definition",
    "uprobe_definition",
    "render_args",
    "render_expr",
    "event_name",
    "default_group",
    "check_group",
    "check_target_path",
    "MAX_EVENT_NAME_LEN",
]

#: the kernel refuses event and group names of 64 characters or more
MAX_EVENT_NAME_LEN = 63
_GOOD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class DynamicProbe:
    """One dynamic event ready to be written to tracefs.

    ``definition`` is the exact ``uprobe_events`` / ``kprobe_events`` line; remove it
    later with :attr:`remove_line` (append it to the same file).
    """

    group: str
    name: str
    definition: str
    spec_text: str
    target_path: str
    offset: int
    warnings: list[str] = field(default_factory=list)
    kind: str = "uprobe"
    symbol: str | None = None
    ref_ctr_offset: int | None = None
    #: the ELF the symbol came from when it is not ``target_path`` itself (a library
    #: inside an APK: ``APK!/lib/ABI/libfoo.so``; ``target_path`` is then the APK)
    elf_path: str = ""

    @property
    def event(self) -> str:
        """``GROUP/NAME`` (the directory under ``events/``)."""
        return f"{self.group}/{self.name}"

    @property
    def control_file(self) -> str:
        """The tracefs file the definition goes to."""
        return "kprobe_events" if self.kind in ("kprobe", "kretprobe") else "uprobe_events"

    @property
    def remove_line(self) -> str:
        return f"-:{self.group}/{self.name}"


# ------------------------------------------------------------------ event names

_names_lock = threading.Lock()
_counters: dict[tuple[str, str], itertools.count[int]] = {}


def default_group() -> str:
    """``probewatch_<pid>``: the group every probe of this process is created in."""
    return f"probewatch_{os.getpid()}"


def check_group(group: str) -> str:
    """Validate a group name the way the kernel does (C identifier, < 64 chars)."""
    if not _GOOD_NAME.fullmatch(group) or len(group) > MAX_EVENT_NAME_LEN:
        raise SpecError(
            f"bad probe group name {group!r}: letters, digits and '_' only, not starting"
            f" with a digit, at most {MAX_EVENT_NAME_LEN} characters"
        )
    return group


def event_name(group: str, base: str) -> str:
    """A fresh event name ``BASE_N`` in ``group``, valid for the kernel and never reused
    by this process (``N`` counts per group and base, from 0)."""
    clean = re.sub(r"[^A-Za-z0-9_]", "_", base) or "probe"
    if not (clean[0].isalpha() or clean[0] == "_"):
        clean = "_" + clean
    with _names_lock:
        counter = _counters.setdefault((group, clean), itertools.count())
        n = next(counter)
    suffix = f"_{n}"
    return clean[: MAX_EVENT_NAME_LEN - len(suffix)] + suffix


# ------------------------------------------------------------------ fetch-args


def _reg_fetch(spec: ProbeSpec, reg: Register, abi: ArchABI) -> tuple[str, str | None]:
    """(fetch text, implied type) for a raw register."""
    ref = abi.register(reg.name)
    if ref is None:
        names = ", ".join(abi.register_names())
        raise spec.error(
            f"unknown register '%{reg.name}' for {abi.name} (expected one of: {names})",
            pos=reg.pos,
        )
    if ref.shift:
        return ref.fetch, f"b{ref.size * 8}@{ref.shift}/{abi.word_size * 8}"
    if ref.size and ref.size < abi.word_size:
        return ref.fetch, f"u{ref.size * 8}"
    return ref.fetch, None


def render_expr(
    spec: ProbeSpec,
    expr: Expr,
    abi: ArchABI,
    leaf: Callable[[ArgRef], str] | None = None,
) -> str:
    """Kernel fetch-arg text for an expression (``+8(arg0)`` -> ``+8(%di)``).

    ``leaf`` maps ``argN`` (default: the ABI's argument registers).
    """
    if isinstance(expr, ArgRef):
        return leaf(expr) if leaf else abi.arg_fetch(expr.index)
    if isinstance(expr, Retval):
        return "$retval"
    if isinstance(expr, Register):
        return _reg_fetch(spec, expr, abi)[0]
    inner = render_expr(spec, expr.inner, abi, leaf)
    if inner.startswith("\\"):
        raise spec.error("a constant cannot be dereferenced", pos=expr.pos)
    sign = "-" if expr.offset < 0 else "+"
    return f"{sign}{abs(expr.offset)}({inner})"


def _render_arg(
    spec: ProbeSpec,
    a: ArgSpec,
    abi: ArchABI,
    user_memory: bool,
    leaf: Callable[[ArgRef], str] | None,
    leaf_type: Callable[[ArgRef], str | None] | None,
) -> str:
    fetch = render_expr(spec, a.expr, abi, leaf)
    t: ArgType | None = a.arg_type
    type_text: str | None = str(t) if t else None
    if t is None:
        if isinstance(a.expr, Register):
            type_text = _reg_fetch(spec, a.expr, abi)[1]
        elif isinstance(a.expr, ArgRef) and leaf_type is not None:
            type_text = leaf_type(a.expr)
    elif isinstance(a.expr, Register) and (_reg_fetch(spec, a.expr, abi)[1] or "").startswith("b"):
        raise spec.error(
            f"%{a.expr.name} is part of a register: give no type (it is read as a bitfield)",
            pos=a.type_pos,
        )
    elif t.needs_memory and not isinstance(a.expr, Deref):
        if fetch.startswith("\\"):
            raise spec.error(
                f"{a.expr} is a constant; a {t} needs a pointer to read from", pos=a.expr.pos
            )
        fetch = f"+0({fetch})"
    if t is not None and user_memory and t.base == "ustring":
        type_text = "string"  # uprobe fetches already read user memory
    return f"{a.name}={fetch}" + (f":{type_text}" if type_text else "")


def render_args(
    spec: ProbeSpec,
    abi: ArchABI,
    *,
    user_memory: bool,
    leaf: Callable[[ArgRef], str] | None = None,
    leaf_type: Callable[[ArgRef], str | None] | None = None,
) -> list[str]:
    """``NAME=FETCHARG[:TYPE]`` strings for a spec's arguments.

    ``user_memory``: a uprobe (every dereference reads user memory). ``leaf`` /
    ``leaf_type`` map ``argN`` and its default type (USDT probes use them).
    """
    return [_render_arg(spec, a, abi, user_memory, leaf, leaf_type) for a in spec.args]


# ---------------------------------------------------------------------- uprobes


def check_target_path(spec: ProbeSpec, path: str) -> None:
    if any(c.isspace() for c in path):
        raise spec.error(
            f"the path {path!r} contains whitespace, which uprobe_events cannot express;"
            " probe it through a symlink without spaces",
            part="target",
        )


def uprobe_definition(
    kind: str, group: str, name: str, path: str, offset: int, args: Sequence[str],
    ref_ctr_offset: int | None = None,
) -> str:
    """``p:GROUP/NAME PATH:0xOFFSET[(0xREF)] ARGS`` (``r:`` for a return probe)."""
    head = "r" if kind == "uretprobe" else "p"
    ref = f"(0x{ref_ctr_offset:x})" if ref_ctr_offset is not None else ""
    return " ".join([f"{head}:{group}/{name} {path}:0x{offset:016x}{ref}", *args])


def resolve_uprobe(
    spec: ProbeSpec,
    pid: int | None = None,
    group: str | None = None,
    *,
    max_matches: int = DEFAULT_MAX_MATCHES,
    debug_roots: Sequence[str] | None = None,
) -> list[DynamicProbe]:
    """Resolve a ``u:``/``ur:`` spec to ``uprobe_events`` lines, one per matched symbol.

    ``group`` defaults to ``probewatch_<our pid>``. Raises SpecError (bad spec,
    ambiguous symbol, too many glob matches, unknown register) or NotFound (missing
    file, library or symbol).

    Example::

        [p] = resolve_uprobe(parse_spec("ur:/bin/bash:readline line=+0(retval):string"))
        p.definition   # 'r:probewatch_1234/readline_0 /usr/bin/bash:0x... line=+0($retval):string'
    """
    if spec.kind not in ("uprobe", "uretprobe"):
        raise spec.error(f"resolve_uprobe needs a uprobe/uretprobe spec, not {spec.kind}", "kind")
    grp = check_group(group or default_group())
    assert spec.target is not None
    path = resolve_target(spec.target, pid)
    check_target_path(spec, path)
    img = open_image(path)
    # a library inside an APK is probed on the APK file, at the entry's data offset
    probe_path, base = probe_file(path)
    try:
        abi = abi_for(img.machine)
    except ValueError as e:
        raise spec.error(f"{path}: {e}", part="target") from None
    uses_args = any(_mentions_args(a.expr) for a in spec.args)
    # validate/ render args once (same for every matched symbol)
    args = render_args(spec, abi, user_memory=True)

    targets: list[tuple[str, int, list[str], str | None]] = []  # (base, offset, warnings, sym)
    if spec.address is not None:
        try:
            off = img.vaddr_to_offset(spec.address)
        except NotFound as e:
            raise spec.error(str(e), part="address") from None
        warns = []
        if not img.in_executable_segment(spec.address):
            warns.append(
                f"address 0x{spec.address:x} is not in an executable segment of {path}"
            )
        targets.append((f"addr_{spec.address:x}", off, warns, None))
    else:
        assert spec.symbol is not None
        try:
            found = resolve_symbol(
                path, spec.symbol, max_matches=max_matches, debug_roots=debug_roots
            )
        except SpecError as e:
            raise spec.error(e.message, part="symbol") from None
        for r in found:
            if spec.kind == "uretprobe" and base_name(r.name) in RETURNS_TWICE:
                raise spec.error(
                    f"{r.name} returns twice (setjmp-like): a uretprobe on it would make "
                    "every process that longjmps back into it, traced or not, die of "
                    "SIGILL; trace its entry with u: instead", part="symbol")
            warns = list(r.warnings)
            off = r.offset
            if spec.offset:
                size = r.symbol.size
                if size and spec.offset >= size:
                    raise spec.error(
                        f"offset 0x{spec.offset:x} is past the end of {r.name}"
                        f" (size 0x{size:x})",
                        part="offset",
                    )
                off += spec.offset
                if uses_args:
                    warns.append(
                        f"argN at {r.name}+0x{spec.offset:x} reads the registers as they are"
                        " there, which may no longer hold the arguments"
                    )
            targets.append((r.name, off, warns, r.name))

    out = []
    for ev_base, off, warns, sym in targets:
        name = event_name(grp, ev_base)
        out.append(
            DynamicProbe(
                group=grp,
                name=name,
                definition=uprobe_definition(spec.kind, grp, name, probe_path, base + off,
                                             args),
                spec_text=spec.text or spec.canonical(),
                target_path=probe_path,
                offset=base + off,
                warnings=warns,
                kind=spec.kind,
                symbol=sym,
                elf_path=path if path != probe_path else "",
            )
        )
    return out


def _mentions_args(e: Expr) -> bool:
    if isinstance(e, ArgRef):
        return True
    if isinstance(e, Deref):
        return _mentions_args(e.inner)
    return False


# ---------------------------------------------------------------------- kprobes


def kprobe_definition(
    spec: ProbeSpec,
    group: str | None = None,
    function: str | None = None,
    machine: str | None = None,
) -> DynamicProbe:
    """The ``kprobe_events`` line for a ``k:``/``kr:`` spec (text only; nothing is armed).

    ``function`` replaces the spec's (glob) function with one concrete name, for a
    caller that expanded the glob against ``available_filter_functions``; ``machine``
    picks the register table (default: this machine).

    Example::

        kprobe_definition(parse_spec("kr:do_sys_openat2 ret=retval:s64")).definition
        # 'r:probewatch_1234/do_sys_openat2_0 do_sys_openat2 ret=$retval:s64'
    """
    if spec.kind not in ("kprobe", "kretprobe"):
        raise spec.error(
            f"kprobe_definition needs a kprobe/kretprobe spec, not {spec.kind}", "kind"
        )
    grp = check_group(group or default_group())
    func = function or spec.symbol or ""
    if has_glob(func):
        raise spec.error(
            f"{func!r} is a glob: expand it against available_filter_functions and pass"
            " each name as function=",
            part="symbol",
        )
    if function is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", function):
        raise SpecError(f"bad kernel function name {function!r}")
    try:
        abi = abi_for(machine)
    except ValueError as e:
        raise spec.error(str(e)) from None
    args = render_args(spec, abi, user_memory=False)
    place = (f"{spec.target}:" if spec.target else "") + func
    if spec.offset:
        place += f"+{spec.offset}"
    name = event_name(grp, func)
    head = "r" if spec.kind == "kretprobe" else "p"
    return DynamicProbe(
        group=grp,
        name=name,
        definition=" ".join([f"{head}:{grp}/{name} {place}", *args]),
        spec_text=spec.text or spec.canonical(),
        target_path=spec.target or "",
        offset=spec.offset,
        warnings=[],
        kind=spec.kind,
        symbol=func,
    )
