"""Ports and processes: shared by the server unit tests and the plugin's end-to-end tests."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def started_pid(output: str) -> int:
    """The pid the plugin announces when it starts a server."""
    found = re.search(r"started the stack server \(pid (\d+)\)", output)
    assert found, output
    return int(found.group(1))


def interrupt(process: subprocess.Popen, signum: int = signal.SIGINT) -> None:
    """End an inner pytest like Ctrl-C does, so it stops its server; SIGKILL only as a last
    resort (that would orphan the server, which is what the interrupt tests rule out)."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
