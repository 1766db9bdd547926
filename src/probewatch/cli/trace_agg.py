"""probewatch trace --hist / --by / --top / --latency: aggregate instead of printing events.

The options, their checks, and the loop that feeds a session's batches into an
:class:`probewatch.analyze.aggregate.Aggregator`; printing at the end, or every
``-i SECS`` (``--top``: a live table with rich on a terminal, plain text otherwise;
``--json``: one JSON object per line, ``{"aggregate": {...}}``).

Where it is computed: on the bpf backend in the kernel (BPF maps, :mod:`probewatch.bpf_agg`)
when every key and value can be read there and no ``--filter``, ``-n`` or ``--stack``
needs the events; ``--agg-in user`` forces user space, ``--agg-in kernel`` makes the
run fail instead of falling back. On ftrace and perf (and what the kernel cannot take:
string keys other than comm, ...) the events are aggregated here, in user space; the
output is the same either way. ``--by probe`` alone is counted in the kernel on bpf and
perf (the session's counting path).
"""

from __future__ import annotations

import _thread
import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..analyze.aggregate import (
    EVENT_ATTRS,
    NUMERIC_ATTRS,
    AggregateError,
    Aggregator,
    pair_specs,
    parse_hist,
    parse_keys,
)
from ..sinks.writer import Deadline, Out
from .args import count_arg, duration_arg, refuse, warn
from .runctl import RunControl

#: --top without -i refreshes this often (seconds)
DEFAULT_INTERVAL = 1.0
#: --top without --by groups by this
DEFAULT_TOP_KEY = "comm"

HELP = """aggregations (instead of printing events):
  --hist size                     log2 histogram of a field (bpftrace's hist() layout)
  --hist size:linear=64 --by comm linear histogram, one per comm
  --by comm                       event count per comm; --by pid --value size: count/sum/avg
  --top 10 -i 2                   a table of the 10 busiest keys, refreshed every 2 s
  --latency t:syscalls:sys_enter_read    read() durations (sys_exit_read is added), ns log2
  --latency 'u:libc:malloc'       malloc() durations per thread (ur:libc:malloc is added)
"""


def add_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("aggregations (in BPF maps in the kernel on the bpf backend, "
                             "else in user space; see the examples)")
    g.add_argument("--hist", metavar="FIELD[:log2|:linear=STEP]",
                   help="a histogram of FIELD (default log2) instead of the events")
    g.add_argument("--by", metavar="KEY[,KEY]",
                   help="group by KEY: comm, pid, tid, cpu, event, probe or a field; "
                   "prints count (and sum, avg of --value) per key")
    g.add_argument("--value", metavar="FIELD", help="with --by: sum and average FIELD")
    g.add_argument("--top", type=count_arg, metavar="N",
                   help="a live table of the N keys with most events (--by, default "
                   f"{DEFAULT_TOP_KEY}), refreshed every -i SECS (default {DEFAULT_INTERVAL:g})")
    g.add_argument("-i", "--interval", type=duration_arg, metavar="SECS",
                   help="print (and reset) the aggregation every SECS seconds")
    g.add_argument("--latency", action="store_true",
                   help="durations of enter/exit pairs per thread as a log2 histogram in ns:"
                   " sys_enter_X/sys_exit_X, u:T:F/ur:T:F (the exit end is added)")
    g.add_argument("--agg-in", choices=["auto", "kernel", "user"], default="auto",
                   help="where to aggregate: kernel (BPF maps; bpf backend), user (from the"
                   " events) or auto (the kernel when it can; then auto picks bpf)")
    g.add_argument("--agg-keys", type=count_arg, metavar="N",
                   help="in the kernel: the most keys (map entries) kept, default 10240 (and"
                   " --latency: threads inside a pair); events of keys that do not fit are"
                   " counted (overflow), not lost silently")


def wanted(args: argparse.Namespace) -> bool:
    """Whether any aggregation option was given (else trace prints events)."""
    return any(getattr(args, k, None) for k in ("hist", "by", "value", "top", "interval",
                                                 "latency"))


