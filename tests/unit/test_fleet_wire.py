"""The fleet's wire format, spill directory and store, without a server: round trips
(bytes, undecodable strings), hostile message bodies, sequence numbers that survive a
restart, the spill bound, dedupe by (host, boot, seq)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probewatch.capture import Capture
from probewatch.event import Event
from probewatch.fleet.spill import Pending, Spill, SpillError
from probewatch.fleet.store import FleetStore
from probewatch.fleet.wire import (
    MAGIC,
    WireError,
    decode_batch,
    encode_batch,
    event_record,
    host_token,
    parse_msg_id,
    record_event,
)


def meta(seq: int = 1, kind: str = "events", host: str = "web1") -> dict[str, object]:
    return {"host": host, "boot": "b00t", "seq": seq, "kind": kind, "lost": 0,
            "wall_offset_ns": 1_000}


def test_round_trip_keeps_bytes_and_undecodable_strings() -> None:
    ev = Event(5, 1, 42, 43, "ba\udcffsh", "syscalls:openat", "bpf:syscalls",
               {"filename": "/tmp/\udcfe\udcff", "buf": b"\x00\xff", "n": -3, "t": 1.5,
                "none": None, "argv": ["a", "b\udc80"]})
    m, recs = decode_batch(encode_batch(meta(), [event_record(ev)]))
    assert m["seq"] == 1 and m["host"] == "web1"
    back = record_event(recs[0])
    assert back == ev
    assert back.fields["buf"] == b"\x00\xff" and back.comm == "ba\udcffsh"


def test_host_token_and_msg_id() -> None:
    assert host_token("web1.example.com") == "web1_example_com"
    assert host_token("a*b>c d") == "a_b_c_d"
    assert host_token("") == "unknown"
    assert parse_msg_id("web1:abc:17") == ("web1", "abc", 17)
    for bad in ("web1:abc", "web1:abc:x", ":abc:1", "a:b:c:1"):
        with pytest.raises(WireError):
            parse_msg_id(bad)


@pytest.mark.parametrize("body, msg", [
    (b"", "bad magic"),
    (b"PW1z" + b"garbage", "bad compressed"),
    (MAGIC + zlib.compress(b"\xc1"), "bad batch encoding"),
    (MAGIC + zlib.compress(msgspec.msgpack.encode([1, 2])), "not \\[meta, records\\]"),
    (MAGIC + zlib.compress(msgspec.msgpack.encode([{"host": "x"}, []])), "lacks boot"),
    (MAGIC + zlib.compress(msgspec.msgpack.encode(
        [{"host": "x", "boot": "b", "seq": 1, "kind": "shell"}, []])), "unknown batch kind"),
    (MAGIC + zlib.compress(b"\x00" * (65 << 20), 9), "inflates beyond"),
    (MAGIC + zlib.compress(msgspec.msgpack.encode([{}, []]))[:-4], "truncated"),
], ids=["empty", "not-zlib", "not-msgpack", "not-pair", "no-boot", "bad-kind", "zip-bomb",
        "truncated"])
def test_hostile_bodies_are_refused(body: bytes, msg: str) -> None:
    with pytest.raises(WireError, match=msg):
        decode_batch(body)


def test_bad_event_records_are_refused() -> None:
    for rec in ([1, 2], ["ts", 0, 1, 1, "c", "e", "p", {}], [1, 0, 1, 1, "c", "e", "p", []]):
        with pytest.raises(WireError):
            record_event(rec)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_decode_only_wire_errors(body: bytes) -> None:
    for b in (body, MAGIC + body, MAGIC + zlib.compress(body)):
        try:
            m, recs = decode_batch(b)
        except WireError as e:
            assert str(e)
        else:
            assert isinstance(m, dict) and isinstance(recs, list)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**63 - 1), st.text(max_size=20),
                          st.dictionaries(st.text(max_size=8),
                                          st.one_of(st.integers(-2**63, 2**63 - 1),
                                                    st.text(max_size=20),
                                                    st.binary(max_size=20), st.none()),
                                          max_size=5)), max_size=20))
def test_fuzz_round_trip(evs: list[tuple[int, str, dict[str, object]]]) -> None:
    events = [Event(ts, 0, 1, 1, comm, "x:y", "p", fields) for ts, comm, fields in evs]
    _, recs = decode_batch(encode_batch(meta(), [event_record(e) for e in events]))
    assert [record_event(r) for r in recs] == events


def body(seq: int) -> Pending:
    return Pending(seq, "probewatch.web1.events", f"web1:b00t:{seq}", b"x" * 100, 10,
                   "events")


def test_spill_survives_a_restart_and_never_reuses_a_sequence(tmp_path: Path) -> None:
    sp = Spill(str(tmp_path), "b00t")
    seqs = [sp.next_seq() for _ in range(5)]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    for s in seqs[:3]:
        assert sp.put(body(s))
    with pytest.raises(SpillError, match="in use by another"):
        Spill(str(tmp_path), "b00t")
    sp.close()
    sp2 = Spill(str(tmp_path), "b00t")
    assert sp2.seqs() == seqs[:3]
    p = sp2.load(seqs[1])
    assert p is not None and p.msg_id == f"web1:b00t:{seqs[1]}" and p.body == b"x" * 100
    assert sp2.next_seq() > seqs[-1]
    sp2.remove(seqs[1])
    assert sp2.seqs() == [seqs[0], seqs[2]]
    sp2.close()
    # a new boot: a new sequence space, but what waits on disk is kept
    sp3 = Spill(str(tmp_path), "other-boot")
    assert sp3.seqs() == [seqs[0], seqs[2]] and sp3.next_seq() > seqs[-1]
    sp3.close()


def test_spill_bound_drops_and_counts(tmp_path: Path) -> None:
    sp = Spill(str(tmp_path), "b00t", max_bytes=1000)
    assert sp.put(body(0))
    size = sp.bytes
    fit = 1000 // size
    kept = [True] + [sp.put(body(i)) for i in range(1, 10)]
    assert 1 < fit < 10 and kept == [True] * fit + [False] * (10 - fit)
    assert sp.dropped_batches == 10 - fit and sp.dropped_events == 10 * (10 - fit)
    assert sp.bytes == fit * size <= 1000
    assert len(list(tmp_path.glob("*.pwb"))) == fit
    sp.close()
    # counted across restarts
    assert Spill(str(tmp_path), "b00t").dropped_events == 10 * (10 - fit)


def test_store_dedupes_by_host_boot_seq_and_reopens(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    st_ = FleetStore(str(db))
    evs = [Event(10 + i, 0, 7, 7, "sh", "syscalls:openat", "bpf:syscalls",
                 {"i": i, "raw": b"\x01"}) for i in range(3)]
    with st_.transaction():
        assert st_.store_batch(meta(1), [], evs)
        assert not st_.store_batch(meta(1), [], evs)          # same seq: skipped
        assert st_.store_batch(meta(1, host="db1"), [], evs)  # another host's seq 1
        assert st_.store_batch(meta(2, "processes"),
                               [{"pid": 7, "ppid": 1, "comm": "sh"}])
    st_.close()
    st2 = FleetStore(str(db))
    with st2.transaction():
        assert not st2.store_batch(meta(1), [], evs)  # remembered across a reopen
    assert st2.count_events("web1") == 3 and st2.count_events() == 6
    st2.close()
    with Capture(db) as cap:
        assert cap.schema_version == 3
        runs = cap.runs()
        assert sorted(r.host for r in runs) == ["db1", "web1"]
        got = list(cap.events())
        assert len(got) == 6 and got[0].fields == {"i": 0, "raw": b"\x01"}
        assert cap.process_snapshot(run=[r.id for r in runs if r.host == "web1"][0]) == [
            {"pid": 7, "ppid": 1, "comm": "sh"}]
        # reports select hosts
        assert [e.fields["i"] for e in cap.events(host="db1")] == [0, 1, 2]
        assert cap.count(host="web1") == 3 and cap.count(host="nope") == 0
    c = sqlite3.connect(db)
    assert c.execute("SELECT count(*) FROM fleet_batches").fetchone()[0] == 3
    c.close()
    r = subprocess.run([sys.executable, "-m", "probewatch", "report", str(db), "--host",
                        "db1", "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["fields"]["i"] for x in lines] == [0, 1, 2]


@pytest.mark.parametrize("argv, msg", [
    (["watch", "--creds", "x.creds", "--", "true"], "--creds applies to --export"),
    (["fleet", "init", "nats://127.0.0.1:1", "--wait", "1"], "cannot connect to"),
    (["fleet", "auth", "a.b", "-o", "{tmp}/auth"], "is not one subject token: use 'a_b'"),
])
def test_cli_errors_are_one_line(argv: list[str], msg: str, tmp_path: Path) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    r = subprocess.run([sys.executable, "-m", "probewatch", *argv], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("probewatch: error: ") and msg in lines[0], \
        r.stderr


def test_connect_options(tmp_path: Path) -> None:
    from probewatch.errors import ProbewatchError
    from probewatch.fleet.connect import check_url, connect_kwargs, read_creds

    with pytest.raises(ProbewatchError, match="'http://h:1' is not a NATS server URL"):
        check_url("http://h:1")
    with pytest.raises(ProbewatchError, match="--creds /nonexistent/x: No such file"):
        read_creds("/nonexistent/x")
    bad = tmp_path / "bad.creds"
    bad.write_text("[1]")
    with pytest.raises(ProbewatchError, match="neither a NATS .creds file"):
        read_creds(str(bad))
    good = tmp_path / "web1.creds"
    good.write_text(json.dumps({"user": "web1", "password": "pw", "host": "web1",
                                "inbox_prefix": "_INBOX_web1"}))
    kw = connect_kwargs("nats://a:1,nats://b:2", creds=str(good))
    assert kw["servers"] == ["nats://a:1", "nats://b:2"]
    assert (kw["user"], kw["password"], kw["inbox_prefix"]) == ("web1", "pw", "_INBOX_web1")
    # the defaults changed for an agent that must ride out a server restart
    assert kw["max_reconnect_attempts"] == -1 and kw["ping_interval"] == 5
    assert kw["pending_size"] == 512 * 1024
    from probewatch.cli.collect import ui_addr

    assert ui_addr(":8080") == ("127.0.0.1", 8080)
    assert ui_addr("[::1]:0") == ("::1", 0)
    with pytest.raises(ProbewatchError, match="--ui nope: expected"):
        ui_addr("nope")
    jwt = tmp_path / "u.creds"
    jwt.write_text("-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------\n")
    assert connect_kwargs("nats://a:1", creds=str(jwt))["user_credentials"] == str(jwt)


def test_collector_checks_subjects_and_remembers_processes(tmp_path: Path) -> None:
    """A batch whose meta names another host than its subject is refused; a restarted
    collector seeds a host's process table from what the store holds."""
    from probewatch.fleet.collector import Collector

    db = str(tmp_path / "fleet.db")
    procs = [{"pid": 50, "ppid": 1, "comm": "sshd", "exe": "/usr/sbin/sshd",
              "argv": ["sshd", "-D\udcff"]}]
    col = Collector("nats://127.0.0.1:1", db, track=True)
    with col.store.transaction():
        assert not col.handle("probewatch.web1.processes",
                              encode_batch(meta(1, "processes", host="db1"), procs))
        assert not col.handle("probewatch.web1.events", b"junk")
        assert col.handle("probewatch.web1.processes",
                          encode_batch(meta(2, "processes"), procs))
    assert col.hosts["web1"].rejected == 2 and col.rejected == 2
    col.finish()
    col2 = Collector("nats://127.0.0.1:1", db, track=True)
    ev = Event(10, 0, 51, 51, "bash", "syscalls:openat", "bpf:syscalls", {"ret": 3})
    with col2.store.transaction():
        assert col2.handle("probewatch.web1.events",
                           encode_batch(meta(3), [event_record(ev)]))
    t = col2.hosts["web1"].table
    assert t.get(50) is not None and t.get(50).argv == ["sshd", "-D\udcff"]
    assert col2.hosts["web1"].events == 1
    col2.finish()
    # detection that fails (here: no usable rule set) never stops the storing
    col3 = Collector("nats://127.0.0.1:1", db, rules=object())
    with col3.store.transaction():
        assert col3.handle("probewatch.web1.events",
                           encode_batch(meta(4), [event_record(ev)]))
    assert col3.hosts["web1"].detect_errors == 1 and "detection" in col3.last_error
    assert col3.store.count_events("web1") == 2
    col3.finish()


def test_store_refuses_an_older_capture(tmp_path: Path) -> None:
    from probewatch.errors import ProbewatchError

    db = tmp_path / "old.db"
    FleetStore(str(db)).close()
    c = sqlite3.connect(db)
    c.execute("DROP VIEW host_events")
    c.execute("DROP TABLE fleet_batches")
    c.execute("PRAGMA user_version = 2")
    c.commit()
    c.close()
    with pytest.raises(ProbewatchError, match="schema 2, not a fleet store"):
        FleetStore(str(db))
