"""probewatch syscalls: strace-style syscall tracing on the BPF backend.

Also holds the few helpers the other BPF tools (execsnoop, opensnoop, syscount,
tcpconnect, bashreadline) share: common options, backend choice, the run loop.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import IO, Any

from ..collect.command import GatedCommand, resolve_command
from ..errors import FeatureUnavailable, ProbewatchError
from ..event import Event
from ..sinks.jsonl import event_json
from ..sinks.writer import Deadline, Out, OutputCut
from .args import (
    buffer_kb_arg,
    comm_arg,
    duration_arg,
    live_pid_arg,
    strsize_arg,
    uid_arg,
)
from .runctl import TERM_GRACE, RunControl, finish_command, output_end, silence_stdout

EXAMPLES = """examples:
  probewatch syscalls -f -- ./prog arg        trace ./prog and its children, strace-style
  probewatch syscalls -p 1234                 attach to a running process
  probewatch syscalls -c -- make              per-syscall calls/errors/time table
  probewatch syscalls -e openat,close -- ls   only these syscalls
  probewatch syscalls --json -- sh -c 'ls >/dev/null' | jq -r .event

Strings (paths, argv, buffers up to -s bytes) are read from user memory in the
kernel; a read that fails shows the pointer, as strace does, and is counted.
"""


# ------------------------------------------------------------------ shared helpers


def add_bpf_common(p: argparse.ArgumentParser, command: bool = True) -> None:
    """Options every BPF tool has: -p, --comm, --uid, --cgroup, -d, --json, --backend."""
    p.add_argument("-p", "--pid", type=live_pid_arg, action="append", default=[],
                   help="trace only this process (and its children); repeatable")
    p.add_argument("--comm", type=comm_arg,
                   help="trace only tasks with this comm (in-kernel filter; 15 bytes)")
    p.add_argument("-u", "--uid", type=uid_arg, help="trace only this user id")
    p.add_argument("--cgroup", metavar="PATH",
                   help="trace only this cgroup v2 (e.g. /sys/fs/cgroup/system.slice)")
    p.add_argument("-d", "--duration", type=duration_arg, metavar="SECS",
                   help="stop after SECS seconds")
    p.add_argument("--json", action="store_true",
                   help="JSON lines on stdout; the summary goes to stderr as JSON")
    p.add_argument("--ringbuf-kb", type=buffer_kb_arg(per_cpu=False, lo=4, pow2=True),
                   default=65536,
                   help="ring buffer size in KiB (default 65536: ~400k events of headroom)")
    p.add_argument("--backend", choices=["auto", "ftrace", "perf", "bpf"], default="auto",
                   help="collection backend (auto: BPF when the kernel allows it)")
    if command:
        # main() splits "-- COMMAND ARGS..." off into args.command_argv
        p.set_defaults(accepts_command=True)


def command_of(args: argparse.Namespace) -> list[str]:
    return list(getattr(args, "command_argv", None) or [])


def cgroup_id(path: str | None) -> int | None:
    """The cgroup v2 id of a cgroup directory (its inode number)."""
    if not path:
        return None
    if not path.startswith("/"):
        path = os.path.join("/sys/fs/cgroup", path)
    try:
        return os.stat(path).st_ino
    except OSError as e:
        raise ProbewatchError(f"cgroup {path}: {e.strerror}") from None


def require_bpf(args: argparse.Namespace, tool: str) -> None:
    """Resolve --backend; the string-reading tools have no ftrace implementation."""
    from ..bpf_session import pick_backend

    if args.backend in ("ftrace", "perf"):
        raise FeatureUnavailable(
            f"{tool} needs the bpf backend: the {args.backend} backend cannot read syscall "
            "string arguments on this kernel (no kprobes/eprobes); use --backend bpf or auto"
        )
    pick_backend(args.backend, needs_bpf=True)


def session_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "pids": args.pid,
        "comm": args.comm,
        "uid": args.uid,
        "cgroup": cgroup_id(args.cgroup),
        "ringbuf_kb": args.ringbuf_kb,
    }


def stdout() -> Out:
    """Standard output for the tools: UTF-8 whatever the strings hold (see sinks.writer)."""
    return Out(sys.stdout)


def controlled(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A tool's ``run(args)`` with its signals in hand before the session exists.

    The command after ``--`` is looked up first (nothing to run: one error, before
    anything is armed), then a :class:`~probewatch.cli.runctl.RunControl` is installed
    (``args.runctl``) that :func:`run_tool` uses, as ``probewatch trace`` does.

    Example::

        @controlled
        def run(args): ...
    """

    @functools.wraps(run)
    def wrapper(args: argparse.Namespace) -> int:
        cmd = command_of(args)
        if cmd:
            resolve_command(cmd[0])
        ctl = RunControl()
        ctl.install()
        args.runctl = ctl
        try:
            return run(args)
        finally:
            ctl.restore()

    return wrapper


