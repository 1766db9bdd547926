"""probewatch.decode.tracetext: the text trace_pipe reader, on lines recorded from
Linux 6.18 (tests/fixtures/text, see capture_text.py) and on synthetic ones."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probewatch.decode.format import EventFormat, parse_format, parse_page_layout
from probewatch.decode.ringbuf import PageDecoder
from probewatch.decode.tracetext import (
    P_DSTR,
    P_NONE,
    P_NUM,
    P_NUM1,
    P_PTRSTR,
    P_SSTR,
    LostEvents,
    TextDecoder,
    print_kind,
)
from probewatch.errors import DecodeError
from probewatch.event import Event

TEXT = Path(__file__).resolve().parent.parent / "fixtures" / "text"
FAST = settings(
    max_examples=int(os.environ.get("PROBEWATCH_FUZZ_EXAMPLES", "200")),
    suppress_health_check=[HealthCheck.too_slow],
)  # no deadline: tests/conftest.py's profile (derandomized on CI)


def load_formats() -> dict[int, EventFormat]:
    out = {}
    for system in sorted(os.listdir(TEXT / "formats")):
        for fname in sorted(os.listdir(TEXT / "formats" / system)):
            fmt = parse_format((TEXT / "formats" / system / fname).read_text(), system)
            out[fmt.id] = fmt
    return out


FORMATS = load_formats()
BY_NAME = {f.event_name: f for f in FORMATS.values()}
BASIC = (TEXT / "basic.txt").read_bytes()
BASIC_LINES = BASIC.splitlines()
LOST = (TEXT / "lost.txt").read_bytes()


def manifest(name: str) -> dict[str, Any]:
    return json.loads((TEXT / f"{name}.json").read_text())


def parse_all(data: bytes, formats: dict[int, EventFormat] | None = None
              ) -> tuple[TextDecoder, list[Event]]:
    dec = TextDecoder(FORMATS if formats is None else formats)
    out: list[Event] = []
    dec.feed(data, out)
    dec.flush(out)
    return dec, out


def binary_events() -> list[Event]:
    m = manifest("basic")
    blob = (TEXT / "basic.bin").read_bytes()
    layout = parse_page_layout(m["header_page"], (TEXT.parent / "header_event").read_text())
    dec = PageDecoder(layout, FORMATS)
    out: list[Event] = []
    for p in m["pages"]:
        dec.decode_page(blob[p["offset"]: p["offset"] + p["length"]], p["cpu"], out)
    assert dec.unknown == 0
    out.sort(key=lambda e: (e.ts, e.cpu))  # how the kernel merges CPUs (lowest CPU on ties)
    return out


# -- the recorded lines --------------------------------------------------------------


def test_every_recorded_line_parses() -> None:
    dec, evs = parse_all(BASIC)
    assert (dec.bad, dec.unknown, dec.ambiguous, dec.lost) == (0, 0, 0, 0), dec.bad_samples
    assert len(evs) == len(BASIC_LINES)
    assert {e.event for e in evs} >= {
        "syscalls:sys_enter_getppid", "syscalls:sys_enter_openat", "syscalls:sys_exit_openat",
        "sched:sched_process_exec", "raw_syscalls:sys_enter", "sock:inet_sock_set_state",
    }


def test_same_events_as_the_binary_pages_of_the_same_buffer() -> None:
    """basic.txt (the instance's `trace`) and basic.bin (its trace_pipe_raw pages)
    hold the same events: the text reader must rebuild them field for field."""
    _, text = parse_all(BASIC)
    binary = binary_events()
    assert len(text) == len(binary)
    none_kinds = (P_PTRSTR, P_NONE)
    for t, b in zip(text, binary, strict=True):
        assert (t.event, t.cpu, t.tid) == (b.event, b.cpu, b.tid)
        # ns -> us as the kernel prints it: (ns + 500) / 1000, so at most 500 ns off
        assert t.ts == (b.ts + 500) // 1000 * 1000
        assert abs(t.ts - b.ts) <= 500
        fmt = BY_NAME[t.event]
        assert list(t.fields) == list(b.fields)  # same names, same order
        for f in fmt.fields:
            if print_kind(f) in none_kinds:
                assert t.fields[f.name] is None, f.name
            else:
                assert t.fields[f.name] == b.fields[f.name], (t.event, f.name)
                assert type(t.fields[f.name]) is type(b.fields[f.name])


def test_recorded_values() -> None:
    facts = manifest("basic")["facts"]
    _, evs = parse_all(BASIC)
    mine = [e for e in evs if e.pid == facts["pid"]]
    assert sum(e.event == "syscalls:sys_enter_getppid" for e in mine) >= facts["getppid"]
    execs = [e.fields["filename"] for e in evs if e.event == "sched:sched_process_exec"]
    assert execs == facts["exec"]
    opens = [e for e in evs if e.event == "syscalls:sys_enter_openat"]
    assert all(e.fields["filename"] is None for e in opens)  # the kernel prints no pointer
    dfds = {e.fields["dfd"] for e in opens}
    assert -100 in dfds and all(isinstance(d, int) for d in dfds)
    assert facts["enoent"] in {e.fields["ret"] for e in evs
                               if e.event == "syscalls:sys_exit_openat"}
    raw = [e for e in evs if e.event == "raw_syscalls:sys_enter"]
    assert raw and all(e.fields["args"] is None and e.fields["id"] >= 0 for e in raw)
    sock = [e for e in evs if e.event == "sock:inet_sock_set_state"]
    if sock:  # __u8 saddr[4] comes back as bytes, [16] is not printed by the kernel
        assert sock[0].fields["saddr"] == b"\x7f\x00\x00\x01"
        assert sock[0].fields["saddr_v6"] is None
        assert isinstance(sock[0].fields["skaddr"], int) and sock[0].fields["skaddr"] > 0
    e = mine[0]
    assert e.pid == e.tid and e.comm == "python"


def test_lost_line_is_counted_per_cpu() -> None:
    m = manifest("lost")
    overrun = int(m["stats"]["0"]["overrun"])
    n = m["facts"]["getppid_cpu0"]
    assert b"[LOST " in LOST
    dec, evs = parse_all(LOST)
    assert dec.bad == 0
    assert dec.lost_per_cpu == {0: overrun}  # the stream says what the stats say
    assert len(evs) + overrun == n
    assert {e.cpu for e in evs} == {0}
    # the counting path sees the same
    cdec = TextDecoder(FORMATS)
    per = cdec.count(LOST)
    assert sum(per.values()) == len(evs) and cdec.lost_per_cpu == {0: overrun}


def test_lost_lines() -> None:
    dec = TextDecoder(FORMATS)
    assert dec.parse_line(b"CPU:3 [LOST 12 EVENTS]") == LostEvents(3, 12)
    assert dec.parse_line(b"CPU:1 [LOST EVENTS]") == LostEvents(1, -1)
    out: list[Event] = []
    dec.feed(b"CPU:1 [LOST EVENTS]\nCPU:3 [LOST 12 EVENTS]\nCPU:3 [LOST 5 EVENTS]\n", out)
    assert out == [] and dec.lost_per_cpu == {3: 17} and dec.lost_unknown == 1


def test_chunks_of_any_size() -> None:
    _, whole = parse_all(BASIC)
    rng = random.Random(7)
    for _ in range(5):
        dec = TextDecoder(FORMATS)
        out: list[Event] = []
        pos = 0
        while pos < len(BASIC):
            n = rng.randint(1, 700)
            dec.feed(BASIC[pos: pos + n], out)
            pos += n
        dec.flush(out)
        assert out == whole


def test_unterminated_last_line_needs_flush() -> None:
    dec = TextDecoder(FORMATS)
    out: list[Event] = []
    dec.feed(BASIC_LINES[0], out)
    assert out == []
    dec.flush(out)
    assert len(out) == 1


# -- the line shape ----------------------------------------------------------------


def test_header_columns() -> None:
    dec = TextDecoder(FORMATS)
    ev = dec.parse_line(b"  kworker/u8:2-ev-1234   (   77) [013]  12.000001: "
                        b"sys_enter_getppid: __syscall_nr=0x6e (110)")
    assert isinstance(ev, Event)
    assert (ev.comm, ev.tid, ev.pid, ev.cpu, ev.ts) == ("kworker/u8:2-ev", 1234, 77, 13,
                                                        12_000_001_000)
    assert ev.event == "syscalls:sys_enter_getppid" and ev.fields == {"__syscall_nr": 110}
    idle = dec.parse_line(b"          <idle>-0       (-------) [001]   1.500000: "
                          b"sys_enter_getppid: __syscall_nr=0x6e (110)")
    assert isinstance(idle, Event) and (idle.pid, idle.tid, idle.comm) == (-1, 0, "<idle>")
    # irq-info on (d..1.), no tgid column, a clock that does not count in ns
    other = dec.parse_line(b"  sh-9 [000] d..1.  123456789: sys_enter_getppid: "
                           b"__syscall_nr=0x6e (110)")
    assert isinstance(other, Event) and (other.ts, other.pid) == (123456789, -1)


def test_unknown_event_and_bad_lines() -> None:
    dec = TextDecoder(FORMATS)
    line = b"  sh-9   (    9) [000]  1.000000: nosuch_event: x=0x1 (1)"
    assert dec.parse_line(line) is None
    out: list[Event] = []
    dec.feed(line + b"\nnot a trace line\n  sh-9   (    9) [000]  1.000000: "
             b"sys_enter_getppid: __syscall_nr=oops\n", out)
    assert out == [] and dec.unknown == 1 and dec.bad == 2 and len(dec.bad_samples) == 2
    with pytest.raises(DecodeError):
        dec.parse_line(b"  sh-9   (    9) [000]  1.000000: sys_enter_getppid: __nr=0x1 (1)")


def test_signed_by_declared_type() -> None:
    dec = TextDecoder(FORMATS)
    ev = dec.parse_line(
        b"  cat-5   (    5) [000]  1.000000: sys_enter_openat: __syscall_nr=0x101 (257) "
        b"dfd=0xffffff9c (4294967196) filename=(0xffff8881026d101c) flags=0x80000 (524288) "
        b"mode=0x0 (0)")
    assert isinstance(ev, Event)
    assert ev.fields == {"__syscall_nr": 257, "dfd": -100, "filename": None,
                         "flags": 0x80000, "mode": 0}
    ex = dec.parse_line(b"  cat-5   (    5) [000]  1.000000: sys_exit_openat: "
                        b"__syscall_nr=0x101 (257) ret=0xfffffffffffffffe (-2)")
    assert isinstance(ex, Event) and ex.fields["ret"] == -2


def test_strings_with_spaces_and_equal_signs() -> None:
    dec = TextDecoder(FORMATS)
    ev = dec.parse_line(b"  sh-5   (    5) [000]  1.000000: sched_process_exec: "
                        b"filename=/tmp/a b=c pid=0x1 (1) pid=0x5 (5) old_pid=0x5 (5)")
    assert isinstance(ev, Event)
    assert ev.fields == {"filename": "/tmp/a b=c pid=0x1 (1)", "pid": 5, "old_pid": 5}
    sw = dec.parse_line(b"  a b-5   (    5) [000]  1.000000: sched_switch: prev_comm=a b "
                        b"prev_pid=0x5 (5) prev_prio=0x78 (120) prev_state=0x1 (1) "
                        b"next_comm=x=y next_pid=0x0 (0) next_prio=0x78 (120)")
    assert isinstance(sw, Event) and sw.comm == "a b"
    assert (sw.fields["prev_comm"], sw.fields["next_comm"]) == ("a b", "x=y")
    with pytest.raises(DecodeError):  # longer than char prev_comm[16]
        dec.parse_line(b"  a-5   (    5) [000]  1.000000: sched_switch: prev_comm="
                       + b"x" * 17 + b" prev_pid=0x5 (5) prev_prio=0x78 (120) prev_state=0x1 "
                       b"(1) next_comm=y next_pid=0x0 (0) next_prio=0x78 (120)")


def test_size_one_fields() -> None:
    dec = TextDecoder(FORMATS)
    base = b"  true-5   (    5) [001]  1.000000: sched_process_exit: comm=true pid=0x5 (5) " \
           b"prio=0x78 (120) group_dead="
    for text, want in ((b"(1)", 1), (b"'A'(65)", 65), (b"'('(40)", 40), (b"(255)", 255)):
        ev = dec.parse_line(base + text)
        assert isinstance(ev, Event) and ev.fields["group_dead"] == want


FMT_KINDS = """name: kinds
ID: 900
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc u64[] addrs;\toffset:8;\tsize:4;\tsigned:0;
\tfield:__rel_loc char[] name;\toffset:12;\tsize:4;\tsigned:0;
\tfield:__data_loc cpumask_t mask;\toffset:16;\tsize:4;\tsigned:0;
\tfield:__data_loc u8[] blob;\toffset:20;\tsize:4;\tsigned:0;
\tfield:u16 port;\toffset:24;\tsize:2;\tsigned:0;
\tfield:short delta;\toffset:26;\tsize:2;\tsigned:1;
\tfield:void * ptr;\toffset:32;\tsize:8;\tsigned:0;
\tfield:u32 words[3];\toffset:40;\tsize:12;\tsigned:0;
\tfield:u16 pair[2];\toffset:52;\tsize:4;\tsigned:0;

print fmt: "x"
"""


def test_dynamic_arrays_rel_loc_and_unavailable_fields() -> None:
    fmt = parse_format(FMT_KINDS, "test")
    kinds = {f.name: print_kind(f) for f in fmt.fields}
    assert kinds == {"addrs": "hex-bytes", "name": P_DSTR, "mask": P_NONE, "blob": "hex-bytes",
                     "port": P_NUM, "delta": P_NUM, "ptr": P_NUM, "words": P_NONE,
                     "pair": P_NUM}
    dec = TextDecoder({fmt.id: fmt})
    ev = dec.parse_line(
        b"  x-1   (    1) [000]  1.000000: kinds: addrs=01,00,00,00,00,00,00,00,ff,ff,ff,ff,"
        b"ff,ff,ff,ff name=hello world mask=<INVALID-TYPE> blob= port=0xffff (65535) "
        b"delta=0xfffe (65534) ptr=do_sys_open+0x0/0x10 [mod] (-131387296560640) "
        b"words=<INVALID-SIZE> pair=0x20001 (131073)")
    assert isinstance(ev, Event)
    assert ev.fields == {
        "addrs": (1, (1 << 64) - 1), "name": "hello world", "mask": None, "blob": b"",
        "port": 65535, "delta": -2, "ptr": (1 << 64) - 131387296560640, "words": None,
        "pair": (1, 2),
    }
    over = dec.parse_line(b"  x-1   (    1) [000]  1.000000: kinds: addrs=<OVERFLOW> name= "
                          b"mask=<INVALID-TYPE> blob=00 port=<OVERFLOW> delta=0x1 (1) "
                          b"ptr=0x0 (0) words=<INVALID-SIZE> pair=0x0 (0)")
    assert isinstance(over, Event)
    assert over.fields["addrs"] is None and over.fields["port"] is None
    assert over.fields["blob"] == b"\x00" and over.fields["name"] == ""


def test_print_kinds_of_recorded_formats() -> None:
    openat = BY_NAME["syscalls:sys_enter_openat"]
    assert [print_kind(f) for f in openat.fields] == [P_NUM, P_NUM, P_PTRSTR, P_NUM, P_NUM]
    assert print_kind(BY_NAME["sched:sched_process_exec"].field("filename")) == P_DSTR
    assert print_kind(BY_NAME["sched:sched_switch"].field("prev_comm")) == P_SSTR
    assert print_kind(BY_NAME["sched:sched_process_exit"].field("group_dead")) == P_NUM1
    assert print_kind(BY_NAME["raw_syscalls:sys_enter"].field("args")) == P_NONE


def _twin(system: str, ev_id: int, fields: str) -> EventFormat:
    text = (f"name: twin\nID: {ev_id}\nformat:\n"
            "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
            "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
            f"{fields}\nprint fmt: \"x\"\n")
    return parse_format(text, system)


def test_same_name_in_two_systems() -> None:
    a = _twin("alpha", 901, "\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;\n")
    b = _twin("beta", 902, "\tfield:int b;\toffset:8;\tsize:4;\tsigned:1;\n")
    dec = TextDecoder({a.id: a, b.id: b})
    assert dec.duplicate_names() == [["alpha:twin", "beta:twin"]]
    ea = dec.parse_line(b"  x-1   (    1) [000]  1.000000: twin: a=0x1 (1)")
    eb = dec.parse_line(b"  x-1   (    1) [000]  1.000000: twin: b=0xffffffff (-1)")
    assert isinstance(ea, Event) and isinstance(eb, Event)
    assert (ea.event, ea.fields) == ("alpha:twin", {"a": 1})
    assert (eb.event, eb.fields) == ("beta:twin", {"b": -1})
    assert dec.count(b"  x-1   (    1) [000]  1.000000: twin: b=0x1 (1)\n") == {902: 1}
    assert dec.ambiguous == 0
    # identical field lists cannot be told apart: the first system, counted
    c = _twin("gamma", 903, "\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;\n")
    dec2 = TextDecoder({c.id: c, a.id: a})
    ec = dec2.parse_line(b"  x-1   (    1) [000]  1.000000: twin: a=0x1 (1)")
    assert isinstance(ec, Event) and ec.event == "alpha:twin" and dec2.ambiguous == 1


# -- never a crash -------------------------------------------------------------------

PARSER = TextDecoder(FORMATS)


def _only_decode_error(line: bytes) -> Event | LostEvents | DecodeError | None:
    """The parser's result for ``line``, or the DecodeError it raised (nothing else)."""
    try:
        return PARSER.parse_line(line)
    except DecodeError as e:
        assert str(e)
        return e


@FAST
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(line: bytes) -> None:
    r = _only_decode_error(line)
    assert r is None or isinstance(r, Event | LostEvents | DecodeError)
    if isinstance(r, Event):  # whatever parses names a known event
        assert r.event in {f"{f.system}:{f.name}" for f in FORMATS.values()}


@FAST
@given(st.sampled_from(BASIC_LINES + LOST.splitlines()[:3]), st.data())
def test_truncated_and_mutated_lines_never_crash(line: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(line)))
    whole = _only_decode_error(line)
    assert isinstance(whole, Event | LostEvents), whole  # the real line parses
    part = _only_decode_error(line[:cut])
    if cut == len(line):
        assert part == whole
    b = bytearray(line)
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(b)))
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        ch = data.draw(st.sampled_from(b"()=' -:,[]0123456789abcdefx<>\x00\xff"))
        if op == "flip" and i < len(b):
            b[i] = ch
        elif op == "insert":
            b.insert(i, ch)
        elif i < len(b):
            del b[i]
    r = _only_decode_error(bytes(b))
    assert r is None or isinstance(r, Event | LostEvents | DecodeError)


