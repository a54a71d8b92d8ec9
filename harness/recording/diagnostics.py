"""Explain a replay miss: the nearest recorded request and what differs.

A miss usually means the test or the stack changed one field of a request. Showing the
nearest recording for the same endpoint with a field-by-field diff (dotted paths such as
``body.messages[0].content``) turns "HTTP 500" into the one-line reason, and the command to
record it turns the reason into the fix.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.recording.errors import RecordingError
from harness.recording.fingerprint import canonical_of_record
from harness.recording.modes import MODE_ENV
from harness.recording.store import RecordingStore

ABSENT = "<absent>"
MAX_DIFF_FIELDS = 50


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted path: leaf value}; empty containers are leaves."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key in sorted(value):
            out.update(flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def diff_requests(recorded: dict[str, Any], requested: dict[str, Any]) -> list[dict[str, Any]]:
    """Field-by-field differences between two canonical requests."""
    left, right = flatten(recorded), flatten(requested)
    fields = sorted(set(left) | set(right))
    return [
        {"field": f, "recorded": left.get(f, ABSENT), "requested": right.get(f, ABSENT)}
        for f in fields
        if left.get(f, ABSENT) != right.get(f, ABSENT)
    ]


def record_command(test_id: str, options: Sequence[str] = ()) -> str:
    """The shell command that records a test's missing recordings.

    `options` are shell words (already quoted) that repeat the session's request-shaping
    options, so the command records the very request that missed.
    """
    words = [f"{MODE_ENV}=record-if-missing", "pytest"]
    if test_id:
        words.append(shlex.quote(test_id))
    return " ".join([*words, *options])


def build_miss(
    store: RecordingStore, canonical: dict[str, Any], fingerprint: str, path: Path
) -> dict[str, Any]:
    """The ``ReplayMissError.miss`` dict for a request that has no recording."""
    test_id = canonical.get("test_id", "")
    nearest: dict[str, Any] | None = None
    best: tuple[int, int] | None = None
    best_diff: list[dict[str, Any]] = []
    for candidate in store.module_files(test_id):
        try:
            record = store.load(candidate)
        except RecordingError:
            continue
        request = record["request"]
        if request["method"].upper() != canonical["method"] or request["path"] != canonical["path"]:
            continue
        diff = diff_requests(canonical_of_record(record), canonical)
        score = (0 if record.get("test_id") == test_id else 1, len(diff))
        if best is None or score < best:
            best, best_diff = score, diff
            nearest = {"path": store.relative(candidate), "request": canonical_of_record(record)}
    return {
        "fingerprint": fingerprint,
        "test_id": test_id,
        "endpoint": f"{canonical['method']} {canonical['path']}",
        "recording_path": store.relative(path),
        "nearest": nearest,
        "diff": best_diff[:MAX_DIFF_FIELDS],
        "command": record_command(test_id),
    }
