"""One JSON file per interaction, addressed by its fingerprint.

Layout: ``<dir>/<test module path without .py>/<fingerprint>.json`` (the part of the pytest
node id before ``::``); requests outside any test go to ``<dir>/_shared/``. Finding a
recording is a path computation — no scan, no index — so replay cost does not grow with the
number of recordings, and a renamed test module is one ``git mv``.

File format (pretty, keys sorted, so diffs are readable)::

    {"fingerprint": str, "test_id": str, "occurrence": int (only when > 0),
     "request": {"method", "path", "query", "headers", "body"},
     "response": {"status", "headers",
                  and exactly one of
                  "body": <JSON value> | "text": <str> |
                  "stream": {"framing": "sse"|"ndjson", "chunks": [{"at": s, "data": str}]}}}

Writes go to a temp file in the same directory and are renamed over the target under a
per-file lock, so readers never see a partial file and concurrent writers (threads, xdist
processes) never corrupt one. Rewriting content that is unchanged apart from stream timing
leaves the file untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from filelock import FileLock

from harness.recording.errors import RecordingError

SHARED_DIR = "_shared"
SUFFIX = ".json"
FRAMINGS = ("sse", "ndjson")
# Per user, so a lock directory created by one account never blocks another. Writes are
# serialised on a fixed set of lock files (a recording's path picks one), so the directory holds
# at most LOCK_STRIPES files however many recordings are written.
_LOCK_DIR = (
    Path(tempfile.gettempdir()) / f"harness-recording-locks-{getattr(os, 'getuid', lambda: 0)()}"
)
LOCK_STRIPES = 64


def module_dir(test_id: str) -> str:
    """Relative directory of a test's recordings (posix), from its pytest node id."""
    if not test_id:
        return SHARED_DIR
    module = test_id.split("::", 1)[0]
    if module.endswith(".py"):
        module = module[: -len(".py")]
    parts = [p for p in PurePosixPath(module.replace("\\", "/")).parts if p not in ("/", "..", ".")]
    return "/".join(parts) or SHARED_DIR


def dumps(record: dict[str, Any]) -> str:
    """The exact text of a recording file."""
    return json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def new_record(
    canonical: dict[str, Any],
    fingerprint: str,
    request_headers: dict[str, str],
    response: dict[str, Any],
) -> dict[str, Any]:
    """The one shape of a recording: its canonical request, the kept headers, the response."""
    record: dict[str, Any] = {
        "fingerprint": fingerprint,
        "test_id": canonical["test_id"],
        "request": {
            "method": canonical["method"],
            "path": canonical["path"],
            "query": canonical["query"],
            "headers": request_headers,
            "body": canonical["body"],
        },
        "response": response,
    }
    if canonical.get("occurrence"):
        record["occurrence"] = canonical["occurrence"]
    return record


def _without_timing(record: Any) -> Any:
    response = record.get("response") if isinstance(record, dict) else None
    stream = response.get("stream") if isinstance(response, dict) else None
    if not isinstance(stream, dict) or not isinstance(stream.get("chunks"), list):
        return record
    chunks = [
        {k: v for k, v in chunk.items() if k != "at"} if isinstance(chunk, dict) else chunk
        for chunk in stream["chunks"]
    ]
    return {**record, "response": {**response, "stream": {**stream, "chunks": chunks}}}