def _uncount(s: Any, ev: Event) -> None:
    """An event delivered (and counted) that was not shown."""
    s.uncount([ev])


def run_tool(
    args: argparse.Namespace,
    session: Any,
    on_event: Callable[[Event], bool] | None,
    out: IO[str] | Out | None = None,
    after: Callable[[], None] | None = None,
    header: str = "",
) -> int:
    """Start (gated command if any), stream events, print the summary, return the status.

    ``on_event`` shows one event and returns True, or False for one it filtered out (such an
    event is not counted in the summary, which counts what was shown).

    With -d, events stamped after the deadline are not shown, and a reader of stdout
    too slow to take the rest by then does not hold the run up (what it did not take
    is counted in a warning). ``header`` is printed once tracing is on (not before an
    error such as a pid that does not run).

    Signals and the command as in ``probewatch trace`` (the tool's run() is wrapped in
    :func:`controlled`): ^C stops tracing and what is buffered is still shown, a second
    ^C stops at once; SIGTERM/SIGHUP or a closed stdout end the run and stop the
    command (exit 143/129/141); once tracing is over the command is waited for (after
    ^C: for 2 s, then killed). The summary counts what was shown.
    """
    out = out or stdout()
    cmd = command_of(args)
    ctl = getattr(args, "runctl", None)
    if not isinstance(ctl, RunControl):
        ctl = RunControl()  # not installed (run() not wrapped): phases only
    cut = 0
    ended_by = 0  # SIGPIPE: output closed; SIGTERM/SIGHUP: told to stop
    command: GatedCommand | None = None
    pending: list[Event] = []  # delivered (counted), not yet shown
    try:
        with session as s:
            if cmd:
                s.trace_command(cmd)
                command = s.command
            try:
                s.start()
                ctl.session = s
                ctl.phase = "running"
                ctl.take_sigint()  # ^C from here: stop tracing, drain, end
                if on_event is None:
                    s.run(duration=args.duration)
                else:
                    out.write(header)
                    out.flush()  # tracing is on: a reader may wait for this line
                    dl = Deadline(args.duration, getattr(s, "clock", "mono"))
                    dl.arm(out if isinstance(out, Out) else None)
                    try:
                        for ev in s.events(duration=args.duration):
                            pending.append(ev)
                            if ctl.abort or dl.late(ev.ts):  # not shown, not counted
                                s.stop()
                                break
                            if not on_event(ev):  # filtered out: not counted
                                _uncount(s, ev)
                            pending.clear()
                        out.flush()
                    except OutputCut as e:
                        s.stop()
                        cut = e.lines
                    finally:
                        if isinstance(out, Out):
                            out.set_cutoff(None)
            except KeyboardInterrupt:  # ^C while it started (the session's handler)
                ctl.interrupts += 1
            except (BrokenPipeError, SystemExit) as e:
                ended_by = output_end(e)
            s.stop()
            for ev in pending:
                _uncount(s, ev)
            pending.clear()
            if after is not None and ended_by != signal.SIGPIPE:
                try:
                    after()
                    out.flush()
                except BrokenPipeError:
                    ended_by = signal.SIGPIPE
                    silence_stdout()
            summ = s.summary()
            s.close()  # programs gone before any wait for the command
            ctl.phase = "waiting"
        if cut:
            print(f"probewatch: warning: {cut} lines were not written: the reader of the "
                  "output did not take them before the end of -d", file=sys.stderr)
        print_summary(summ.to_dict(), args.json)
        if command is None:
            return 128 + ended_by if ended_by else 0
        return finish_command(command, cmd[0], ctl, ended_by)
    finally:
        if command is not None and command.pid:  # an error or a second signal: never
            command.terminate(signal.SIGTERM, TERM_GRACE)  # leave it running untraced


