"""How a session ends: the tally line, what became of the stack, and the files it writes.

Two files are written at the end: the `--misses-file` (the node ids of the tests that missed
a recording) and, after a complete replay run, `.last-run.json` in the recordings directory
(what `harness recordings prune` trusts). A file that cannot be written (a full disk, a
directory in its place) is one clear error naming the file, the cause and the fix, and the
session's exit status says so; never a traceback in the terminal summary.
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
    if complete_replay(config, session, collection, exitstatus):
        from harness.recording import usage

        path = options.recording.directory / usage.LAST_RUN_FILE
        try:
            written = usage.write_last_run(options.recording.directory, session.usage.touched)
        except OSError as exc:
            ending.failed_output = True
            ending.lines.append(
                f"stack-harness: error: cannot write {path} ({exc.strerror or exc}): "
                "`harness recordings prune` needs it after a complete replay run. Free space "
                "or fix the permissions there (or pass --recordings-dir), then run again."
            )
        else:
            ending.lines.append(f"stack-harness: wrote {written} for `harness recordings prune`")
    return ending


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
    missed = session.usage.missed if session.usage is not None else []
    ids = list(dict.fromkeys(test_id for _, test_id in missed if test_id))
    return "".join(f"{test_id}\n" for test_id in ids)


def summary_lines(session: HarnessSession) -> list[str]:
    options = session.options
    kind = session.lifecycle.kind
    if kind is not None and kind.counts_usage and session.usage is not None:
        from harness.recording import usage

        counts = session.usage.counts
        tally = ", ".join(f"{counts[k]} {k}" for k in (usage.USED, usage.RECORDED, usage.MISSED))
    else:
        tally = "not counted (the server was not started by this session)"
    assert options.target is not None and kind is not None
    lines = [
        f"stack-harness: {kind.describe()}, mode {options.mode}; "
        f"recordings {tally} ({options.recording.directory})"
    ]
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
    narrowed = (
        config.getoption("keyword", None)
        or config.getoption("markexpr", None)
        or config.getoption("deselect", None)
        or config.getoption("lf", False)
        or config.getoption("stepwise", False)
        or collection.deselected
    )
    if narrowed or exitstatus != pytest.ExitCode.OK or options.mode is not Mode.REPLAY:
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
            recorded_tests.add(store.load(path)["test_id"])
        except RecordingError:
            return False  # verify's business; prune must not act on a directory it cannot read
    recorded_tests.discard("")
    return recorded_tests <= collection.node_ids
