"""``probewatch list``: what can be probed here, and which dynamic probes exist now.

``list tracepoints`` and ``list syscalls`` read the running kernel's tracefs,
``list symbols`` and ``list usdt`` read an ELF file (no root needed), ``list probes``
parses the kernel's dynamic-event control files and names each probe's owner.

The row builders (``tracepoint_rows`` ... ``probe_rows``) return plain dicts, the same
that ``--json`` prints, so they can be used (and tested) without the command line.

Example::

    from probewatch.cli.list import parse_probe_line
    parse_probe_line("r:probewatch_42/readline_0 /usr/bin/bash:0x00000000000b2830")
    # {'kind': 'uretprobe', 'group': 'probewatch_42', 'name': 'readline_0', ...}
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import FeatureUnavailable, NotFound, ProbewatchError
from ..kernel.dynevents import (  # noqa: F401  (parse_probe_line is re-exported)
    parse_probe_line,
    probe_rows,
)
from .args import live_pid_arg

EXAMPLES = """examples:
  probewatch list tracepoints 'sched:*'            tracepoints of one system
  probewatch list tracepoints 'sys_enter_open*'    by event name, any system
  probewatch list syscalls 'open*'                 openat(int dfd, const char *filename, ...)
  probewatch list symbols libc 'mall*'             functions of a library by short name
  probewatch list symbols /bin/bash readline       address, file offset, size, binding
  probewatch list symbols -p 1234 libssl           the libssl that process 1234 maps
  probewatch list usdt /usr/bin/python3            USDT probes: provider, name, semaphore, args
  probewatch list probes                           dynamic probes in the kernel and their owners
  probewatch list probes --json | jq '.[] | select(.owner_alive == false)'

Every subcommand takes --json (a JSON array on stdout). tracepoints, syscalls and
probes read tracefs (root); symbols and usdt only read the file. A GLOB is a shell
pattern (* ? [..]); a GLOB that matches nothing is an error (exit status 1).
"""

_SUB_EXAMPLES = {
    "tracepoints": """examples:
  probewatch list tracepoints                     every SYSTEM:NAME under events/
  probewatch list tracepoints 'sched:sched_*'     GLOB with ':' matches SYSTEM:NAME
  probewatch list tracepoints sched               GLOB without ':' matches the system
  probewatch list tracepoints '*openat*'          ... or the event name
""",
    "syscalls": """examples:
  probewatch list syscalls                        every syscall with its arguments
  probewatch list syscalls 'open*' --json         names, argument types and names, ret type
Names, argument names and types come from events/syscalls/sys_enter_*/format.
""",
    "symbols": """examples:
  probewatch list symbols libc 'str*cmp'          short library names go through ld.so.cache
  probewatch list symbols /bin/bash readline
  probewatch list symbols -p 1234 libc            the libc mapped by process 1234
  probewatch list symbols ./a.out --json | jq -r '.[].name'
Functions from .symtab and .dynsym (and the separate debug file of a stripped binary):
address, file offset (what a uprobe uses), size, binding, type.
""",
    "usdt": """examples:
  probewatch list usdt /usr/bin/python3           every USDT probe with its arguments
  probewatch list usdt /usr/bin/python3 'function__*'   GLOB matches NAME or PROVIDER:NAME
  probewatch list usdt -p 1234 libstdc++          the libstdc++ that process 1234 maps
SEMAPHORE is the address of the probe's enable counter ('-': the probe has none);
the kernel raises it while a probe is armed.
""",
    "probes": """examples:
  probewatch list probes                          uprobes, kprobes, eprobes, ... defined now
  probewatch list probes --json
