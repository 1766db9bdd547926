"""probewatch trace: stream events of tracepoint specs."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from typing import Any

from ..collect.command import GatedCommand, resolve_command
from ..event import Event, EventRun, expand
from ..sinks.jsonl import JsonLinesSink
from ..sinks.text import TextSink, hex_fields
from ..sinks.writer import Deadline, Out, OutputCut
from . import trace_agg
from .args import (
    buffer_kb_arg,
    comm_arg,
    count_arg,
    duration_arg,
    live_pid_arg,
    refuse,
    warn,
)
from .runctl import TERM_GRACE, RunControl, finish_command, output_end

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
  probewatch trace marker t:syscalls:sys_enter_write -- python3 app.py
                                    probewatch.mark() calls in line with the syscalls

specs: t:SYSTEM:NAME (tracepoint), u:/ur:TARGET:SYMBOL[+OFF] (uprobe/uretprobe),
U:TARGET:[PROVIDER:]NAME (USDT), k:/kr:FUNC (kprobe/kretprobe); globs (* ? [..]) expand;
marker (= t:ftrace:print + t:ftrace:raw_data: trace_marker writes of any process).
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
        epilog=EXAMPLES + "\n" + trace_agg.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(p)
    trace_agg.add_options(p)
    p.add_argument("--stack", choices=["user", "kernel", "both"],
                   help="each event with its stack, symbolized (JSON: fields.stack, a list of"
                   " {addr, symbol, offset, module}; text: one frame a line, as perf script):"
                   " perf and bpf take every kind, ftrace kernel stacks only; auto picks perf")
    p.set_defaults(func=run)


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="+", metavar="SPEC", help="probe spec, e.g. t:sched:sched_switch")
    p.add_argument("-p", "--pid", type=live_pid_arg, action="append", default=[],
                   help="trace only this process (its threads and children); repeatable")
    p.add_argument("-c", "--comm", type=comm_arg,
                   help="trace only tasks with this comm (in-kernel filter; the kernel keeps"
                   " 15 bytes, a longer name is cut)")
    p.add_argument("--filter", dest="filter_expr", help="tracefs filter expression, in-kernel")
    p.add_argument("-d", "--duration", type=duration_arg, metavar="SECS",
                   help="stop after SECS seconds")
    p.add_argument("-n", "--max-events", type=count_arg, metavar="MAX",
                   help="stop after MAX events")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout")
    p.add_argument("--count", action="store_true", help="count events only; print the summary")
    p.add_argument("--buffer-kb", type=buffer_kb_arg(per_cpu=True),
                   help="per-CPU ring buffer size in KiB (at most a quarter of RAM in all)")
    p.add_argument("--spool-mb", type=int, metavar="MB",
                   help="ftrace: the most raw pages held for a consumer that falls behind "
                   "(default: 256 MiB or 1/16 of RAM, whichever is smaller; record: a "
                   "quarter of the free disk space, spooled next to the capture); when full, the "
                   "kernel drops events and counts them")
    p.add_argument("--backend", choices=["auto", "ftrace", "perf", "bpf"], default="auto",
                   help="ftrace (private tracefs instance), perf (perf_event rings; fd-based"
                   " uprobes), bpf (eBPF programs; --filter is evaluated in user space) or"
                   " auto (picked by kernel features and measured speed; see backends.py)")
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


def run(args: argparse.Namespace) -> int:
    refuse(args.count and args.max_events is not None,
           "-n limits the events printed and --count prints none: give one of them")
    refuse(args.count and getattr(args, "stack", None) is not None,
           "--stack shows each event's stack and --count prints no events: give one of them")
    cmd = split_command(args)
    if cmd:
        resolve_command(cmd[0])  # nothing to run: one error, before anything is armed
    ctl = RunControl()
    ctl.install()
    try:
        return _run(args, cmd, ctl)
    finally:
        ctl.restore()


def _start(s: Any, count_only: bool) -> None:
    if s.backend in ("bpf", "perf"):
        s.start(count_only=count_only)  # counts in the kernel when it can
    else:
        s.start()


def _run(args: argparse.Namespace, cmd: list[str], ctl: RunControl) -> int:
    from ..backends import open_session

    # Out writes whole buffers straight to the descriptor (no BufferedWriter that a
    # returning signal handler could cut short) and never raises on encoding
    out = Out(sys.stdout)
    ctl.out = out  # after SIGTERM/SIGHUP, writes give up after a grace period
    specs = join_spec_words(args.specs)
    command: GatedCommand | None = None
    agg = None
    if trace_agg.wanted(args):  # --hist/--by/--top/--latency: aggregate, print no events
        agg, specs = trace_agg.make(args, specs)
    try:
        with open_session(args.backend, buffer_kb=args.buffer_kb, pids=args.pid,
                          comm=args.comm, counting=args.count, specs=specs,
                          kernel_agg=agg is not None and trace_agg.kernel_candidate(args),
                          user_filter=args.filter_expr, spool_mb=args.spool_mb,
                          stack=getattr(args, "stack", None)) as s:
            for spec in specs:
                s.add(spec, filter=args.filter_expr)
            for w in s.warnings:
                print(f"probewatch: warning: {w}", file=sys.stderr)
            shown = len(s.warnings)
            if cmd:
                s.trace_command(cmd)
                command = s.command
            hexf = hex_fields(s.formats)
            ended_by = 0  # SIGPIPE: output closed; SIGTERM/SIGHUP: told to stop
            shown_events = _Shown()
            try:
                if args.count:
                    # SIGTERM/SIGHUP from then on: stop, count what was read, 143/129
                    ctl.begin(s, lambda: _start(s, True), s.command)
                    s.count(duration=args.duration)
                elif agg is not None:
                    trace_agg.run(s, args, agg, out, ctl)
                else:
                    sink = JsonLinesSink(out) if args.json else TextSink(out, hex_fields=hexf)
                    stream(s, args, out, sink.write, ctl, shown_events)
                out.flush()
            except (BrokenPipeError, SystemExit) as e:
                ended_by = output_end(e)
            s.stop()
            ended_by = ended_by or ctl.signal  # SIGTERM/SIGHUP after take_term()
            _uncount(s, shown_events.pending)  # delivered (counted) but never written
            for w in s.warnings[shown:]:  # what came up while tracing
                print(f"probewatch: warning: {w}", file=sys.stderr)
            summ = s.summary().to_dict()
            summ["total"] = sum(summ["events"].values())
            s.close()  # probes gone before any wait for the command
            ctl.phase = "waiting"
            print_summary(summ, args.json)
        if command is None:
            ended_by = ended_by or ctl.signal
            return 128 + ended_by if ended_by else 0
        return finish_command(command, cmd[0], ctl, ended_by)
    finally:
        if command is not None and command.pid:  # an error or a second signal: never
            command.terminate(signal.SIGTERM, TERM_GRACE)  # leave it running untraced


class _Shown:
    """The events handed to the sink whose write has not returned yet."""

    def __init__(self) -> None:
        self.pending: list[Event | EventRun] = []


def _uncount(s: Any, items: list[Any]) -> None:
    """Take events (and runs of them) out of the session's counts: not shown after all."""
    for ev in items:
        s.counts[ev.probe] -= len(ev.tss) if type(ev) is EventRun else 1


