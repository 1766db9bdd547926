"""probewatch ltrace: the library calls a program makes, like ltrace, on uprobes.

ltrace stops the program at breakpoints through ptrace; here a uprobe on each PLT
stub of the program (and a uretprobe for the return) records the call in the kernel,
so it can attach to a running process and costs a fraction. Arguments are shown by
the prototypes of :mod:`probewatch.decode.protos`.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..collect.command import GatedCommand, program_file, resolve_command
from ..decode.escape import obj_json
from ..decode.protos import (
    NO_RETURN,
    RETURNS_TWICE,
    Prototype,
    format_conversions,
    prototype,
    render_call,
    render_value,
)
from ..errors import NotFound, ProbewatchError
from ..event import Event
from ..sinks.writer import Out
from .args import duration_arg, live_pid_arg, strsize_arg
from .runctl import TERM_GRACE, RunControl, finish_command, output_end

EXAMPLES = """examples:
  probewatch ltrace -- ./prog arg           every library call ./prog makes, with arguments
  probewatch ltrace -e 'malloc+free' -- ls  only these functions (globs; -e '-free' drops one)
  probewatch ltrace -p 1234 -e 'str*'       attach to a running process (no ptrace stop)
  probewatch ltrace -c -- make -s           calls and time per function, a table at the end
  probewatch ltrace --from libcurl.so.4 -e 'SSL_*' -- curl -s https://example.com
                                            what a library (not the program) calls
  probewatch ltrace --json -- ./prog | jq -r .function

Calls are those the object makes through its PLT (as ltrace shows them): a uprobe
on each stub, a uretprobe for the return. Output buffers (read's buffer, snprintf's
destination) are shown as pointers: a uretprobe cannot see the arguments.
"""

#: the most functions one run probes (each takes a uprobe and a uretprobe)
MAX_FUNCTIONS = 2048
#: registers that carry arguments on x86_64 / aarch64 (beyond: the stack)
_REG_ARGS = 6
#: arguments read for a printf-like function (the variadic ones it asks for)
_VAR_ARGS = 10


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ltrace",
        help="library calls with arguments and returns, like ltrace (uprobes)",
        description="Trace the calls a program makes into shared libraries, ltrace-style, "
                    "with uprobes on its PLT stubs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-e", "--expr", metavar="PATTERN",
                   help="functions to trace: globs joined by '+', '-GLOB' drops (ltrace -e)")
    p.add_argument("-s", "--strsize", type=strsize_arg, default=32,
                   help="characters of strings to show (ltrace -s; default 32)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the trace to FILE")
    p.add_argument("-f", "--follow", action="store_true",
                   help="prefix lines with [pid N] (children are always traced)")
    p.add_argument("-T", "--time", action="store_true", help="show time spent in each call")
    p.add_argument("-c", "--summary", action="store_true",
                   help="count calls and time per function; a table at the end")
    p.add_argument("-p", "--pid", type=live_pid_arg, help="attach to this running process")
    p.add_argument("--from", dest="objects", action="append", default=[], metavar="OBJ",
                   help="trace the calls this object makes (a library name or path; "
                        "repeatable; default: the program itself)")
    p.add_argument("-d", "--duration", type=duration_arg, metavar="SECS",
                   help="stop after SECS seconds")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per call on stdout; the summary on stderr as JSON")
    p.add_argument("--backend", choices=["auto", "ftrace", "bpf"], default="auto",
                   help="collection backend (auto: ftrace uprobes, which read strings "
                        "the program has not touched yet)")
    p.set_defaults(func=run, accepts_command=True)


# ------------------------------------------------------------------ what to probe


def select(names: list[str], expr: str | None) -> list[str]:
    """The names an ltrace-style ``-e`` expression picks (all when None).

    ``A+B`` adds globs, ``-C`` (or ``!C``) removes them; an ``@LIB`` suffix is accepted
    and ignored (the calls are those of the traced object, whatever library serves them).

    Example::

        select(["malloc", "free", "strlen"], "*alloc+free-free")   # ['malloc']
    """
    if not expr:
        return sorted(names)
    chosen: set[str] = set()
    first = True
    for tok in _tokens(expr):
        sign, glob = tok[0], tok[1:].split("@", 1)[0]
        if first and sign == "-":
            chosen = set(names)  # '-free' alone: everything but free
        first = False
        hit = {n for n in names if fnmatch.fnmatchcase(n, glob)} if glob else set()
        chosen = chosen | hit if sign == "+" else chosen - hit
    return sorted(chosen)


def _tokens(expr: str) -> list[str]:
    out: list[str] = []
    cur = "+"
    for ch in expr:
        if ch in "+-!" and (cur[1:] or len(cur) == 1 and not out and ch != "+"):
            if cur[1:]:
                out.append(cur)
            cur = "-" if ch in "-!" else "+"
        elif ch == "+":
            if cur[1:]:
                out.append(cur)
            cur = "+"
        else:
            cur += ch
    if cur[1:]:
        out.append(cur)
    if not out:
        raise ProbewatchError(f"-e {expr!r}: no function pattern in it")
    return out


@dataclass
class Site:
    """One probed function of one object: its prototype and what each probe fetches."""

    obj: str  # the caller's name as ltrace prints it: "ls", "libcurl.so.4"
    proto: Prototype
    nvalues: int
    strings: tuple[int, ...]  # argument indexes whose string is read
    entry_spec: str = ""
    return_spec: str = ""  # "" for a function that gets no uretprobe (see protos)
    calls: int = 0
    time_ns: int = 0


class Prototypes:
    """Prototypes by name: the built-in table first, then the DWARF of the objects
    the program loads (its own libraries built with -g, or Debian's -dbgsym files in
    /usr/lib/debug), then ltrace's default."""

    def __init__(self, objects: list[str]) -> None:
        self.objects = objects

    def __call__(self, name: str) -> Prototype:
        p = prototype(name)
        if p.known:
            return p
        from ..elf.dwarf import dwarf_prototypes
        from ..elf.symbols import open_image

        for o in self.objects:  # the DWARF of the object that defines it, if any
            try:
                img = open_image(o)
                if not any(s.address and s.table == ".dynsym" and img.is_function(s)
                           for s in img.lookup(p.name)):
                    continue
                hit = dwarf_prototypes(o).get(p.name)
            except NotFound:
                continue
            if hit is not None:
                return Prototype(p.name, hit[0], hit[1])
            break
        return p


