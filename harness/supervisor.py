"""Runs a stack server command and ends it once no live test session holds it.

A session that is killed outright (SIGKILL, an OOM kill, a CI runner cancelled) cannot stop
the server it started; without a watcher that server would run forever, holding its port.
`harness.server` therefore starts every stack command through this small process:

    python -m harness.supervisor --state-dir DIR --port N -- <command ...>

It starts the command as its child, in its own process group, and every
`CHECK_INTERVAL` seconds reads the port's state file (see `harness.serverstate`). When no
process listed as a holder is alive any more (by pid and start time), it takes the port's lock
(so a session that is just adopting the server wins the race), stops the child and exits.
The child is also tied to the supervisor's life (Linux `PR_SET_PDEATHSIG`), so killing the pid
the session reported ends the whole server. The supervisor exits as its child did: the same
exit code, or the same signal (SIGKILL included, so an OOM-killed stack is reported as killed
by SIGKILL, not as a crash).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

from filelock import Timeout

from harness import serverstate
from harness.processes import ProcessId

CHECK_INTERVAL = 1.0
GRACE_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it when the supervisor dies (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _unheld(directory: Path, port: int) -> bool:
    """True when the port's state names this supervisor and no holder of it is alive."""
    state = serverstate.read_state(directory, port)
    if state is None or not ProcessId.current().same(serverstate.server_of(state)):
        return False
    return not serverstate.live_holders(state)


def _release_if_unheld(directory: Path, port: int) -> bool:
    """Under the port's lock: forget the state and say so when nobody holds the server."""
    try:
        with serverstate.port_lock(directory, port, timeout=0.1):
            if not _unheld(directory, port):
                return False
            serverstate.state_path(directory, port).unlink(missing_ok=True)
            return True
    except Timeout:
        return False  # a session is starting, adopting or releasing: look again later


def _stop(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _exit_like(child: subprocess.Popen[bytes]) -> None:
    code = child.returncode
    if code is not None and code < 0:
        signum = -code
        if signum not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be caught anyway
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    sys.exit(code or 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.supervisor")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run after --")

    child = subprocess.Popen(command, preexec_fn=_die_with_parent)

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)

    while child.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=CHECK_INTERVAL)
        if child.returncode is None and _release_if_unheld(args.state_dir, args.port):
            print(
                f"harness supervisor: no test session holds the server on port {args.port} "
                "any more; stopping it",
                flush=True,
            )
            _stop(child)
            sys.exit(0)
    _exit_like(child)


if __name__ == "__main__":
    main()
