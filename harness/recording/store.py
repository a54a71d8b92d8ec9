"""One JSON file per interaction, addressed by its fingerprint.

Layout: ``<dir>/<test module path without .py>/<fingerprint>.json`` (the part of the pytest
node id before ``::``); requests outside any test go to ``<dir>/_shared/``. Finding a
recording is a path computation — no scan, no index — so replay cost does not grow with the
number of recordings, and a renamed test module is one ``git mv``. The file format is
:class:`~harness.recording.records.Recording`'s.

Paths must check out everywhere the recordings are committed: a path part that Windows
reserves (``con``, ``aux``, ``nul``, ``com1``, ...) or cannot hold (``<>:"|?*``, a trailing dot
or space) is mapped to a safe name, and a new directory whose name differs only in case from
one that exists is refused (it would merge with it on macOS and Windows).

Writes go to a temp file in the same directory and are renamed over the target under a
per-file lock, so readers never see a partial file and concurrent writers (threads, xdist
processes) never corrupt one. Rewriting content that is unchanged apart from stream timing
leaves the file untouched.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from filelock import FileLock

from harness.recording.errors import RecordingError
from harness.recording.records import Recording, Stream, parse_json

SHARED_DIR = "_shared"
SUFFIX = ".json"
# Per user, so a lock directory created by one account never blocks another. Writes are
# serialised on a fixed set of lock files (a recording's path picks one), so the directory holds
# at most LOCK_STRIPES files however many recordings are written.
_LOCK_DIR = (
    Path(tempfile.gettempdir()) / f"harness-recording-locks-{getattr(os, 'getuid', lambda: 0)()}"
)
LOCK_STRIPES = 64
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$", re.IGNORECASE)
_UNSAFE = re.compile(r'[<>:"|?*\x00-\x1f\\]')


def safe_part(part: str) -> str:
    """A path part that every file system can hold, unchanged when it already can."""
    safe = _UNSAFE.sub("_", part).rstrip(" .") or "_"
    if _RESERVED.match(safe):
        stem, dot, rest = safe.partition(".")
        safe = f"{stem}_{dot}{rest}"
    return safe


def module_dir(test_id: str) -> str:
    """Relative directory of a test's recordings (posix), from its pytest node id."""
    if not test_id:
        return SHARED_DIR
    module = test_id.split("::", 1)[0]
    if module.endswith(".py"):
        module = module[: -len(".py")]
    parts = [p for p in PurePosixPath(module.replace("\\", "/")).parts if p not in ("/", "..", ".")]
    return "/".join(safe_part(p) for p in parts) or SHARED_DIR


def _without_timing(recording: Recording) -> Recording:
    payload = recording.response.payload
    if not isinstance(payload, Stream):
        return recording
    from dataclasses import replace

    chunks = tuple(replace(chunk, at=0.0) for chunk in payload.chunks)
    response = replace(recording.response, payload=replace(payload, chunks=chunks))
    return replace(recording, response=response)


class RecordingStore:
    """The recordings directory: path computation, validated reads, atomic writes."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def path_for(self, test_id: str, fingerprint: str) -> Path:
        return self.directory / module_dir(test_id) / f"{fingerprint}{SUFFIX}"

    def relative(self, path: Path) -> str:
        # String work, not Path.relative_to: this runs for every replayed request.
        root, text = str(self.directory).rstrip(os.sep) + os.sep, str(path)
        relative = text[len(root) :] if text.startswith(root) else text
        return relative.replace(os.sep, "/")

    def load(self, path: Path) -> Recording:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RecordingError(f"{path}: no such recording file") from None
        except IsADirectoryError:
            raise RecordingError(
                f"{path}: is a directory where a recording file should be; remove it"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RecordingError(f"{path}: cannot read recording: {exc}") from None
        return Recording.from_json(parse_json(text, path), path)

    def load_if_exists(self, path: Path) -> Recording | None:
        if not os.path.lexists(path):
            return None
        return self.load(path)

    def write(self, recording: Recording, path: Path | None = None) -> tuple[Path, bool]:
        """Write a recording atomically (at its layout path unless given one).

        Returns (path, whether the file changed). A file system that refuses the write (a
        read-only directory, a full disk) is a RecordingError naming the file; nothing is
        left half-written.
        """
        path = path or self.path_for(recording.test_id, recording.fingerprint)
        try:
            return path, self._write(path, recording)
        except OSError as exc:
            raise RecordingError(
                f"{path}: cannot write the recording: {exc.strerror or exc}"
            ) from None

    def _write(self, path: Path, recording: Recording) -> bool:
        self._check_case(path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _lock_for(path):
            try:
                existing = Recording.loads(path.read_text(encoding="utf-8"), path)
            except (OSError, RecordingError):
                existing = None
            if (
                existing is not None
                and _without_timing(existing) == _without_timing(recording)
                and existing.provenance == recording.provenance
            ):
                return False
            tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
            # 0666 and let the kernel apply the umask: a committed file gets the usual mode.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(recording.dumps())
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return True

    def _check_case(self, folder: Path) -> None:
        """Refuse a new directory that differs only in case from an existing sibling."""
        current = self.directory
        try:
            parts = folder.relative_to(self.directory).parts
        except ValueError:
            return
        for part in parts:
            candidate = current / part
            if not candidate.exists() and current.is_dir():
                clash = next(
                    (
                        p
                        for p in current.iterdir()
                        # its own name: another writer made it meanwhile, which is no clash
                        if p.name.lower() == part.lower() and p.name != part
                    ),
                    None,
                )
                if clash is not None:
                    raise RecordingError(
                        f"{candidate}: differs only in case from {clash}; the two would be one "
                        "directory on macOS and Windows. Rename one of the test directories."
                    )
            current = candidate

    def module_files(self, test_id: str) -> list[Path]:
        folder = self.directory / module_dir(test_id)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob(f"*{SUFFIX}") if not p.name.startswith("."))

    def iter_files(self) -> Iterator[Path]:
        """Every recording file under the directory (dot files and temp files excluded)."""
        if not self.directory.is_dir():
            return
        for root, dirs, files in os.walk(self.directory):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.endswith(SUFFIX) and not name.startswith("."):
                    yield Path(root) / name


def _lock_for(path: Path) -> FileLock:
    """A lock outside the recordings directory, so no lock files end up committed."""
    _LOCK_DIR.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(str(path.resolve()).encode("utf-8")).digest()
    stripe = int.from_bytes(digest[:4], "big") % LOCK_STRIPES
    return FileLock(str(_LOCK_DIR / f"stripe-{stripe:02d}.lock"))
