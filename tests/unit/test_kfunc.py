"""Kernel function tracing without kprobes: the alternatives named from a kernel's
events/ tree (a fixture tree here) and the one-line refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from probewatch.sources.kfunc import alternatives


def _tree(root: Path, events: list[str]) -> str:
    for e in events:
        (root / "events" / e).mkdir(parents=True)
    (root / "events" / "enable").write_text("0\n")  # a file, not a system
    return str(root)


@pytest.fixture
def root(tmp_path: Path) -> str:
    return _tree(tmp_path, [
        "tcp/tcp_probe", "tcp/tcp_retransmit_skb", "sock/inet_sock_set_state",
        "syscalls/sys_enter_openat2", "syscalls/sys_exit_openat2", "syscalls/sys_enter_read",
        "syscalls/sys_enter_readv", "syscalls/sys_enter_getcpu", "btrfs/btrfs_tree_read_lock",
        "sched/sched_switch",
    ])


@pytest.mark.parametrize("pattern,want", [
    ("tcp_*", ["t:tcp:*"]),
    ("do_sys_openat2", ["t:syscalls:sys_enter_openat2", "t:syscalls:sys_exit_openat2"]),
    # syscalls first, whole words only (getcpu is no tcp, readv no read)
    ("vfs_read", ["t:syscalls:sys_enter_read", "t:btrfs:btrfs_tree_read_lock"]),
    ("tcp_v4_connect", ["t:tcp:*"]),
    ("schedule", []),
    ("__x64_sys_do", []),
])
def test_alternatives(root: str, pattern: str, want: list[str]) -> None:
    assert alternatives(root, pattern) == want


def test_alternatives_are_bounded_and_survive_a_missing_tree(root: str,
                                                             tmp_path: Path) -> None:
    assert len(alternatives(root, "sys_enter_read_openat2_getcpu", limit=3)) == 3
    assert alternatives(str(tmp_path / "nowhere"), "tcp_*") == []
