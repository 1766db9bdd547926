"""probewatch trace: stream events of tracepoint specs."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
from types import FrameType
from typing import Any, TextIO

from ..collect.command import GatedCommand, resolve_command
from ..event import Event
from ..sinks.jsonl import JsonLinesSink
from ..sinks.text import TextSink, hex_fields

EXAMPLES = """examples:
  probewatch trace t:sched:sched_process_exec               exec events, system-wide
  probewatch trace 't:syscalls:sys_enter_open*' -c cat      open syscalls of commands named cat
  probewatch trace t:syscalls:sys_enter_getppid -- ./loop   only ./loop and its children
  probewatch trace t:sched:sched_switch --filter 'prev_pid == 1' -d 5
  probewatch trace t:syscalls:sys_enter_openat --json -- sh -c 'ls >/dev/null' | jq .fields.dfd
  probewatch trace --count t:syscalls:sys_enter_getppid -p 1234 -d 10

  probewatch trace 'u:libc:malloc size=arg0:u64' -- ls              malloc sizes
  probewatch trace 'ur:/bin/bash:readline line=+0(retval):string'   lines typed into bash
  probewatch trace 'U:/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0:function__entry'

specs: t:SYSTEM:NAME (tracepoint), u:/ur:TARGET:SYMBOL[+OFF] (uprobe/uretprobe),
U:TARGET:[PROVIDER:]NAME (USDT), k:/kr:FUNC (kprobe/kretprobe); globs (* ? [..]) expand.
Arguments: NAME=EXPR[:TYPE], EXPR = argN | retval | %REG | +OFF(EXPR), TYPE = u8..u64,
s8..s64, x8..x64, string, ustring, u8[16]. TARGET: a path, or libc/libssl/... by name.
--filter takes the tracefs filter syntax (e.g. 'dfd == -100 && flags & 1'); it runs in
the kernel. With --json, events go to stdout as JSON lines and the summary goes to
stderr as one JSON line {"summary": {...}}.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace",
        usage="probewatch trace [options] SPEC... [-- COMMAND ARGS...]",
        help="stream events from probe specs (tracepoints, uprobes, USDT, kprobes)",
        description="Stream events from probe specs (ftrace in a private instance, or eBPF).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(p)
    p.set_defaults(func=run)


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="+", metavar="SPEC", help="probe spec, e.g. t:sched:sched_switch")
    p.add_argument("-p", "--pid", type=int, action="append", default=[],
                   help="trace only this process (its threads and children); repeatable")
    p.add_argument("-c", "--comm", help="trace only tasks with this comm (in-kernel filter)")
    p.add_argument("--filter", dest="filter_expr", help="tracefs filter expression, in-kernel")
    p.add_argument("-d", "--duration", type=float, help="stop after SECS seconds")
    p.add_argument("-n", "--max-events", type=int, help="stop after MAX events")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout")
    p.add_argument("--count", action="store_true", help="count events only; print the summary")
    p.add_argument("--buffer-kb", type=int, help="per-CPU ring buffer size in KiB")
    p.add_argument("--backend", choices=["auto", "ftrace", "bpf"], default="auto",
                   help="ftrace (private tracefs instance), bpf (eBPF programs; --filter is"
                   " evaluated in user space) or auto (ftrace; bpf for --count without --filter)")
    p.set_defaults(accepts_command=True)


def join_spec_words(words: list[str]) -> list[str]:
    """Attach argument words (NAME=EXPR[:TYPE]) to the spec before them.

    ``u:libc:malloc size=arg0:u64`` may come as one word or as two.
    """
    out: list[str] = []
    for w in words:
        head = w.split("=", 1)[0]
        if out and "=" in w and head.isidentifier():
            out[-1] += " " + w
        else:
            out.append(w)
    return out


def split_command(args: argparse.Namespace) -> list[str]:
    """The COMMAND ARGS... given after '--' (split off in cli.main)."""
    return list(getattr(args, "command_argv", []) or [])


#: after ^C, how long a traced command may take to exit before it is killed
INT_GRACE = 2.0
#: after SIGTERM/SIGHUP (passed on to the command) or a closed output pipe (the
#: command gets SIGTERM): how long it may take to exit before SIGKILL
TERM_GRACE = 2.0


