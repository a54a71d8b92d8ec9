"""``harness recordings list|show|verify|prune``: inspect and maintain a recordings directory."""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.recording.completeness import cut_reason
from harness.recording.errors import RecordingError
from harness.recording.fingerprint import fingerprint_of_record
from harness.recording.modes import DEFAULT_DIRECTORY, DIR_ENV
from harness.recording.records import Stream
from harness.recording.redaction import find_secret_patterns
from harness.recording.store import RecordingStore, module_dir
from harness.recording.usage import LAST_RUN_FILE, RunUsage, read_run


def default_directory() -> Path:
    return Path(os.environ.get(DIR_ENV, "").strip() or DEFAULT_DIRECTORY)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("recordings", help="list, show, verify and prune recordings")
    commands = parser.add_subparsers(dest="recordings_command", required=True, metavar="ACTION")

    def add(name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--dir",
            type=Path,
            default=None,
            help=f"recordings directory (default: ${DIR_ENV} or ./{DEFAULT_DIRECTORY})",
        )
        sub.set_defaults(func=func)
        return sub

    add("list", "per test: number of recordings, endpoints, size, stack and setup", cmd_list)
    show = add("show", "print one recording", cmd_show)
    show.add_argument("target", help="a fingerprint (or unique prefix) or a file path")
    add("verify", "check files parse, match their fingerprint, hold no secret", cmd_verify)
    prune = add(
        "prune", "delete recordings that replay runs covering every test did not use", cmd_prune
    )
    prune.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    prune.add_argument(
        "--run",
        dest="runs",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help=f"the run file of a replay run (repeatable, e.g. one per CI shard; default: "
        f"<dir>/{LAST_RUN_FILE}); together the runs must have run every recorded test",
    )


def _store(args: argparse.Namespace) -> RecordingStore:
    directory = args.dir if args.dir is not None else default_directory()
    if not directory.is_dir():
        raise RecordingError(
            f"{directory}: recordings directory not found; pass --dir or set {DIR_ENV}"
        )
    return RecordingStore(directory)


def cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    per_test: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"count": 0, "size": 0, "endpoints": set(), "made_by": set()}
    )
    for path in store.iter_files():
        record = store.load(path)
        entry = per_test[record.test_id or "<shared>"]
        entry["count"] += 1
        entry["size"] += path.stat().st_size
        entry["endpoints"].add(f"{record.request.method} {record.request.path}")
        made_by = ", ".join(f"{k} {v}" for k, v in sorted(record.provenance.items()))
        entry["made_by"].add(made_by or "unknown stack")
    for test_id in sorted(per_test):
        entry = per_test[test_id]
        endpoints = ", ".join(sorted(entry["endpoints"]))
        made_by = "; ".join(sorted(entry["made_by"]))
        print(
            f"{test_id}\t{entry['count']} recording(s)\t{entry['size']} bytes\t{endpoints}"
            f"\t{made_by}"
        )
    total = sum(e["count"] for e in per_test.values())
    print(f"{total} recording(s) in {len(per_test)} test(s)")
    return 0


def _find(store: RecordingStore, target: str) -> Path:
    candidate = Path(target)
    for path in (candidate, store.directory / target):
        if path.is_file():
            return path
    matches = [p for p in store.iter_files() if p.stem.startswith(target.lower())]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RecordingError(f"{target}: no recording with this fingerprint or path")
    names = ", ".join(store.relative(p) for p in matches[:5])
    raise RecordingError(f"{target}: ambiguous fingerprint prefix, matches {names}")


def cmd_show(args: argparse.Namespace) -> int:
    store = _store(args)
    path = _find(store, args.target)
    record = store.load(path)
    print(f"# {store.relative(path)}")
    print(json.dumps(record.to_json(), indent=2, sort_keys=True, ensure_ascii=False))
    return 0


def verify_file(store: RecordingStore, path: Path) -> list[str]:
    """The problems of one recording file (empty when it is valid)."""
    try:
        record = store.load(path)
    except RecordingError as exc:
        return [str(exc)]
    problems = []
    expected = fingerprint_of_record(record)
    if record.fingerprint != expected or path.stem != expected:
        problems.append(
            f"{store.relative(path)}: fingerprint recomputed from content is {expected}, "
            f"file says {record.fingerprint} and is named {path.stem}"
        )
    expected_dir = store.directory / module_dir(record.test_id)
    if path.parent.resolve() != expected_dir.resolve():
        problems.append(
            f"{store.relative(path)}: test id {record.test_id!r} belongs under "
            f"{store.relative(expected_dir)}/, so replay would never find this file"
        )
    payload = record.response.payload
    if isinstance(payload, Stream):
        reason = cut_reason(payload.framing, (c.data for c in payload.chunks))
        if reason is not None:
            problems.append(
                f"{store.relative(path)}: the stream was cut short ({reason}); re-record it"
            )
    found = find_secret_patterns(path.read_text(encoding="utf-8"))
    if found:
        problems.append(f"{store.relative(path)}: looks like it holds a secret: {', '.join(found)}")
    return problems


def cmd_verify(args: argparse.Namespace) -> int:
    store = _store(args)
    count = 0
    problems: list[str] = []
    for path in store.iter_files():
        count += 1
        problems.extend(verify_file(store, path))
    for problem in problems:
        print(f"BAD {problem}")
    if problems:
        print(f"{len(problems)} problem(s) in {count} recording(s)")
        return 1
    print(f"{count} recording(s) OK")
    return 0


def trusted_runs(store: RecordingStore, run_files: list[Path]) -> tuple[RunUsage, set[str]]:
    """The runs' union (earliest start, every test, every used path), if they cover every test.

    Each run is one passing replay run (one CI shard, one suite, or the whole suite); prune may
    trust them only together, and only if together they ran every test that has recordings.
    """
    runs = [read_run(path) for path in run_files or [store.directory / LAST_RUN_FILE]]
    tests = frozenset().union(*(run.tests for run in runs))
    used = frozenset().union(*(run.used for run in runs))
    recorded: set[str] = set()
    for path in store.iter_files():
        recorded.add(store.load(path).test_id)
    recorded.discard("")
    missing = sorted(recorded - tests)
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise RecordingError(
            f"the run file(s) {', '.join(run.source for run in runs)} did not run "
            f"{len(missing)} recorded test(s) ({shown}); prune only with runs that together "
            "ran every recorded test (pass one --run per shard)"
        )
    started = min(run.started for run in runs)
    return RunUsage(started=started, tests=tests, used=used), recorded


def cmd_prune(args: argparse.Namespace) -> int:
    store = _store(args)
    union, _ = trusted_runs(store, args.runs)
    unused = []
    kept_new = 0
    for path in store.iter_files():
        if store.relative(path) in union.used:
            continue
        try:
            written = path.stat().st_mtime
        except FileNotFoundError:
            continue
        if written >= union.started:
            kept_new += 1  # written after the runs began: they cannot know of it
            continue
        unused.append(path)
    for path in unused:
        print(f"{'would delete' if args.dry_run else 'deleted'} {store.relative(path)}")
        if not args.dry_run:
            path.unlink(missing_ok=True)
            _remove_empty_parents(path.parent, store.directory)
    suffix = " (dry run)" if args.dry_run else ""
    newer = f"; kept {kept_new} written after the runs started" if kept_new else ""
    print(f"{len(unused)} unused recording(s){suffix}{newer}")
    return 0


def _remove_empty_parents(folder: Path, root: Path) -> None:
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