@FAST
@given(st.lists(st.sampled_from(BASIC_LINES[:40] + [b"CPU:0 [LOST 3 EVENTS]", b"junk", b""]),
                max_size=30), st.integers(1, 97))
def test_streams_never_crash(lines: list[bytes], step: int) -> None:
    data = b"\n".join(lines)
    dec, counter = TextDecoder(FORMATS), TextDecoder(FORMATS)
    out: list[Event] = []
    counted = 0
    for i in range(0, len(data), step):
        dec.feed(data[i: i + step], out)
        counted += sum(counter.count(data[i: i + step]).values())
    dec.flush(out)
    assert dec.bad <= len(lines)
    assert counted <= len(out) + 1  # the count has no flush: a last line may be left


def test_long_and_non_bytes_input() -> None:
    dec = TextDecoder(FORMATS)
    with pytest.raises(DecodeError):
        dec.parse_line(b"x" * 70000)
    with pytest.raises(DecodeError):
        dec.parse_line("text")  # type: ignore[arg-type]
    out: list[Event] = []
    dec.feed(b"y" * 70000, out)  # no newline for far too long: dropped, counted
    assert dec.bad == 1 and out == []


# -- how the session picks the reader ------------------------------------------------


def _tracefs_like(tmp: Path) -> str:
    ev = tmp / "events"
    ev.mkdir()
    for name in ("header_page", "header_event"):
        (ev / name).write_text((TEXT.parent / name).read_text())
    return str(tmp)


