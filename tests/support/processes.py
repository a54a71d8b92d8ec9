"""Ports and processes: shared by the server unit tests and the plugin's end-to-end tests."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.processes import alive


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """True once `pid` has exited (polled, so a slow shutdown within `timeout` still counts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
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


@dataclass
class InnerSession:
    """A pytest session running in a subprocess, its output going to a file."""

    process: subprocess.Popen[bytes]
    output: Path

    def text(self) -> str:
        return self.output.read_text()

    @property
    def server_pid(self) -> int:
        return started_pid(self.text())


@contextmanager
def inner_pytest(
    cwd: Path, *args: str, marker: str = "in-test", timeout: float = 30
) -> Iterator[InnerSession]:
    """Run `pytest *args` in `cwd`, yield once its test has written the file `marker`, and
    never leave it running (Ctrl-C first, so it can stop its server)."""
    output = cwd / "inner-output.txt"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", *args], cwd=cwd, stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + timeout
            while not (cwd / marker).exists():
                assert process.poll() is None, output.read_text()
                assert time.monotonic() < deadline, output.read_text()
                time.sleep(0.02)
            yield InnerSession(process, output)
        finally:
            interrupt(process)
