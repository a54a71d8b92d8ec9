"""Inputs a user can get wrong are one usage error naming the input and the fix, before any
test runs; a file the session cannot write at its end is one error line, not a traceback."""

from __future__ import annotations

import pytest

from tests.support.mounts import fill, tmpfs


def _usage_error(result: pytest.RunResult) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output and "INTERNALERROR" not in output, output
    return result.stderr.str()


def test_a_stray_brace_in_the_stack_command_names_the_command_and_the_fix(project):
    result = project.runpytest_inprocess(
        "--stack-config=server:run.yaml:1", "--stack-command=my-stack --port {port} {"
    )

    error = _usage_error(result)
    assert "--stack-command 'my-stack --port {port} {' (--stack-command)" in error
    assert "a literal brace is written twice" in error


def test_a_recordings_directory_that_is_a_file_is_named(project):
    (project.path / "recs").write_text("not a directory")

    result = project.runpytest_inprocess("--stack-config=run.yaml", "--recordings-dir=recs")

    error = _usage_error(result)
    assert f"recordings directory {project.path / 'recs'} (--recordings-dir) is not a" in error
    assert "pass --recordings-dir=<a directory>" in error


def test_a_misses_file_that_is_a_directory_is_named(project):
    (project.path / "out").mkdir()

    result = project.runpytest_inprocess("--stack-config=run.yaml", "--misses-file=out")

    error = _usage_error(result)
    assert f"--misses-file='out' names the directory {project.path / 'out'}" in error
    assert "--misses-file=out/misses.txt" in error


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_a_startup_timeout_must_be_a_positive_number_of_seconds(project, value):
    result = project.runpytest_inprocess(
        "--stack-config=run.yaml", f"--stack-startup-timeout={value}"
    )

    error = _usage_error(result)
    assert f"--stack-startup-timeout={float(value)!r}: expected a number of seconds above 0" in (
        error
    )


def test_an_embedding_dimension_must_be_above_zero(project):
    result = project.runpytest_inprocess("--stack-config=run.yaml", "--embedding-dimension=-5")

    error = _usage_error(result)
    assert "--embedding-dimension=-5: an embedding dimension is a whole number above 0" in error


def test_a_replay_on_a_full_disk_names_the_last_run_file_it_cannot_write(project, tmp_path):
    with tmpfs(tmp_path / "small", size="256k") as small:
        args = ["--stack-config=run.yaml", f"--recordings-dir={small / 'recordings'}"]
        project.runpytest_inprocess(*args, "--inference-mode=record").assert_outcomes(passed=3)
        fill(small, leave=0)
        result = project.runpytest_inprocess(*args)

    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    last_run = small / "recordings" / ".last-run.json"
    result.stdout.fnmatch_lines(
        [f"stack-harness: error: cannot write {last_run} (No space left on device)*prune*"]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