def make(args: argparse.Namespace, specs: list[str]) -> tuple[Aggregator, list[str]]:
    """Check the options (before anything is armed): the aggregator and the specs to arm."""
    refuse(args.count, "--count prints only the summary; --hist/--by/--top/--latency "
           "aggregate the events: give one of them")
    refuse(args.top is not None and args.hist is not None,
           "--top shows a table of --by keys and --hist histograms: give one of them")
    refuse(args.interval is not None and not (args.hist or args.by or args.top or args.latency
                                              or args.value),
           "-i SECS prints an aggregation every SECS: give --hist, --by, --top or --latency")
    refuse(args.value is not None and args.hist is not None,
           "--hist FIELD is the value already: drop --value or --hist")
    refuse(args.value is not None and args.latency,
           "--latency measures durations: it takes no --value")
    refuse(args.hist is not None and args.latency,
           "--latency is a log2 histogram of durations already: drop --hist")
    refuse(args.value is not None and not (args.by or args.top),
           "--value FIELD sums per key: give --by KEY (or --hist FIELD for a histogram)")
    if args.latency:
        specs = pair_specs(specs)
    keys = parse_keys(args.by) if args.by else []
    if args.top is not None and not keys and not args.latency:
        keys = [DEFAULT_TOP_KEY]
    field, scale, step = parse_hist(args.hist) if args.hist else (args.value, None, 0)
    agg = Aggregator(value=field, hist=scale, step=step, keys=keys, latency=args.latency)
    return agg, specs


def check_fields(agg: Aggregator, formats: list[Any]) -> None:
    """Every field the aggregation names is a field of a traced event (clear error if not)."""
    have = {f.name for fmt in formats for f in fmt.fields}
    shown = sorted(n for n in have if not n.startswith("__")) or ["(none)"]
    for k in agg.keys:
        if k not in EVENT_ATTRS and k not in have:
            raise AggregateError(
                f"--by {k}: no traced event has a field {k!r}; keys: "
                f"{', '.join(EVENT_ATTRS)} or a field ({', '.join(shown)})")
    v = agg.value
    if v is not None and v not in NUMERIC_ATTRS and v not in have:
        opt = "--hist" if agg.hist else "--value"
        raise AggregateError(
            f"{opt} {v}: no traced event has a field {v!r}; fields: {', '.join(shown)}"
            " (or pid, tid, cpu); name one with the spec, e.g. 'u:libc:malloc size=arg0:u64'")


