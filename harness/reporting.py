"""What the session tells the user: replay misses in the failing test, and the summary.

A replay miss can reach a test three ways: the stack answers with an error carrying the
diagnostic (server and library modes, collected by :class:`MissCollector` from the responses),
a `ReplayMissError` is raised in the test's own process, or vcrpy finds no interaction for a
request (URL mode; the stack's kind finds it). :func:`show_misses` puts them into the test's
report; `harness.summary` ends the session with the tally and the files it writes.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest

from harness.recording.errors import RECORDING_MISS_HEADER, format_miss

if TYPE_CHECKING:
    from harness.kinds import StackKind
    from harness.options import HarnessOptions


class MissCollector:
    """Collects the replay misses the stack reports in its responses during one test."""

    def __init__(self) -> None:
        self.misses: list[dict[str, Any]] = []

    def on_response(self, response: Any) -> None:
        """An httpx/httpx2 response event hook."""
        if not response.headers.get(RECORDING_MISS_HEADER):
            return
        response.read()
        try:
            body = response.json()
        except ValueError:
            body = {}
        report = body.get("recording_miss") or body.get("recording_error")
        self.misses.append(report or {"fingerprint": response.headers[RECORDING_MISS_HEADER]})


def raised_miss(error: BaseException | None, kind: StackKind | None) -> dict[str, Any] | None:
    """The replay miss a test phase failed with (also wrapped by an SDK), or None."""
    if error is None or kind is None:
        return None
    raised = kind.raised_miss(error)
    return raised.miss if raised is not None else None


def miss_text(miss: dict[str, Any], options: HarnessOptions) -> str:
    """The miss diagnostic, its record command carrying the options this session ran with."""
    from harness.recording.diagnostics import record_command

    if "message" in miss:  # a recording the stack could not read or write
        return f"Recording fault: {miss['message']}"
    if "endpoint" not in miss:
        return f"Replay miss (fingerprint {miss.get('fingerprint')}); see the stack's log"
    command = record_command(miss.get("test_id", ""), options.record_args)
    return format_miss({**miss, "command": command})


def show_misses(
    report: pytest.TestReport,
    misses: list[dict[str, Any]],
    options: HarnessOptions,
    *,
    raised: bool = False,
) -> None:
    """Fail the report with the misses' diagnostics (a test that caught the error fails too).

    When the test failed with the miss itself, the diagnostic replaces the traceback: the
    recording library's own message (vcrpy's advice to change its record mode) would only
    contradict it.
    """
    text = "\n\n".join(miss_text(miss, options) for miss in misses)
    if any("message" in miss for miss in misses):
        title = f"stack-harness: recording fault ({len(misses)})"
        what = "the stack could not read or write a recording"
    else:
        title = f"stack-harness: replay miss ({len(misses)})"
        what = "the stack had no recording for a request"
    if raised or report.passed:
        report.outcome = "failed"
        report.longrepr = f"{title}: {what}\n\n{text}"
    elif hasattr(report.longrepr, "addsection"):
        report.longrepr.addsection(title, text)
    else:
        report.sections.append((title, text))


def show_stack_gone(report: pytest.TestReport, what: str) -> None:
    """Say in the first test it broke that the stack server died, and how."""
    title = "stack-harness: the stack is gone"
    if hasattr(report.longrepr, "addsection"):
        report.longrepr.addsection(title, what)
    else:
        report.sections.append((title, what))


def announce(config: pytest.Config, message: str) -> None:
    """Write lines to the terminal now, even from inside a fixture with capture on.

    pytest has no public way to suspend capturing outside a test (`capsys.disabled()` is a
    test's fixture), so this uses the capture plugin's method where it has one, and otherwise
    writes anyway (the line may then be captured with the test's output).
    """
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    suspend = getattr(capture, "global_and_fixture_disabled", None)
    with suspend() if suspend is not None else contextlib.nullcontext():
        reporter.ensure_newline()
        for line in message.splitlines():
            reporter.write_line(f"stack-harness: {line}")
