#!/usr/bin/env python3
"""probewatch syscalls -f against strace -f, line by line, on real programs.

Each program is run twice on the same inputs: under ``strace -f -o FILE`` and under
``probewatch syscalls -f -o FILE --``. Both traces are cut to the program (everything
before its first successful execve is the launcher's), split per thread, threads are
paired through the clone/fork returns, and each thread's lines are aligned (difflib on
the syscall names). Before comparing, both sides are masked the same way:

- addresses (hex of 7 or more digits: mmap areas, the stack, the heap) become
  ``0xADDR``;
- ephemeral ports (``htons(N)`` with N in net.ipv4.ip_local_port_range) become
  ``htons(PORT)``; epoll data above 32 bits (``u64=N``: stack bytes, an address) ``ADDR``;
- the traced pids/tids become ``PID`` (clone returns, set_tid_address, getpid, ...);
- times (``tv_sec=``, ``tv_nsec=``, ``tv_usec=`` values) become ``T``;
- random bytes (the getrandom buffer) become ``"RANDOM"``; the heap's address (brk)
  and sysinfo's load/free-memory/uptime/procs numbers are masked too (they change
  from one run to the next);
- strace's column padding before `` = `` is one space (probewatch does not pad).

Signal and exit notices (``--- SIGCHLD ... ---``, ``+++ exited with 0 +++``) are not
syscall lines and are dropped, and so are uretprobe/uprobe syscalls (the trampoline of
another tracer's uprobes on the machine makes them, not the program); strace's
``<unfinished ...>``/``<... resumed>`` pairs are joined into one line first.

Per program two numbers: **syscall agreement** = aligned lines whose name, return value
and errno agree, over the larger of the two line counts (a missing or extra call counts
against it); **identical** = whole lines equal after masking, over the same count.

Run as root::

    python bench/strace_compare.py                 # every program, a table
    python bench/strace_compare.py ls gzip -v      # some, with the differing lines
    python bench/strace_compare.py --json out.json

The tests in tests/integration/test_strace_exact.py load this file.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ parsing


@dataclass
class Call:
    """One syscall line: who made it, its name, its return text, the whole masked text."""

    tid: int
    name: str
    ret: str  # '3', '-1 ENOENT', '?', '0xADDR' (value and errno only)
    text: str  # the whole line, masked, without the pid prefix


def _args_end(line: str, start: int) -> int:
    """Index just past the ')' closing the '(' at ``start`` (quotes and nesting aware)."""
    depth = 0
    i, n = start, len(line)
    while i < n:
        c = line[i]
        if c == '"':
            i += 1
            while i < n and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


_RET = re.compile(r"\s*=\s*(-?\d+|0x[0-9a-fA-F]+|\?)(?:\s+([A-Z][A-Z0-9_]+))?")


def split_call(text: str) -> tuple[str, str, str, str] | None:
    """'openat(...)   = 3 (x)' -> (name, args text with parens, ret, rest after '=')."""
    p = text.find("(")
    if p <= 0 or not re.fullmatch(r"[a-z_0-9]+", text[:p]):
        return None
    end = _args_end(text, p)
    if end < 0:
        return None
    tail = text[end:]
    m = _RET.match(tail)
    if not m:
        return None
    ret = m.group(1) + (f" {m.group(2)}" if m.group(2) else "")
    return text[:p], text[p:end], ret, tail[m.end():]


_ADDR = re.compile(r"0x[0-9a-f]{7,}")
_SYSINFO = re.compile(r"\b(uptime|loads|freeram|sharedram|bufferram|freeswap|procs)="
                      r"(\[[0-9, ]*\]|\d+)")
_TIME = re.compile(r"\b(tv_sec|tv_nsec|tv_usec)=\d+")
_PORT = re.compile(r"htons\((\d+)\)")


def _port_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


_EPHEMERAL = _port_range()
_GETRANDOM = re.compile(r'^(getrandom\()"(?:[^"\\]|\\.)*"(\.\.\.)?')


def mask(text: str, tids: set[int]) -> str:
    """The masking both sides get (see the module docstring)."""
    text = _ADDR.sub("0xADDR", text)
    text = _TIME.sub(r"\1=T", text)
    text = _GETRANDOM.sub(r'\1"RANDOM"', text)
    text = _PORT.sub(lambda m: "htons(PORT)" if _EPHEMERAL[0] <= int(m.group(1)) <= _EPHEMERAL[1]
                     else m.group(0), text)
    # epoll data a program left as stack bytes (Python does): an address, in decimal
    text = re.sub(r"\bu64=(\d{10,})", lambda m: "u64=ADDR" if int(m.group(1)) >> 32 else
                  m.group(0), text)
    if text.startswith("brk("):  # the heap's place is random (ASLR) with 8 hex digits
        text = re.sub(r"0x[0-9a-f]{6,}", "0xADDR", text)
    if text.startswith("sysinfo("):  # the machine's state a moment later
        text = _SYSINFO.sub(r"\1=N", text)
    if tids:
        text = re.sub(r"(?<![\w.])(\d{2,})(?![\w.])",
                      lambda m: "PID" if int(m.group(1)) in tids else m.group(1), text)
    return text


def _normal(name: str, args: str, ret: str, rest: str) -> str:
    """One canonical spacing: 'name(args) = ret rest'."""
    return f"{name}{args} = {ret}{rest}".rstrip()


_STRACE_LINE = re.compile(r"^(\d+)\s+(.*)$")
_UNFINISHED = " <unfinished ...>"
_RESUMED = re.compile(r"^<\.\.\. ([a-z_0-9]+) resumed>(.*)$")


def parse_strace(text: str) -> list[tuple[int, str]]:
    """strace -f -o lines -> (tid, line) with unfinished/resumed joined, notices dropped."""
    out: list[tuple[int, str]] = []
    pending: dict[int, tuple[int, str]] = {}  # tid -> (index in out, head)
    for raw in text.splitlines():
        m = _STRACE_LINE.match(raw)
        if not m:
            continue
        tid, body = int(m.group(1)), m.group(2)
        if body.startswith(("---", "+++")):
            continue
        if body.endswith(_UNFINISHED):
            pending[tid] = (len(out), body[: -len(_UNFINISHED)])
            out.append((tid, ""))  # keeps the call's place (its entry)
            continue
        r = _RESUMED.match(body)
        if r:
            idx, head = pending.pop(tid, (-1, f"{r.group(1)}("))
            joined = head + r.group(2)
            if idx >= 0:
                out[idx] = (tid, joined)
            else:
                out.append((tid, joined))
            continue
        out.append((tid, body))
    # a call that never resumed (the process died in it): '= ?'
    for idx, head in pending.values():
        out[idx] = (out[idx][0], head + ") = ?")
    return [(t, s) for t, s in out if s]


_PW_LINE = re.compile(r"^\[pid\s+(\d+)\]\s(.*)$")


def parse_probewatch(text: str, first_tid: int = 0) -> list[tuple[int, str]]:
    """probewatch syscalls lines -> (tid, line). Lines before the first '[pid N]' are
    the first thread's (the prefix starts once a second thread shows up)."""
    out: list[tuple[int, str]] = []
    for raw in text.splitlines():
        m = _PW_LINE.match(raw)
        if m:
            out.append((int(m.group(1)), m.group(2)))
        elif raw and not raw.startswith("probewatch:"):
            out.append((first_tid, raw))
    if first_tid == 0:  # the first thread's tid: what its set_tid_address returned
        for t, s in out:
            sp = split_call(s) if t == 0 else None
            if sp and sp[0] == "set_tid_address" and sp[2].isdigit():
                first_tid = int(sp[2])
                break
        else:
            first_tid = 1
        out = [(t or first_tid, s) for t, s in out]
    return out


