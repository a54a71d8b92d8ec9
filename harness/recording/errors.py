"""Errors of the recording area, and the two values that travel between processes.

One exception type for everything a user can cause (bad mode, malformed recording file,
missing last-run file), so the CLI and the plugin can turn it into a clean message.

A recording *fault* is what goes wrong with a request while a stack serves it: a replay miss,
a recording that cannot be read or written, a request that tried to leave a sealed replay.
It is a :class:`Fault` (with a :class:`Miss` for a replay miss): typed, with a kind, and with
one JSON form, because it crosses process boundaries twice — into the stack's HTTP error answer
(``error_response``) and into the session's event log, from which the plugin puts it into the
failing test's report. A fault carries data only; the plugin renders the command that records
a miss, with the options of its own session.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

E = TypeVar("E", bound=BaseException)

# The response header a stack sets on its error answer to a request whose recording failed;
# its value is the fault's kind.
FAULT_HEADER = "X-Harness-Recording-Fault"
FAULT_STATUS = 500  # the status of every answer that carries a fault (error_response)


def find_in_chain(exc: BaseException | None, kind: type[E]) -> E | None:
    """The first exception of `kind` in `exc`'s cause/context chain (SDKs wrap transport errors)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class RecordingError(Exception):
    """A user error in the recording area; the message names the file/value and the fix."""


class FaultKind(enum.StrEnum):
    MISS = "miss"  # replay: no recording for the request
    UNREADABLE = "unreadable"  # a recording that cannot be read, or is malformed
    UNWRITABLE = "unwritable"  # a recording that cannot be written (read-only, disk full)
    SEALED = "sealed"  # replay: a request tried to reach a recorded host past the recorder
    UNRECORDED = "unrecorded"  # record: a request to a recorded host the harness cannot record


@dataclass(frozen=True)
class FieldDiff:
    field: str
    recorded: Any
    requested: Any


@dataclass(frozen=True)
class Nearest:
    path: str  # relative to the recordings directory
    request: dict[str, Any]  # its canonical request


@dataclass(frozen=True)
class Miss:
    """A request in replay mode that had no recording, and the nearest one that exists."""

    fingerprint: str
    test_id: str
    endpoint: str  # "POST /v1/chat/completions"
    recording_path: str  # where it was looked for, relative to the recordings directory
    nearest: Nearest | None = None
    diff: tuple[FieldDiff, ...] = ()

    def summary(self) -> str:
        test = self.test_id or "<shared scope>"
        return f"no recording for {self.endpoint} in test {test} (fingerprint {self.fingerprint})"

    def to_json(self) -> dict[str, Any]:
        return _json_safe(
            {
                "fingerprint": self.fingerprint,
                "test_id": self.test_id,
                "endpoint": self.endpoint,
                "recording_path": self.recording_path,
                "nearest": None
                if self.nearest is None
                else {"path": self.nearest.path, "request": self.nearest.request},
                "diff": [
                    {"field": d.field, "recorded": d.recorded, "requested": d.requested}
                    for d in self.diff
                ],
            }
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Miss:
        nearest = data.get("nearest")
        return cls(
            fingerprint=str(data.get("fingerprint", "")),
            test_id=str(data.get("test_id", "")),
            endpoint=str(data.get("endpoint", "")),
            recording_path=str(data.get("recording_path", "")),
            nearest=Nearest(str(nearest.get("path", "")), dict(nearest.get("request") or {}))
            if isinstance(nearest, dict)
            else None,
            diff=tuple(
                FieldDiff(str(d.get("field")), d.get("recorded"), d.get("requested"))
                for d in data.get("diff") or []
                if isinstance(d, dict)
            ),
        )


@dataclass(frozen=True)
class Fault:
    """A recording fault of one request, filed under the test (and run of it) it belongs to."""

    kind: FaultKind
    message: str
    test_id: str = ""
    invocation: str = ""
    miss: Miss | None = field(default=None)

    def summary(self) -> str:
        return self.miss.summary() if self.miss is not None else self.message

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": str(self.kind),
            "message": self.message,
            "test_id": self.test_id,
            "invocation": self.invocation,
        }
        if self.miss is not None:
            data["miss"] = self.miss.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        try:
            kind = FaultKind(data.get("kind"))
        except ValueError:
            kind = FaultKind.UNREADABLE
        miss = data.get("miss")
        return cls(
            kind=kind,
            message=str(data.get("message", "")),
            test_id=str(data.get("test_id", "")),
            invocation=str(data.get("invocation", "")),
            miss=Miss.from_json(miss) if isinstance(miss, dict) else None,
        )


