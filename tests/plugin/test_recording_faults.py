"""Recording faults inside a stack server are named in the failing test, not only in its log:
a corrupt recording, a read-only recordings directory, a full disk (real tmpfs mounts)."""

from __future__ import annotations

import pytest

from tests.support.mounts import fill, tmpfs
from tests.support.processes import free_port
from tests.support.projects import CHAT_TESTS, recordings


def test_a_corrupt_recording_names_the_file_and_the_cause_in_the_failing_test(project):
    config = f"--stack-config=server:run.yaml:{free_port()}"
    project.runpytest_subprocess(
        config, "--inference-mode=record", "test_chat.py::test_chat"
    ).assert_outcomes(passed=1)
    (path,) = [p for p in recordings(project.path / "recordings") if p.parent.name == "test_chat"]
    path.write_text('{"fingerprint": "trunc')

    result = project.runpytest_subprocess(config, "test_chat.py::test_chat")

    result.assert_outcomes(failed=1)
    failure = result.stdout.str().split("= FAILURES =")[1]
    result.stdout.fnmatch_lines(
        [
            "*stack-harness: recording fault*",
            f"*recordings/test_chat/{path.name}: malformed recording: expected JSON*",
        ]
    )
    assert "Internal server error: An unexpected error occurred" not in failure


def test_record_mode_with_a_read_only_recordings_directory_fails_at_start(project, tmp_path):
    with tmpfs(tmp_path / "ro", read_only=True) as read_only:
        result = project.runpytest_subprocess(
            f"--stack-config=server:run.yaml:{free_port()}",
            "--inference-mode=record",
            f"--recordings-dir={read_only}",
        )

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*recordings directory {read_only} is not writable (Read-only file system)*"]
    )
    assert "passed" not in result.stdout.str()


def test_a_full_disk_names_the_file_in_the_failing_test(project, tmp_path):
    with tmpfs(tmp_path / "small", size="256k") as small:
        args = [
            f"--stack-config=server:run.yaml:{free_port()}",
            "--inference-mode=record",
            f"--recordings-dir={small / 'recordings'}",
            "test_chat.py::test_chat",
        ]
        project.runpytest_subprocess(*args).assert_outcomes(passed=1)
        fill(small, leave=0)  # the start-up listing is unchanged, so it is not rewritten
        project.makepyfile(test_chat=CHAT_TESTS.replace("Name one primary", "Name one other"))
        result = project.runpytest_subprocess(*args)

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*stack-harness: recording fault*",
            "*recordings/test_chat/*.json: cannot write the recording: No space left on device*",
        ]
    )


def test_a_hand_edited_recording_names_the_file_and_the_field_in_the_failing_test(project):
    config = f"--stack-config=server:run.yaml:{free_port()}"
    project.runpytest_subprocess(
        config, "--inference-mode=record", "test_chat.py::test_chat"
    ).assert_outcomes(passed=1)
    (path,) = [p for p in recordings(project.path / "recordings") if p.parent.name == "test_chat"]
    path.write_text(path.read_text().replace('"status": 200', '"status": 99999'))

    result = project.runpytest_subprocess(config, "test_chat.py::test_chat")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*stack-harness: recording fault*",
            f'*test_chat/{path.name}: malformed recording: expected "response.status" to be an '
            "HTTP status (100-599), not 99999*",
        ]
    )
