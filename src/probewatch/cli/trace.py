"""probewatch trace: stream events of tracepoint specs."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from ..collect.command import GatedCommand, resolve_command
from ..event import Event
from ..sinks.jsonl import JsonLinesSink
from ..sinks.text import TextSink, hex_fields
from .runctl import TERM_GRACE, RunControl, finish_command, signal_safe_stdout, silence_stdout

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
        if sys.stdout is not std:  # signal_safe_stdout() put its own in place
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

    out = signal_safe_stdout()
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
                silence_stdout()
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
        return finish_command(command, cmd[0], ctl, ended_by)
    finally:
        if command is not None and command.pid:  # an error or a second signal: never
            command.terminate(signal.SIGTERM, TERM_GRACE)  # leave it running untraced


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
