"""Real file-system faults: a read-only directory and a full disk, as tmpfs mounts.

Permission bits do not stop root, so an unwritable path is a read-only mount. Tests that need
one are skipped, saying why, where this process may not mount.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True)


@contextmanager
def tmpfs(path: Path, *, size: str = "1m", read_only: bool = False) -> Iterator[Path]:
    """A tmpfs mounted at `path` (created), read-only if asked; unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        if read_only:
            remounted = _run("mount", "-o", "remount,ro", str(path))
            assert remounted.returncode == 0, remounted.stderr
        yield path
    finally:
        _run("umount", "-l", str(path))


def fill(path: Path, leave: int) -> None:
    """Fill the file system of `path` until only about `leave` bytes are free."""
    import os

    stats = os.statvfs(path)
    free = stats.f_bavail * stats.f_frsize
    with open(path / "filler", "wb") as handle:
        handle.write(b"\0" * max(free - leave, 0))
