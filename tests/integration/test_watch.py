"""probewatch watch end to end on the live kernel: alerts with ancestry and techniques,
collapse, capture and replay, report --alerts, record --watch, bad rules, rule errors,
the tracefs fallback, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from .helpers import CLI, json_lines, run_cli, summary_of

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().parent.parent / "watch"
SHADOW = str(RULES / "shadow.yml")
EXEC_ID = str(RULES / "exec_id.yml")
EVIL = str(RULES / "evil_name.yml")
MALFORMED = str(RULES / "malformed.yml")
SHADOW_ID = "0b7e5c1a-7d0e-4f7b-9a51-5e0c0a7a0001"
EXEC_ID_ID = "0b7e5c1a-7d0e-4f7b-9a51-5e0c0a7a0004"
EVIL_ID = "0b7e5c1a-7d0e-4f7b-9a51-5e0c0a7a0005"
PY = os.path.basename(os.path.realpath(sys.executable))

# a file name no terminal should see raw: an undecodable byte, a newline that would
# start a forged alert line, a terminal escape sequence
EVIL_NAME = b"/tmp/pw-evil-\xff\n2026-01-01 00:00:00.000 CRITICAL forged\x1b[2J"
SCRIPT = (
    "cat /etc/shadow /etc/shadow >/dev/null; id >/dev/null; "
    "f=$(printf '/tmp/pw-evil-\\377\\n2026-01-01 00:00:00.000 CRITICAL forged\\033[2J'); "
    ': > "$f"; rm -f "$f"; exit 3'
)



def _alerts(out: str) -> list[dict[str, Any]]:
    return json_lines("\n".join(x for x in out.splitlines() if x.startswith("{")))


def _key(a: dict[str, Any]) -> tuple[Any, ...]:
    """What must be equal between live and replay (not the id or the wall time)."""
    # strings compared as printed: {"b64": ...} objects where bytes are not UTF-8
    return (a["type"], a["rule"]["id"], a["process"]["pid"], a["count"], a["ts"],
            a["last_ts"], a["lineage"], json.dumps(a["matched"], sort_keys=True),
            json.dumps(a["process"], sort_keys=True), json.dumps(a["ancestry"]),
            json.dumps([e["fields"] for e in a["events"]], sort_keys=True))


@pytest.fixture(scope="module")
def live(bpf: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cap = tmp_path_factory.mktemp("watch") / "live.db"
    r = run_cli("watch", "--no-default-rules", "--rules", SHADOW, "--rules", EXEC_ID,
                "--rules", EVIL, "--json", "-o", str(cap), "--", "sh", "-c", SCRIPT)
    return {"r": r, "cap": cap, "alerts": _alerts(r.stdout)}


def test_live_alert_ancestry_technique_and_status(live: dict[str, Any]) -> None:
    r = live["r"]
    assert r.returncode == 3, r.stderr  # the command's status
    alerts = live["alerts"]
    firsts = [a for a in alerts if a["type"] == "alert"]
    assert sorted(a["rule"]["id"] for a in firsts) == sorted([SHADOW_ID, EXEC_ID_ID, EVIL_ID])
    shadow = next(a for a in firsts if a["rule"]["id"] == SHADOW_ID)
    assert shadow["level"] == "high"
    assert shadow["rule"]["techniques"] == ["T1003.008"]
    assert shadow["matched"]["TargetFilename"] == "/etc/shadow"
    p = shadow["process"]
    assert p["image"] == "/usr/bin/cat" and p["command_line"] == "cat /etc/shadow /etc/shadow"
    assert p["user"] == "root" and p["cwd"] == os.getcwd()
    anc = [(x["pid"], x["name"]) for x in shadow["ancestry"]]
    # ... > pytest's python > watch (python) > sh (the command) > cat
    assert anc[-1] == (p["pid"], "cat")
    assert anc[-2] == (p["ppid"], "sh")
    assert anc[-3] == (r.pid, PY)
    assert anc[-4] == (os.getpid(), PY)
    assert anc[0][0] == 1
    assert shadow["lineage"].endswith(f"{PY}({r.pid}) > sh({p['ppid']}) > cat({p['pid']})")
    # the sh process, not cat, ran id; its parent is the same sh
    exec_id = next(a for a in firsts if a["rule"]["id"] == EXEC_ID_ID)
    assert exec_id["process"]["image"] == "/usr/bin/id"
    assert exec_id["process"]["ppid"] == p["ppid"]
    assert exec_id["rule"]["techniques"] == ["T1033"]
    assert exec_id["events"][0]["kind"] == "process_creation"
    # the raw event behind the alert
    assert any(e["event"] == "syscalls:openat" and e["fields"]["filename"] == "/etc/shadow"
               for e in shadow["raw_events"])
    s = summary_of(r.stderr)
    assert s["lost"] == 0 and s["alerts"] == 3 and s["rule_errors"] == {}
    assert s["collapsed"] == 1 and s["events"] > 20 and s["backend"] == "bpf"
    # -o: what was stored, with the keys record --json gives
    assert s["file"] == os.path.abspath(live["cap"]) and s["status"] == "complete"
    assert s["written"] > 20 and s["bytes"] == os.path.getsize(live["cap"])
    # drops per CPU, as trace's summary gives them
    assert s["lost_per_cpu"] and sum(s["lost_per_cpu"].values()) == s["lost"]
    assert all(k.isdigit() for k in s["lost_per_cpu"])


def test_live_collapse_same_process(live: dict[str, Any]) -> None:
    shadow = [a for a in live["alerts"] if a["rule"]["id"] == SHADOW_ID]
    # cat opened /etc/shadow twice: one alert at once, its count when the run ended
    assert [(a["type"], a["count"]) for a in shadow] == [("alert", 1), ("repeat", 2)]
    assert shadow[0]["id"] == shadow[1]["id"]
    assert shadow[1]["last_ts"] > shadow[1]["ts"]


def test_live_json_valid_with_hostile_name(live: dict[str, Any]) -> None:
    """The hostile name in probewatch's one JSON scheme: {"b64": ...} (as trace --json)."""
    import base64

    from probewatch.decode.escape import from_json, json_bytes

    r = live["r"]
    line = next(x for x in r.stdout.splitlines() if EVIL_ID in x)
    line.encode("utf-8", "strict")
    a = json.loads(line)
    b64 = {"b64": base64.b64encode(EVIL_NAME).decode()}
    assert a["matched"]["TargetFilename"] == b64
    assert a["events"][0]["fields"]["TargetFilename"] == b64
    assert json_bytes(a["matched"]["TargetFilename"]) == EVIL_NAME
    assert "undecodable" not in a
    exact = from_json(a)["matched"]["TargetFilename"]
    assert exact.encode("utf-8", "surrogateescape") == EVIL_NAME
    # the raw event behind it carries the same bytes
    assert any(json_bytes(e["fields"]["filename"]) == EVIL_NAME for e in a["raw_events"]
               if isinstance(e["fields"].get("filename"), dict))


