"""A hold on a stack server process, and how it is let go of.

Split from `harness.server`, which makes leases: the lease is what a session keeps for the
rest of its run, and releasing it is the one place a server this session shares is stopped.
"""

from __future__ import annotations

import enum
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import serverstate
from harness.processes import STOP_GRACE_SECONDS, ProcessId, describe_exit, stop_process_group
from harness.serverstate import port_lock, read_state, state_path, write_state


class Origin(enum.StrEnum):
    STARTED = "started"  # this process started it
    SHARED = "shared"  # another harness session started it; we hold a reference
    EXTERNAL = "external"  # running before any harness session held it; never stopped


@dataclass
class ServerLease:
    """A hold on a running stack server; `release()` stops it if we were the last holder.

    A lease on a server this process started owns its `Popen` (to reap it and read how it
    ended); nothing else in the process keeps a reference to it.
    """

    port: int
    base_url: str
    origin: Origin
    server: ProcessId | None
    log_path: Path | None
    _directory: Path
    _holder: ProcessId
    process: subprocess.Popen[bytes] | None = None
    note: str = ""  # why the server is not on the port that was asked for, if it is not
    released: bool = False

    @property
    def pid(self) -> int | None:
        return self.server.pid if self.server is not None else None

    def exit_description(self) -> str:
        """How the server process ended: its exit code or signal when we started it."""
        code = self.process.poll() if self.process is not None else None
        return describe_exit(code)

    def release(self) -> str:
        """Let go of the server; stop it if we were the last holder. Says what happened."""
        if self.released:
            return "already released"
        self.released = True
        if self.origin is Origin.EXTERNAL or self.server is None:
            return (
                f"left the stack on port {self.port} running (it was started outside the harness)"
            )
        pid = self.server.pid
        with port_lock(self._directory, self.port, timeout=STOP_GRACE_SECONDS * 4):
            state = read_state(self._directory, self.port)
            if state is None or not self.server.same(serverstate.server_of(state)):
                # The state is gone (e.g. removed by hand): still stop what we know of.
                if self.origin is Origin.STARTED:
                    stop_process_group(pid, process=self.process)
                    return f"stopped the stack server (pid {pid}) on port {self.port}"
                return f"the stack server (pid {pid}) on port {self.port} is no longer ours"
            holders = serverstate.live_holders(state)
            mine = next((h for h in holders if h.same(self._holder)), None)
            if mine is not None:
                holders.remove(mine)  # one reference: a process may hold several
            if holders:
                serverstate.set_holders(state, holders)
                write_state(self._directory, self.port, state)
                return (
                    f"left the stack server (pid {pid}) on port {self.port} running for "
                    f"{len(holders)} other test session(s) holding it; the last one stops it"
                )
            stop_process_group(pid, process=self.process)
            state_path(self._directory, self.port).unlink(missing_ok=True)
            return f"stopped the stack server (pid {pid}) on port {self.port}"