The owner of a probe in group probewatch_<PID> is that process (alive or dead, with
its comm); 'probewatch cleanup' removes probes of dead owners. Others: unknown.
""",
}


# ------------------------------------------------------------------------ argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list",
        usage="probewatch list {tracepoints,syscalls,symbols,usdt,probes} [options]",
        help="list tracepoints, syscalls, ELF symbols, USDT probes or live dynamic probes",
        description="List what can be probed, and the dynamic probes defined in the kernel.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=run, list_parser=p, what=None)
    ls = p.add_subparsers(dest="what", metavar="WHAT")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = ls.add_parser(
            name,
            prog=f"probewatch list {name}",
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            epilog=_SUB_EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sp.add_argument("--json", action="store_true", help="print a JSON array")
        sp.set_defaults(func=run)
        return sp

    t = add("tracepoints", "list tracepoints (events/SYSTEM/NAME in tracefs)")
    t.add_argument("glob", nargs="?", metavar="GLOB", help="SYSTEM:NAME, SYSTEM or NAME pattern")
    s = add("syscalls", "list syscalls with argument types and names (from tracefs)")
    s.add_argument("glob", nargs="?", metavar="GLOB", help="syscall name pattern")
    y = add("symbols", "list the functions of an ELF file (program or library)")
    y.add_argument("binary", metavar="BINARY", help="path, program on $PATH, or library (libc)")
    y.add_argument("glob", nargs="?", metavar="GLOB", help="function name pattern")
    y.add_argument("-p", "--pid", type=live_pid_arg, help="resolve BINARY in this process's maps")
    u = add("usdt", "list the USDT (SystemTap SDT) probes of an ELF file")
    u.add_argument("binary", metavar="BINARY", help="path, program on $PATH, or library (libc)")
    u.add_argument("glob", nargs="?", metavar="GLOB", help="NAME or PROVIDER:NAME pattern")
    u.add_argument("-p", "--pid", type=live_pid_arg, help="resolve BINARY in this process's maps")
    add("probes", "list the dynamic probes (uprobes, kprobes, ...) defined in the kernel now")


def run(args: argparse.Namespace) -> int:
    what = getattr(args, "what", None)
    if not what:
        args.list_parser.print_help(sys.stderr)
        return 2
    glob = getattr(args, "glob", None)
    pid = getattr(args, "pid", None)
    if what == "tracepoints":
        rows = tracepoint_rows(_root(), glob)
        return _emit(args, rows, [("EVENT", "event")])
    if what == "syscalls":
        rows = syscall_rows(_root(), glob)
        if args.json:
            return _emit(args, rows, [])
        for r in rows:
            print(r["signature"])
        return 0
    if what == "symbols":
        path, rows, notes = symbol_rows(args.binary, glob, pid)
        for n in notes:
            print(f"probewatch: note: {n}", file=sys.stderr)
        rc = _emit(args, rows, [
            ("ADDRESS", "address"), ("OFFSET", "offset"), ("SIZE", "size"), ("BIND", "bind"),
            ("TYPE", "type"), ("NAME", "name"), ("FROM", "from"),
        ])
        if not args.json:
            print(f"{_plural(len(rows), 'function')} in {path}", file=sys.stderr)
        return rc
    if what == "usdt":
        path, rows = usdt_rows(args.binary, glob, pid)
        rc = _emit(args, rows, [
            ("PROVIDER", "provider"), ("NAME", "name"), ("ADDRESS", "address"),
            ("SEMAPHORE", "semaphore"), ("ARGS", "args"),
        ])
        if not args.json:
            print(f"{_plural(len(rows), 'USDT probe location')} in {path}", file=sys.stderr)
        return rc
    if what == "probes":
        rows = probe_rows(_root())
        if not rows and not args.json:
            print("no dynamic probes are defined", file=sys.stderr)
            return 0
        rc = _emit(args, rows, [
            ("KIND", "kind"), ("EVENT", "event"), ("TARGET", "target"), ("HITS", "hits"),
            ("OWNER", "owner"), ("ARGS", "args"),
        ])
        stale = sum(1 for r in rows if r["owner_alive"] is False)
        if stale and not args.json:
            print(f"{_plural(stale, 'probe')} of dead probewatch processes: remove with"
                  " 'probewatch cleanup'", file=sys.stderr)
        return rc
    raise ProbewatchError(f"unknown list subcommand {what!r}")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _root() -> str:
    from ..kernel.tracefs import tracefs_root

    return tracefs_root()


# ------------------------------------------------------------------------- output


def _cell(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int) and key in ("address", "offset", "semaphore"):
        return f"0x{v:x}"
    if isinstance(v, list):
        return " ".join(str(x) for x in v)
    return str(v)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Plain aligned text: a header row, then one row per dict; the last column unpadded.

    ``columns`` is (header, key) pairs; ``row["owner"]`` and other keys are rendered
    with :func:`_cell` (None -> ``-``, addresses in hex, lists space-separated).
    """
    cells = [[_cell(k, r.get(k)) for _, k in columns] for r in rows]
    widths = [len(h) for h, _ in columns]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = []
    for row in [[h for h, _ in columns], *cells]:
        parts = [c.ljust(widths[i]) for i, c in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _emit(args: argparse.Namespace, rows: list[dict[str, Any]],
          columns: Sequence[tuple[str, str]]) -> int:
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if len(columns) == 1:
        for r in rows:
            print(r[columns[0][1]])
        return 0
    print(format_table(rows, columns))
    return 0


def _glob_error(what: str, glob: str, names: Iterable[str]) -> NotFound:
    import difflib

    close = difflib.get_close_matches(glob.strip("*?"), sorted(set(names)), n=3, cutoff=0.7)
    hint = f" (nearest: {', '.join(close)})" if close else ""
    return NotFound(f"no {what} matches {glob!r}{hint}")


# -------------------------------------------------------------------- tracepoints


def tracepoint_rows(root: str, glob: str | None = None) -> list[dict[str, Any]]:
    """Every tracepoint under ``ROOT/events`` matching ``glob``.

    A glob with ``:`` matches ``SYSTEM:NAME``; without, it matches the system or the
    event name. Raises NotFound when a glob matches nothing.
    """
    from ..sources.tracepoint import list_tracepoints

    try:
        all_tp = list_tracepoints(root)
    except OSError as e:
        raise FeatureUnavailable(f"cannot read {root}/events: {e.strerror}") from None
    out = []
    for system, name in all_tp:
        full = f"{system}:{name}"
        if glob is not None:
            if ":" in glob:
                if not fnmatch.fnmatchcase(full, glob):
                    continue
            elif not (fnmatch.fnmatchcase(system, glob) or fnmatch.fnmatchcase(name, glob)):
                continue
        out.append({"event": full, "system": system, "name": name})
    if glob is not None and not out:
        raise _glob_error("tracepoint", glob, (f"{s}:{n}" for s, n in all_tp))
    return out


# ----------------------------------------------------------------------- syscalls


def _decl(ctype: str, name: str) -> str:
    """``const char *`` + ``filename`` -> ``const char *filename``."""
    return f"{ctype}{name}" if ctype.endswith("*") else f"{ctype} {name}"


def syscall_signature(format_text: str, exit_text: str | None = None) -> dict[str, Any]:
    """One syscall from its ``sys_enter_NAME`` (and ``sys_exit_NAME``) format text.

    Example::

        syscall_signature(open(".../sys_enter_openat/format").read())["signature"]
        # 'openat(int dfd, const char *filename, int flags, umode_t mode)'
    """
    from ..decode.format import parse_format

    fmt = parse_format(format_text, "syscalls")
    name = fmt.name[len("sys_enter_"):] if fmt.name.startswith("sys_enter_") else fmt.name
    args = [
        {"name": f.name, "type": f.ctype}
        for f in fmt.fields
        if not f.name.startswith("__")  # __syscall_nr and kernel-internal extras
    ]
    ret = None
    if exit_text:
        xf = parse_format(exit_text, "syscalls")
        ret = next((f.ctype for f in xf.fields if f.name == "ret"), None)
    sig = f"{name}({', '.join(_decl(a['type'], a['name']) for a in args)})"
    return {
        "name": name,
        "args": args,
        "ret": ret,
        "signature": sig,
        "enter": f"syscalls:{fmt.name}",
        "exit": f"syscalls:sys_exit_{name}" if exit_text else None,
        "id": fmt.id,
    }


def syscall_rows(root: str, glob: str | None = None) -> list[dict[str, Any]]:
    """Every syscall the kernel has an enter tracepoint for, sorted by name."""
    base = os.path.join(root, "events", "syscalls")
    try:
        dirs = os.listdir(base)
    except OSError:
        raise FeatureUnavailable(
            f"{base} is missing: kernel built without CONFIG_FTRACE_SYSCALLS (no syscall"
            " tracepoints)"
        ) from None
    names = sorted(d[len("sys_enter_"):] for d in dirs if d.startswith("sys_enter_"))
    out = []
    for n in names:
        if glob is not None and not fnmatch.fnmatchcase(n, glob):
            continue
        try:
            text = _read(os.path.join(base, f"sys_enter_{n}", "format"))
        except OSError:
            continue
        try:
            exit_text: str | None = _read(os.path.join(base, f"sys_exit_{n}", "format"))
        except OSError:
            exit_text = None
        out.append(syscall_signature(text, exit_text))
    if glob is not None and not out:
        raise _glob_error("syscall", glob, names)
    return out


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


# ------------------------------------------------------------------------ symbols


def symbol_rows(
    binary: str, glob: str | None = None, pid: int | None = None,
    debug_roots: Sequence[str] | None = None,
) -> tuple[str, list[dict[str, Any]], list[str]]:
    """(resolved path, function rows sorted by address, notes) for an ELF file.

    A stripped file's separate debug file (build-id, debuglink, /usr/lib/debug) is read
    too; rows found only there have ``from`` = ``debug``. One row per function name,
    address and symbol version (``malloc@@GLIBC_2.2.5``). Raises NotFound for a missing
    file or a glob that matches nothing.
    """
    from ..elf.apk import probe_file
    from ..elf.libs import resolve_target
    from ..elf.symbols import ElfImage, Symbol, find_debug_file, open_image

    path = resolve_target(binary, pid)
    img = open_image(path)
    _, base = probe_file(path)  # a library inside an APK: offsets are in the APK file
    images: list[tuple[ElfImage, str]] = [(img, "")]
    notes: list[str] = []
    debug_path = ""
    if img.stripped:
        search = find_debug_file(img, debug_roots)
        if search.found:
            debug_path = search.found
            images.append((open_image(search.found), search.found))
        else:
            notes.append(
                f"{path} is stripped and no debug file was found (looked in:"
                f" {', '.join(search.looked) or 'nowhere'}): only its dynamic symbols are"
                " listed"
            )
    # one row per (name, address, version); an unversioned .symtab entry (e.g. from
    # the debug file) merges into the versioned .dynsym entry at the same address
    groups: dict[tuple[str, int], list[tuple[Symbol, str]]] = {}
    for im, origin in images:
        for s in im.symbols:
            if not img.is_function(s):
                continue
            if glob is not None and not (
                fnmatch.fnmatchcase(s.name, glob) or fnmatch.fnmatchcase(s.full_name, glob)
            ):
                continue
            groups.setdefault((s.name, s.address), []).append((s, origin))
    rows: list[dict[str, Any]] = []
    for (_name, addr), syms in groups.items():
        try:
            off: int | None = img.vaddr_to_offset(addr)
        except NotFound:
            off = None
        local_file = next((x.file for x, _ in syms if x.file), None)
        only_debug = all(origin for _, origin in syms)
        versions = {x.full_name: x for x, _ in syms if x.version}
        for s in (versions.values() if versions else [syms[0][0]]):
            row = {
                "name": s.full_name,
                "address": addr,
                "offset": off + base if off is not None else None,
                "size": max(x.size for x, _ in syms),
                "bind": s.bind,
                "type": s.type,
                "tables": sorted({x.table for x, _ in syms}),
                "file": local_file,
                "from": "debug" if only_debug else "-",
                "debug_file": debug_path if only_debug else None,
                "path": path,
            }
            if base:
                row["elf_offset"] = off  # the offset inside the library itself
            rows.append(row)
    rows.sort(key=lambda r: (r["address"], r["name"]))
    if debug_path and rows:
        notes.append(f"{path} is stripped: symbols read from its debug file {debug_path}")
    if glob is not None and not rows:
        names = [s.name for im, _ in images for s in im.symbols if img.is_function(s)]
        raise _glob_error(f"function in {path}", glob, names)
    return path, rows, notes


# --------------------------------------------------------------------------- usdt


def usdt_rows(
    binary: str, glob: str | None = None, pid: int | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """(resolved path, one row per USDT probe location). NotFound when there are none."""
    from ..elf.libs import resolve_target
    from ..elf.usdt import read_usdt_probes

    path = resolve_target(binary, pid)
    probes = read_usdt_probes(path)
    if not probes:
        raise NotFound(f"{path} has no USDT probes (no .note.stapsdt section)")
    rows = []
    for p in probes:
        if glob is not None and not (
            fnmatch.fnmatchcase(p.name, glob) or fnmatch.fnmatchcase(p.full_name, glob)
        ):
            continue
        rows.append({
            "provider": p.provider,
            "name": p.name,
            "address": p.pc,
            "offset": p.offset,
            "semaphore": p.semaphore or None,
            "semaphore_offset": p.semaphore_offset,
            "args": [a.text for a in p.args],
            "arg_types": [a.type for a in p.args],
            "path": path,
        })
    if glob is not None and not rows:
        raise _glob_error(f"USDT probe in {path}", glob, (p.full_name for p in probes))
    rows.sort(key=lambda r: (r["provider"], r["name"], r["address"]))
    return path, rows