# the uretprobe/uprobe syscalls (335/336 on x86_64; strace 6.1 prints them unnamed) are
# made by the kernel's trampoline when any tracer on the machine has a u(ret)probe on a
# function the program runs: not calls of the program, and there only some of the time
_NOT_THE_PROGRAMS = {"uretprobe", "uprobe", "syscall_0x14f", "syscall_0x150"}


def to_calls(lines: list[tuple[int, str]]) -> tuple[list[Call], set[int]]:
    """Cut before the program's execve, parse, mask. Returns the calls and the tids."""
    start = 0
    for i, (_t, s) in enumerate(lines):
        sp = split_call(s)
        if sp and sp[0] in ("execve", "execveat") and sp[2] == "0":
            start = i
            break
    lines = lines[start:]
    tids = {t for t, _ in lines}
    calls: list[Call] = []
    for t, s in lines:
        sp = split_call(s)
        if sp is None or sp[0] in _NOT_THE_PROGRAMS:
            continue
        name, args, ret, rest = sp
        ret_m = mask(ret, tids)
        calls.append(Call(t, name, ret_m, mask(_normal(name, args, ret, rest), tids)))
    return calls, tids


# ------------------------------------------------------------------ comparing


@dataclass
class Result:
    program: str
    strace_lines: int = 0
    probewatch_lines: int = 0
    base: int = 0  # max of the two
    agree: int = 0  # name + return + errno
    identical: int = 0
    diffs: list[tuple[str, str]] = field(default_factory=list)  # (strace, probewatch)
    missing: list[str] = field(default_factory=list)  # strace lines with no counterpart
    extra: list[str] = field(default_factory=list)

    @property
    def agree_pct(self) -> float:
        return 100.0 * self.agree / self.base if self.base else 0.0

    @property
    def identical_pct(self) -> float:
        return 100.0 * self.identical / self.base if self.base else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"program": self.program, "strace_lines": self.strace_lines,
                "probewatch_lines": self.probewatch_lines, "agree": self.agree,
                "identical": self.identical, "agree_pct": round(self.agree_pct, 2),
                "identical_pct": round(self.identical_pct, 2)}


