"""The files through which test sessions share stack servers: one lock and one state per port.

They live in a per-user directory in the temp dir, because a server may outlive the session
that started it. A state file, written atomically under its port's lock::

    {"pid": 123, "pid_start": 456789,                 # the supervisor and its start time
     "holders": [{"pid": 200, "start": 456700}],      # the test sessions holding it
     "signature": {...}, "log": "...", "command": [...]}

Processes are stored with their start time (see `harness.processes`), so a pid the kernel
has reused is never taken for a live holder. State files written before start times were
stored (holders as bare pids, no ``pid_start``) are still read: their pids are trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from filelock import FileLock

from harness.processes import ProcessId


def state_dir() -> Path:
    """Per-user directory holding one lock and one state file per port."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    path = Path(tempfile.gettempdir()) / f"stack-harness-{uid}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_path_for(port: int, directory: Path | None = None) -> Path:
    """Where the server on `port` logs: next to its state, so it outlives the session."""
    return (directory or state_dir()) / f"stack-server-{port}.log"


def state_path(directory: Path, port: int) -> Path:
    return directory / f"port-{port}.json"


def port_lock(directory: Path, port: int, timeout: float) -> FileLock:
    return FileLock(str(directory / f"port-{port}.lock"), timeout=timeout)


def signature_lock(directory: Path, signature: Mapping[str, str], timeout: float) -> FileLock:
    """The lock of one set of server settings (taken before any port lock, never after)."""
    digest = hashlib.sha256(json.dumps(dict(signature), sort_keys=True).encode()).hexdigest()
    return FileLock(str(directory / f"settings-{digest[:16]}.lock"), timeout=timeout)


def read_state(directory: Path, port: int) -> dict | None:
    try:
        state = json.loads(state_path(directory, port).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def write_state(directory: Path, port: int, state: dict) -> None:
    path = state_path(directory, port)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    os.replace(tmp, path)


def all_states(directory: Path) -> Iterator[tuple[int, dict]]:
    """Every port's state in the directory (read without its lock: re-read it under the lock)."""
    for path in sorted(directory.glob("port-*.json")):
        port_text = path.stem.removeprefix("port-")
        if not port_text.isdigit():
            continue
        state = read_state(directory, int(port_text))
        if state is not None:
            yield int(port_text), state


def server_of(state: Mapping[str, object]) -> ProcessId | None:
    """The server (supervisor) process a state names."""
    pid = state.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return None
    start = state.get("pid_start")
    return ProcessId(pid, start if isinstance(start, int) else None)


def set_server(state: dict, server: ProcessId) -> None:
    state["pid"] = server.pid
    state["pid_start"] = server.start


def holders_of(state: Mapping[str, object]) -> list[ProcessId]:
    """The processes a state lists as holding its server (old bare pids included)."""
    raw = state.get("holders")
    if not isinstance(raw, list):
        return []
    return [holder for holder in map(ProcessId.from_json, raw) if holder is not None]


def live_holders(state: Mapping[str, object]) -> list[ProcessId]:
    return [holder for holder in holders_of(state) if holder.alive()]


def set_holders(state: dict, holders: list[ProcessId]) -> None:
    state["holders"] = [holder.to_json() for holder in holders]


def add_worker(directory: Path, port: int, worker: ProcessId, timeout: float = 10.0) -> None:
    """Name an xdist worker of a session holding the server on `port` (not a holder: its
    controller holds the server), so the server knows the worker's own servers are the test's.
    """
    try:
        with port_lock(directory, port, timeout=timeout):
            state = read_state(directory, port)
            if state is None:
                return
            workers = [w for w in map(ProcessId.from_json, state.get("workers", [])) if w]
            workers = [w for w in workers if w.alive() and not w.same(worker)]
            state["workers"] = [w.to_json() for w in [*workers, worker]]
            write_state(directory, port, state)
    except TimeoutError:
        return  # a busy lock only costs the worker's servers their pass-through
