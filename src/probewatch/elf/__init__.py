"""ELF reading on pyelftools: symbols -> file offsets, debug files, libraries, USDT notes.

- :mod:`.symbols` -- ``resolve_symbol(path, name)``, ``open_image(path)``, debug-file search
- :mod:`.libs`    -- ``resolve_target(target, pid)``, ``find_library("libc")``
- :mod:`.usdt`    -- ``read_usdt_probes(path)``, ``parse_usdt_arg("-4@%edi")``

Example::

    from probewatch.elf.symbols import resolve_symbol
    [r] = resolve_symbol("/usr/lib/x86_64-linux-gnu/libc.so.6", "malloc")
"""
