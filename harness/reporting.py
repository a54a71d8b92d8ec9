"""What the session tells the user: recording faults in the failing test, and the summary.

Every recording fault — a replay miss, an unreadable or unwritable recording, a request that
tried to leave a sealed replay — is written, when it happens, to the session's event log
(``harness.recording.usage``), whatever layer or process it happened in: the reference stack
in-process or in its server, a stack we did not write, vcrpy's client layer. That log is the one
route by which it reaches a test: :class:`FaultCollector` reads it as the run goes and
:func:`show_faults` puts each fault into the report of the test whose run caused it, even when
the test caught the error. `harness.summary` ends the session with the tally and its files.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.recording.errors import Fault, FaultKind, render_fault
from harness.recording.usage import UsageKind, UsageReader

if TYPE_CHECKING:
    from harness.options import HarnessOptions


class FaultCollector:
    """The faults of the session's event log, by the test invocation they belong to."""

    def __init__(self, log: Path | None) -> None:
        self._reader = UsageReader(log) if log is not None else None
        self._by_invocation: dict[str, list[Fault]] = defaultdict(list)
        self.unattributed: list[Fault] = []

    def _read(self) -> None:
        if self._reader is None:
            return
        for event in self._reader.new_events():
            if event.get("event") == UsageKind.FAULT and isinstance(event.get("fault"), dict):
                fault = Fault.from_json(event["fault"])
                if fault.invocation:
                    self._by_invocation[fault.invocation].append(fault)
                else:
                    self.unattributed.append(fault)

    def take(self, invocation: str) -> list[Fault]:
        """The faults of one test run not yet shown (each fault is shown once)."""
        self._read()
        return self._by_invocation.pop(invocation, [])


def fault_text(fault: Fault, options: HarnessOptions) -> str:
    """The fault's diagnostic; a miss's record command carries this session's options."""
    from harness.recording.diagnostics import record_command

    command = record_command(fault.test_id, options.record_args) if fault.miss else None
    return render_fault(fault, command)


def show_faults(report: pytest.TestReport, faults: list[Fault], options: HarnessOptions) -> None:
    """Fail the report with the faults' diagnostics (a test that caught the error fails too).

    The diagnostic replaces the traceback: the error the test saw (an SDK's connection error,
    vcrpy's advice to change its record mode, a bare 500) would only hide or contradict it.
    """
    text = "\n\n".join(fault_text(fault, options) for fault in faults)
    misses = [f for f in faults if f.kind is FaultKind.MISS]
    if len(misses) == len(faults):
        title = f"stack-harness: replay miss ({len(faults)})"
        what = "the stack had no recording for a request"
    else:
        title = f"stack-harness: recording fault ({len(faults)})"
        what = "a request could not be recorded or replayed"
    report.outcome = "failed"
    report.longrepr = f"{title}: {what}\n\n{text}"


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