def plan(path: str, names: list[str], obj: str,
         protos: Callable[[str], Prototype] = prototype) -> list[Site]:
    from ..elf.plt import plt_stubs

    stubs = plt_stubs(path)
    sites = []
    for name in names:
        stub = stubs[name]
        proto = protos(name)
        if proto.variadic:
            n = _VAR_ARGS
            strings = tuple(range(proto.args.index("format"), n))
        else:
            n = min(len(proto.args), _REG_ARGS)
            strings = tuple(i for i, t in enumerate(proto.args[:n]) if t in ("string", "format"))
        fetch = [f"a{i}=arg{i}:x64" for i in range(n)]
        fetch += [f"s{i}=+0(arg{i}):string" for i in strings]
        site = Site(obj, proto, n, strings)
        site.entry_spec = f"u:{path}:0x{stub.address:x} " + " ".join(fetch) if fetch else \
            f"u:{path}:0x{stub.address:x}"
        if name.split("@", 1)[0] not in RETURNS_TWICE | NO_RETURN:
            ret = "ret=retval:x64"
            if proto.ret == "string":
                ret += " rs=+0(retval):string"
            site.return_spec = f"ur:{path}:0x{stub.address:x} {ret}"
        sites.append(site)
    return sites


# ------------------------------------------------------------------ the run


def run(args: argparse.Namespace) -> int:
    cmd = list(getattr(args, "command_argv", None) or [])
    if bool(cmd) == (args.pid is not None):
        raise ProbewatchError("give either -p PID or -- COMMAND ARGS...")
    if cmd:
        resolve_command(cmd[0])  # nothing to run: one error, before anything is armed
    ctl = RunControl()
    ctl.install()
    try:
        if args.output:
            with open(args.output, "w") as fh:
                return _run(args, cmd, ctl, Out(fh))
        return _run(args, cmd, ctl, Out(sys.stdout))
    finally:
        ctl.restore()


def _sites(args: argparse.Namespace, cmd: list[str]) -> list[Site]:
    """What to probe. Without -e, the calls the program itself makes (its PLT); with
    -e, as ltrace does, the matching calls any object it loads makes (each one's PLT);
    with --from, the calls of those objects only."""
    from ..elf.libs import resolve_target
    from ..elf.plt import linked_objects, plt_stubs

    if args.objects:
        paths = [resolve_target(o, args.pid) for o in args.objects]
        main = paths[0]
        loaded = [p for o in paths for p in linked_objects(o, args.pid)]
    else:
        main = program_file(cmd, args.pid)
        loaded = linked_objects(main, args.pid)
        paths = loaded if args.expr else [main]
    protos = Prototypes(loaded)
    sites: list[Site] = []
    for path in paths:
        names = sorted(plt_stubs(path))
        if not names and path == main and not args.expr:
            raise NotFound(f"{path} has no PLT stubs: it makes no calls into shared "
                           "libraries that ltrace could see (statically linked?)")
        sites += plan(path, select(names, args.expr), os.path.basename(path), protos)
    if not sites:
        where = main if len(paths) == 1 else f"{main} and the {len(paths) - 1} libraries it loads"
        raise NotFound(f"-e {args.expr!r} matches none of the library functions {where} "
                       "calls" if args.expr else f"{main} calls no library function")
    if len(sites) > MAX_FUNCTIONS:
        raise ProbewatchError(
            f"{len(sites)} functions to trace (at most {MAX_FUNCTIONS}: two uprobes each); "
            "narrow -e")
    return sites


