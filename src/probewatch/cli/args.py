"""argparse types and checks for the options every command shares: one message each.

A type raises ``argparse.ArgumentTypeError``, which argparse prints as
``probewatch CMD: error: argument -n/--max-events: must be at least 1 (got 0)``.

Example::

    p.add_argument("-n", "--max-events", type=count_arg)
    p.add_argument("-d", "--duration", type=duration_arg)
    p.add_argument("-p", "--pid", type=live_pid_arg, action="append", default=[])
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable

from ..errors import ProbewatchError

#: the kernel's TASK_COMM_LEN is 16 bytes with the NUL
COMM_LEN = 15
#: what the BPF programs can read (probewatch.h: PW_ARGV_CAP, PW_STR_MAX)
MAX_ARGS = 128
MAX_ARG_LEN = 4096
MAX_STRSIZE = 4096
#: kernel buffers may take at most this share of the machine's memory
MEM_SHARE = 4


def _int(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def int_range(lo: int, hi: int | None = None, why: str = "") -> Callable[[str], int]:
    """A type: a whole number in [lo, hi] (hi None: no upper bound)."""

    def parse(text: str) -> int:
        v = _int(text)
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo} (got {v})")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(
                f"must be at most {hi}{' (' + why + ')' if why else ''} (got {v})")
        return v

    parse.__name__ = "int"  # argparse names the type in its "invalid int value" message
    return parse


#: -n/--max-events: how many events to print
count_arg = int_range(1)
#: --top: rows to show (0: all)
top_arg = int_range(0)
#: execsnoop --max-args
max_args_arg = int_range(1, MAX_ARGS, "the BPF program reads at most this many entries")
#: execsnoop --arg-len (bytes per entry, with its NUL)
arg_len_arg = int_range(2, MAX_ARG_LEN, "PATH_MAX, the most the BPF program reads per entry")
#: syscalls -s/--strsize
strsize_arg = int_range(0, MAX_STRSIZE, "the most the BPF program copies per buffer")
#: -u/--uid
uid_arg = int_range(0, 0xFFFFFFFE, "uid_t; 4294967295 is (uid_t)-1, no user")


def duration_arg(text: str) -> float:
    """-d SECS: a finite number of seconds greater than 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds (got {text})")
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds (got {text})")
    return v


def pid_arg(text: str) -> int:
    """A process id: a whole number of at least 1 (0 is the idle task, not a process).

    Whether the process runs is checked when tracing starts, by the session ("no process
    with pid N"): a capture's pids (report -p) need not run any more.
    """
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(
            f"must be a process id of at least 1 (got {v}; 0 is the kernel's idle task)")
    return v


#: -p of the tracing commands (the sessions refuse a pid that does not run)
live_pid_arg = pid_arg


def comm_arg(text: str) -> str:
    """A comm to match: the kernel keeps 15 bytes, so a longer name is cut with a warning."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) <= COMM_LEN:
        return text
    cut = raw[:COMM_LEN]
    while cut:  # keep whole characters: the filters are written as UTF-8 text
        try:
            short = cut.decode("utf-8")
            break
        except UnicodeDecodeError:
            cut = cut[:-1]
    else:
        short = cut.decode("utf-8", "surrogateescape")
    from ..decode.escape import escape_text

    warn(f"comm {escape_text(text)!r} is longer than the kernel's {COMM_LEN}-byte comm: "
         f"matching {escape_text(short)!r}")
    return short


def mem_total_kb() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def buffer_kb_arg(per_cpu: bool, lo: int = 1, pow2: bool = False) -> Callable[[str], int]:
    """A type: a kernel buffer size in KiB, at most 1/MEM_SHARE of RAM in total
    (``per_cpu``: the size is per CPU, as tracefs' buffer_size_kb; ``pow2``: the kernel
    rounds it up to a power of two, as for BPF ring buffers)."""

    def parse(text: str) -> int:
        v = _int(text)
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo} KiB (got {v})")
        ncpu = (os.cpu_count() or 1) if per_cpu else 1
        mem = mem_total_kb()
        cap = mem // MEM_SHARE // ncpu if mem else 0
        if pow2 and cap:
            cap = 1 << (cap.bit_length() - 1)  # the largest power of two within the share
        if cap and v > cap:
            per = f" per CPU x {ncpu} CPUs" if per_cpu else ""
            raise argparse.ArgumentTypeError(
                f"{v} KiB{per} is more than 1/{MEM_SHARE} of this machine's memory "
                f"({mem // 1024} MiB); at most {cap} KiB")
        return v

    parse.__name__ = "int"
    return parse


def refuse(cond: bool, message: str) -> None:
    """A check across options (after parsing): one clear error."""
    if cond:
        raise ProbewatchError(message)


def warn(message: str) -> None:
    print(f"probewatch: warning: {message}", file=sys.stderr)


__all__ = [
    "count_arg", "top_arg", "max_args_arg", "arg_len_arg", "strsize_arg", "uid_arg",
    "duration_arg", "pid_arg", "live_pid_arg", "comm_arg", "buffer_kb_arg", "int_range",
    "refuse", "warn", "COMM_LEN", "MAX_ARGS", "MAX_ARG_LEN",
]
