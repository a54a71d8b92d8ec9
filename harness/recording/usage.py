"""The session's event log: what each request did with the recordings, and every fault.

Every layer that records or replays (a stack's provider transport and client adapters, the
test process's vcrpy layer) appends one JSON line per event to the log of the test session
the request belongs to. The plugin reads it back as the run goes, so this file is the one
route by which a replay miss or another recording fault reaches the failing test's report,
whatever layer or process it happened in and whether or not the test caught the error; at the
end it gives the tally, the misses file and the run file that ``harness recordings prune``
reads::

    {"event": "used",        "path": <relative path>, "test_id": ..., "invocation": ...}
    {"event": "recorded",    "path": <relative path>, "test_id": ..., "invocation": ...}
    {"event": "fault",       "fault": <Fault JSON>}
    {"event": "passthrough", "host": "127.0.0.1:4000", "test_id": ..., "invocation": ...}
    {"event": "stream-opened" | "stream-closed", "stream": <id>, "endpoint": ..., ...}

Each line is one ``os.write`` on an ``O_APPEND`` descriptor, which POSIX keeps whole even with
several processes (xdist workers, a shared stack server) appending to the same file.

Which log: a request names its session (``X-Harness-Session``, a hex id); its lines go to that
session's log in the sessions directory, so sessions sharing one server each get their own
tally. Requests outside any session (a stack's start-up) go to the log the server was started
with.
"""

from __future__ import annotations

import enum
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.recording.errors import Fault, FaultKind, RecordingError

LAST_RUN_FILE = ".last-run.json"
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")


class UsageKind(enum.StrEnum):
    USED = "used"
    RECORDED = "recorded"
    FAULT = "fault"
    PASSTHROUGH = "passthrough"
    STREAM_OPENED = "stream-opened"
    STREAM_CLOSED = "stream-closed"


def default_sessions_dir() -> Path:
    """Per user, so every session and every server of one account finds the same logs."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"stack-harness-{uid}" / "sessions"


def session_log(sessions_dir: Path, session: str) -> Path:
    """Where a session's events go; the id is checked, so a header cannot name another file."""
    if not SESSION_ID.match(session):
        raise ValueError(f"not a session id: {session!r}")
    return sessions_dir / f"{session}.jsonl"


class UsageLog:
    """Appends events; a no-op without anywhere to write.

    A session's log belongs to that session: once it has ended and removed it, a server that
    outlives it has nobody to report to, so the event is dropped rather than the file recreated.
    """

    def __init__(self, default: Path | None, sessions_dir: Path | None = None) -> None:
        self.default = default
        self.sessions_dir = sessions_dir

    def path_for(self, session: str) -> Path | None:
        if session and self.sessions_dir is not None:
            try:
                return session_log(self.sessions_dir, session)
            except ValueError:
                return None
        return self.default

    def append(self, kind: UsageKind, session: str = "", **values: Any) -> None:
        path = self.path_for(session)
        if path is None:
            return
        line = json.dumps({"event": str(kind), **values}, default=str) + "\n"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            return  # the session is over (or never created its log)
        except OSError:
            return  # nothing the request can do about it; the session notices the gap
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)


def create_log(path: Path) -> Path:
    """Create an empty log (writers never create one: see UsageLog)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    return path


class UsageReader:
    """Reads a log incrementally: each call returns the events appended since the last one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def new_events(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
        self._offset += end
        return list(_parse(data[:end].decode("utf-8", "replace").splitlines()))


def _parse(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("event"), str):
            yield event


@dataclass
class UsageSummary:
    """What a log says: the paths used or recorded, the faults, the passed-through requests."""

    used: set[str] = field(default_factory=set)
    recorded: set[str] = field(default_factory=set)
    faults: list[Fault] = field(default_factory=list)
    passthrough: dict[str, int] = field(default_factory=dict)  # host -> requests
    open_streams: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> opened event
    unrecorded_streams: list[dict[str, Any]] = field(default_factory=list)  # closed, not written
    counts: dict[str, int] = field(default_factory=lambda: {str(kind): 0 for kind in UsageKind})

    def add(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == UsageKind.USED:
            self.used.add(str(event.get("path")))
        elif kind == UsageKind.RECORDED:
            self.recorded.add(str(event.get("path")))
        elif kind == UsageKind.FAULT and isinstance(event.get("fault"), dict):
            self.faults.append(Fault.from_json(event["fault"]))
        elif kind == UsageKind.PASSTHROUGH:
            host = str(event.get("host"))
            self.passthrough[host] = self.passthrough.get(host, 0) + 1
        elif kind == UsageKind.STREAM_OPENED:
            self.open_streams[str(event.get("stream"))] = event
        elif kind == UsageKind.STREAM_CLOSED:
            self.open_streams.pop(str(event.get("stream")), None)
            if event.get("recorded") is False:
                self.unrecorded_streams.append(event)
        else:
            return
        self.counts[str(kind)] += 1

    @property
    def touched(self) -> set[str]:
        """Every recording the run replayed or wrote."""
        return self.used | self.recorded

    @property
    def misses(self) -> list[Fault]:
        return [f for f in self.faults if f.kind is FaultKind.MISS]


def read_usage(log: Path) -> UsageSummary:
    """Summarise a log; a missing log is an empty summary."""
    summary = UsageSummary()
    for event in UsageReader(log).new_events():
        summary.add(event)
    return summary


# -- the run file, for prune --------------------------------------------------------------------


@dataclass(frozen=True)
class RunUsage:
    """What one passing replay run used: prune trusts runs that together ran every test."""

    started: float  # wall-clock time the run started; newer recordings are never pruned
    tests: frozenset[str]  # the node ids it ran
    used: frozenset[str]  # relative paths it replayed
    source: str = ""


def write_last_run(
    directory: Path | str, used_paths: Iterable[str], tests: Iterable[str], started: float
) -> Path:
    """Write a complete replay run's usage to the recordings directory's run file."""
    return write_run(Path(directory) / LAST_RUN_FILE, used_paths, tests, started)


def write_run(path: Path, used_paths: Iterable[str], tests: Iterable[str], started: float) -> Path:
    """Write a passing replay run's usage (relative posix paths) for prune, atomically; an
    OSError (a full disk, a directory in its place) leaves nothing behind."""
    payload = {
        "version": 2,
        "started": started,
        "tests": sorted(set(tests)),
        "used": sorted(set(used_paths)),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # nothing half-written is left; the caller names the cause
        raise
    return path


def read_run(path: Path) -> RunUsage:
    """One run file; RecordingError if it is missing or malformed."""
    if not path.is_file():
        raise RecordingError(
            f"{path}: not found; prune needs the run file of a complete replay run (or the run "
            "files of runs that together ran every recorded test). Run the whole suite in "
            "replay mode first (the plugin writes this file)."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecordingError(f"{path}: malformed: expected JSON ({exc})") from None
    shape = '{"version": 2, "started": <time>, "tests": [...], "used": [...]}'
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("used"), list)
        or not isinstance(data.get("tests"), list)
        or not isinstance(data.get("started"), int | float)
    ):
        raise RecordingError(
            f"{path}: malformed or from an older harness: expected {shape}. Run the suite in "
            "replay mode again to rewrite it."
        )
    return RunUsage(
        started=float(data["started"]),
        tests=frozenset(map(str, data["tests"])),
        used=frozenset(map(str, data["used"])),
        source=str(path),
    )


def now() -> float:
    return time.time()
