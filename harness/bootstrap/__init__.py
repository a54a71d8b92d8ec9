"""Preparing the bootstrap for a stack started with ``--stack-command``, and checking it took.

The directory put on the child's ``PYTHONPATH`` holds only ``sitecustomize.py`` and a
``vendor`` folder that links the harness package and ``filelock`` (pure Python; the stack's
own environment may lack it). It lives in the per-user state directory, next to the servers'
logs, because a started server can outlive the session that started it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import filelock

import harness

HERE = Path(__file__).resolve().parent
SITECUSTOMIZE = HERE / "sitecustomize.py"
VENDORED = {
    "harness": Path(harness.__file__).resolve().parent,
    "filelock": Path(filelock.__file__).resolve().parent,
}


def prepare(state_dir: Path) -> Path:
    """The bootstrap directory for this installation of the harness (made once, reused)."""
    text = SITECUSTOMIZE.read_bytes()
    key = hashlib.sha256(text + str(VENDORED).encode()).hexdigest()[:12]
    target = state_dir / f"bootstrap-{key}"
    if (target / "sitecustomize.py").is_file():
        return target
    staging = Path(tempfile.mkdtemp(prefix=".bootstrap-", dir=state_dir))
    (staging / "sitecustomize.py").write_bytes(text)
    (staging / "vendor").mkdir()
    for name, source in VENDORED.items():
        (staging / "vendor" / name).symlink_to(source, target_is_directory=True)
    try:
        os.rename(staging, target)
    except OSError:  # another session made it first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def environment(directory: Path, report: Path, env: dict[str, str]) -> dict[str, str]:
    """`env` with the bootstrap first on PYTHONPATH and the report file named."""
    from harness.recording.modes import BOOTSTRAP_REPORT_ENV as REPORT_ENV

    path = [str(directory), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    return {**env, "PYTHONPATH": os.pathsep.join(path), REPORT_ENV: str(report)}


def attach_problem(report: Path, command: str) -> str | None:
    """Why the bootstrap did not attach to the started stack, or None when it did."""
    try:
        lines = report.read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    failed = [line for line in lines if line.startswith("failed")]
    if failed:
        return f"the harness bootstrap failed inside the stack: {failed[0]}"
    if not any(line.startswith("loaded") for line in lines):
        return (
            f"the stack command ({command}) did not load the harness bootstrap, so its provider "
            "traffic cannot be recorded or replayed: it must be a Python program that honours "
            "PYTHONPATH. Use --inference-mode=live to test it without recordings."
        )
    if not any(line.startswith("app") for line in lines):
        return (
            f"the stack command ({command}) does not serve its app with uvicorn, so the harness "
            "cannot file its provider requests under tests. Use --inference-mode=live to test "
            "it without recordings."
        )
    return None
