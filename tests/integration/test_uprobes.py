"""uprobes, uretprobes and USDT through the public surface, on the live kernel.

Everything goes through ``python -m probewatch trace --json`` or ``probewatch.Session``
against real processes: the C targets of tests/targets (PIE, non-PIE, stripped with a
separate debug file, a shared library, USDT probes with and without a semaphore),
libc (by its short name), and an interactive bash driven through a pty. Values are
exact: the targets call their functions with known arguments.

After every test nothing of the probewatch processes it started (nor of this one)
remains in uprobe_events or instances/.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import need_tool  # tests/conftest.py
from targets.build import build_for_tests

from .helpers import CLI, instance_armed, require_uprobe_events, summary_of, wait_for

pytestmark = pytest.mark.integration

TARGETS_DIR = Path(__file__).resolve().parents[1] / "targets"

# pw_target.c pw_round(i): the calls every round makes, with their exact values
ADD_A, ADD_B = -7, 5_000_000_000
ADD_RET = 705032697  # (int)(-7 + 5000000000)
GREETING = "hello, probewatch"
MANY_RET = 1 + 2 + 3 + 4 + 5 + 6 + 77 + 88


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def uprobes(tracefs: str) -> str:
    return require_uprobe_events(tracefs)


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_for_tests(tmp_path_factory, "uptargets", require_sdt=True,
                           x86_only="expected register/stack layouts below are for x86_64")


@pytest.fixture(scope="module")
def work(targets: Any) -> Path:
    """tests/targets/pw_work.c: getpid N times, malloc known sizes, a semaphore loop."""
    out = targets.dir / "pw_work"
    subprocess.run(
        ["gcc", "-O2", "-g", "-DPW_HAVE_SDT", "-I", str(TARGETS_DIR), "-o", str(out),
         str(TARGETS_DIR / "pw_work.c")],
        check=True, capture_output=True, text=True,
    )
    return out


_cli_pids: list[int] = []


def _owned(tracefs: str, pids: list[int]) -> list[str]:
    """Instances and dynamic events of these probewatch pids still in tracefs."""
    left = []
    for n in os.listdir(os.path.join(tracefs, "instances")):
        if any(n.startswith(f"probewatch-{p}-") for p in pids):
            left.append(f"instance {n}")
    for f in ("uprobe_events", "dynamic_events"):
        path = os.path.join(tracefs, f)
        if not os.path.exists(path):
            continue
        with open(path) as fh:
            for line in fh:
                if any(f":probewatch_{p}/" in line for p in pids):
                    left.append(f"{f}: {line.strip()}")
    return left


@pytest.fixture(autouse=True)
def nothing_left_behind(uprobes: str) -> Iterator[None]:
    _cli_pids.clear()
    yield
    pids = [os.getpid(), *_cli_pids]
    assert _owned(uprobes, pids) == []


# ------------------------------------------------------------------ helpers


def start_cli(*args: str, **kw: Any) -> subprocess.Popen[str]:
    p = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, **kw)
    _cli_pids.append(p.pid)
    return p


def run_trace(*args: str, timeout: float = 120) -> tuple[list[dict[str, Any]], str, int]:
    """``probewatch trace --json ARGS``: (events, stderr, exit status)."""
    p = start_cli("trace", "--json", *args)
    out, err = p.communicate(timeout=timeout)
    assert "Traceback" not in err, err
    return [json.loads(ln) for ln in out.splitlines() if ln.strip()], err, p.returncode


def wait_armed(tracefs: str, p: subprocess.Popen[str], timeout: float = 30) -> None:
    """Until the CLI's private instance has tracing on (every probe is armed by then)."""

    def armed() -> bool:
        return p.poll() is not None or instance_armed(tracefs, p.pid)

    assert wait_for(armed, timeout), "probewatch did not start tracing"
    if p.poll() is not None:
        out, err = p.communicate()
        raise AssertionError(f"probewatch exited early ({p.returncode}): {err}")