def validate(record: Any, path: Path | str) -> dict[str, Any]:
    """Check a parsed recording's shape; RecordingError names the file and what was expected."""

    def fail(what: str) -> RecordingError:
        return RecordingError(
            f"{path}: malformed recording: expected {what}. Re-record it "
            "(LLAMA_STACK_TEST_INFERENCE_MODE=record) or delete the file."
        )

    if not isinstance(record, dict):
        raise fail("a JSON object at the top level")
    if not isinstance(record.get("fingerprint"), str):
        raise fail('"fingerprint" to be a string')
    if not isinstance(record.get("test_id"), str):
        raise fail('"test_id" to be a string')
    if not isinstance(record.get("occurrence", 0), int):
        raise fail('"occurrence" to be an integer')
    request = record.get("request")
    if not isinstance(request, dict):
        raise fail('"request" to be an object')
    if not isinstance(request.get("method"), str) or not isinstance(request.get("path"), str):
        raise fail('"request.method" and "request.path" to be strings')
    if not isinstance(request.get("query", {}), dict):
        raise fail('"request.query" to be an object')
    response = record.get("response")
    if not isinstance(response, dict):
        raise fail('"response" to be an object')
    if not isinstance(response.get("status"), int):
        raise fail('"response.status" to be an integer')
    if not isinstance(response.get("headers", {}), dict):
        raise fail('"response.headers" to be an object')
    kinds = [k for k in ("body", "text", "stream") if k in response]
    if len(kinds) != 1:
        raise fail('exactly one of "response.body", "response.text", "response.stream"')
    if "text" in response and not isinstance(response["text"], str):
        raise fail('"response.text" to be a string')
    if "stream" in response:
        stream = response["stream"]
        if not isinstance(stream, dict) or stream.get("framing") not in FRAMINGS:
            raise fail('"response.stream.framing" to be "sse" or "ndjson"')
        chunks = stream.get("chunks")
        if not isinstance(chunks, list) or not all(
            isinstance(c, dict)
            and isinstance(c.get("data"), str)
            and isinstance(c.get("at"), int | float)
            for c in chunks
        ):
            raise fail('"response.stream.chunks" to be a list of {"at": number, "data": string}')
    return record


class RecordingStore:
    """The recordings directory: path computation, validated reads, atomic writes."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def path_for(self, test_id: str, fingerprint: str) -> Path:
        return self.directory / module_dir(test_id) / f"{fingerprint}{SUFFIX}"

    def relative(self, path: Path) -> str:
        try:
            return path.relative_to(self.directory).as_posix()
        except ValueError:
            return path.as_posix()

    def load(self, path: Path) -> dict[str, Any]:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RecordingError(f"{path}: no such recording file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RecordingError(f"{path}: cannot read recording: {exc}") from None
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise RecordingError(
                f"{path}: malformed recording: expected JSON ({exc}). Re-record it "
                "(LLAMA_STACK_TEST_INFERENCE_MODE=record) or delete the file."
            ) from None
        return validate(record, path)

    def load_if_exists(self, path: Path) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        return self.load(path)

    def write(self, record: dict[str, Any], path: Path | None = None) -> tuple[Path, bool]:
        """Write a recording atomically (at its layout path unless given one).

        Returns (path, whether the file changed). A file system that refuses the write (a
        read-only directory, a full disk) is a RecordingError naming the file; nothing is
        left half-written.
        """
        path = path or self.path_for(record["test_id"], record["fingerprint"])
        text = dumps(record)
        try:
            return path, self._write(path, text)
        except OSError as exc:
            raise RecordingError(
                f"{path}: cannot write the recording: {exc.strerror or exc}"
            ) from None

    def _write(self, path: Path, text: str) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _lock_for(path):
            try:
                existing = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                existing = None
            if existing is not None and _without_timing(existing) == _without_timing(
                json.loads(text)
            ):
                return False
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                os.fchmod(fd, _new_file_mode())  # mkstemp's 0600 is not for committed files
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return True

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


def _new_file_mode() -> int:
    """The mode an ordinary new file gets here: 0666 less the process's umask."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no /proc: read the umask by setting it, then put it back
    os.umask(mask)
    return 0o666 & ~mask


def _lock_for(path: Path) -> FileLock:
    """A lock outside the recordings directory, so no lock files end up committed."""
    _LOCK_DIR.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(str(path.resolve()).encode("utf-8")).digest()
    stripe = int.from_bytes(digest[:4], "big") % LOCK_STRIPES
    return FileLock(str(_LOCK_DIR / f"stripe-{stripe:02d}.lock"))