class RunControl:
    """The signals of one run, installed before the session exists.

    While the session exists it handles SIGTERM/SIGHUP itself (``SystemExit``) and
    routes SIGINT here (held back while it creates kernel objects). Phases:

    - ``startup``: SIGINT raises KeyboardInterrupt, SIGTERM/SIGHUP SystemExit(128+N);
      the session's ``with`` removes whatever it made.
    - ``running``: the first SIGINT stops tracing (what is buffered is still printed),
      a second one ends printing at once (:attr:`abort`) and kills the command.
    - ``waiting`` (the session is closed, the command still runs): SIGTERM/SIGHUP are
      noted in :attr:`signal` and passed on to the command; SIGINT as in ``running``.
    """

    def __init__(self) -> None:
        self.phase = "startup"
        self.session: Any = None
        self.interrupts = 0
        self.signal = 0
        self._old: dict[int, Any] = {}

    @property
    def abort(self) -> bool:
        """Two ^C: stop printing and do not wait for the command."""
        return self.interrupts >= 2

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                if sig == signal.SIGINT and not callable(signal.getsignal(sig)):
                    continue  # ignored (a background job): stays ignored
                self._old[sig] = signal.signal(sig, self._on_signal)
            except (ValueError, OSError):
                pass

    def restore(self) -> None:
        for sig, h in self._old.items():
            try:
                signal.signal(sig, h)
            except (ValueError, OSError, TypeError):
                pass
        self._old.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            if self.phase == "startup":
                raise KeyboardInterrupt
            self.interrupts += 1
            if self.interrupts == 1 and self.phase == "running" and self.session is not None:
                self.session.stop()  # the event loop drains what is buffered, then ends
            return
        if self.phase == "waiting":
            self.signal = self.signal or signum
            return
        raise SystemExit(128 + signum)


def run(args: argparse.Namespace) -> int:
    cmd = split_command(args)
    if cmd:
        resolve_command(cmd[0])  # nothing to run: one error, before anything is armed
    ctl = RunControl()
    ctl.install()
    std = sys.stdout
    try:
        return _run(args, cmd, ctl)
    finally:
        ctl.restore()
        if sys.stdout is not std:  # _signal_safe_stdout() put its own in place
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
            sys.stdout = std


def _start(s: Any, count_only: bool) -> None:
    if s.backend == "bpf":
        s.start(count_only=count_only)  # counts in the kernel when it can
    else:
        s.start()


def _run(args: argparse.Namespace, cmd: list[str], ctl: RunControl) -> int:
    from ..backends import open_session

    out = _signal_safe_stdout()
    specs = join_spec_words(args.specs)
    command: GatedCommand | None = None
    try:
        with open_session(args.backend, buffer_kb=args.buffer_kb, pids=args.pid,
                          comm=args.comm, counting=args.count, specs=specs,
                          user_filter=args.filter_expr) as s:
            for spec in specs:
                s.add(spec, filter=args.filter_expr)
            for w in s.warnings:
                print(f"probewatch: warning: {w}", file=sys.stderr)
            shown = len(s.warnings)
            if cmd:
                s.trace_command(cmd)
                command = s.command
            hexf = hex_fields(s.formats)
            _start(s, args.count)
            ctl.session = s
            ctl.phase = "running"
            batched = args.json and args.max_events is None and not args.count
            printed = dict.fromkeys(s.counts, 0)
            unwritten: list[Event] = []  # delivered (counted) but never written
            ended_by = 0  # SIGPIPE: output closed; SIGTERM/SIGHUP: told to stop
            try:
                if args.count:
                    s.count(duration=args.duration)
                elif batched:
                    write_many = JsonLinesSink(out).write_many
                    for batch in s.batches(duration=args.duration):
                        unwritten = batch
                        if ctl.abort:
                            break
                        write_many(batch)
                        unwritten = []
                else:
                    sink = JsonLinesSink(out) if args.json else TextSink(out, hex_fields=hexf)
                    write = sink.write
                    for ev in s.events(duration=args.duration, max_events=args.max_events):
                        if ctl.abort:
                            break
                        write(ev)
                        printed[ev.probe] += 1
                out.flush()
            except BrokenPipeError:
                ended_by = signal.SIGPIPE
                _silence_stdout()
            except SystemExit as e:  # SIGTERM/SIGHUP (the session's guard)
                if not isinstance(e.code, int) or e.code not in (143, 129):
                    raise
                ended_by = e.code - 128
            s.stop()
            for w in s.warnings[shown:]:  # what came up while tracing
                print(f"probewatch: warning: {w}", file=sys.stderr)
            summ = s.summary().to_dict()
            if batched:
                for ev in unwritten:
                    summ["events"][ev.probe] -= 1
            elif not args.count:
                summ["events"] = printed
            summ["total"] = sum(summ["events"].values())
            s.close()  # probes gone before any wait for the command
            ctl.phase = "waiting"
            print_summary(summ, args.json)
        if command is None:
            return 128 + ended_by if ended_by else 0
        return _finish_command(command, cmd[0], ctl, ended_by)
    finally:
        if command is not None and command.pid:  # an error or a second signal: never
            command.terminate(signal.SIGTERM, TERM_GRACE)  # leave it running untraced


