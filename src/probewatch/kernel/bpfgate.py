"""BPF programs attached to tracepoints: the gate in front of every perf event there.

A BPF program attached to a tracepoint through a perf event (``SEC("tracepoint")``
programs: libbpf, bcc, our bpf backend) sits in the tracepoint's perf path for
*every* perf user of it: the kernel (``perf_trace_run_bpf_submit``,
``perf_syscall_enter``) runs the attached programs first and hands the hit to the
perf events of that tracepoint only when they all return non-zero. A program that
returns 0 (most do: "nothing more to do") therefore hides the hit from every other
perf event of the tracepoint, sampling and counting alike, with no lost record and no
counter moving: perf-based tracing under-counts silently while ftrace (which has no
such gate) sees everything.

:func:`tracepoint_programs` finds such programs: BPF links of type perf_event on a
tracepoint (Linux 6.6+ names the tracepoint in the link info) and, with
``scan_fds``, perf event fds of every process that carry a program (attached with
PERF_EVENT_IOC_SET_BPF, no link; BPF_TASK_FD_QUERY).

Example::

    from probewatch.kernel.bpfgate import tracepoint_programs
    tracepoint_programs({"sys_enter_getppid"})
    # {'sys_enter_getppid': {36918: "BPF program 36918 'pw_tp' of pid 812 (python3)"}}
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from .bpfsys import BpfError, link_ids, link_info, prog_info, task_fd_query

#: enum bpf_link_type / enum bpf_perf_event_type
LINK_PERF_EVENT = 7
PERF_EVENT_TRACEPOINT = 5


def _describe(prog_id: int, names: dict[int, str]) -> str:
    name = names.get(prog_id)
    if name is None:
        try:
            name = str(prog_info(prog_id)["name"])
        except (BpfError, OSError):
            name = ""
        names[prog_id] = name
    return f"BPF program {prog_id} {name!r}" if name else f"BPF program {prog_id}"


def tracepoint_programs(events: Iterable[str], scan_fds: bool = True,
                        skip_pid: int | None = None) -> dict[str, dict[int, str]]:
    """Event name (``sys_enter_getppid``: the tracepoint's name without its system) ->
    {program id: description} of the BPF programs attached to it now, described as
    ``BPF program ID 'NAME'`` (with ``of pid P (COMM)`` when found through a process's
    fd). Only the ``events`` asked for are looked at; what cannot be read (not root,
    gone meanwhile) is skipped."""
    wanted = set(events)
    out: dict[str, dict[int, str]] = {}
    if not wanted:
        return out
    names: dict[int, str] = {}
    try:
        ids = link_ids()
    except (BpfError, OSError):
        ids = []
    for lid in ids:
        try:
            li = link_info(lid)
        except (BpfError, OSError):
            continue
        if li.get("type") != LINK_PERF_EVENT or li.get("perf_type") != PERF_EVENT_TRACEPOINT:
            continue
        tp = str(li.get("tp_name", ""))
        if tp in wanted:
            pid_ = int(li["prog_id"])
            out.setdefault(tp, {})[pid_] = _describe(pid_, names)
    if scan_fds:
        _scan_fds(wanted, out, names, skip_pid)
    return out


def _scan_fds(wanted: set[str], out: dict[str, dict[int, str]], names: dict[int, str],
              skip_pid: int | None) -> None:
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return
    for pid in pids:
        if pid == skip_pid:
            continue
        base = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(base)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{base}/{fd}") != "anon_inode:[perf_event]":
                    continue
            except OSError:
                continue
            q = task_fd_query(pid, int(fd))
            if q is None or q["fd_type"] != "tracepoint" or q["name"] not in wanted:
                continue
            try:
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                comm = "?"
            prog = int(q["prog_id"])
            out.setdefault(q["name"], {})[prog] = f"{_describe(prog, names)} of pid {pid} ({comm})"


__all__ = ["tracepoint_programs"]
