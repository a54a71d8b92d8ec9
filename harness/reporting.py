"""What the session tells the user: recording faults in the failing test, and the summary.

Every recording fault — a replay miss, an unreadable or unwritable recording, a request that
tried to leave a sealed replay — is written, when it happens, to the session's event log
(``harness.recording.usage``), whatever layer or process it happened in: the reference stack
in-process or in its server, a stack we did not write, vcrpy's client layer. That log is the one
route by which it reaches a test: :class:`FaultCollector` reads it as the run goes and
:func:`show_faults` puts each fault into the report of the test whose run caused it, even when
the test caught the error. :func:`summary_lines` / :func:`finish_usage` end the session with the
tally and, after a passing replay run, the run file that `harness recordings prune` reads.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.lifecycle import StackLifecycle
from harness.options import HarnessOptions
from harness.recording.errors import Fault, FaultKind, RecordingError, render_fault
from harness.recording.modes import Mode
from harness.recording.usage import UsageKind, UsageReader


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
    """Write a line to the terminal now, even from inside a fixture with capture on."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.ensure_newline()
        reporter.write_line(f"stack-harness: {message}")


@dataclass
class Collection:
    """What the session collected: prune may trust a run only if it ran every recorded test."""

    node_ids: set[str] = field(default_factory=set)
    deselected: bool = False


def summary_lines(options: HarnessOptions, lifecycle: StackLifecycle) -> list[str]:
    from harness.recording import usage

    log = options.recording.usage_log
    summary = usage.read_usage(log) if log is not None else usage.UsageSummary()
    counts = summary.counts
    tally = (
        f"{counts[UsageKind.USED]} used, {counts[UsageKind.RECORDED]} recorded, "
        f"{len(summary.misses)} missed"
    )
    passed = sum(summary.passthrough.values())
    if passed:
        hosts = ", ".join(f"{h} ({n})" for h, n in sorted(summary.passthrough.items()))
        tally += f", {passed} passed through ({hosts})"
    assert options.target is not None
    lines = [
        f"stack-harness: {options.target.describe()}, mode {options.mode}; "
        f"recordings {tally} ({options.recording.directory})"
    ]
    for fault in summary.faults:
        if not fault.invocation:
            lines.append(f"stack-harness: outside any test: {render_fault(fault).splitlines()[0]}")
    for event in summary.open_streams.values():
        lines.append(
            f"stack-harness: a stream was still open when its test ended and was not recorded: "
            f"{event.get('endpoint')} in {event.get('test_id') or '<shared scope>'}"
        )
    for event in summary.unrecorded_streams:
        lines.append(
            f"stack-harness: not recorded: {event.get('endpoint')} in "
            f"{event.get('test_id') or '<shared scope>'}: {event.get('reason')}"
        )
    if lifecycle.ending:
        lines.append(f"stack-harness: {lifecycle.ending}")
    return lines


def finish_usage(
    config: pytest.Config,
    options: HarnessOptions,
    collection: Collection,
    exitstatus: int,
) -> tuple[list[Path], str | None]:
    """After a passing replay run, write the run files prune reads: (paths, problem).

    The recordings directory's `.last-run.json` only after a run of every recorded test; the
    file `--usage-file` names after any passing replay run (one CI shard of several).
    """
    from harness.recording import usage

    log = options.recording.usage_log
    if log is None or exitstatus != pytest.ExitCode.OK or options.mode is not Mode.REPLAY:
        return [], None
    targets = []
    if options.usage_file is not None:
        targets.append(options.usage_file)
    if complete_replay(config, options, collection):
        targets.append(options.recording.directory / usage.LAST_RUN_FILE)
    if not targets:
        return [], None
    used = usage.read_usage(log).touched
    written = []
    for target in targets:
        try:
            written.append(usage.write_run(target, used, collection.node_ids, options.started))
        except RecordingError as exc:
            return written, str(exc)
    return written, None


def complete_replay(config: pytest.Config, options: HarnessOptions, collection: Collection) -> bool:
    """True when the run ran every test that has recordings: prune can trust it alone.

    A narrower run (a -k, a suite, one model of a matrix) used only some recordings and must
    not make prune delete the others.
    """
    option = config.option
    narrowed = (
        option.keyword
        or option.markexpr
        or getattr(option, "deselect", None)
        or getattr(option, "lf", False)
        or getattr(option, "stepwise", False)
        or collection.deselected
    )
    if narrowed:
        return False
    from harness.recording.store import RecordingStore

    store = RecordingStore(options.recording.directory)
    recorded_tests = set()
    for path in store.iter_files():
        try:
            recorded_tests.add(store.load(path).test_id)
        except RecordingError:
            return False  # verify's business; prune must not act on a directory it cannot read
    recorded_tests.discard("")
    return recorded_tests <= collection.node_ids


def write_misses(options: HarnessOptions) -> None:
    """The node ids of the tests that missed a recording, one per line (empty when none)."""
    from harness.recording import usage

    assert options.misses_file is not None
    log = options.recording.usage_log
    missed = usage.read_usage(log).misses if log is not None else []
    ids = list(dict.fromkeys(fault.test_id for fault in missed if fault.test_id))
    options.misses_file.parent.mkdir(parents=True, exist_ok=True)
    options.misses_file.write_text("".join(f"{test_id}\n" for test_id in ids), encoding="utf-8")
