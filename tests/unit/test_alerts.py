"""Alerts: building from a match, text and JSON rendering, escaping, collapse."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probewatch.decode.escape import from_json, json_bytes
from probewatch.detect.alerts import (
    Alert,
    Collapser,
    alert_dict,
    alert_from_dict,
    alert_from_match,
    alert_json,
    alert_line,
    ancestry_text,
    esc,
)
from probewatch.detect.model import SigmaEvent
from probewatch.event import Event


@dataclass
class Rule:
    id: str = "r-shadow"
    title: str = "Read of /etc/shadow"
    level: str = "high"
    tags: list[str] = field(default_factory=lambda: ["attack.credential_access",
                                                     "attack.t1003.008"])
    techniques: list[str] = field(default_factory=list)
    description: str = "a process read the shadow file"
    path: str = "/rules/shadow.yml"
    fields: list[str] = field(default_factory=lambda: ["TargetFilename"])


@dataclass
class Match:
    rule: Any
    events: list[Any]
    group: Any = None
    count: int = 1


@dataclass
class Rec:
    pid: int
    ppid: int
    exe: str | None
    comm: str


class Table:
    def __init__(self, recs: list[Rec]) -> None:
        self.recs = {r.pid: r for r in recs}

    def get(self, pid: int) -> Rec | None:
        return self.recs.get(pid)


TABLE = Table([Rec(1, 0, "/sbin/init", "systemd"), Rec(812, 1, "/usr/sbin/sshd", "sshd"),
               Rec(4410, 812, "/bin/bash", "bash"), Rec(4502, 4410, "/usr/bin/cat", "cat")])


def sev(pid: int = 4502, ts: int = 1_000_000_000, target: str = "/etc/shadow",
        cmd: str = "cat /etc/shadow") -> SigmaEvent:
    raw = Event(ts, 0, pid, pid, "cat", "syscalls:openat", "bpf:syscalls",
                {"filename": target, "ret": 3})
    return SigmaEvent("file_event", ts, pid, {
        "TargetFilename": target, "Operation": "write", "Image": "/usr/bin/cat",
        "CommandLine": cmd, "ProcessId": pid, "ParentProcessId": 4410, "User": "root",
        "Uid": 0, "CurrentDirectory": "/root"}, source=raw)


def mk(pid: int = 4502, ts: int = 1_000_000_000, **kw: Any) -> Alert:
    return alert_from_match(Match(Rule(), [sev(pid, ts, **kw)]), TABLE, wall_offset_ns=0)


def test_alert_from_match_context_and_ancestry() -> None:
    a = mk()
    assert a.rule_id == "r-shadow" and a.level == "high"
    assert a.techniques == ["T1003.008"]
    assert a.ancestry == [(1, "init"), (812, "sshd"), (4410, "bash"), (4502, "cat")]
    assert a.process["pid"] == 4502 and a.process["ppid"] == 4410
    assert a.process["image"] == "/usr/bin/cat" and a.process["cwd"] == "/root"
    assert a.process["user"] == "root"
    assert a.matched == {"TargetFilename": "/etc/shadow"}
    assert len(a.raw) == 1 and a.raw[0].fields["filename"] == "/etc/shadow"
    assert a.time == 1.0


def test_text_line() -> None:
    a = mk()
    line = alert_line(a)
    assert line.endswith(" HIGH     Read of /etc/shadow [T1003.008] "
                         "init(1) > sshd(812) > bash(4410) > cat(4502): "
                         "TargetFilename=/etc/shadow")
    assert "\n" not in line


def test_matched_falls_back_to_salient_fields() -> None:
    r = Rule(fields=[])
    a = alert_from_match(Match(r, [sev()]), TABLE, wall_offset_ns=0)
    assert a.matched == {"TargetFilename": "/etc/shadow", "Operation": "write"}


def test_escaping_no_line_forging_no_terminal_escapes() -> None:
    evil = "/tmp/x\n2026-01-01 00:00:00.000 CRITICAL fake alert\x1b[2J\x07\u202eevil\udcff"
    a = mk(target=evil)
    line = alert_line(a)
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    assert "\u202e" not in line
    assert "\\n2026-01-01" in line and "\\x1b[2J" in line and "\\u202e" in line
    assert "\\xff" in line  # the undecodable byte
    assert esc("a\\b") == "a\\\\b"  # escapes cannot be forged with a backslash either
    assert esc("héllo wörld") == "héllo wörld"
    # the one text escape of probewatch: a C1 control is not mistaken for a raw byte
    assert esc("\x85" + b"\x85".decode("utf-8", "surrogateescape")) == "\\u0085\\x85"


def test_escaped_ancestry_names() -> None:
    assert ancestry_text([(1, "init"), (7, "x\r\ny")]) == "init(1) > x\\r\\ny(7)"


def test_value_with_spaces_quoted() -> None:
    a = mk(target='/tmp/a b"c')
    assert alert_line(a).endswith('TargetFilename="/tmp/a b\\"c"')


def test_json_full_context() -> None:
    a = mk()
    text = alert_json(a)
    obj = json.loads(text)
    assert obj["type"] == "alert" and obj["count"] == 1
    assert obj["rule"]["id"] == "r-shadow"
    assert obj["rule"]["techniques"] == ["T1003.008"]
    assert obj["process"]["command_line"] == "cat /etc/shadow"
    assert [x["pid"] for x in obj["ancestry"]] == [1, 812, 4410, 4502]
    assert obj["lineage"] == "init(1) > sshd(812) > bash(4410) > cat(4502)"
    assert obj["events"][0]["fields"]["TargetFilename"] == "/etc/shadow"
    assert obj["raw_events"][0]["event"] == "syscalls:openat"
    assert '"b64"' not in text and "undecodable" not in obj
    # the encoder of every --json: compact, the raw event as trace --json writes it
    assert text.startswith('{"type":"alert","id":')
    from probewatch.sinks.jsonl import event_json

    assert json.dumps(obj["raw_events"][0], separators=(",", ":"), ensure_ascii=False) \
        == event_json(a.raw[0])


def test_json_undecodable_bytes_as_b64_objects() -> None:
    """The one JSON scheme of probewatch (decode/escape.py): {"b64": ...} in place of a
    string with bytes that are not UTF-8, wherever it stands; from_json restores it."""
    target = b"/tmp/\xff\xfe\n".decode("utf-8", "surrogateescape")
    a = mk(target=target, cmd="cat " + target)
    text = alert_json(a)
    text.encode("utf-8")  # valid UTF-8: no lone surrogates
    obj = json.loads(text)
    assert obj["matched"]["TargetFilename"] == {"b64": "L3RtcC///go="}
    assert json_bytes(obj["matched"]["TargetFilename"]) == b"/tmp/\xff\xfe\n"
    assert json_bytes(obj["process"]["command_line"]) == b"cat /tmp/\xff\xfe\n"
    assert obj["raw_events"][0]["fields"]["filename"] == {"b64": "L3RtcC///go="}
    assert obj["process"]["image"] == "/usr/bin/cat"  # valid strings stay strings
    assert "undecodable" not in obj and "\ufffd" not in text
    back = from_json(obj)
    assert back["matched"]["TargetFilename"] == target
    assert back["events"][0]["fields"]["TargetFilename"] == target
    assert alert_from_dict(obj).matched == a.matched


# any bytes a process can put in a path or an argv entry (no NUL: the kernel ends
# strings there), decoded as probewatch decodes them
_raw = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"").decode(
    "utf-8", "surrogateescape"))


@settings(max_examples=200, deadline=None)
@given(image=_raw, argv=st.lists(_raw, min_size=1, max_size=5), cwd=_raw, env=_raw,
       anc=_raw, text=st.text(max_size=16))
def test_json_any_bytes_parse_and_round_trip(image: str, argv: list[str], cwd: str,
                                             env: str, anc: str, text: str) -> None:
    cmd = " ".join(argv)
    pid = 4502
    raw = Event(1_000_000_000, 0, pid, pid, "sh", "syscalls:execve", "bpf:syscalls",
                {"filename": image, "argv": argv, "cwd": cwd, "note": text,
                 "data": image.encode("utf-8", "surrogateescape")})
    ev = SigmaEvent("process_creation", 1_000_000_000, pid, {
        "Image": image, "CommandLine": cmd, "OriginalArgv0": argv[0],
        "CurrentDirectory": cwd, "LD_PRELOAD": env, "ProcessId": pid,
        "ParentProcessId": 4410, "User": text}, source=raw)
    table = Table([Rec(1, 0, "/sbin/init", "systemd"), Rec(4410, 1, "/x/" + anc, anc),
                   Rec(pid, 4410, image, "sh")])
    rule = Rule(fields=["Image", "CommandLine", "LD_PRELOAD"])
    a = alert_from_match(Match(rule, [ev]), table, wall_offset_ns=0)
    line = alert_json(a)
    line.encode("utf-8")  # strict: what any JSON consumer reads
    obj = json.loads(line)
    back = from_json(obj)
    # every string exactly as the process had it
    assert back["process"]["image"] == image and back["process"]["command_line"] == cmd
    assert back["process"]["cwd"] == cwd
    assert back["matched"] == {k: v for k, v in
                               (("Image", image), ("CommandLine", cmd), ("LD_PRELOAD", env))
                               if v is not None}
    assert back["events"][0]["fields"]["OriginalArgv0"] == argv[0]
    assert back["events"][0]["fields"]["LD_PRELOAD"] == env
    assert back["raw_events"][0]["fields"]["argv"] == argv
    assert back["raw_events"][0]["fields"]["data"] == list(image.encode(
        "utf-8", "surrogateescape"))
    names = [x["name"] for x in back["ancestry"]]
    assert names[1] == (anc.rsplit("/", 1)[-1] or "/x/" + anc)
    assert json_bytes(obj["process"]["image"]) == image.encode("utf-8", "surrogateescape")
    # the whole object, exactly (bytes as lists of ints, as trace --json writes them)
    from probewatch.detect.alerts import _plain

    assert back == _plain(alert_dict(a))
    # and back into an Alert: the text line is the same
    assert alert_line(alert_from_dict(obj)) == alert_line(a)
    assert all(ch.isprintable() for ch in alert_line(a))


def test_collapse_same_rule_same_process() -> None:
    c = Collapser(window_s=60)
    s = 1_000_000_000
    out = c.add(mk(ts=s))
    assert [x.kind for x in out] == ["alert"]
    for i in range(1, 5):
        assert c.add(mk(ts=s + i * s)) == []
    other = c.add(mk(pid=4410, ts=s + 6 * s))  # another process: its own alert
    assert [x.kind for x in other] == ["alert"]
    # 61 s after the first: the window closed, its count is reported, a new one opens
    out = c.add(mk(ts=s + 61 * s))
    assert [x.kind for x in out] == ["repeat", "alert"]
    assert out[0].count == 5 and out[0].last_ts == s + 4 * s
    assert out[0].id != out[1].id
    assert "(repeated 5 times in 4.0 s)" in alert_line(out[0])
    # at the end: the open windows with repeats; single alerts say nothing more
    assert c.add(mk(ts=s + 62 * s)) == []
    fl = c.flush()
    assert [(x.kind, x.count, x.pid) for x in fl] == [("repeat", 2, 4502)]
    assert c.collapsed == 5


def test_collapse_expire_by_time() -> None:
    c = Collapser(window_s=10)
    s = 1_000_000_000
    c.add(mk(ts=s))
    c.add(mk(ts=2 * s))
    assert c.expire(5 * s) == []
    out = c.expire(11 * s)
    assert [(x.kind, x.count) for x in out] == [("repeat", 2)]
    assert len(c) == 0


def test_collapse_disabled() -> None:
    c = Collapser(window_s=0)
    assert len(c.add(mk())) == 1 and len(c.add(mk())) == 1


def test_collapse_bounded() -> None:
    c = Collapser(window_s=60, max_open=3)
    for pid in range(10, 20):
        c.add(mk(pid=pid))
    assert len(c) == 3


# ------------------------------------------------------------------ capture tables


def _write_capture(path: Any, alerts: list[Alert], snapshot: list[dict[str, Any]]) -> None:
    from probewatch.detect.pipeline import alert_row
    from probewatch.sinks.capture import CaptureWriter, RunInfo

    w = CaptureWriter(str(path))
    w.begin_run(RunInfo(backend="bpf", clock="mono"), [])
    w.note_snapshot(snapshot)
    for a in alerts:
        w.add(a.raw[0])
        w.add_alert(alert_row(a))
    res = w.finish()
    assert res.error is None


def test_capture_alerts_and_snapshot(tmp_path: Any) -> None:
    from probewatch.capture import Capture

    a = mk(target=b"/etc/sh\xffdow".decode("utf-8", "surrogateescape"))
    b = mk(pid=4410, ts=2_000_000_000)
    rep = Alert(**{**a.__dict__, "kind": "repeat", "count": 7})
    snap = [{"pid": 1, "ppid": 0, "exe": "/sbin/init",
             "argv": ["/sbin/init", b"\xfe".decode("utf-8", "surrogateescape")]},
            {"pid": 812, "ppid": 1, "exe": "/usr/sbin/sshd"}]
    _write_capture(tmp_path / "c.db", [a, b, rep], snap)
    with Capture(tmp_path / "c.db") as cap:
        got = cap.alerts()
        assert [(x["id"], x["count"]) for x in got] == [(a.id, 7), (b.id, 1)]
        # decoded: the exact strings (the capture stores the {"b64": ...} form)
        assert got[0]["matched"]["TargetFilename"].encode("utf-8", "surrogateescape") == \
            b"/etc/sh\xffdow"
        stored = cap.query("SELECT alert, image, matched FROM alerts ORDER BY ts")
        first = list(stored.rows)[0]
        assert json.loads(first[0])["matched"]["TargetFilename"] == {"b64": "L2V0Yy9zaP9kb3c="}
        assert json.loads(first[2]) == {"TargetFilename": {"b64": "L2V0Yy9zaP9kb3c="}}
        assert first[1] == "/usr/bin/cat"
        assert got[1]["lineage"] == "init(1) > sshd(812) > bash(4410)"
        assert cap.process_snapshot() == snap  # undecodable bytes round-trip exactly
        row = cap.query("SELECT rule_id, level, pid, lineage FROM alerts ORDER BY ts")
        assert list(row.rows)[1] == ("r-shadow", "high", 4410,
                                     "init(1) > sshd(812) > bash(4410)")
        assert sum(1 for _ in cap.events()) == 3


def test_schema1_capture_still_opens(tmp_path: Any) -> None:
    import sqlite3

    from probewatch.capture import Capture

    path = tmp_path / "old.db"
    _write_capture(path, [mk()], [{"pid": 1, "ppid": 0}])
    c = sqlite3.connect(path)
    c.execute("DROP VIEW host_events")  # schema 3
    c.execute("DROP TABLE fleet_batches")
    c.execute("DROP TABLE alerts")
    c.execute("DROP TABLE process_snapshot")
    c.execute("PRAGMA user_version = 1")
    c.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    c.commit()
    c.close()
    with Capture(path) as cap:
        assert cap.schema_version == 1
        assert cap.alerts() == [] and cap.process_snapshot() == []
        assert sum(1 for _ in cap.events()) == 1


def test_report_alerts(tmp_path: Any, capsys: Any) -> None:
    from probewatch.capture import Capture
    from probewatch.cli.main import main

    a = mk()
    gshadow = b"/etc/g\xffshadow".decode("utf-8", "surrogateescape")
    b = mk(pid=4410, ts=2_000_000_000, target=gshadow)
    b.process["image"] = b"/usr/bin/c\xfet".decode("utf-8", "surrogateescape")
    rep = Alert(**{**a.__dict__, "kind": "repeat", "count": 3})
    _write_capture(tmp_path / "c.db", [a, b, rep], [{"pid": 1, "ppid": 0}])
    assert main(["report", str(tmp_path / "c.db"), "--alerts"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines == [alert_line(Alert(**{**a.__dict__, "count": 3})), alert_line(b)]
    assert "(x3)" in lines[0]
    assert "2 alerts (4 with repeats): high 2" in err
    assert main(["report", str(tmp_path / "c.db"), "--alerts", "--json", "-p", "4410"]) == 0
    out, err = capsys.readouterr()
    # the very line watch --json printed
    assert out == alert_json(b) + "\n"
    objs = [json.loads(x) for x in out.splitlines()]
    assert [(o["process"]["pid"], json_bytes(o["matched"]["TargetFilename"]))
            for o in objs] == [(4410, b"/etc/g\xffshadow")]
    assert json.loads(err)["summary"]["alerts"] == 1
    assert "TargetFilename=/etc/g\\xffshadow" in lines[1]
    with Capture(tmp_path / "c.db") as cap:
        # the image column: text, the byte that is not UTF-8 as \xNN (exact in "alert")
        assert list(cap.query("SELECT image FROM alerts WHERE pid = 4410").rows) == [
            ("/usr/bin/c\\xfet",)]


def test_watch_cli_errors(capsys: Any) -> None:
    from probewatch.cli.main import main

    assert main(["watch", "--no-default-rules"]) == 1
    assert "no rules to run" in capsys.readouterr().err
    # option values are usage errors (2), like every command's -d, -p, -n
    for opt, val, msg in (("--level", "loud", "unknown level 'loud'"),
                          ("--window", "nan", "must be a finite number of seconds"),
                          ("--window", "-1", "seconds, 0 or more (got -1)")):
        with pytest.raises(SystemExit) as ex:
            main(["watch", opt, val, "--replay", "x.db"])
        assert ex.value.code == 2
        err = capsys.readouterr().err
        assert f"probewatch watch: error: argument {opt}: " in err and msg in err
    assert main(["watch", "--replay", "x.db", "-p", "1"]) == 1
    assert "--replay reads a capture" in capsys.readouterr().err
    assert main(["watch", "-p", "1", "--", "true"]) == 1
    assert "either -p PID or -- COMMAND" in capsys.readouterr().err
    assert main(["report", "x.db", "--alerts", "-c", "bash", "--event", "sched:*"]) == 1
    assert "--alerts: -c, --event select events, not alerts" in capsys.readouterr().err


def test_replay_needs_a_snapshot(tmp_path: Any, capsys: Any) -> None:
    from probewatch.cli.main import main
    from probewatch.sinks.capture import CaptureWriter, RunInfo

    w = CaptureWriter(str(tmp_path / "plain.db"))
    w.begin_run(RunInfo(backend="ftrace", clock="mono"), [])
    w.finish()
    shadow = str(Path(__file__).resolve().parent.parent / "watch" / "shadow.yml")
    assert main(["watch", "--no-default-rules", "--rules", shadow,
                 "--replay", str(tmp_path / "plain.db")]) == 1
    assert "no process-table snapshot" in capsys.readouterr().err


def test_rule_metadata_escaped_too() -> None:
    r = Rule(title="t\nFAKE", level="high\x1b[0m", techniques=["T1000\r"])
    line = alert_line(alert_from_match(Match(r, [sev()]), TABLE, wall_offset_ns=0))
    assert all(ch.isprintable() for ch in line)
    assert "t\\nFAKE" in line and "HIGH\\x1b[0M" in line and "[T1000\\r]" in line


def test_rules_cli_text_escaped_and_count_on_stderr(tmp_path: Path, capsys: Any) -> None:
    """rules list / lint / test: a title from a rule file cannot forge lines or drive
    the terminal (escaped as in every text output); missing paths are errors."""
    from probewatch.cli.main import main

    rule = tmp_path / "evil.yml"
    rid = "0b7e5c1a-7d0e-4f7b-9a51-5e0c0a7a0fff"
    rule.write_text(f'title: "t\\nFAKE\\e[2J"\nid: {rid}\nlevel: high\n'
                    "logsource: {category: process_creation, product: linux}\n"
                    "detection:\n  sel: {Image|endswith: /nc}\n  condition: sel\n")
    assert main(["rules", "list", "--no-default-rules", "--rules", str(rule)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["high          -                      process_creation   "
                                "t\\nFAKE\\x1b[2J"]
    assert err == "1 rules\n"
    ev = '{"kind": "process_creation", "fields": {"Image": "/usr/bin/nc"}}'
    assert main(["rules", "test", str(rule), "--no-default-rules", "--event", ev]) == 0
    assert capsys.readouterr().out == f"match: t\\nFAKE\\x1b[2J ({rid})\n"
    assert main(["rules", "list", "--rules", str(tmp_path / "nope.yml")]) == 1
    assert f"--rules {tmp_path / 'nope.yml'}: no such file" in capsys.readouterr().err


def test_correlation_alert_alone_gets_no_repeat_report() -> None:
    """A correlation's count is its own events (already printed with the alert): a
    window nothing was folded into closes silently."""
    c = Collapser(window_s=10)
    s = 1_000_000_000
    first = mk(ts=s)
    first.count = 5  # e.g. value_count over five discovery commands
    assert [x.kind for x in c.add(first)] == ["alert"]
    assert c.expire(20 * s) == []
    c.add(mk(ts=30 * s))
    assert c.flush() == []
