"""Processes by identity: a pid with its start time, its state, its exit, its process group.

A pid alone is not an identity: the kernel reuses pids, so a state file naming a session that
died long ago could name an unrelated live process today, and that process would hold a
server forever. A :class:`ProcessId` keeps the process's start time (``/proc/<pid>/stat``
field 22, clock ticks since boot) and is alive only while the same process runs. Linux only
for the start time and the stopped state; elsewhere a pid is taken at its word.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 5.0
_STARTTIME_FIELD = 22  # 1-based, as proc(5) numbers them
STOPPED_STATES = ("T", "t")  # stopped by a signal (SIGSTOP, Ctrl-Z), or by a tracer


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 onwards), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), or None where /proc cannot say."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < _STARTTIME_FIELD - 2:
        return None
    return int(fields[_STARTTIME_FIELD - 3])


def state_of(pid: int) -> str | None:
    """The one-letter state of `pid` (R, S, T, Z, ...), or None where /proc cannot say."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def _signal_0(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class ProcessId:
    """A process: its pid and, where known, its start time (None: the pid is trusted)."""

    pid: int
    start: int | None = None

    @classmethod
    def of(cls, pid: int) -> ProcessId:
        """The process running as `pid` now."""
        return cls(pid, start_time(pid))

    @classmethod
    def current(cls) -> ProcessId:
        return cls.of(os.getpid())

    def alive(self) -> bool:
        """True while this very process runs; a zombie (exited, not yet reaped) is gone."""
        if self.pid <= 0 or not _signal_0(self.pid):
            return False
        fields = _stat_fields(self.pid)
        if fields is None:
            return True
        if fields[0] == "Z":
            return False
        if self.start is None or len(fields) < _STARTTIME_FIELD - 2:
            return True
        return int(fields[_STARTTIME_FIELD - 3]) == self.start

    def same(self, other: ProcessId | None) -> bool:
        """The same process: same pid, and the same start time where both are known."""
        if other is None or other.pid != self.pid:
            return False
        return self.start is None or other.start is None or self.start == other.start

    def to_json(self) -> dict[str, int | None]:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_json(cls, value: object) -> ProcessId | None:
        """Read one written by :meth:`to_json`, or a bare pid (state files of older releases)."""
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return cls(value)
        if isinstance(value, dict) and isinstance(value.get("pid"), int):
            start = value.get("start")
            return cls(value["pid"], start if isinstance(start, int) else None)
        return None


def alive(pid: int) -> bool:
    """True while `pid` runs; a zombie counts as gone."""
    return ProcessId(pid).alive()


def describe_exit(returncode: int | None) -> str:
    """How a process ended, for a message: its exit code, or the signal that killed it by name."""
    if returncode is None:
        return "exited"
    if returncode < 0:
        try:
            return f"was killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def descendants(pid: int) -> list[int]:
    """`pid`'s children, grandchildren, ... (Linux; empty where /proc cannot say)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            text = Path(f"/proc/{parent}/task/{parent}/children").read_text()
        except OSError:
            continue
        children = [int(child) for child in text.split()]
        found += children
        pending += children
    return found


def stopped_in_tree(pid: int) -> list[int]:
    """The processes of `pid`'s tree (itself included) that are stopped (state T)."""
    return [p for p in (pid, *descendants(pid)) if state_of(p) in STOPPED_STATES]


def stop_process_group(
    pid: int,
    grace: float = STOP_GRACE_SECONDS,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL it after `grace` seconds; reap our child.

    A stopped group is continued after the SIGTERM, so it can act on it rather than wait out
    the grace period frozen.
    """
    try:
        pgid: int | None = os.getpgid(pid)
    except ProcessLookupError:
        pgid = pid
    if pgid == os.getpgid(0):  # never signal our own group (a server not started by us)
        pgid = None
    _signal(pid, pgid, signal.SIGTERM)
    _signal(pid, pgid, signal.SIGCONT)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        if process is None and not alive(pid):
            break
        time.sleep(0.02)
    else:
        logger.warning("stack server pid %d ignored SIGTERM for %g s; killing it", pid, grace)
    _signal(pid, pgid, signal.SIGKILL)  # also reaches anything left in the group
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)


def _signal(pid: int, pgid: int | None, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if pgid is not None:
            os.killpg(pgid, signum)
        else:
            os.kill(pid, signum)


def listener_of(port: int) -> tuple[int, str] | None:
    """The pid and command line of the process listening on a local TCP port (Linux; else None)."""
    from harness.recording.hosts import holds_socket, listening_inodes

    inodes = listening_inodes(port)
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and holds_socket(int(proc.name), inodes):
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").strip()
            except OSError:
                continue
            return int(proc.name), cmdline.decode("utf-8", "replace")
    return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                return int(proc.name), cmdline.decode("utf-8", "replace")
        except OSError:
            continue
    return None
