"""Runs last (see tests/conftest.py): nothing of probewatch's remains in the kernel."""

from __future__ import annotations

import os

import pytest


@pytest.mark.integration
def test_zz_nothing_left(tracefs: str) -> None:
    from probewatch.kernel.tracefs import owned_leftovers, sweep_stale

    # the sweep removes only objects of dead owners; every test must have cleaned
    # up itself, so leftovers here are defects even if their owner is dead
    left = owned_leftovers(tracefs)
    assert left == [], f"probewatch objects left in tracefs: {left}"
    for f in ("uprobe_events", "kprobe_events", "dynamic_events"):
        p = os.path.join(tracefs, f)
        if os.path.exists(p):
            with open(p) as fh:
                text = fh.read()
            assert "probewatch" not in text, f"{f} still holds: {text}"
    inst = os.listdir(os.path.join(tracefs, "instances"))
    assert not [i for i in inst if i.startswith("probewatch")], inst
    with open(os.path.join(tracefs, "set_event")) as fh:
        top = fh.read().split()
    assert top == [], f"events left enabled in the top-level buffer: {top}"
    assert sweep_stale(tracefs) == []