def status(q: subprocess.Popen[Any]) -> str:
    """How a helper process is doing (for failure messages)."""
    rc = q.poll()
    if rc is not None:
        return f"pid {q.pid} exited with {rc}"
    try:
        with open(f"/proc/{q.pid}/stat") as f:
            return f"pid {q.pid} alive: {f.read()[:80]}"
    except OSError as e:
        return f"pid {q.pid}: {e}"


def by_probe(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        out.setdefault(e["probe"], []).append(
            {k: v for k, v in e["fields"].items() if not k.startswith("__probe")}
        )
    return out


def redirected(binary: Path, out: Path, *args: str) -> list[str]:
    """A command running BINARY ARGS with its stdout in OUT (stdout belongs to the tracer)."""
    return ["sh", "-c", 'f=$1; shift; exec "$0" "$@" >"$f"', str(binary), str(out), *args]


# ------------------------------------------------------------ functions, C target


@pytest.mark.parametrize("variant", ["pie", "nopie", "stripped"])
def test_function_arguments_and_returns(
    uprobes: str, targets: Any, variant: str, tmp_path: Path
) -> None:
    t = targets.variants[variant]
    specs = {
        "add": f"u:{t}:pw_add a=arg0:s32 b=arg1:s64",
        "add_ret": f"ur:{t}:pw_add ret=retval:s32",
        "greet": f"u:{t}:pw_greet who=arg0:string who2=+0(arg0):string",
        "greet_ret": f"ur:{t}:pw_greet s=+0(retval):string",
        "many": f"u:{t}:pw_many a0=arg0:s64 a5=arg5:s64 a6=arg6:s64 a7=arg7:s64",
        "many_ret": f"ur:{t}:pw_many ret=retval:s64",
        "mul": f"u:{targets.lib}:pw_lib_mul a=arg0:s32 b=arg1:s32",
        "mul_ret": f"ur:{targets.lib}:pw_lib_mul ret=retval:s32",
        "ifunc": f"u:{t}:__pw_ifunc_fast x=arg0:s32",
    }
    out = tmp_path / "target.out"
    events, err, rc = run_trace(*specs.values(), "--", *redirected(t, out, "3"))
    assert rc == 0, err
    label = {v: k for k, v in specs.items()}
    # one round is: add, add returns, greet, greet returns, many, ... in call order
    order = ["add", "add_ret", "greet", "greet_ret", "many", "many_ret", "mul", "mul_ret",
             "ifunc"]
    assert [label[e["probe"]] for e in events] == order * 3
    assert len({e["pid"] for e in events}) == 1
    assert {e["comm"] for e in events} == {t.name}
    got = {label[k]: v for k, v in by_probe(events).items()}
    assert got["add"] == [{"a": ADD_A, "b": ADD_B}] * 3
    assert got["add_ret"] == [{"ret": ADD_RET}] * 3
    assert got["greet"] == [{"who": "probewatch", "who2": "probewatch"}] * 3
    assert got["greet_ret"] == [{"s": GREETING}] * 3
    assert got["many"] == [{"a0": 1, "a5": 6, "a6": 77, "a7": 88}] * 3
    assert got["many_ret"] == [{"ret": MANY_RET}] * 3
    assert got["mul"] == [{"a": 6, "b": 7}] * 3
    assert got["mul_ret"] == [{"ret": 42}] * 3
    assert got["ifunc"] == [{"x": 0}, {"x": 1}, {"x": 2}]
    s = summary_of(err)
    assert s["events"] == {spec: 3 for spec in specs.values()}
    assert s["lost"] == 0
    # the target's own view: its calls returned what the probes saw; sem stayed 0
    lines = out.read_text().splitlines()
    assert lines[0] == (f"round 0: add={ADD_RET} greet={GREETING} many={MANY_RET} sem=0"
                        " local=0 lib=42 ifunc=1")
    assert len(lines) == 3


def test_ifunc_warns_and_names_implementations(uprobes: str, targets: Any) -> None:
    t = targets.pie
    events, err, rc = run_trace(f"u:{t}:pw_ifunc", "--", *redirected(t, Path(os.devnull), "3"))
    assert rc == 0, err
    assert "probewatch: warning:" in err and "is an IFUNC" in err
    assert "__pw_ifunc_fast" in err and "__pw_ifunc_generic" in err
    # what the warning says: the probe sits on the resolver, which ld.so runs once
    assert len(events) == 1


# ------------------------------------------------------------------------- USDT


def test_usdt_arguments_via_session(uprobes: str, targets: Any, capfd: Any) -> None:
    from probewatch.session import Session

    t = targets.pie
    subprocess.run([str(t), "1"], check=True)  # untraced: the semaphore is 0
    assert "sem=0" in capfd.readouterr().out
    specs = {
        "add": f"U:{t}:pwtest:add n=arg2:string a=arg0 b=arg1",
        "add_auto": f"U:{t}:pwother:add",
        "konst": f"U:{t}:pwtest:konst",
        "global": f"U:{t}:pwtest:global",
        "twice": f"U:{t}:pwtest:twice",
        "withsem": f"U:{t}:pwtest:withsem v=arg0:s32",
    }
    with Session() as s:
        for spec in specs.values():
            assert s.add(spec)
        assert len(s.probes[specs["twice"]]) == 2  # two locations of one probe name
        child = s.trace_command([str(t), "3"])
        evs = list(s.events(duration=60))
        rc = s.wait_command()
    assert rc == 0
    assert {e.pid for e in evs} == {child}
    label = {v: k for k, v in specs.items()}
    got: dict[str, list[dict[str, Any]]] = {}
    for e in evs:
        got.setdefault(label[e.probe], []).append(
            {k: v for k, v in e.fields.items() if not k.startswith("__probe")})
    assert got["add"] == [{"n": "probewatch", "a": ADD_A, "b": ADD_B}] * 3
    assert got["add_auto"] == [{"arg0": 2}] * 3
    assert got["konst"] == [{"arg0": 5}] * 3
    assert got["global"] == [{"arg0": 41}] * 3
    assert got["twice"] == [{"arg0": 1}, {"arg0": 2}] * 3
    assert got["withsem"] == [{"v": 100}, {"v": 101}, {"v": 102}]
    assert s.summary().events == {specs[k]: len(v) for k, v in got.items()}
    # while attached the kernel raised the semaphore: the guarded probe fired
    out = capfd.readouterr().out
    assert [ln.split()[6] for ln in out.splitlines() if ln.startswith("round")] == [
        "sem=1"] * 3
    subprocess.run([str(t), "1"], check=True)  # detached again: 0
    assert "sem=0" in capfd.readouterr().out


class Ticker:
    """pw_work sem: one line in, one 'tick K sem=S fired=F' line out."""

    def __init__(self, binary: Path) -> None:
        self.p = subprocess.Popen([str(binary), "sem"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)

    def tick(self) -> tuple[int, int, int]:
        assert self.p.stdin and self.p.stdout
        self.p.stdin.write("t\n")
        self.p.stdin.flush()
        r, _, _ = select.select([self.p.stdout], [], [], 10)
        assert r, "pw_work sem did not answer"
        f = self.p.stdout.readline().split()
        assert f[0] == "tick", f
        return int(f[1]), int(f[2].split("=")[1]), int(f[3].split("=")[1])

    def close(self) -> None:
        if self.p.poll() is None:
            assert self.p.stdin
            self.p.stdin.write("q\n")
            self.p.stdin.close()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def test_usdt_semaphore_toggles_in_a_running_process(uprobes: str, work: Path) -> None:
    tk = Ticker(work)
    try:
        assert tk.tick() == (0, 0, 0)  # before: semaphore 0, guarded probe skipped
        assert tk.tick() == (1, 0, 0)
        # by -p PID the target is found through /proc/PID/maps ("pw_work", no path)
        named = "U:pw_work:pwwork:tick k=arg0 big=arg1 label=arg2:string"
        auto = "U:pw_work:pwwork:tick"
        p = start_cli("trace", "--json", "-p", str(tk.p.pid), named, auto, "-d", "60")
        try:
            wait_armed(uprobes, p)
            seen = [tk.tick() for _ in range(3)]
        finally:
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        # while attached: semaphore raised (once per armed uprobe at that location)
        assert [k for k, _, _ in seen] == [2, 3, 4]
        assert all(sem >= 1 and fired == 1 for _, sem, fired in seen), seen
        # after: probewatch has detached and the kernel lowered the semaphore again
        assert tk.tick() == (5, 0, 0)
        assert tk.tick() == (6, 0, 0)
    finally:
        tk.close()
    evs = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
    assert {e["pid"] for e in evs} == {tk.p.pid}
    got = by_probe(evs)
    assert got[named] == [{"k": k, "big": -k * 1000000007, "label": f"tick-{k}"}
                          for k in (2, 3, 4)]
    assert [a["arg0"] for a in got[auto]] == [2, 3, 4]
    assert [a["arg1"] for a in got[auto]] == [-k * 1000000007 for k in (2, 3, 4)]
    assert summary_of(err)["events"] == {named: 3, auto: 3}


# ------------------------------------------------------------------------- libc


def test_libc_getpid_by_short_name(uprobes: str, work: Path, tmp_path: Path) -> None:
    n = 2000
    out = tmp_path / "work.out"
    specs = ["u:libc:getpid", "ur:libc:getpid ret=retval:s32", "t:syscalls:sys_enter_getpid"]
    events, err, rc = run_trace(*specs, "--", *redirected(work, out, "getpid", str(n)))
    assert rc == 0, err
    pid = int(out.read_text().split()[2])  # "getpid N PID"
    assert {e["pid"] for e in events} == {pid}
    # sh asks for its pid once ($$) before it execs pw_work in the same process
    mine = [e for e in events if e["comm"] == "pw_work"]
    assert {e["comm"] for e in events} <= {"sh", "pw_work"}
    got = by_probe(mine)
    # glibc >= 2.25 does not cache getpid: every call is a call and a syscall
    assert len(got["u:libc:getpid"]) == n
    assert got["ur:libc:getpid ret=retval:s32"] == [{"ret": pid}] * n
    assert len(got["t:syscalls:sys_enter_getpid"]) == n
    assert summary_of(err)["lost"] == 0


def test_malloc_sizes(uprobes: str, work: Path, tmp_path: Path) -> None:
    out = tmp_path / "work.out"
    spec = "u:libc:malloc size=arg0:u64"
    events, err, rc = run_trace(spec, "--", *redirected(work, out, "malloc", "12345", "54321"))
    assert rc == 0, err
    assert out.read_text() == "malloc ok\n"
    pids = {e["pid"] for e in events}
    assert len(pids) == 1
    sizes = [e["fields"]["size"] for e in events]
    # ld.so / stdio allocate too; the two sizes the program asked for come once each
    assert sizes.count(12345) == 1 and sizes.count(54321) == 1
    assert sizes.index(12345) < sizes.index(54321)


# ------------------------------------------------------------------------- bash


class PtyReader:
    """Reads a pty master until a marker, keeping what came after it for the next read."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def until(self, needle: bytes, timeout: float = 20) -> bytes:
        end = time.monotonic() + timeout
        while needle not in self.buf:
            left = end - time.monotonic()
            assert left > 0, f"timed out waiting for {needle!r}; got {self.buf[-400:]!r}"
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"pty closed before {needle!r}: {self.buf[-400:]!r}")
                self.buf += chunk
        i = self.buf.index(needle) + len(needle)
        got, self.buf = self.buf[:i], self.buf[i:]
        return got


def stop_cli(p: subprocess.Popen[str] | None) -> None:
    """End a CLI still running the way a user would (^C), so that it cleans up."""
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGINT)
    try:
        p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()


def test_bash_readline_line_through_pty(uprobes: str) -> None:
    bash = need_tool("bash")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "dumb",
           "PS1": "pw-prompt$ ", "HOME": "/nonexistent", "HISTFILE": "/dev/null"}
    pid, fd = pty.fork()
    if pid == 0:  # child: an interactive bash on the pty (its controlling terminal)
        try:
            os.execve(bash, ["bash", "--norc", "--noprofile", "-i"], env)
        finally:
            os._exit(127)
    p = None
    tty = PtyReader(fd)
    try:
        tty.until(b"pw-prompt$ ")
        p = start_cli("trace", "--json", "-p", str(pid), "-n", "2", "-d", "60",
                      "ur:/bin/bash:readline line=+0(retval):string")
        wait_armed(uprobes, p)
        # bash sits inside the readline() call it entered before the probe existed: a
        # uretprobe only sees returns of calls entered while armed. An empty line
        # ends that call; the next prompt's readline() is the first one seen.
        os.write(fd, b"\n")
        tty.until(b"pw-prompt$ ")
        os.write(fd, b"echo probewatch-$((6*7))\n")
        tty.until(b"\nprobewatch-42\r\n")  # the command ran (and was not just echoed)
        tty.until(b"pw-prompt$ ")
        os.write(fd, b"exit\n")
        out, err = p.communicate(timeout=60)
    finally:
        stop_cli(p)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        os.close(fd)
    assert p.returncode == 0, err
    evs = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
    assert [e["fields"]["line"] for e in evs] == ["echo probewatch-$((6*7))", "exit"]
    assert {e["pid"] for e in evs} == {pid}
    assert {e["comm"] for e in evs} == {"bash"}


# ------------------------------------------------------------------------ -p PID


def test_pid_targets_one_running_process(uprobes: str, targets: Any) -> None:
    """A uprobe on a process found through /proc/PID/maps; a twin process is not traced."""
    t = targets.pie
    procs = [subprocess.Popen([str(t), "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    p = None
    try:
        for q in procs:
            assert q.stdout and q.stdout.readline() == "ready\n"
        a, b = procs
        # "pw_pie" is no path: with -p it is looked up in /proc/A/maps
        p = start_cli("trace", "--json", "-p", str(a.pid), "-n", "3", "-d", "60",
                      "u:pw_pie:pw_add a=arg0:s32 b=arg1:s64",
                      "ur:pw_pie:pw_greet s=+0(retval):string",
                      "u:libpw:pw_lib_mul x=arg0:s32 y=arg1:s32")
        try:
            wait_armed(uprobes, p)
        except AssertionError as e:
            raise AssertionError(f"{e}; target: {status(a)}") from None
        for q in (b, a):
            assert q.stdin
            q.stdin.write("go\n")
            q.stdin.close()
            assert q.wait(timeout=20) == 0
        out, err = p.communicate(timeout=60)
    finally:
        for q in procs:
            if q.poll() is None:
                q.kill()
                q.wait()
        stop_cli(p)
    assert p.returncode == 0, err
    evs = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
    assert [(e["pid"], e["fields"].get("a"), e["fields"].get("s"), e["fields"].get("x"))
            for e in evs] == [
        (procs[0].pid, ADD_A, None, None),
        (procs[0].pid, None, GREETING, None),
        (procs[0].pid, None, None, 6),
    ]


# ------------------------------------------------------------------------ errors


def _error_cases(t: Any) -> list[tuple[str, list[str], list[str]]]:
    """(id, specs, expected message parts). A valid probe comes first, so something was
    armed before the failure and must be removed again."""
    ok = f"u:{t.pie}:pw_add"
    return [
        ("bad-spec", [ok, f"u:{t.pie}:pw_add a=arg9x"],
         ["expected argN, retval, %REG", "a=arg9x\n", "^"]),
        ("retval-in-uprobe", [ok, f"u:{t.pie}:pw_add r=retval"],
         ["retval is only available in uretprobe/kretprobe"]),
        ("missing-binary", [ok, "u:/nonexistent/pw_bin:main"],
         ["/nonexistent/pw_bin: no such file"]),
        ("missing-library", [ok, "u:libpw_nosuch:foo"],
         ["cannot find target 'libpw_nosuch'"]),
        ("missing-symbol", [ok, f"u:{t.pie}:pw_ad"],
         [f"no function 'pw_ad' in {t.pie}; did you mean: pw_add"]),
        ("ambiguous-symbol", [ok, f"u:{t.pie}:pw_local"],
         ["'pw_local' is ambiguous", "pw_target.c", "pw_sem.c"]),
        ("stripped-no-debug", [ok, f"u:{t.nodebug}:pw_add"],
         [f"{t.nodebug} is stripped (no .symtab)", "no debug file found",
          "probe by address"]),
        ("missing-usdt", [ok, f"U:{t.pie}:pwtest:nosuch"],
         [f"no USDT probe 'pwtest:nosuch' in {t.pie}"]),
    ]


@pytest.mark.parametrize("case", ["bad-spec", "retval-in-uprobe", "missing-binary",
                                  "missing-library", "missing-symbol", "ambiguous-symbol",
                                  "stripped-no-debug", "missing-usdt"])
def test_spec_errors_are_one_message_and_leave_nothing(
    uprobes: str, targets: Any, case: str
) -> None:
    [(_, specs, parts)] = [c for c in _error_cases(targets) if c[0] == case]
    p = start_cli("trace", *specs, "--", str(targets.pie), "1")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1, (p.returncode, err)
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith("probewatch: error: ")
    for part in parts:
        assert part in err, (part, err)
    if case not in ("bad-spec", "retval-in-uprobe", "ambiguous-symbol"):
        assert err.count("\n") == 1, err  # one line
    assert _owned(uprobes, [p.pid]) == []


def test_session_removes_armed_probes_after_a_failing_add(uprobes: str, targets: Any) -> None:
    """The state the CLI cases above pass through: one probe armed, the next one fails."""
    from probewatch.errors import NotFound, SpecError
    from probewatch.session import Session

    group = f":probewatch_{os.getpid()}/"

    def ours() -> list[str]:
        with open(os.path.join(uprobes, "uprobe_events")) as f:
            return [ln.strip() for ln in f if group in ln]

    with pytest.raises(NotFound, match="did you mean: pw_add"):
        with Session() as s:
            [ev] = s.add(f"u:{targets.pie}:pw_add a=arg0:s32")
            assert len(ours()) == 1 and ev.split(":")[1] in ours()[0]
            with pytest.raises(SpecError):
                s.add(f"u:{targets.pie}:pw_add r=retval")
            assert len(ours()) == 1  # a spec error arms nothing
            s.add(f"u:{targets.pie}:pw_ad")
    assert ours() == []


def test_kprobe_on_this_kernel_is_one_clear_line(uprobes: str, targets: Any) -> None:
    """A k: spec beside a u: spec: armed when the kernel has kprobe_events, else one
    clear line naming the kernel option (and nothing armed)."""
    if os.path.exists(os.path.join(uprobes, "kprobe_events")):
        # a kernel with kprobes: both arm, and the kprobe sees the child's openat
        evs, err, rc = run_trace("k:do_sys_openat2 dfd=arg0:s32", "--", "sh", "-c",
                                 "cat /etc/hostname >/dev/null")
        assert rc == 0, err
        opens = [e for e in evs if e["event"].endswith(":do_sys_openat2_0")
                 or "do_sys_openat2" in e["event"]]
        assert opens, evs
        assert {e["comm"] for e in opens} >= {"cat"}
        assert -100 in {e["fields"]["dfd"] for e in opens}  # AT_FDCWD
        assert _owned(uprobes, _cli_pids) == []
        return
    p = start_cli("trace", f"u:{targets.pie}:pw_add", "k:do_sys_openat2 dfd=arg0:s32",
                  "-d", "1")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("probewatch: error: cannot arm 'k:do_sys_openat2 dfd=arg0:s32': ")
    assert "CONFIG_KPROBE_EVENTS" in err
    assert _owned(uprobes, [p.pid]) == []


def test_nothing_of_ours_in_uprobe_events(uprobes: str) -> None:
    with open(os.path.join(uprobes, "uprobe_events")) as f:
        mine = [ln for ln in f if f":probewatch_{os.getpid()}/" in ln]
    assert mine == []
    inst = os.listdir(os.path.join(uprobes, "instances"))
    assert not [n for n in inst if n.startswith(f"probewatch-{os.getpid()}-")]