_FORKS = {"clone", "clone3", "fork", "vfork"}


def _by_tid(calls: list[Call]) -> dict[int, list[Call]]:
    out: dict[int, list[Call]] = {}
    for c in calls:
        out.setdefault(c.tid, []).append(c)
    return out


def compare(program: str, strace_text: str, pw_text: str) -> Result:
    """Align two traces of one program per thread and count what agrees."""
    s_lines = parse_strace(strace_text)
    s_calls, _ = to_calls(s_lines)
    p_lines = parse_probewatch(pw_text)
    p_calls, _ = to_calls(p_lines)
    res = Result(program, len(s_calls), len(p_calls))
    res.base = max(len(s_calls), len(p_calls))
    if not s_calls or not p_calls:
        return res
    s_by, p_by = _by_tid(s_calls), _by_tid(p_calls)
    # tids are masked in the texts; pair threads via the raw lines' fork returns
    s_raw = _by_tid_raw(s_lines)
    p_raw = _by_tid_raw(p_lines)
    pairs = [(s_calls[0].tid, p_calls[0].tid)]
    seen_s, seen_p = set(), set()
    while pairs:
        st, pt = pairs.pop(0)
        if st in seen_s or pt in seen_p:
            continue
        seen_s.add(st)
        seen_p.add(pt)
        a, b = s_by.get(st, []), p_by.get(pt, [])
        sm = difflib.SequenceMatcher(a=[c.name for c in a], b=[c.name for c in b],
                                     autojunk=False)
        for tag, i1, i2, j1, j2 in sm.get_opcodes():
            if tag == "equal":
                for x, y in zip(a[i1:i2], b[j1:j2], strict=True):
                    if x.ret == y.ret:
                        res.agree += 1
                    if x.text == y.text:
                        res.identical += 1
                    else:
                        res.diffs.append((x.text, y.text))
                continue
            if tag == "replace":
                for x, y in zip(a[i1:i2], b[j1:j2], strict=False):
                    res.diffs.append((x.text, y.text))
            res.missing.extend(c.text for c in a[i1:i2])
            res.extra.extend(c.text for c in b[j1:j2])
        # children: the k-th successful fork/clone of this thread in each trace
        sk = [int(r) for n, r in s_raw.get(st, []) if n in _FORKS and r.isdigit() and r != "0"]
        pk = [int(r) for n, r in p_raw.get(pt, []) if n in _FORKS and r.isdigit() and r != "0"]
        pairs.extend(zip(sk, pk, strict=False))
    # threads never paired: all their lines are missing / extra
    for t, cs in s_by.items():
        if t not in seen_s:
            res.missing.extend(c.text for c in cs)
    for t, cs in p_by.items():
        if t not in seen_p:
            res.extra.extend(c.text for c in cs)
    return res


