"""Which recordings a run used, for the plugin's summary and for ``prune``.

The transport appends one short line per interaction to the usage log
(``HARNESS_RECORDING_USAGE_LOG``)::

    used <relative path>
    recorded <relative path>
    missed <fingerprint> <test id>

Each line is one ``os.write`` on an ``O_APPEND`` descriptor, which POSIX keeps whole even with
several processes (xdist workers, a stack server) appending to the same file.

After a complete replay run the plugin calls :func:`write_last_run`, and
``harness recordings prune`` deletes the recordings that run did not use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness.recording.errors import RecordingError

LAST_RUN_FILE = ".last-run.json"
USED = "used"
RECORDED = "recorded"
MISSED = "missed"


class UsageLog:
    """Appends usage lines for one recordings directory; a no-op without a log path.

    The log's directory belongs to the pytest session that asked for it. Once that session has
    ended and removed it, a server that outlives the session (shared with another one) has
    nobody to report to, so its lines are dropped rather than recreating the directory.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def append(self, kind: str, *values: str) -> None:
        if self.path is None:
            return
        line = " ".join((kind, *(v.replace("\n", " ") for v in values))) + "\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except FileNotFoundError:
            return
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)


@dataclass
class UsageSummary:
    """What a usage log says: counts per kind, the paths used or recorded, the misses."""

    used: set[str] = field(default_factory=set)
    recorded: set[str] = field(default_factory=set)
    missed: list[tuple[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {USED: 0, RECORDED: 0, MISSED: 0})

    @property
    def touched(self) -> set[str]:
        """Every recording the run replayed or wrote."""
        return self.used | self.recorded


def read_usage(log: Path) -> UsageSummary:
    """Summarise a usage log; a missing log is an empty summary."""
    summary = UsageSummary()
    try:
        text = log.read_text(encoding="utf-8")
    except FileNotFoundError:
        return summary
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == USED:
            summary.used.add(rest)
        elif kind == RECORDED:
            summary.recorded.add(rest)
        elif kind == MISSED:
            fp, _, test_id = rest.partition(" ")
            summary.missed.append((fp, test_id))
        else:
            continue
        summary.counts[kind] += 1
    return summary


def write_last_run(directory: Path | str, used_paths: Iterable[str]) -> Path:
    """Record the recordings a complete replay run used (relative posix paths), for prune."""
    path = Path(directory) / LAST_RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"complete": True, "used": sorted(set(used_paths))}
    tmp = path.with_name(f"{LAST_RUN_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_last_run(directory: Path | str) -> set[str]:
    """The used paths of the last complete run; RecordingError if there is none to trust."""
    path = Path(directory) / LAST_RUN_FILE
    if not path.is_file():
        raise RecordingError(
            f"{path}: not found; prune needs the usage of a complete replay run. "
            "Run the whole suite in replay mode first (the plugin writes this file)."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RecordingError(f"{path}: malformed: expected JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("used"), list):
        raise RecordingError(f'{path}: malformed: expected {{"complete": true, "used": [...]}}')
    if data.get("complete") is not True:
        raise RecordingError(
            f"{path}: the last run was not complete; prune only after a full replay run"
        )
    return {str(p) for p in data["used"]}
