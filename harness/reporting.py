"""What the session tells the user: replay misses in the failing test, and the summary.

A replay miss can reach a test three ways: the stack answers with an error carrying the
diagnostic (server and library modes, collected by :class:`MissCollector` from the responses),
a `ReplayMissError` is raised in the test's own process, or vcrpy finds no interaction for a
request (URL mode). :func:`misses_for` merges them, :func:`show_misses` puts them into the
test's report, and :func:`summary_lines` / :func:`finish_usage` end the session with the
tally and, after a complete replay run, the last-run file that `harness recordings prune` reads.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.lifecycle import StackLifecycle
from harness.options import HarnessOptions
from harness.recording.errors import (
    RECORDING_MISS_HEADER,
    ReplayMissError,
    find_in_chain,
    format_miss,
)
from harness.recording.modes import Mode
from harness.targets import UrlTarget


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


def raised_miss(error: BaseException | None, options: HarnessOptions) -> dict[str, Any] | None:
    """The replay miss a test phase failed with (also wrapped by an SDK), or None."""
    if error is None:
        return None
    if isinstance(options.target, UrlTarget):
        from harness.recording.cassettes import miss_from

        raised = miss_from(error, options.recording)
    else:
        raised = find_in_chain(error, ReplayMissError)
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
    if lifecycle.owns_usage_log and log is not None:
        counts = usage.read_usage(log).counts
        tally = ", ".join(f"{counts[k]} {k}" for k in (usage.USED, usage.RECORDED, usage.MISSED))
    else:
        tally = "not counted (the server was not started by this session)"
    assert options.target is not None
    lines = [
        f"stack-harness: {options.target.describe()}, mode {options.mode}; "
        f"recordings {tally} ({options.recording.directory})"
    ]
    if lifecycle.ending:
        lines.append(f"stack-harness: {lifecycle.ending}")
    return lines


def finish_usage(
    config: pytest.Config,
    options: HarnessOptions,
    lifecycle: StackLifecycle,
    collection: Collection,
    exitstatus: int,
) -> Path | None:
    """Write the last-run file after a complete replay run; drop the usage log either way."""
    from harness.recording import usage

    log = options.recording.usage_log
    if log is None:
        return None
    written = None
    if complete_replay(config, options, lifecycle, collection, exitstatus):
        used = usage.read_usage(log).touched
        written = usage.write_last_run(options.recording.directory, used)
    log.unlink(missing_ok=True)
    return written


def write_misses(options: HarnessOptions) -> None:
    """The node ids of the tests that missed a recording, one per line (empty when none)."""
    from harness.recording import usage

    assert options.misses_file is not None
    log = options.recording.usage_log
    missed = usage.read_usage(log).missed if log is not None else []
    ids = list(dict.fromkeys(test_id for _, test_id in missed if test_id))
    options.misses_file.parent.mkdir(parents=True, exist_ok=True)
    options.misses_file.write_text("".join(f"{test_id}\n" for test_id in ids), encoding="utf-8")


def complete_replay(
    config: pytest.Config,
    options: HarnessOptions,
    lifecycle: StackLifecycle,
    collection: Collection,
    exitstatus: int,
) -> bool:
    """True when the run ran every test that has recordings: prune can trust its usage log.

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
    if narrowed or exitstatus != pytest.ExitCode.OK or options.mode is not Mode.REPLAY:
        return False
    if not lifecycle.owns_usage_log or isinstance(options.target, UrlTarget):
        return False
    from harness.recording.errors import RecordingError
    from harness.recording.store import RecordingStore

    store = RecordingStore(options.recording.directory)
    recorded_tests = set()
    for path in store.iter_files():
        try:
            recorded_tests.add(store.load(path)["test_id"])
        except RecordingError:
            return False  # verify's business; prune must not act on a directory it cannot read
    recorded_tests.discard("")
    return recorded_tests <= collection.node_ids