def _by_tid_raw(lines: list[tuple[int, str]]) -> dict[int, list[tuple[str, str]]]:
    out: dict[int, list[tuple[str, str]]] = {}
    for t, s in lines:
        sp = split_call(s)
        if sp:
            out.setdefault(t, []).append((sp[0], sp[2]))
    return out


# ------------------------------------------------------------------ running


#: the probewatch sources run (``--src``: another checkout's, for before/after numbers)
SRC = [str(ROOT / "src")]


def run_pair(program: str, argv: list[str], cwd: str | None = None,
             env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    """Run ``argv`` under strace and under probewatch; compare."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = SRC[0]
    with tempfile.TemporaryDirectory(prefix="pw-strace-") as td:
        s_out, p_out = os.path.join(td, "strace.txt"), os.path.join(td, "pw.txt")
        # the same stdin/stdout/stderr (/dev/null) for the program under both tracers
        subprocess.run(["strace", "-f", "-o", s_out, *argv], cwd=cwd, env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=timeout, check=False)
        p = subprocess.run([sys.executable, "-m", "probewatch", "syscalls", "-f", "-o", p_out,
                            "--", *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=timeout, check=False)
        if not os.path.exists(p_out) or not os.path.getsize(p_out):
            raise RuntimeError(f"probewatch syscalls wrote no trace (exit {p.returncode}); "
                               f"run it by hand: probewatch syscalls -f -- {' '.join(argv)}")
        return compare(program, Path(s_out).read_text(errors="replace"),
                       Path(p_out).read_text(errors="replace"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def http_server(root: str) -> Iterator[int]:
    """python3 -m http.server on a free loopback port; stopped by its pid."""
    port = free_port()
    p = subprocess.Popen(["/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1",
                          str(port)], cwd=root, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        os.kill(p.pid, signal.SIGTERM)
        p.wait(timeout=10)


THREADS_C = r"""
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <fcntl.h>
#include <time.h>
/* threads make syscalls at the same time; none allocates an fd (the numbers would
 * depend on which thread runs first): main opens one per thread */
static int fds[4];
static void *work(void *arg) {
    long i = (long)arg;
    char path[64], buf[16];
    snprintf(path, sizeof path, "/nonexistent/%ld", i);
    int fd = open(path, O_RDONLY);
    if (fd >= 0) close(fd);
    pread(fds[i], buf, sizeof buf, 0);
    close(fds[i]);
    return NULL;
}
int main(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) fds[i] = open("/etc/hostname", O_RDONLY);
    for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, work, (void *)i);
    /* let every thread finish first: a join then never waits (no futex race) */
    struct timespec ts = {0, 200000000};
    nanosleep(&ts, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    write(1, "done\n", 5);
    return 0;
}
"""


# calls the seven programs above make few of: iovecs, msghdrs, poll/select, wait status,
# limits, socket options (Python's os/socket/select map them 1:1 to syscalls)
IO_PY = r"""
import os, resource, select, signal, socket, time
r, w = os.pipe()
os.writev(w, [b"hello ", b"", b"world\n", b"x" * 40])
bufs = [bytearray(4), bytearray(3), bytearray(100)]
os.readv(r, bufs)
try:
    os.readv(99, bufs)