class _Printer:
    """Prints the aggregation (text, JSON, or a rich live table) and resets it per interval."""

    def __init__(self, agg: Aggregator, args: argparse.Namespace, out: Out) -> None:
        self.agg = agg
        self.out = out
        self.json = args.json
        self.top = args.top
        self.interval = args.interval or (DEFAULT_INTERVAL if args.top else None)
        self.lock = threading.Lock()
        self.n = 0
        self.error: BaseException | None = None
        #: aggregating in the kernel: reads the maps into agg (before each print)
        self.fill: Any = None
        self.live: Any = None
        if self.top is not None and self.interval and not self.json and out.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(console=Console(file=sys.stdout), auto_refresh=False)

    def show(self, final: bool) -> None:
        """Print what was aggregated (under the lock); with -i reset it."""
        agg = self.agg
        if self.fill is not None:
            self.fill()
        if self.json:
            d = agg.to_dict()
            if self.interval:
                d["interval"] = self.n
                d["time"] = round(time.time(), 3)
            self.out.write(json.dumps({"aggregate": d}) + "\n")
        elif self.live is not None:
            self.live.update(self._rich_table(), refresh=True)
        else:
            text = (agg.render_text() if self.top is None
                    else "\n".join(agg.table(self.top)) + "\n")
            if self.interval:
                text = time.strftime("%H:%M:%S") + "\n" + text + "\n"
            self.out.write(text)
        self.out.flush()
        self.n += 1
        if self.interval and not final:
            agg.reset()

    def _rich_table(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        header, rows = self.agg.table_rows(self.top)
        t = Table()
        nk = len(header) - (3 if len(header) > 1 and header[-1] == "AVG" else 1)
        for i, h in enumerate(header):
            t.add_column(h, justify="left" if i < nk else "right")
        for r in rows:
            t.add_row(*r)
        title = (f"probewatch trace --top {self.top}  {time.strftime('%H:%M:%S')}  "
                 f"({self.agg.events} events in the last {self.interval:g} s)")
        return Group(Text(title, style="bold"), t)

    def tick(self, stop: threading.Event) -> None:
        assert self.interval
        while not stop.wait(self.interval):
            try:
                with self.lock:
                    self.show(final=False)
            except BaseException as e:  # a closed pipe: end the run as ^C would
                self.error = e
                _thread.interrupt_main(signal.SIGINT)
                return


def kernel_candidate(args: argparse.Namespace) -> bool:
    """Whether the options leave the aggregation to the kernel if the backend can
    (``auto`` then prefers bpf)."""
    return (getattr(args, "agg_in", "auto") != "user" and not args.filter_expr
            and args.max_events is None and getattr(args, "stack", None) is None)


def _in_kernel(s: Any, agg: Aggregator, args: argparse.Namespace) -> bool:
    """Arm the in-kernel aggregation when the session can take it (see the module)."""
    want = getattr(args, "agg_in", "auto")
    if want == "user":
        return False
    why: str | None
    if not hasattr(s, "aggregate_in_kernel"):
        why = f"the {s.backend} backend aggregates in user space (use --backend bpf)"
    elif args.filter_expr:
        why = "the bpf backend evaluates --filter in user space"
    elif args.max_events is not None:
        why = "-n needs the events"
    else:
        why = s.aggregate_in_kernel(agg, getattr(args, "agg_keys", None))
    if why is not None and want == "kernel":
        raise AggregateError(f"--agg-in kernel: cannot aggregate in the kernel: {why}")
    return why is None


def counted_in_kernel(agg: Aggregator, args: argparse.Namespace) -> bool:
    """Whether the aggregation is a count per probe (``--by probe``), which the
    session's counting path takes without building events (bpf and perf count in the
    kernel)."""
    return (agg.keys == ["probe"] and agg.value is None and not agg.latency
            and args.interval is None and args.top is None and args.max_events is None)


def run(s: Any, args: argparse.Namespace, agg: Aggregator, out: Out, ctl: RunControl) -> None:
    """Feed the session's events into agg until -d, -n, the command's end or ^C; print."""
    check_fields(agg, s.formats)
    pr = _Printer(agg, args, out)
    if counted_in_kernel(agg, args):
        if s.backend in ("bpf", "perf"):
            s.start(count_only=True)
        else:
            s.start()
        ctl.session = s
        ctl.phase = "running"
        counts = s.count(duration=args.duration)
        if ctl.interrupts:  # ^C stopped it: count what is still buffered
            counts = s.count()
        agg.events = sum(counts.values())
        agg.stats = {p: [n, 0, None] for p, n in counts.items() if n}
        pr.show(final=True)
        return
    if _in_kernel(s, agg, args):
        _run_in_kernel(s, args, agg, pr, ctl)
        return
    s.start()
    ctl.session = s
    ctl.phase = "running"
    dl = Deadline(args.duration, s.clock)  # what is stamped after -d is not aggregated
    dl.arm()
    left = args.max_events
    with _printing(pr):
        for batch in s.batches(duration=args.duration):
            k = 0 if ctl.abort else dl.on_time(batch)
            if left is not None:
                k = min(k, left)
                left -= k
            cut = k < len(batch)
            if cut:
                s.uncount(batch[k:])  # not aggregated: not counted
                batch = batch[:k]
            with pr.lock:
                agg.add(batch)
            if cut or left == 0 or ctl.abort or pr.error is not None:
                s.stop()
                break
        if pr.error is not None:
            raise pr.error
        with pr.lock:
            if not ctl.abort and (not pr.interval or agg.events or pr.n == 0):
                pr.show(final=True)


@contextlib.contextmanager
def _printing(pr: _Printer) -> Iterator[Callable[[], None]]:
    """The live table and the -i ticker while the body runs; yields a function that
    stops the ticker early (before a last read of the aggregation)."""
    stop = threading.Event()
    ticker = None
    if pr.live is not None:
        pr.live.start()
    if pr.interval:
        ticker = threading.Thread(target=pr.tick, args=(stop,), daemon=True)
        ticker.start()

    def halt() -> None:
        stop.set()
        if ticker is not None:
            ticker.join()

    try:
        yield halt
    finally:
        halt()
        if pr.live is not None:
            pr.live.stop()  # the cursor back, even on an error


def _run_in_kernel(s: Any, args: argparse.Namespace, agg: Aggregator, pr: _Printer,
                   ctl: RunControl) -> None:
    """The BPF programs aggregate; this waits (-d, the command's end, ^C) and prints
    (every -i, reading the maps each time)."""
    s.start(count_only=True)
    ctl.session = s
    ctl.phase = "running"
    pr.fill = lambda: s.kernel_aggregate(agg)
    with _printing(pr) as halt:
        s.count(duration=args.duration)
        if ctl.interrupts:  # ^C stopped it: what was aggregated is in the maps
            s.count()
        halt()
        if pr.error is not None:
            raise pr.error
        with pr.lock:
            pr.fill()
            if not ctl.abort and (not pr.interval or agg.events or pr.n == 0):
                pr.show(final=True)
        n = s.summary().aggregation or {}
        if n.get("overflow") or n.get("start_overflow"):
            warn(f"{n['overflow']} events did not fit the in-kernel map of {n['max_keys']} "
                 f"keys and {n['start_overflow']} latency enters the map of threads: they "
                 "are not in the aggregation (raise --agg-keys)")