def stream(s: Any, args: argparse.Namespace, out: Out, write: Callable[[Event], None],
           ctl: RunControl, shown: _Shown) -> None:
    """Events to the sink until -d, -n, the command's end, ^C or stop().

    With -d, nothing stamped after the deadline is printed (nor counted), and a reader
    of stdout that has not taken the output by shortly after it does not hold the run
    up: what it did not take is dropped with a warning. The session's counts are kept
    equal to what was printed (events cut by -d, -n or a second ^C are taken out).
    """
    # SIGTERM/SIGHUP from then on: stop; what was read is still printed (and counted)
    ctl.begin(s, lambda: _start(s, False), s.command)
    dl = Deadline(args.duration, s.clock)
    dl.arm(out)
    write_many = JsonLinesSink(out).write_many if args.json else None
    runs = write_many is not None and hasattr(s, "deliver_runs")
    if runs:
        s.deliver_runs = True  # pages of one event type come as columns: cheaper
    left = args.max_events
    try:
        for batch in s.batches(duration=args.duration):
            if runs and any(type(x) is EventRun for x in batch):
                # -d or -n may cut the batch inside a run: cut Events instead
                n = sum(len(x.tss) if type(x) is EventRun else 1 for x in batch)
                if (left is not None and n > left) or dl.late(
                        getattr(batch[-1], "last", batch[-1].ts)):
                    batch = expand(batch)
            k = 0 if ctl.abort else dl.on_time(batch)
            if left is not None:
                k = min(k, left)
            shown.pending = batch[:k]
            if write_many is not None:
                write_many(shown.pending)
            else:
                for ev in shown.pending:  # runs only come with write_many
                    write(ev)  # type: ignore[arg-type]
            out.flush()  # a batch out at once: a lone event is not held in a buffer
            shown.pending = []
            if left is not None:
                left -= sum(len(x.tss) if type(x) is EventRun else 1 for x in batch[:k])
            if k < len(batch) or left == 0 or ctl.abort:  # the rest is not shown
                _uncount(s, batch[k:])
                s.stop()
                break
        out.flush()
    except OutputCut as e:
        s.stop()
        shown.pending = []  # counted by the cut: the summary says how many lines
        warn(f"{e.lines} lines were not written: the reader of the output did not take "
             "them " + ("in time after " + signal.Signals(ctl.signal).name if ctl.signal
                        else "before the end of -d"))
    finally:
        out.set_cutoff(None)


def print_summary(d: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"summary": d}), file=sys.stderr)
        return
    per = ", ".join(f"{k}: {v}" for k, v in d["events"].items())
    lost = d["lost"]
    msg = f"{d['total']} events ({per}) in {d['duration']:.2f}s, lost {lost}"
    if lost:
        msg += " (" + lost_text(d) + ")"
    if (d.get("aggregation") or {}).get("in") == "kernel":
        msg += ", aggregated in the kernel"
    print(msg, file=sys.stderr)


def lost_text(d: dict) -> str:
    """Where the summary ``d``'s losses were: per probe where the events around each gap
    said whose they were, the rest per CPU only (the kernel counts losses per CPU)."""
    by_probe = d.get("lost_per_probe") or {}
    cpu_only = d.get("lost_per_cpu_only")
    if cpu_only is None:  # a summary without attribution: all per CPU
        cpu_only = d["lost_per_cpu"]
    parts = [f"{p}: {n}" for p, n in by_probe.items() if n]
    rest = ", ".join(f"cpu{c}={n}" for c, n in cpu_only.items() if n)
    if rest:
        parts.append(("per CPU, not attributable to a probe: " if by_probe else "per CPU: ")
                     + rest)
    return "; ".join(parts)