def _finish_command(command: GatedCommand, name: str, ctl: RunControl, ended_by: int) -> int:
    """Wait for (or stop) the traced command once tracing is over; the exit status."""
    if ended_by:
        if command.exited():  # it had ended by itself: its status
            return command.returncode if command.returncode is not None else 128 + ended_by
        # a closed pipe: SIGTERM (the command may write elsewhere); else pass it on
        command.terminate(signal.SIGTERM if ended_by == signal.SIGPIPE else ended_by,
                          TERM_GRACE)
        return 128 + ended_by
    # tracing ended by ^C, the deadline, -n or the command's exit: wait for it, until
    # SIGTERM/SIGHUP (passed on) or ^C (a grace period; a second ^C cuts it short)
    while not command.wait_for(None, interrupted=lambda: bool(ctl.interrupts or ctl.signal)):
        if ctl.signal:
            command.terminate(ctl.signal, TERM_GRACE)
            return 128 + ctl.signal
        if not ctl.abort:
            print(f"probewatch: waiting {INT_GRACE:g}s for {name} (pid {command.pid}) to "
                  f"exit; ^C again kills it", file=sys.stderr)
            if command.wait_for(INT_GRACE, interrupted=lambda: bool(ctl.abort or ctl.signal)):
                break
            if ctl.signal:
                continue
        command.terminate(signal.SIGTERM, 1.0)
        return 128 + signal.SIGINT
    return command.returncode if command.returncode is not None else 0


class _WholeWrites(io.RawIOBase):
    """A raw writer on fd 1 whose write() always writes all it is given.

    CPython's BufferedWriter loses data when a signal handler that returns (^C stops
    tracing) runs while a write to a full pipe is partly done; a raw layer that never
    reports a partial write avoids that.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        total = len(view)
        while view:
            view = view[os.write(self._fd, view):]
        return total

    def close(self) -> None:  # fd 1 stays open
        super().close()


def _signal_safe_stdout() -> TextIO:
    """sys.stdout on :class:`_WholeWrites` (same encoding, errors and line buffering)."""
    std = sys.stdout
    try:
        fd = std.fileno()
    except (AttributeError, OSError, ValueError):
        return std  # not a real file (captured by a test harness)
    std.flush()
    out = io.TextIOWrapper(io.BufferedWriter(_WholeWrites(fd), 1 << 16),
                           encoding=std.encoding, errors=std.errors,
                           line_buffering=bool(getattr(std, "line_buffering", False)))
    sys.stdout = out
    return out


def _silence_stdout() -> None:
    """The reader of stdout is gone: what is still buffered goes to /dev/null."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


def print_summary(d: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"summary": d}), file=sys.stderr)
        return
    per = ", ".join(f"{k}: {v}" for k, v in d["events"].items())
    lost = d["lost"]
    msg = f"{d['total']} events ({per}) in {d['duration']:.2f}s, lost {lost}"
    if lost:
        msg += " (per CPU: " + ", ".join(f"cpu{c}={n}" for c, n in d["lost_per_cpu"].items()
                                         if n) + ")"
    print(msg, file=sys.stderr)