class RecordingFault(RecordingError):
    """Raised where a request's recording failed; carries the :class:`Fault`."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        super().__init__(fault.summary())

    def __reduce__(self) -> tuple[type[RecordingFault], tuple[Fault]]:
        return (type(self), (self.fault,))

    def __str__(self) -> str:
        return render_fault(self.fault)


class ReplayMissError(RecordingFault):
    """A request in replay mode had no recording."""

    @property
    def miss(self) -> Miss:
        assert self.fault.miss is not None
        return self.fault.miss

    def summary(self) -> str:
        return self.fault.summary()


def fault_of(exc: BaseException) -> Fault:
    """The fault an exception raised by the recording layer stands for."""
    if isinstance(exc, RecordingFault):
        return exc.fault
    return Fault(FaultKind.UNREADABLE, str(exc))


def raise_fault(fault: Fault) -> None:
    raise (ReplayMissError if fault.kind is FaultKind.MISS else RecordingFault)(fault)


def error_response(fault: Fault) -> tuple[dict[str, Any], dict[str, str]]:
    """The body and headers of a stack's HTTP 500 for a recording fault.

    Llama Stack's `detail`, an OpenAI-style `error.message` (what SDKs show), and the fault
    itself as `recording_fault`.
    """
    summary = fault.summary()
    body = {"detail": summary, "error": {"message": summary}, "recording_fault": fault.to_json()}
    # Retrying cannot make a recording appear; SDKs built like openai's obey this header.
    return body, {FAULT_HEADER: str(fault.kind), "x-should-retry": "false"}


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _short(value: Any, limit: int = 200, start: int = 0) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(text) <= limit:
        return text
    start = max(0, min(start, len(text) - limit + 3))
    head = "..." if start else ""
    return head + text[start : start + limit - 3 - len(head)] + "..."


def _window(recorded: Any, requested: Any) -> int:
    """Where two long values first differ (in their JSON text), less some context."""
    left = json.dumps(recorded, ensure_ascii=False, sort_keys=True)
    right = json.dumps(requested, ensure_ascii=False, sort_keys=True)
    for index, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return max(0, index - 60)
    return max(0, min(len(left), len(right)) - 60)


def render_miss(miss: Miss, command: str | None = None) -> str:
    """The multi-line diagnostic of a replay miss, as a failing test shows it."""
    lines = [
        f"Replay miss: no recording for {miss.endpoint}",
        f"  fingerprint: {miss.fingerprint}",
        f"  test id:     {miss.test_id or '<shared scope>'}",
        f"  expected at: {miss.recording_path}",
    ]
    if miss.nearest is not None:
        lines.append(f"  nearest recording: {miss.nearest.path}")
        if miss.diff:
            lines.append("  differences (recorded -> requested):")
            for item in miss.diff:
                start = _window(item.recorded, item.requested)
                lines.append(
                    f"    {item.field}: {_short(item.recorded, start=start)} -> "
                    f"{_short(item.requested, start=start)}"
                )
        else:
            lines.append("  the nearest recording's request is identical (different file name)")
    else:
        lines.append("  nearest recording: none for this endpoint in this test module")
    if command:
        lines.append(f"  to record it: {command}")
    return "\n".join(lines)


def render_fault(fault: Fault, command: str | None = None) -> str:
    if fault.miss is not None:
        return render_miss(fault.miss, command)
    titles = {
        FaultKind.UNREADABLE: "Recording fault",
        FaultKind.UNWRITABLE: "Recording fault",
        FaultKind.SEALED: "Sealed replay",
        FaultKind.UNRECORDED: "Not recorded",
    }
    return f"{titles.get(fault.kind, 'Recording fault')}: {fault.message}"
