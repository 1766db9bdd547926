"""The launcher (``-- COMMAND``) changes nothing in the traced program (issue 13 §2).

Traced and untraced runs of the same command must see the same signal dispositions,
signal mask, environment, working directory, file descriptors and limits; the PATH
search happens before the gate (one execve); a missing command is one clear error.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import require_bpf  # tests/conftest.py

from .helpers import CLI, json_lines, our_instances, run_cli

pytestmark = pytest.mark.integration

EXIT_TP = "t:sched:sched_process_exit"
SIG_LINES = ["grep", "-E", "^Sig(Ign|Blk|Cgt)", "/proc/self/status"]


def _sig_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(("SigIgn", "SigBlk", "SigCgt"))]


@pytest.mark.parametrize("backend", ["ftrace", "bpf"])
def test_signal_state_of_a_traced_command_equals_untraced(tracefs: str, backend: str) -> None:
    if backend == "bpf":
        _require_bpf()
    untraced = subprocess.run(SIG_LINES, capture_output=True, text=True, check=True).stdout
    r = run_cli("trace", EXIT_TP, "--count", "--backend", backend, "--", *SIG_LINES)
    assert r.returncode == 0, r.stderr
    got = _sig_lines(r.stdout)
    assert len(got) == 3, r.stdout
    assert got == _sig_lines(untraced)
    # Python ignores SIGPIPE and SIGXFSZ; the command must not inherit that
    assert "SigIgn:\t0000000001001000" not in got


def test_env_cwd_fds_limits_as_untraced(tracefs: str, tmp_path: Path) -> None:
    script = ("env | LC_ALL=C sort; pwd; ls /proc/self/fd | sort -n | tr '\\n' ' '; echo;"
              " ulimit -a; umask")
    env = dict(os.environ, PROBEWATCH_LAUNCH_TEST="x\ty z")
    untraced = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                              cwd=tmp_path, env=env, check=True).stdout
    r = run_cli("trace", EXIT_TP, "--count", "--backend", "ftrace", "--", "sh", "-c", script,
                cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == untraced
    assert "PROBEWATCH_LAUNCH_TEST=x\ty z" in r.stdout and str(tmp_path) in r.stdout


def test_one_execve_path_resolved_before_the_gate(tracefs: str, tmp_path: Path) -> None:
    _require_bpf()
    grep = "/usr/bin/grep" if os.path.exists("/usr/bin/grep") else "/bin/grep"
    # PATH entries before grep's directory: each was one failing execve in the child
    path = f"{tmp_path}/no1:{tmp_path}/no2:{tmp_path}/no3:{os.path.dirname(grep)}:/bin"
    r = run_cli("syscalls", "-f", "--json", "--", "grep", "x", "/etc/hostname",
                env=dict(os.environ, PATH=path))
    assert r.returncode in (0, 1), r.stderr  # grep's own status (1: no match)
    execs = [e for e in json_lines(r.stdout) if e.get("event") == "syscalls:execve"]
    assert len(execs) == 1, [e["fields"].get("filename") for e in execs]
    assert execs[0]["fields"]["filename"] == grep
    assert execs[0]["fields"]["ret"] == 0
    assert execs[0]["fields"]["argv"] == ["grep", "x", "/etc/hostname"]


def test_yes_head_exits_as_untraced(tracefs: str) -> None:
    script = 'yes | head -1; echo "${PIPESTATUS[@]}"'
    untraced = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert untraced.stdout == "y\n141 0\n"
    r = run_cli("trace", EXIT_TP, "--count", "--backend", "ftrace", "--", "bash", "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout == untraced.stdout  # yes killed by SIGPIPE, as untraced
    assert "Broken pipe" not in r.stderr


def test_missing_command_is_one_error_and_arms_nothing(tracefs: str) -> None:
    p = subprocess.Popen([*CLI, "trace", "u:libc:malloc", "t:sched:sched_switch", "--",
                          "probewatch-no-such-command"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert out == ""
    assert err == ("probewatch: error: cannot run 'probewatch-no-such-command': "
                   "No such file or directory (searched PATH)\n")
    assert our_instances(tracefs, p.pid) == []
    with open(os.path.join(tracefs, "uprobe_events")) as f:
        assert f"probewatch_{p.pid}/" not in f.read()


def _require_bpf() -> None:
    require_bpf()


def test_the_launcher_makes_no_malloc_after_the_gate(tracefs: str) -> None:
    """Once the gate opens the launcher only execs: with long environment values
    os.execve built its arrays there with malloc(), which a traced u:libc:malloc
    counted as the command's (6 calls of comm python3 for /bin/true)."""
    _require_bpf()
    big = "a" * 3000
    env = dict(os.environ, PW_BIG1=big, PW_BIG2=big, PW_BIG3=big)
    r = run_cli("trace", "--backend", "bpf", "--json", "u:libc:malloc", "--",
                "/bin/true", env=env)
    assert r.returncode == 0, r.stderr
    assert json_lines(r.stdout) == []  # /bin/true itself never calls malloc
    # the environment still reaches the command whole
    r = run_cli("trace", "t:sched:sched_process_exit", "--", "printenv", "PW_BIG3", env=env)
    assert r.returncode == 0, r.stderr
    assert big in r.stdout