def print_summary(d: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"summary": d}), file=sys.stderr)
        return
    msg = (f"{d['total']} events in {d['duration']:.2f}s, lost {d['lost']} "
           f"(generated {d['generated']}, failed reads {d['read_failed']}, "
           f"truncated {d['truncated']})")
    print(msg, file=sys.stderr)


def emit_json(out: IO[str] | Out, ev: Event) -> None:
    """One event as a JSON line (valid UTF-8 JSON whatever its strings hold)."""
    out.write(event_json(ev) + "\n")


# ------------------------------------------------------------------ the tool


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "syscalls",
        help="strace-style syscall tracing (BPF)",
        description="Trace syscalls with decoded arguments, strace-style (BPF backend).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-f", "--follow", action="store_true",
                   help="follow children (always on for -- COMMAND, like strace -f)")
    p.add_argument("-c", "--summary", action="store_true",
                   help="count calls, errors and time per syscall (in the kernel); a table")
    p.add_argument("-e", "--syscalls", metavar="LIST", help="only these syscalls (comma list)")
    p.add_argument("-s", "--strsize", type=strsize_arg, default=32,
                   help="bytes of data buffers to show (strace -s; default 32)")
    p.add_argument("-T", "--time", action="store_true", help="show time spent in each syscall")
    p.add_argument("-o", "--output", metavar="FILE", help="write the trace to FILE (strace -o)")
    add_bpf_common(p)
    p.set_defaults(func=run)


@controlled
def run(args: argparse.Namespace) -> int:
    require_bpf(args, "syscalls")
    names = [n.strip() for n in args.syscalls.split(",")] if args.syscalls else None
    if args.output:
        with open(args.output, "w") as fh:
            return _run(args, names, Out(fh))
    return _run(args, names, stdout())


def _run(args: argparse.Namespace, names: list[str] | None, out: Out) -> int:
    from ..bpf_session import BpfSession
    from ..decode.syscalls import format_call

    if args.summary:
        s = BpfSession("syscalls", syscalls=names, emit=False, count=True,
                       follow_children=True, **session_kwargs(args))
        return run_tool(args, s, None, out, after=lambda: print_table(s, out))
    s = BpfSession("syscalls", syscalls=names, follow_children=True,
                   buf_max=args.strsize, **session_kwargs(args))
    table = s.table
    seen_pids: set[int] = set()
    strmax = args.strsize

    def show(ev: Event) -> bool:
        if args.json:
            emit_json(out, ev)
            return True
        if not ev.event.startswith("syscalls:"):
            return False  # not shown: not counted
        name = ev.event[len("syscalls:"):]
        f = ev.fields
        info = table.by_name.get(name)
        argspec = info.args if info and info.known else [("long", f"arg{i}") for i in range(6)]
        line = format_call(name, f, argspec, f.get("ret"), f.get("faults", ()),
                           f.get("truncated", ()), strmax)
        if args.time and f.get("duration_ns") is not None:
            line += f" <{f['duration_ns'] / 1e9:.6f}>"
        seen_pids.add(ev.tid)
        if len(seen_pids) > 1 or args.pid:
            line = f"[pid {ev.tid:>5}] {line}"
        out.write(line + "\n")
        return True

    return run_tool(args, s, show, out)


def print_table(s: Any, out: IO[str] | Out) -> None:
    """A `strace -c` style table from the in-kernel counts."""
    counts = s.syscall_counts()
    total_t = sum(t for _, _, t in counts.values()) or 1
    rows = sorted(counts.items(), key=lambda kv: (-kv[1][2], -kv[1][0], kv[0]))
    out.write(f"{'% time':>6} {'seconds':>11} {'usecs/call':>11} {'calls':>9} "
              f"{'errors':>9} syscall\n")
    out.write("------ ----------- ----------- --------- --------- ----------------\n")
    tc = te = tt = 0
    for name, (c, e, t) in rows:
        tc, te, tt = tc + c, te + e, tt + t
        per = (t // 1000) // c if c else 0
        out.write(f"{100.0 * t / total_t:6.2f} {t / 1e9:11.6f} {per:11d} {c:9d} "
                  f"{(str(e) if e else ''):>9} {name}\n")
    out.write("------ ----------- ----------- --------- --------- ----------------\n")
    out.write(f"{100.0:6.2f} {tt / 1e9:11.6f} {((tt // 1000) // tc if tc else 0):11d} "
              f"{tc:9d} {(str(te) if te else ''):>9} total\n")
