#!/usr/bin/env python3
"""Rule evaluation alone: SigmaEvents through Engine.process, events/s on one core.

Loaded: the shipped rules plus 250 Sigma rules — SigmaHQ's Linux rules when a checkout
is found (``--sigmahq PATH``, else $SIGMAHQ_RULES, else /work/wt/sigmahq), topped up to
250 runnable rules with generated variants of the same shapes (Image endswith lists,
CommandLine contains/all, ParentImage, TargetFilename prefixes, syscall arguments,
ports and CIDRs, auditd a0/a1, a regex or a keyword now and then).

Events: a generated mix in the proportions a ``watch`` of a build / shell workload
produces (``--mix``): per activity one ``syscall`` SigmaEvent and its ``auditd``
SYSCALL record, a ``file_event`` for files opened for writing, ``network_connection``
for connects and ``process_creation`` (+ auditd EXECVE) for execs, all with the full
set of process fields. ``--events N`` (default 200,000) are built first, then run
through one Engine ``--repeat`` times; the best run counts.

Prints events/s per CPU second (process time of this single-threaded loop) and wall,
per kind, and the match count::

    python bench/rule_eval.py
    python bench/rule_eval.py --sigmahq /tmp/sigma --events 500000 --repeat 5
    python bench/rule_eval.py --json
    python bench/rule_eval.py --workload 'tar czf /tmp/d.tgz -C /usr/share doc'   # recorded

The target is >= 200,000 events/s per core.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from probewatch.detect.engine import Engine, RuleSet  # noqa: E402
from probewatch.detect.model import SigmaEvent  # noqa: E402

BINARIES = [
    "/usr/bin/bash", "/usr/bin/ls", "/usr/bin/git", "/usr/bin/python3.11", "/usr/bin/gcc",
    "/usr/lib/gcc/x86_64-linux-gnu/12/cc1", "/usr/bin/as", "/usr/bin/ld", "/usr/bin/make",
    "/usr/bin/tar", "/usr/bin/gzip", "/usr/bin/cat", "/usr/bin/grep", "/usr/bin/sed",
    "/usr/bin/awk", "/usr/bin/find", "/usr/bin/sort", "/usr/bin/ssh", "/usr/bin/curl",
    "/usr/bin/id", "/usr/sbin/sshd", "/usr/bin/vim", "/usr/bin/env", "/usr/bin/dash",
]
SYSCALLS = ["read", "write", "openat", "close", "fstat", "mmap", "futex", "newfstatat",
            "lseek", "getdents64", "brk", "rt_sigaction", "ioctl", "pread64", "mprotect",
            "connect", "execve", "clone3", "wait4", "dup2", "unlinkat", "renameat2",
            "fchmodat", "ptrace", "prctl", "memfd_create", "bpf", "setsockopt"]
WEIGHTS = [30, 22, 14, 10, 6, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0.5, 0.3, 0.3, 0.3, 0.1, 0.3,
           0.2, 0.1, 0.02, 0.05, 0.02, 0.02, 0.1]
FILES = ["/usr/lib/x86_64-linux-gnu/libc.so.6", "/etc/ld.so.cache", "/tmp/cc1.s",
         "/home/user/src/main.c", "/home/user/src/build/main.o", "/proc/self/status",
         "/dev/null", "/usr/include/stdio.h", "/home/user/.bash_history", "/etc/passwd"]


def process_fields(rng: random.Random, pid: int) -> dict[str, Any]:
    img = rng.choice(BINARIES)
    base = img.rsplit("/", 1)[-1]
    args = " ".join(rng.choice(["-c", "-o", "main.o", "-O2", "x", "--help", "/tmp/a",
                                "-la", "origin", "status"]) for _ in range(rng.randint(0, 4)))
    f: dict[str, Any] = {
        "Image": img, "CommandLine": f"{base} {args}".strip(), "Argv0": base,
        "Comm": base[:15], "CurrentDirectory": "/home/user/src", "ProcessId": pid,
        "ParentProcessId": pid - 1, "ParentImage": rng.choice(BINARIES),
        "ParentCommandLine": "bash", "GrandparentImage": "/usr/sbin/sshd",
        "User": rng.choice(["user", "root"]), "Uid": 1000, "Euid": 1000, "Gid": 1000,
        "Egid": 1000, "LogonId": 1000,
    }
    if rng.random() < 0.05:
        f["LD_LIBRARY_PATH"] = "/opt/lib"
    return f


def make_events(n: int, seed: int = 1) -> list[SigmaEvent]:
    rng = random.Random(seed)
    out: list[SigmaEvent] = []
    ts = 0
    while len(out) < n:
        ts += rng.randint(1000, 50000)
        pid = rng.randint(1000, 1400)
        pf = process_fields(rng, pid)
        sc = rng.choices(SYSCALLS, WEIGHTS)[0]
        ok = rng.random() > 0.1
        sf = dict(pf, Syscall=sc, Return=0 if ok else -2, Success=ok)
        if sc in ("openat", "unlinkat", "renameat2", "fchmodat", "execve"):
            path = rng.choice(FILES)
            sf.update(filename=path, TargetFilename=path,
                      flags=rng.choice(["O_RDONLY|O_CLOEXEC", "O_WRONLY|O_CREAT|O_TRUNC"]))
        elif sc in ("read", "write", "close", "fstat", "lseek", "pread64", "ioctl"):
            sf.update(fd=rng.randint(0, 20), count=rng.randint(1, 65536))
        elif sc == "ptrace":
            sf.update(request="PTRACE_TRACEME", pid=0)
        elif sc == "dup2":
            sf.update(oldfd=3, newfd=rng.randint(0, 4))
        if not ok:
            sf["Errno"] = "ENOENT"
        out.append(SigmaEvent("syscall", ts, pid, sf))
        audit = dict(pf, type="SYSCALL", SYSCALL=sc, exe=pf["Image"], comm=pf["Comm"],
                     uid="1000", euid="1000", auid="1000", success="yes" if ok else "no",
                     exit=str(sf["Return"]))
        out.append(SigmaEvent("auditd", ts, pid, audit))
        if "TargetFilename" in sf:
            out.append(SigmaEvent("auditd", ts, pid, dict(
                pf, type="PATH", name=sf["TargetFilename"], nametype="NORMAL")))
            if "O_WRONLY" in str(sf.get("flags")) or sc != "openat":
                out.append(SigmaEvent("file_event", ts, pid, dict(
                    pf, TargetFilename=sf["TargetFilename"], Operation="write",
                    Flags=sf.get("flags"), Syscall=sc, Success=ok)))
        if sc == "connect":
            out.append(SigmaEvent("network_connection", ts, pid, dict(
                pf, DestinationIp=rng.choice(["10.0.0.5", "140.82.121.4", "127.0.0.1"]),
                DestinationPort=rng.choice([443, 22, 80, 53]), SourceIp="10.0.0.2",
                SourcePort=rng.randint(30000, 60000), DestinationIsIpv6="false",
                Initiated="true", Protocol="tcp", Fd=3, Success=True)))
        if sc == "execve":
            out.append(SigmaEvent("process_creation", ts, pid, dict(
                pf, OriginalArgv0=pf["Argv0"], ExecSyscall="execve")))
            argv = pf["CommandLine"].split()
            ex = dict(pf, type="EXECVE", argc=str(len(argv)))
            for i, a in enumerate(argv):
                ex[f"a{i}"] = a
            out.append(SigmaEvent("auditd", ts, pid, ex))
    return out[:n]


def variant_rules(n: int, seed: int = 7) -> str:
    """n generated Sigma rules of the shapes SigmaHQ's Linux rules use."""
    rng = random.Random(seed)
    words = ["nc", "ncat", "socat", "xmrig", "chattr", "setcap", "insmod", "kmod", "nmap",
             "masscan", "hping3", "tcpdump", "tshark", "base64", "openssl", "perl", "ruby",
             "lua", "php", "busybox", "wget", "curl", "scp", "rsync", "crontab", "at",
             "systemctl", "useradd", "usermod", "passwd", "chpasswd", "iptables", "ufw"]
    docs = []
    for i in range(n):
        shape = i % 8
        title = f"variant {i}"
        w = rng.sample(words, 3)
        if shape in (0, 1, 2):
            det = {"sel": {"Image|endswith": [f"/{x}" for x in w]},
                   "opt": {"CommandLine|contains": [f" -{rng.choice('abcdefxyz')} ",
                                                    f"--{rng.choice(words)}"]},
                   "condition": "sel and opt"}
            ls = {"product": "linux", "category": "process_creation"}
        elif shape == 3:
            det = {"sel": {"ParentImage|endswith": f"/{w[0]}",
                           "CommandLine|contains|all": [w[1], w[2]]},
                   "condition": "sel"}
            ls = {"product": "linux", "category": "process_creation"}
        elif shape == 4:
            det = {"sel": {"TargetFilename|startswith": [f"/etc/{w[0]}", f"/var/lib/{w[1]}"]},
                   "filter": {"Image|endswith": [f"/{w[2]}"]},
                   "condition": "sel and not filter"}
            ls = {"product": "linux", "category": "file_event"}
        elif shape == 5:
            det = {"sel": {"Syscall": rng.choice(["ptrace", "prctl", "bpf", "setsockopt",
                                                  "memfd_create", "init_module"]),
                           "Comm|contains": w[0]},
                   "condition": "sel"}
            ls = {"product": "linux", "category": "syscall"}
        elif shape == 6:
            det = {"sel": {"type": "EXECVE", "a0|endswith": w[0], "a1|contains": "-"},
                   "condition": "sel"}
            ls = {"product": "linux", "service": "auditd"}
        else:
            det = {"sel": {"DestinationPort": [rng.randint(1024, 65535) for _ in range(3)]},
                   "net": {"DestinationIp|cidr": "10.0.0.0/8"},
                   "kw": [f"{w[0]}{w[1]}"],
                   "condition": "sel and not net or kw"}
            ls = {"product": "linux", "category": "network_connection"}
        docs.append({"title": title, "logsource": ls, "detection": det, "level": "medium"})
    import yaml

    return yaml.safe_dump_all(docs, sort_keys=False)


