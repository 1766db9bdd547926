"""tests/arm64/guest/ runs only inside the arm64 guest (tests/arm64/test_arm64.py starts
it there); elsewhere it is not collected."""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.uname().machine == "aarch64" else ["guest/*"]