def test_choose_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import probewatch.session as session

    root = _tracefs_like(tmp_path)
    layout, why = session.choose_reader(root, {}, lambda: None)
    assert layout is not None and why is None
    assert session.choose_reader(root, {"PROBEWATCH_FTRACE_TEXT": "0"}, lambda: None)[1] is None
    _, why = session.choose_reader(root, {"PROBEWATCH_FTRACE_TEXT": "1"}, lambda: None)
    assert why == "PROBEWATCH_FTRACE_TEXT=1 is set"
    _, why = session.choose_reader(root, {}, lambda: "/x/per_cpu/cpu1/trace_pipe_raw does "
                                                     "not exist")
    assert why == "/x/per_cpu/cpu1/trace_pipe_raw does not exist"
    layout, why = session.choose_reader(str(tmp_path / "nowhere"), {}, lambda: None)
    assert layout is None and why is not None and "header_page cannot be read" in why

    def broken(page: str, event: str) -> Any:
        raise DecodeError("header_event has no 'time_delta' bit width")

    monkeypatch.setattr(session, "parse_header_layout", broken)
    layout, why = session.choose_reader(root, {}, lambda: pytest.fail("not asked"))
    assert layout is None
    assert why == "the ring-buffer page layout cannot be parsed (header_event has no " \
                  "'time_delta' bit width)"
    w = session.text_warning(why)
    assert "text trace_pipe" in w and why in w and "microseconds" in w


class _FakeCollector:
    """Stands in for FtraceCollector: no tracefs needed."""

    def __init__(self, buffer_kb: Any = None, root: Any = None, **_kw: Any) -> None:
        self.closed = False

    def raw_unavailable(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def test_session_falls_back_when_the_header_cannot_be_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import probewatch.session as session

    root = _tracefs_like(tmp_path)
    monkeypatch.delenv("PROBEWATCH_FTRACE_TEXT", raising=False)
    monkeypatch.setattr(session, "tracefs_root", lambda: root)
    monkeypatch.setattr(session, "sweep_stale", lambda root: [])
    monkeypatch.setattr(session, "FtraceCollector", _FakeCollector)
    s = session.Session()
    assert s.reader == "pages" and s.warnings == []
    s.close()

    def broken(page: str, event: str) -> Any:
        raise DecodeError("header_page has no 'commit' field")

    monkeypatch.setattr(session, "parse_header_layout", broken)
    s = session.Session()
    try:
        assert s.reader == "text"
        assert s.text_reason is not None and "header_page has no 'commit' field" in s.text_reason
        assert s.warnings == [session.text_warning(s.text_reason)]  # once, saying why
    finally:
        s.close()