def record_workload(cmd: str, rules: RuleSet, limit: int) -> list[SigmaEvent]:
    """SigmaEvents of a real run of ``cmd`` under watch's event source (root, BPF):
    live_events -> process table -> Mapper, kept in memory (at most ``limit``)."""
    import shlex

    from probewatch.detect.pipeline import live_events, new_mapper, new_table, seed_table

    table = new_table()
    seed_table(table)
    mapper = new_mapper(table)
    out: list[SigmaEvent] = []
    with live_events(command=shlex.split(cmd), rules=rules) as src:
        for ev in src.events():
            if len(out) < limit:
                out.extend(mapper.map(ev))
    return out[:limit]


def find_sigmahq(arg: str | None) -> Path | None:
    for c in (arg, os.environ.get("SIGMAHQ_RULES"), "/work/wt/sigmahq"):
        if not c:
            continue
        p = Path(c)
        if (p / "rules" / "linux").is_dir():
            return p / "rules" / "linux"
        if p.is_dir():
            return p
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sigmahq", metavar="PATH", help="SigmaHQ checkout or rules/linux")
    ap.add_argument("--sigma-rules", type=int, default=250, help="Sigma rules on top of "
                    "the shipped ones (default 250)")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--workload", metavar="CMD",
                    help="record the events of CMD live (root, BPF) and use those instead "
                    "of the generated mix, e.g. 'tar czf /tmp/d.tgz -C /usr/share doc'")
    ap.add_argument("--gc-freeze", action="store_true",
                    help="gc.freeze() after loading (as a long-running watch may)")
    a = ap.parse_args()

    t0 = time.perf_counter()
    shipped = RuleSet.load([], default=True)
    n_shipped = len(shipped.rules)
    paths: list[Path] = []
    sigmahq = find_sigmahq(a.sigmahq)
    n_hq = 0
    with tempfile.TemporaryDirectory() as tmp:
        if sigmahq is not None:
            paths.append(sigmahq)
            n_hq = len(RuleSet.load([sigmahq], default=False).rules)
        n_var = max(0, a.sigma_rules - n_hq)
        if n_var:
            vp = Path(tmp) / "variants.yml"
            vp.write_text(variant_rules(n_var))
            paths.append(vp)
        rs = RuleSet.load(paths, default=True)
    load_s = time.perf_counter() - t0
    if a.gc_freeze:
        import gc

        gc.collect()
        gc.freeze()  # the rules are long-lived: keep them out of every collection
    source = "generated mix"
    if a.workload:
        events = record_workload(a.workload, rs, a.events)
        source = f"recorded: {a.workload}"
    else:
        events = make_events(a.events)
    kinds = Counter(e.kind for e in events)

    best: dict[str, Any] | None = None
    for _ in range(a.repeat):
        engine = Engine(rs)
        proc = engine.process
        c0, w0 = time.process_time(), time.perf_counter()
        matches = 0
        for ev in events:
            m = proc(ev)
            if m:
                matches += len(m)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        run = {"cpu_s": cpu, "wall_s": wall, "matches": matches,
               "events_per_cpu_s": len(events) / cpu if cpu else 0.0,
               "events_per_wall_s": len(events) / wall if wall else 0.0,
               "errors": sum(engine.errors.values())}
        if best is None or run["events_per_cpu_s"] > best["events_per_cpu_s"]:
            best = run
    assert best is not None

    # per kind (one pass each, best of the same repeat count)
    per_kind: dict[str, float] = {}
    for k in kinds:
        evs = [e for e in events if e.kind == k]
        rates = []
        for _ in range(a.repeat):
            engine = Engine(rs)
            proc = engine.process
            c0 = time.process_time()
            for ev in evs:
                proc(ev)
            dt = time.process_time() - c0
            rates.append(len(evs) / dt if dt else 0.0)
        per_kind[k] = max(rates)
    e = Engine(rs)
    res = {
        "rules": len(rs.rules), "shipped": n_shipped, "sigmahq": n_hq,
        "variants": max(0, a.sigma_rules - n_hq), "sigmahq_path": str(sigmahq or ""),
        "rules_per_kind": e.stats()["rules"], "load_s": round(load_s, 2),
        "events": len(events), "source": source, "mix": dict(kinds), **best,
        "per_kind_events_per_cpu_s": per_kind, "target": 200_000,
    }
    if a.json:
        print(json.dumps(res))
        return 0
    print(f"rules: {res['rules']} runnable ({n_shipped} shipped, {n_hq} SigmaHQ linux, "
          f"{res['variants']} generated variants); per kind {res['rules_per_kind']}; "
          f"loaded in {load_s:.1f} s")
    print(f"events: {len(events)} {source} "
          f"({', '.join(f'{k} {v}' for k, v in kinds.most_common())})")
    print(f"rate: {best['events_per_cpu_s']:,.0f} events/s per CPU second "
          f"({best['events_per_wall_s']:,.0f}/s wall), {best['matches']} matches, "
          f"{best['errors']} evaluation errors (best of {a.repeat})")
    for k, r in sorted(per_kind.items(), key=lambda kv: kv[1]):
        print(f"  {k:<20} {r:>12,.0f} events/s")
    print(f"target 200,000 events/s: {'met' if best['events_per_cpu_s'] >= 200_000 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