@dataclass
class _Call:
    site: Site
    ts: int
    text: str  # "name(args"
    shown: bool = False  # printed as <unfinished ...>
    raw: tuple[list[int], dict[int, bytes]] | None = None  # --json: the values read


@dataclass
class Printer:
    """Pairs entries with returns per thread and prints ltrace's lines."""

    args: argparse.Namespace
    out: Out
    multi: bool
    stacks: dict[int, list[_Call]] = field(default_factory=dict)
    prefix_obj: bool = False

    def _prefix(self, ev: Event, site: Site) -> str:
        p = f"[pid {ev.tid}] " if self.multi else ""
        if self.prefix_obj:
            p += f"{site.obj}->"
        return p

    def _line(self, left: str, right: str) -> None:
        self.out.write(f"{left:<48} = {right}\n" if len(left) < 48 else f"{left} = {right}\n")

    def entry(self, ev: Event, site: Site) -> None:
        f = ev.fields
        values = [int(f.get(f"a{i}") or 0) for i in range(site.nvalues)]
        texts = {i: t for i in site.strings if (t := _raw(f.get(f"s{i}"))) is not None}
        stack = self.stacks.setdefault(ev.tid, [])
        if not site.return_spec:  # no uretprobe: the call is shown as it starts
            site.calls += 1
            if self.args.summary:
                return
            text = render_call(site.proto, values, texts, self.args.strsize)
            if self.args.json:
                self.out.write(obj_json({
                    "ts": ev.ts, "pid": ev.pid, "tid": ev.tid, "comm": ev.comm,
                    "caller": site.obj, "function": site.proto.name, "call": text + ")",
                    "args": values, "ret": None, "return": None, "duration_ns": None,
                }) + "\n")
                return
            why = "no return ..." if site.proto.name in NO_RETURN else \
                "return not traced: it returns twice"
            self.out.write(f"{self._prefix(ev, site)}{text} <{why}>\n")
            return
        if stack and not stack[-1].shown and not self.args.json and not self.args.summary:
            top = stack[-1]
            self.out.write(f"{self._prefix(ev, top.site)}{top.text} <unfinished ...>\n")
            top.shown = True
        stack.append(_Call(site, ev.ts, render_call(site.proto, values, texts,
                                                    self.args.strsize),
                           raw=(values, texts) if self.args.json else None))

    def ret(self, ev: Event, site: Site) -> None:
        stack = self.stacks.get(ev.tid)
        if not stack:
            return  # entered before tracing began
        # the innermost pending call of this function (a longjmp may skip others)
        for i in range(len(stack) - 1, -1, -1):
            if stack[i].site is site:
                break
        else:
            return
        call = stack[i]
        skipped = stack[i + 1:]
        del stack[i:]
        for c in skipped:
            self._noreturn(ev, c)
        dur = ev.ts - call.ts
        site.calls += 1
        site.time_ns += dur
        if self.args.summary:
            return
        f = ev.fields
        rv = int(f.get("ret") or 0)
        rtext = render_value(site.proto.ret, rv, _raw(f.get("rs")), self.args.strsize)
        if self.args.json:
            values, texts = call.raw or ([], {})
            self.out.write(obj_json({
                "ts": call.ts, "pid": ev.pid, "tid": ev.tid, "comm": ev.comm,
                "caller": site.obj, "function": site.proto.name,
                "call": call.text + ")", "args": values,
                "strings": {str(k): v.decode("utf-8", "surrogateescape")
                            for k, v in texts.items() if v is not None},
                "ret": rv, "return": rtext, "duration_ns": dur,
            }) + "\n")
            return
        tail = f" <{dur / 1e9:.6f}>" if self.args.time else ""
        if call.shown:
            pid = f"[pid {ev.tid}] " if self.multi else ""
            self._line(f"{pid}<... {site.proto.name} resumed> )",
                       rtext + tail)
        else:
            self._line(f"{self._prefix(ev, site)}{call.text})", rtext + tail)

    def _noreturn(self, ev: Event, call: _Call) -> None:
        if self.args.json or self.args.summary:
            return
        self.out.write(f"{self._prefix(ev, call.site)}{call.text} <no return ...>\n")

    def exited(self, ev: Event) -> None:
        for call in self.stacks.pop(ev.tid, []):
            self._noreturn(ev, call)

    def flush_pending(self) -> None:
        for tid, stack in list(self.stacks.items()):
            fake = Event(0, 0, tid, tid, "", "", "", {})
            for call in stack:
                self._noreturn(fake, call)
        self.stacks.clear()


