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

from harness.recording.errors import FieldDiff, Miss, Nearest, RecordingError
from harness.recording.fingerprint import canonical_of_record
from harness.recording.modes import MODE_ENV
from harness.recording.store import RecordingStore

ABSENT = "<absent>"
MAX_DIFF_FIELDS = 50


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted path: leaf value}; empty containers are leaves."""
    out: dict[str, Any] = {}
    stack: list[tuple[str, Any]] = [(prefix, value)]
    while stack:  # iterative: a deep body must not exhaust the stack
        path, item = stack.pop()
        if isinstance(item, dict) and item:
            for key in sorted(item, reverse=True):
                stack.append((f"{path}.{key}" if path else str(key), item[key]))
        elif isinstance(item, list) and item:
            for i in reversed(range(len(item))):
                stack.append((f"{path}[{i}]", item[i]))
        else:
            out[path] = item
    return out


def diff_requests(recorded: dict[str, Any], requested: dict[str, Any]) -> list[FieldDiff]:
    """Field-by-field differences between two canonical requests."""
    left, right = flatten(recorded), flatten(requested)
    fields = sorted(set(left) | set(right))
    return [
        FieldDiff(f, left.get(f, ABSENT), right.get(f, ABSENT))
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
) -> Miss:
    """The miss of a request that has no recording, with the nearest one that exists."""
    test_id = canonical.get("test_id", "")
    nearest: Nearest | None = None
    best: tuple[int, int] | None = None
    best_diff: list[FieldDiff] = []
    for candidate in store.module_files(test_id):
        try:
            record = store.load(candidate)
        except RecordingError:
            continue
        recorded = canonical_of_record(record)
        if recorded["method"] != canonical["method"] or recorded["path"] != canonical["path"]:
            continue
        diff = diff_requests(recorded, canonical)
        score = (0 if record.test_id == test_id else 1, len(diff))
        if best is None or score < best:
            best, best_diff = score, diff
            nearest = Nearest(store.relative(candidate), recorded)
    return Miss(
        fingerprint=fingerprint,
        test_id=test_id,
        endpoint=f"{canonical['method']} {canonical['path']}",
        recording_path=store.relative(path),
        nearest=nearest,
        diff=tuple(best_diff[:MAX_DIFF_FIELDS]),
    )
