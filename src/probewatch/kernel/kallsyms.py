"""Kernel addresses -> function names, from /proc/kallsyms (read once per table).

Example::

    ks = Kallsyms()
    ks.name(0xffffffff81234560)     # 'do_sys_openat2'
"""

from __future__ import annotations

import bisect


class Kallsyms:
    """The text symbols of /proc/kallsyms, sorted by address (root sees addresses;
    otherwise every address is 0 and :meth:`name` returns None)."""

    def __init__(self, path: str = "/proc/kallsyms") -> None:
        syms: list[tuple[int, str]] = []
        try:
            with open(path) as f:
                for ln in f:
                    w = ln.split()
                    if len(w) >= 3 and w[1] in ("t", "T", "W", "w"):
                        a = int(w[0], 16)
                        if a:
                            syms.append((a, w[2]))
        except OSError:
            pass
        syms.sort()
        self._addrs = [a for a, _ in syms]
        self._names = [n for _, n in syms]

    def name(self, addr: int) -> str | None:
        """The function containing ``addr`` (the nearest symbol at or below it)."""
        i = bisect.bisect_right(self._addrs, addr) - 1
        return self._names[i] if i >= 0 else None

    def __len__(self) -> int:
        return len(self._addrs)


__all__ = ["Kallsyms"]