def _raw(v: Any) -> bytes | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        return v
    return str(v).encode("utf-8", "surrogateescape")


def _run(args: argparse.Namespace, cmd: list[str], ctl: RunControl, out: Out) -> int:
    from ..backends import open_session

    sites = _sites(args, cmd)
    by_probe: dict[str, tuple[Site, Callable[[Event, Site], None]]] = {}
    printer = Printer(args, out, multi=args.follow, prefix_obj=bool(args.expr or args.objects))
    for site in sites:
        by_probe[site.entry_spec] = (site, printer.entry)
        if site.return_spec:
            by_probe[site.return_spec] = (site, printer.ret)
    exit_spec = "t:sched:sched_process_exit"
    command: GatedCommand | None = None
    ended_by = 0
    try:
        backend = "ftrace" if args.backend == "auto" else args.backend
        with open_session(backend, pids=[args.pid] if args.pid else []) as s:
            for site in sites:
                s.add(site.entry_spec)
                if site.return_spec:
                    s.add(site.return_spec)
            s.add(exit_spec)
            for w in s.warnings:
                print(f"probewatch: warning: {w}", file=sys.stderr)
            if cmd:
                s.trace_command(cmd)
                command = s.command
            try:
                s.start()
                ctl.session = s
                ctl.phase = "running"
                for ev in s.events(duration=args.duration):
                    hit = by_probe.get(ev.probe)
                    if hit is not None:
                        hit[1](ev, hit[0])
                    elif ev.probe == exit_spec:
                        printer.exited(ev)
                    if ctl.abort:
                        break
                printer.flush_pending()
                out.flush()
            except (BrokenPipeError, SystemExit) as e:
                ended_by = output_end(e)
            s.stop()
            summ = s.summary().to_dict()
            s.close()  # probes gone before any wait for the command
            ctl.phase = "waiting"
        rc: int
        if command is None:
            rc = 128 + ended_by if ended_by else 0
        else:
            rc = finish_command(command, cmd[0], ctl, ended_by)
        if args.summary and ended_by != signal.SIGPIPE:
            print_table(sites, out)
            out.flush()
        lost = summ.get("lost", 0)
        if args.json:
            print(json.dumps({"summary": {"calls": sum(x.calls for x in sites),
                                          "lost": lost, "probes": len(sites)}}),
                  file=sys.stderr)
        elif lost:
            print(f"probewatch: warning: {lost} events lost: some calls are missing",
                  file=sys.stderr)
        if command is not None and not args.json and not args.summary:
            code = command.returncode
            if code is not None:
                out.write(f"+++ exited (status {code}) +++\n" if code < 129 else
                          f"+++ killed by {signal.Signals(code - 128).name} +++\n")
                out.flush()
        return rc
    finally:
        if command is not None and command.pid:  # an error or a second signal: never
            command.terminate(signal.SIGTERM, TERM_GRACE)  # leave it running untraced


def print_table(sites: list[Site], out: Out) -> None:
    """An ``ltrace -c`` style table: time, calls and time per call of each function."""
    rows = [s for s in sites if s.calls]
    total = sum(s.time_ns for s in rows) or 1
    rows.sort(key=lambda s: (-s.time_ns, -s.calls, s.proto.name))
    out.write("% time     seconds  usecs/call     calls      function\n")
    out.write("------ ----------- ----------- --------- --------------------\n")
    for s in rows:
        out.write(f"{100.0 * s.time_ns / total:6.2f} {s.time_ns / 1e9:11.6f} "
                  f"{s.time_ns // 1000 // s.calls:11d} {s.calls:9d} {s.proto.name}\n")
    out.write("------ ----------- ----------- --------- --------------------\n")
    calls = sum(s.calls for s in rows)
    out.write(f"100.00 {sum(s.time_ns for s in rows) / 1e9:11.6f} {'':11} {calls:9d} total\n")


__all__ = ["register", "run", "select", "plan", "print_table",
           "format_conversions"]
