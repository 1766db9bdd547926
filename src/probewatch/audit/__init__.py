"""probewatch audit: who else watches or hooks this kernel.

A defender's view of the tracing stack itself: dynamic probes, enabled events,
filters and triggers (top level and every instance), BPF programs and links and the
processes holding them, perf events, ptrace tracers, preloads and the kernel's taint.
Each observation is a :class:`~probewatch.audit.scan.Finding` with a stable ``key``,
so that two audits can be compared (:mod:`probewatch.audit.diff`), and each can be
given to the detection engine as a Sigma event of category ``audit``
(:mod:`probewatch.audit.events`).

Example::

    from probewatch.audit.scan import Scanner
    report = Scanner().scan()
    for f in report.findings:
        print(f.kind, f.what, f.owner)
"""