def test_replay_equals_live(live: dict[str, Any]) -> None:
    from probewatch.decode.escape import json_bytes

    r = run_cli("watch", "--no-default-rules", "--rules", SHADOW, "--rules", EXEC_ID,
                "--rules", EVIL, "--json", "--replay", str(live["cap"]))
    assert r.returncode == 0, r.stderr
    replay = _alerts(r.stdout)
    assert sorted(map(_key, replay)) == sorted(map(_key, live["alerts"]))
    assert len(replay) == 4
    evil = next(a for a in replay if a["rule"]["id"] == EVIL_ID)
    assert json_bytes(evil["matched"]["TargetFilename"]) == EVIL_NAME
    s = summary_of(r.stderr)
    assert s["events"] == summary_of(live["r"].stderr)["events"]


def test_report_alerts_text_escaped(live: dict[str, Any]) -> None:
    r = run_cli("report", str(live["cap"]), "--alerts")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3  # one per alert, repeats folded into the count
    shadow = next(x for x in lines if "read of /etc/shadow" in x)
    assert " HIGH " in shadow and "[T1003.008]" in shadow and "(x2)" in shadow
    assert shadow.endswith("Syscall=openat TargetFilename=/etc/shadow (x2)")
    evil = next(x for x in lines if "hostile name" in x)
    assert "\x1b" not in evil and "\\x1b[2J" in evil and "\\xff" in evil
    assert "pw-evil-\\xff\\n2026-01-01" in evil
    assert "3 alerts (4 with repeats)" in r.stderr


