"""Errors of the recording area.

One exception type for everything a user can cause (bad mode, malformed recording file,
missing last-run file) so the CLI and the plugin can turn it into a clean message, and one
subclass for the replay miss, which carries a structured diagnostic the stack forwards to the
test that made the request.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

E = TypeVar("E", bound=BaseException)

# The response header a stack sets on the error answer to a request whose recording failed:
# the fingerprint of a replay miss, or "error" for any other recording fault.
RECORDING_MISS_HEADER = "X-Harness-Recording-Miss"
RECORDING_FAULT = "error"


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


class ReplayMissError(RecordingError):
    """A request in replay mode had no recording.

    ``miss`` is a JSON-serialisable dict (see ``harness.recording.diagnostics``)::

        {"fingerprint", "test_id", "endpoint", "recording_path",
         "nearest": {"path", "request"} | None,
         "diff": [{"field", "recorded", "requested"}],
         "command"}

    It travels through the stack's HTTP error response as ``recording_miss`` so the failing
    test shows the diagnostic, not only a server log.
    """

    def __init__(self, miss: dict[str, Any]) -> None:
        self.miss = miss
        super().__init__(self.summary())

    def __reduce__(self) -> tuple[type[ReplayMissError], tuple[dict[str, Any]]]:
        # Keep the structured miss when pickled (e.g. across process boundaries).
        return (type(self), (self.miss,))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe copy of the miss, for the stack's ``recording_miss`` error body."""
        return json.loads(json.dumps(self.miss, default=str))

    def summary(self) -> str:
        """One line: what was missing, for logs and the HTTP ``detail`` field."""
        test = self.miss.get("test_id") or "<shared scope>"
        return (
            f"no recording for {self.miss.get('endpoint')} in test {test} "
            f"(fingerprint {self.miss.get('fingerprint')})"
        )

    def __str__(self) -> str:
        return format_miss(self.miss)


def error_response(exc: RecordingError) -> tuple[dict[str, Any], dict[str, str]]:
    """The body and headers of a stack's HTTP 500 for a recording fault.

    Llama Stack's `detail`, an OpenAI-style `error.message` (what SDKs show), and the
    diagnostic the plugin puts into the failing test: `recording_miss` for a replay miss,
    `recording_error` (the file and the cause) for anything else.
    """
    if isinstance(exc, ReplayMissError):
        summary = exc.summary()
        extra: dict[str, Any] = {"recording_miss": exc.to_dict()}
        header = str(exc.miss.get("fingerprint", ""))
    else:
        summary = str(exc)
        extra = {"recording_error": {"message": summary}}
        header = RECORDING_FAULT
    body = {"detail": summary, "error": {"message": summary}, **extra}
    return body, {RECORDING_MISS_HEADER: header}


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_miss(miss: dict[str, Any]) -> str:
    """Render a miss dict as the multi-line diagnostic shown in a test failure."""
    lines = [
        f"Replay miss: no recording for {miss.get('endpoint')}",
        f"  fingerprint: {miss.get('fingerprint')}",
        f"  test id:     {miss.get('test_id') or '<shared scope>'}",
        f"  expected at: {miss.get('recording_path')}",
    ]
    nearest = miss.get("nearest")
    if nearest:
        lines.append(f"  nearest recording: {nearest.get('path')}")
        diff = miss.get("diff") or []
        if diff:
            lines.append("  differences (recorded -> requested):")
            for item in diff:
                lines.append(
                    f"    {item['field']}: {_short(item.get('recorded'))} -> "
                    f"{_short(item.get('requested'))}"
                )
        else:
            lines.append("  the nearest recording's request is identical (different file name)")
    else:
        lines.append("  nearest recording: none for this endpoint in this test module")
    lines.append(f"  to record it: {miss.get('command')}")
    return "\n".join(lines)
