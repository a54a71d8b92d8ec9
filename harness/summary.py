"""How a session ends: the tally line, what became of the stack, and the files it writes.

Files written at the end: the `--misses-file` (the node ids of the tests that missed a
recording); after a complete replay run, `.last-run.json` in the recordings directory (what
`harness recordings prune` trusts); and after any passing replay run, the `--usage-file` (one
CI shard's part, which prune combines with the others'). A file that cannot be written (a full
disk, a directory in its place) is one clear error naming the file, the cause and the fix, and
the session's exit status says so; never a traceback in the terminal summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.recording.modes import Mode
from harness.session import HarnessSession


@dataclass
class Collection:
    """What the session collected: prune may trust a run only if it ran every recorded test."""

    node_ids: set[str] = field(default_factory=set)
    deselected: bool = False


@dataclass
class Ending:
    """What the terminal summary says, and whether a file the session owed could not be written."""

    lines: list[str] = field(default_factory=list)
    failed_output: bool = False


def finish(
    config: pytest.Config,
    session: HarnessSession,
    collection: Collection,
    exitstatus: int,
) -> Ending:
    """After the stack is closed: the tally, the misses file and the last-run file."""
    options = session.options
    ending = Ending(lines=summary_lines(session) if session.lifecycle.used else [])
    if options.misses_file is not None:
        _write(ending, options.misses_file, "--misses-file", _misses_text(session))
    for path in _run_files(config, session, collection, exitstatus):
        from harness.recording import usage

        used = session.usage.touched if session.usage is not None else set()
        try:
            written = usage.write_run(path, used, collection.node_ids, session.started)
        except OSError as exc:
            ending.failed_output = True
            ending.lines.append(
                f"stack-harness: error: cannot write {path} ({exc.strerror or exc}): "
                "`harness recordings prune` needs it after a passing replay run. Free space or "
                "fix the permissions there (or pass --recordings-dir / --usage-file), then run "
                "again."
            )
        else:
            ending.lines.append(f"stack-harness: wrote {written} for `harness recordings prune`")
    return ending


def _run_files(
    config: pytest.Config, session: HarnessSession, collection: Collection, exitstatus: int
) -> list[Path]:
    """Where this run's usage goes: the --usage-file after any passing replay run, the
    recordings directory's `.last-run.json` only after a complete one."""
    options = session.options
    if exitstatus != pytest.ExitCode.OK or options.mode is not Mode.REPLAY:
        return []
    from harness.recording.usage import LAST_RUN_FILE

    paths = [options.usage_file] if options.usage_file is not None else []
    if complete_replay(config, session, collection, exitstatus):
        paths.append(options.recording.directory / LAST_RUN_FILE)
    return paths


def _write(ending: Ending, path: Path, option: str, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        ending.failed_output = True
        ending.lines.append(
            f"stack-harness: error: cannot write {option} {path} ({exc.strerror or exc}); "
            f"name a writable file with {option}=PATH"
        )


def _misses_text(session: HarnessSession) -> str:
    """The node ids of the tests that missed a recording, one per line (empty when none)."""
    missed = session.usage.misses if session.usage is not None else []
    ids = list(dict.fromkeys(fault.test_id for fault in missed if fault.test_id))
    return "".join(f"{test_id}\n" for test_id in ids)


def summary_lines(session: HarnessSession) -> list[str]:
    """The tally of the session's own event log, and what the summary must not leave unsaid:
    passed-through requests, streams never recorded, faults that belong to no test."""
    from harness.recording import usage
    from harness.recording.errors import render_fault

    options = session.options
    kind = session.lifecycle.kind
    summary = session.usage if session.usage is not None else usage.UsageSummary()
    counts = summary.counts
    tally = (
        f"{counts[usage.UsageKind.USED]} used, {counts[usage.UsageKind.RECORDED]} recorded, "
        f"{len(summary.misses)} missed"
    )
    passed = sum(summary.passthrough.values())
    if passed:
        hosts = ", ".join(f"{h} ({n})" for h, n in sorted(summary.passthrough.items()))
        tally += f", {passed} passed through ({hosts})"
    assert options.target is not None and kind is not None
    lines = [
        f"stack-harness: {kind.describe()}, mode {options.mode}; "
        f"recordings {tally} ({options.recording.directory})"
    ]
    for fault in summary.faults:
        if not fault.invocation:
            lines.append(f"stack-harness: outside any test: {render_fault(fault).splitlines()[0]}")
    for event in summary.open_streams.values():
        lines.append(
            "stack-harness: a stream was still open when its test ended and was not recorded: "
            f"{event.get('endpoint')} in {event.get('test_id') or '<shared scope>'}"
        )
    for event in summary.unrecorded_streams:
        lines.append(
            f"stack-harness: not recorded: {event.get('endpoint')} in "
            f"{event.get('test_id') or '<shared scope>'}: {event.get('reason')}"
        )
    if session.lifecycle.ending:
        lines.append(f"stack-harness: {session.lifecycle.ending}")
    return lines


def complete_replay(
    config: pytest.Config,
    session: HarnessSession,
    collection: Collection,
    exitstatus: int,
) -> bool:
    """True when the run ran every test that has recordings: prune can trust its usage log.

    A narrower run (a -k, a suite, one model of a matrix) used only some recordings and must
    not make prune delete the others.
    """
    options = session.options
    del exitstatus  # _run_files asked already
    narrowed = (
        config.getoption("keyword", None)
        or config.getoption("markexpr", None)
        or config.getoption("deselect", None)
        or config.getoption("lf", False)
        or config.getoption("stepwise", False)
        or collection.deselected
    )
    if narrowed:
        return False
    kind = session.lifecycle.kind
    if kind is None or not kind.trusted_by_prune or session.usage is None:
        return False
    from harness.recording.errors import RecordingError
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