def test_report_alerts_json_is_what_watch_printed(live: dict[str, Any]) -> None:
    r = run_cli("report", str(live["cap"]), "--alerts", "--json")
    assert r.returncode == 0, r.stderr
    got = {json.loads(x)["rule"]["id"]: x for x in r.stdout.splitlines()}
    printed = {json.loads(x)["rule"]["id"]: x for x in live["r"].stdout.splitlines()
               if x.startswith('{"type":"alert"')}
    assert got[EVIL_ID] == printed[EVIL_ID]  # byte for byte, {"b64": ...} included
    assert '"b64"' in got[EVIL_ID]
    shadow = json.loads(got[SHADOW_ID])
    assert shadow["count"] == 2 and shadow["last_ts"] > shadow["ts"]
    assert summary_of(r.stderr) == {"alerts": 3, "occurrences": 4,
                                    "per_level": {"high": 1, "medium": 1, "low": 1}}


def test_malformed_rule_named_and_watch_goes_on(live: dict[str, Any]) -> None:
    r = run_cli("watch", "--no-default-rules", "--rules", MALFORMED, "--rules", SHADOW,
                "--replay", str(live["cap"]))
    assert r.returncode == 0, r.stderr
    warn = [x for x in r.stderr.splitlines() if "malformed.yml" in x]
    assert len(warn) == 1, r.stderr
    assert f"{MALFORMED}:22: 0b7e5c1a-7d0e-4f7b-9a51-5e0c0a7a0003 not run:" in warn[0]
    assert "read of /etc/shadow" in r.stdout  # the good rules still run
    r = run_cli("watch", "--no-default-rules", "--rules", MALFORMED.replace(".yml", ".nope"),
                "--replay", str(live["cap"]))
    assert r.returncode == 1 and "no such file or directory" in r.stderr


def test_rule_error_counted_and_watch_goes_on(live: dict[str, Any]) -> None:
    from probewatch.detect.engine import Engine, RuleSet
    from probewatch.detect.pipeline import Detector, new_table, replay_events, restore_table

    rules = RuleSet.load([SHADOW, EXEC_ID], default=False)
    broken = next(x for x in rules.rules if x.id == EXEC_ID_ID)

    def boom(fields: Any, low: Any) -> bool:
        raise ValueError("rule blew up")

    broken.fn = boom
    got: list[Any] = []
    with replay_events(str(live["cap"])) as rp:
        table = new_table(replay=True)
        restore_table(table, rp.snapshot)
        det = Detector(Engine(rules), table=table, emit=got.append,
                       wall_offset_ns=rp.wall_offset_ns)
        for ev in rp.events:
            det.feed(ev)
        st = det.finish()
    # evaluated (and failing) once: on the one exec whose Image basename is "id" (the
    # engine indexes process_creation rules by it)
    assert st.rule_errors == {EXEC_ID_ID: 1}
    assert [a.rule_id for a in got if a.kind == "alert"] == [SHADOW_ID]
    assert "rule errors: " + EXEC_ID_ID + "=1" in st.line()


def test_record_watch_then_replay(bpf: None, tmp_path: Path) -> None:
    cap = tmp_path / "rec.db"
    r = run_cli("record", "--watch", "-o", str(cap), "--", "sh", "-c",
                "cat /etc/shadow >/dev/null")
    assert r.returncode == 0, r.stderr
    assert f"to {cap}" in r.stderr and "lost 0" in r.stderr
    r2 = run_cli("watch", "--no-default-rules", "--rules", SHADOW, "--json",
                 "--replay", str(cap))
    assert r2.returncode == 0, r2.stderr
    alerts = _alerts(r2.stdout)
    assert [(a["rule"]["id"], a["process"]["image"]) for a in alerts] == \
        [(SHADOW_ID, "/usr/bin/cat")]
    assert alerts[0]["lineage"].split(" > ")[-2].startswith("sh(")
    r3 = run_cli("record", "--watch", "t:sched:sched_switch", "-o", str(tmp_path / "x.db"))
    assert r3.returncode == 1 and "no SPEC" in r3.stderr