except OSError:
    pass
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
a.sendmsg([b"abc", b"defg"])
b.recvmsg_into([bytearray(2), bytearray(10)])
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.bind(("127.0.0.1", 0))
d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
d.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
d.sendmsg([b"hi"], [], 0, c.getsockname())
c.recvmsg(100)
d.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
p = select.poll()
p.register(c.fileno(), select.POLLIN)
p.poll(0)
select.select([c], [], [], 0)
d.sendto(b"x", c.getsockname())
select.select([c], [c], [], 1.0)
e = select.epoll()
e.register(c.fileno(), select.EPOLLIN | select.EPOLLOUT | select.EPOLLET)
e.modify(c.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
d.sendto(b"y", c.getsockname())
e.poll(1.0, 4)
e.unregister(c.fileno())
e.poll(0.01, 2)
resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    os._exit(3)
os.waitpid(pid, 0)
time.sleep(0.01)
os.stat("/dev/null")
os.lstat("/tmp")
"""


def build_threads(dirpath: str) -> str:
    src, exe = os.path.join(dirpath, "threads.c"), os.path.join(dirpath, "threads")
    Path(src).write_text(THREADS_C)
    subprocess.run(["gcc", "-O1", "-pthread", "-o", exe, src], check=True)
    return exe


def _git(repo: str, *args: str) -> None:
    subprocess.run(["git", "-C", repo, *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


PROGRAMS = ["ls", "tar", "gzip", "python", "curl", "git", "threads", "pyio"]


def run_program(name: str, work: str) -> Result:
    """One of PROGRAMS, set up in the scratch directory ``work``."""
    small = os.path.join(work, "small")
    if not os.path.isdir(small):
        os.makedirs(os.path.join(small, "sub"))
        for i in range(5):
            Path(small, f"f{i}.txt").write_text(f"file {i}\n" * (50 * (i + 1)))
        Path(small, "sub", "deep.txt").write_text("deep\n")
    if name == "ls":
        return run_pair(name, ["/usr/bin/ls", "-la", "/etc"])
    if name == "tar":
        return run_pair(name, ["/usr/bin/tar", "cf", os.path.join(work, "out.tar"), "small"],
                        cwd=work)
    if name == "gzip":
        return run_pair(name, ["/usr/bin/gzip", "-c", os.path.join(small, "f4.txt")])
    if name == "python":
        return run_pair(name, ["/usr/bin/python3", "-c", "print(1)"])
    if name == "curl":
        with http_server(small) as port:
            return run_pair(name, ["/usr/bin/curl", "-s", "-o", "/dev/null",
                                   f"http://127.0.0.1:{port}/f0.txt"])
    if name == "git":
        repo = os.path.join(work, "repo")
        if not os.path.isdir(repo):
            shutil.copytree(small, repo)
            env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e",
                   "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
            os.environ.update(env)
            _git(repo, "init", "-q")
            _git(repo, "add", ".")
            _git(repo, "commit", "-q", "-m", "x")
            Path(repo, "f0.txt").write_text("changed\n")
            _git(repo, "status")  # the index is refreshed once before both runs
        return run_pair(name, ["/usr/bin/git", "status"], cwd=repo)
    if name == "threads":
        exe = os.path.join(work, "threads")
        if not os.path.exists(exe):
            build_threads(work)
        return run_pair(name, [exe])
    if name == "pyio":
        script = os.path.join(work, "io.py")
        Path(script).write_text(IO_PY)
        return run_pair(name, ["/usr/bin/python3", script])
    raise ValueError(f"unknown program {name!r} (one of {', '.join(PROGRAMS)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("programs", nargs="*", default=PROGRAMS)
    ap.add_argument("-v", "--verbose", action="store_true", help="show differing lines")
    ap.add_argument("-n", type=int, default=40, help="differences shown per program (-v)")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--src", metavar="DIR", help="probewatch sources to run (default: ours)")
    a = ap.parse_args()
    if a.src:
        SRC[0] = os.path.abspath(a.src)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pw-strace-work-") as work:
        print(f"{'program':<10} {'strace':>7} {'pw':>7} {'agree%':>8} {'identical%':>11}")
        for name in a.programs:
            r = run_program(name, work)
            rows.append(r.to_dict())
            print(f"{name:<10} {r.strace_lines:>7} {r.probewatch_lines:>7} "
                  f"{r.agree_pct:>8.2f} {r.identical_pct:>11.2f}", flush=True)
            if a.verbose:
                for s, p in r.diffs[: a.n]:
                    print(f"   S {s}\n   P {p}")
                for s in r.missing[: a.n // 4]:
                    print(f"   - {s}")
                for p in r.extra[: a.n // 4]:
                    print(f"   + {p}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
