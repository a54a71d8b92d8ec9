"""Real git repositories for the tests of the workflow scripts."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path


def git(*args: str, cwd: Path, env: Mapping[str, str] = {}) -> str:  # noqa: B006 - read only
    """Run git in `cwd` (this environment plus `env`); its stdout, stripped. Fails loudly."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()