def test_tracefs_fallback_says_once_and_goes_on(tracefs: str) -> None:
    env = dict(os.environ, PROBEWATCH_WATCH_BACKEND="ftrace")
    r = run_cli("watch", "--no-default-rules", "--rules", SHADOW, "--rules", EXEC_ID,
                "--json", "--", "sh", "-c", "id >/dev/null; cat /etc/shadow >/dev/null",
                env=env)
    assert r.returncode == 0, r.stderr
    warn = [x for x in r.stderr.splitlines() if "BPF is not usable here" in x]
    assert len(warn) == 1, r.stderr
    w = warn[0]
    assert "(PROBEWATCH_WATCH_BACKEND=ftrace)" in w and "watching tracefs events" in w
    assert "TargetFilename" in w and "CommandLine" in w
    assert f"1 loaded rules use these fields and may not fire: {SHADOW_ID}" in w
    alerts = _alerts(r.stdout)
    assert [(a["rule"]["id"], a["process"]["image"]) for a in alerts] == \
        [(EXEC_ID_ID, "/usr/bin/id")]
    s = summary_of(r.stderr)
    assert s["backend"] == "ftrace" and s["lost"] == 0


def test_repeat_reported_when_window_ends_then_sigterm(bpf: None) -> None:
    """A collapse window closes by the clock (no further event needed); SIGTERM ends
    watch with its summary, passes on to the command, and watch exits with its status."""
    script = "cat /etc/shadow /etc/shadow >/dev/null; echo ready; exec sleep 30"
    with subprocess.Popen([*CLI, "watch", "--no-default-rules", "--rules", SHADOW,
                           "--json", "--window", "0.5", "--", "sh", "-c", script],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        assert p.stdout is not None
        guard = threading.Timer(60, p.kill)  # never hang the suite
        guard.start()
        lines = []
        while True:  # the command's "ready" and our alerts share stdout
            line = p.stdout.readline()
            assert line, "watch ended early"
            lines.append(line)
            if '"type":"repeat"' in line:
                break
        assert p.poll() is None  # reported while watch (and sleep) still run
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        guard.cancel()
    assert "ready\n" in lines
    alerts = _alerts("".join(lines) + out)
    assert [(a["type"], a["count"]) for a in alerts] == [("alert", 1), ("repeat", 2)]
    assert p.returncode == 128 + signal.SIGTERM, err  # the command got SIGTERM too
    s = summary_of(err)
    assert s["backend"] == "bpf" and s["lost"] == 0 and s["alerts"] == 1
    assert "Traceback" not in err


def test_pid_filter_and_sigint(bpf: None) -> None:
    """-p PID: that process and its children only; SIGINT ends watch with status 0."""
    with subprocess.Popen(["sh", "-c", "read x; cat /etc/shadow >/dev/null"],
                          stdin=subprocess.PIPE, text=True) as target, \
            subprocess.Popen([*CLI, "watch", "--no-default-rules", "--rules", SHADOW,
                              "-p", str(target.pid)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) as p:
        guard = threading.Timer(60, p.kill)
        guard.start()
        assert p.stderr is not None and p.stdout is not None and target.stdin is not None
        start = p.stderr.readline()
        assert f"watching pid {target.pid} and descendants with 1 rules (bpf" in start
        subprocess.run(["cat", "/etc/shadow"], stdout=subprocess.DEVNULL, check=True)
        target.stdin.write("go\n")
        target.stdin.close()
        assert target.wait(timeout=20) == 0
        line = p.stdout.readline()  # the target's child's alert
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        guard.cancel()
    assert "read of /etc/shadow" in line and f"sh({target.pid}) > cat(" in line
    assert out == ""  # nothing about the cat outside the tree
    assert p.returncode == 0, err
    assert "watch: " in err and " 1 alerts" in err and "lost 0" in err


def test_filters_keep_site_exceptions_apart(bpf: None) -> None:
    """--filters: the same read by an excepted program raises nothing, by another one
    it still alerts."""
    r = run_cli("watch", "--no-default-rules", "--rules", SHADOW, "--filters",
                str(RULES / "site_filters.yml"), "--json", "--", "sh", "-c",
                "head -c1 /etc/shadow >/dev/null; cat /etc/shadow >/dev/null")
    assert r.returncode == 0, r.stderr
    firsts = [a for a in _alerts(r.stdout) if a["type"] == "alert"]
    assert [(a["rule"]["id"], a["process"]["image"].rsplit("/", 1)[-1]) for a in firsts] == [
        (SHADOW_ID, "cat")]


def test_filters_path_must_exist() -> None:
    r = run_cli("watch", "--filters", "/nonexistent/filters.yml", "-d", "1")
    assert r.returncode != 0
    assert "--filters /nonexistent/filters.yml: no such file or directory" in r.stderr
