"""What a session leaves behind on the machine: nothing in the temp dir but bounded lock files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from harness.recording.store import LOCK_STRIPES
from tests.support.processes import free_port


def test_sessions_remove_their_scratch_directories(project, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    port = free_port()
    for args in (
        [f"--stack-config=server:run.yaml:{port}", "--inference-mode=record"],
        ["--stack-config=run.yaml", "-p", "no:cacheprovider"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", *args],
            cwd=project.path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    # Only the per-user directories that outlive sessions by design: server state and logs
    # (one per port), and the striped recording locks.
    uid = os.getuid()
    left = {p.name for p in temp.iterdir()}
    assert left <= {f"stack-harness-{uid}", f"harness-recording-locks-{uid}"}, left


def test_recording_locks_stay_bounded_however_many_recordings_are_written(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from harness.recording.records import (
            JsonBody, RecordedRequest, RecordedResponse, Recording,
        )
        from harness.recording.store import RecordingStore

        store = RecordingStore(Path(sys.argv[1]))
        for i in range(3 * 64):
            request = RecordedRequest("GET", f"/v1/{i}", {}, {}, None)
            response = RecordedResponse(200, {}, JsonBody(i))
            store.write(Recording(f"{i:064x}", "t.py::x", request, response))
        """
    )
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "recordings")],
        env={**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(Path.cwd())},
        check=True,
        timeout=60,
    )

    assert len(list((tmp_path / "recordings").rglob("*.json"))) == 3 * 64
    lock_files = [p for p in temp.rglob("*") if p.is_file()]
    assert 0 < len(lock_files) <= LOCK_STRIPES
