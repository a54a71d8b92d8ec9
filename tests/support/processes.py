"""Process checks shared by the server unit tests and the plugin's end-to-end tests."""

from __future__ import annotations

import time

from harness import server


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """True once `pid` has exited (polled, so a slow shutdown within `timeout` still counts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive(pid):
            return True
        time.sleep(0.02)
    return False
