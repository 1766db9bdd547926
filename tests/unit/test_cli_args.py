"""Numeric and name options of every command: edge cases refused with one clear message."""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

import pytest

from probewatch.cli import args as A
from probewatch.cli.main import build_parser, main

TRACING = ["trace", "record"]
BPF_TOOLS = ["execsnoop", "opensnoop", "syscalls", "syscount", "tcpconnect", "bashreadline"]
SPEC = {"trace": ["t:sched:sched_switch"], "record": ["t:sched:sched_switch"]}


def _argv(cmd: str, *opts: str) -> list[str]:
    return [cmd, *SPEC.get(cmd, []), *opts]


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as ei:
        build_parser().parse_args(argv)
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def _parsed(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


@pytest.mark.parametrize("cmd", TRACING + ["report"])
@pytest.mark.parametrize("n", ["0", "-1", "-100"])
def test_max_events_at_least_one(capsys: pytest.CaptureFixture[str], cmd: str, n: str) -> None:
    argv = _argv(cmd, "-n", n) if cmd != "report" else ["report", "x.db", "-n", n]
    msg = _refused(capsys, argv)
    assert "argument -n/--max-events: must be at least 1" in msg and f"(got {n})" in msg


@pytest.mark.parametrize("cmd", TRACING)
def test_max_events_not_a_number(capsys: pytest.CaptureFixture[str], cmd: str) -> None:
    assert "not a whole number: '1.5'" in _refused(capsys, _argv(cmd, "-n", "1.5"))
    assert _parsed(_argv(cmd, "-n", "1")).max_events == 1


@pytest.mark.parametrize("cmd", TRACING + BPF_TOOLS)
@pytest.mark.parametrize("d,why", [
    ("-1", "must be more than 0 seconds"), ("0", "must be more than 0 seconds"),
    ("nan", "must be a finite number of seconds"), ("inf", "must be a finite number"),
    ("-inf", "must be a finite number"), ("soon", "not a number of seconds"),
])
def test_duration(capsys: pytest.CaptureFixture[str], cmd: str, d: str, why: str) -> None:
    msg = _refused(capsys, _argv(cmd, f"--duration={d}"))
    assert "argument -d/--duration" in msg and why in msg
    assert _parsed(_argv(cmd, "-d", "0.25")).duration == 0.25


@pytest.mark.parametrize("cmd", TRACING + BPF_TOOLS)
def test_pid(capsys: pytest.CaptureFixture[str], cmd: str) -> None:
    # a pid that does not run is refused when tracing starts (test_abuse_output.py)
    assert "0 is the kernel's idle task" in _refused(capsys, _argv(cmd, "-p", "0"))
    assert "must be a process id of at least 1" in _refused(capsys, _argv(cmd, "-p", "-5"))
    assert "not a whole number: '12a'" in _refused(capsys, _argv(cmd, "-p", "12a"))
    assert _parsed(_argv(cmd, "-p", str(os.getpid()), "-p", "1")).pid == [os.getpid(), 1]


def test_report_and_list_pid(capsys: pytest.CaptureFixture[str]) -> None:
    assert _parsed(["report", "x.db", "-p", "4000000"]).pid == [4000000]  # need not run
    assert "idle task" in _refused(capsys, ["report", "x.db", "-p", "0"])
    assert "idle task" in _refused(capsys, ["list", "symbols", "libc", "-p", "0"])


@pytest.mark.parametrize("v,why", [("0", "at least 2"), ("-5", "at least 2"), ("1", "at least 2"),
                                   ("200000", "must be at most 4096")])
def test_arg_len(capsys: pytest.CaptureFixture[str], v: str, why: str) -> None:
    assert why in _refused(capsys, ["execsnoop", "--arg-len", v])
    assert _parsed(["execsnoop", "--arg-len", "4096"]).arg_len == 4096


@pytest.mark.parametrize("v,why", [("0", "at least 1"), ("-1", "at least 1"),
                                   ("2000", "must be at most 128")])
def test_max_args(capsys: pytest.CaptureFixture[str], v: str, why: str) -> None:
    assert why in _refused(capsys, ["execsnoop", "--max-args", v])
    assert _parsed(["execsnoop", "--max-args", "128"]).max_args == 128


def test_strsize(capsys: pytest.CaptureFixture[str]) -> None:
    assert "at least 0" in _refused(capsys, ["syscalls", "-s", "-1"])
    assert "must be at most 4096" in _refused(capsys, ["syscalls", "-s", "5000"])
    assert _parsed(["syscalls", "-s", "0"]).strsize == 0


def test_top(capsys: pytest.CaptureFixture[str]) -> None:
    assert "at least 0" in _refused(capsys, ["syscount", "-t", "-1"])
    assert "at least 0" in _refused(capsys, ["stats", "x.db", "--top", "-3"])
    assert _parsed(["syscount", "-t", "0"]).top == 0


@pytest.mark.parametrize("cmd", BPF_TOOLS)
def test_uid(capsys: pytest.CaptureFixture[str], cmd: str) -> None:
    assert "at least 0" in _refused(capsys, [cmd, "-u", "-1"])
    assert "at most 4294967294" in _refused(capsys, [cmd, "-u", "4294967295"])
    assert _parsed([cmd, "-u", "0"]).uid == 0


def test_buffer_kb(capsys: pytest.CaptureFixture[str]) -> None:
    mem = A.mem_total_kb()
    ncpu = os.cpu_count() or 1
    for cmd in TRACING:
        msg = _refused(capsys, _argv(cmd, "--buffer-kb", "4000000000"))
        assert "more than 1/4 of this machine's memory" in msg
        assert f"at most {mem // 4 // ncpu} KiB" in msg
        assert "at least 1 KiB" in _refused(capsys, _argv(cmd, "--buffer-kb", "0"))
        assert _parsed(_argv(cmd, "--buffer-kb", "1024")).buffer_kb == 1024
    if mem // 4 // ncpu < 4000000:  # the example: 8 GB on 2 CPUs
        assert "at most" in _refused(capsys, _argv("trace", "--buffer-kb", "4000000"))


@pytest.mark.parametrize("cmd", BPF_TOOLS)
def test_ringbuf_kb(capsys: pytest.CaptureFixture[str], cmd: str) -> None:
    msg = _refused(capsys, [cmd, "--ringbuf-kb", "4000000000"])
    assert "more than 1/4 of this machine's memory" in msg
    assert "at least 4 KiB" in _refused(capsys, [cmd, "--ringbuf-kb", "0"])
    cap = int(msg.rsplit("at most ", 1)[1].split()[0])
    assert cap & (cap - 1) == 0  # the kernel rounds ring buffers up to a power of two
    assert cap <= A.mem_total_kb() // 4


@pytest.mark.parametrize("cmd", TRACING + BPF_TOOLS)
def test_comm_cut_to_the_kernels_length(capsys: pytest.CaptureFixture[str], cmd: str) -> None:
    opt = "-c" if cmd in TRACING else "--comm"
    a = _parsed(_argv(cmd, opt, "a-very-long-process-name"))
    assert a.comm == "a-very-long-pro"  # 15 bytes, as the kernel keeps it
    err = capsys.readouterr().err
    assert "warning: comm 'a-very-long-process-name' is longer than the kernel's 15-byte" in err
    assert _parsed(_argv(cmd, opt, "exactly15bytes!")).comm == "exactly15bytes!"
    assert capsys.readouterr().err == ""
    # cut on a character boundary: 9 x 'é' are 18 bytes, 7 fit in 15
    assert _parsed(_argv(cmd, opt, "é" * 9)).comm == "é" * 7
    assert "must not be empty" in _refused(capsys, _argv(cmd, opt, ""))


def test_count_with_max_events_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "t:sched:sched_switch", "--count", "-n", "5"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("probewatch: error: -n limits the events printed and --count "
                           "prints none: give one of them")


def test_int_range_helper() -> None:
    t = A.int_range(3, 7, "why")
    assert t("3") == 3 and t("7") == 7
    with pytest.raises(argparse.ArgumentTypeError, match=r"at most 7 \(why\) \(got 8\)"):
        t("8")
    with pytest.raises(argparse.ArgumentTypeError, match="not a whole number"):
        t("0x5")


# ------------------------------------------------------------------ -h examples


def _help_examples() -> list[str]:
    """Every `probewatch ...` example line of the top-level and every subcommand's -h
    (an example cut over two lines is joined), without its description."""
    import shlex

    from probewatch.cli.main import build_parser

    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    texts = [p.format_help()] + [sp.format_help() for sp in sub.choices.values()]
    out: list[str] = []
    for text in texts:
        lines = text.splitlines()
        i = 0
        while i < len(lines):
            ln = lines[i]
            i += 1
            if not ln.startswith("  probewatch "):
                continue
            cmd = re.split(r"\s{2,}", ln.strip())[0]
            while cmd.endswith("\\") and i < len(lines):  # a shell line continuation
                cmd = cmd[:-1].rstrip() + " " + re.split(r"\s{2,}", lines[i].strip())[0]
                i += 1
            while True:
                try:
                    shlex.split(cmd)
                    break
                except ValueError:  # an open quote: the example goes on on the next line
                    cmd += " " + lines[i].strip()
                    i += 1
            out.append(cmd)
    return out


EXAMPLES = _help_examples()


def test_help_has_examples() -> None:
    assert len(EXAMPLES) >= 60
    assert "probewatch doctor" in EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_help_example_parses(example: str) -> None:
    """Each example of every -h parses with today's options and spec grammar (so no
    example names an option or a spec form that is gone). The shell around it (pipes
    to jq, `;` sequences, redirections) is cut off."""
    import shlex

    from probewatch.cli.trace import join_spec_words
    from probewatch.sources.spec import parse_spec

    words = shlex.split(example, posix=True)
    for stop in ("|", ">"):
        if stop in words:
            words = words[: words.index(stop)]
    # `A; B`: each command of the sequence is checked
    cmds: list[list[str]] = [[]]
    for w in words:
        if w.endswith(";"):
            if w != ";":
                cmds[-1].append(w[:-1])
            cmds.append([])
        else:
            cmds[-1].append(w)
    parsed = [_check_example(example, cmd, parse_spec, join_spec_words) for cmd in cmds if cmd]
    # every command of the example is a subcommand that runs (a func), at least one
    assert parsed and all(callable(ns.func) and ns.command == cmd[1]
                          for ns, cmd in zip(parsed, [c for c in cmds if c], strict=True)), parsed


def _check_example(example: str, words: list[str], parse_spec: Any,
                   join_spec_words: Any) -> argparse.Namespace:
    from probewatch.cli.main import build_parser

    assert words[0] == "probewatch", example
    words, command = words[1:], []
    if "--" in words:  # as main() does: the command is split off before argparse
        i = words.index("--")
        words, command = words[:i], words[i + 1:]
        assert command, example
    try:
        ns = build_parser().parse_args(words)
    except SystemExit as e:
        pytest.fail(f"{example!r} does not parse (exit {e.code})")
    assert not command or getattr(ns, "accepts_command", False), example
    if ns.command in ("trace", "record"):
        for spec in join_spec_words(ns.specs):
            if spec.strip() != "marker":  # the session's name for the mark events
                parse_spec(spec)
    return ns
