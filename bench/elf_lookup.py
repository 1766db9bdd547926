"""Symbol lookup speed: resolve_symbol on a cached image (moved here from a unit test:
a wall-clock threshold on a shared machine is no test).

    PYTHONPATH=src python bench/elf_lookup.py [ELF] [SYMBOL] [N]

Prints the first (parse) and the mean cached resolve time.
"""

from __future__ import annotations

import sys
import time

from probewatch.elf.symbols import clear_cache, resolve_symbol


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "/lib/x86_64-linux-gnu/libc.so.6"
    name = sys.argv[2] if len(sys.argv) > 2 else "malloc"
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    clear_cache()
    t = time.perf_counter()
    resolve_symbol(path, name)
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(n):
        resolve_symbol(path, name)
    mean = (time.perf_counter() - t) / n
    print(f"{path} {name}: first {first * 1e3:.1f} ms, cached {mean * 1e6:.1f} us/resolve "
          f"(n={n})")


if __name__ == "__main__":
    main()
