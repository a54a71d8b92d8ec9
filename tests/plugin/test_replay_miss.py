"""A replay miss fails the test with the diagnostic, not a bare HTTP 500."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.provider import FakeProvider
from tests.support.processes import free_port
from tests.support.projects import CHAT_TESTS

BIN = Path(sys.executable).parent
PATH = os.environ.get("PATH", "")

SWALLOWED = """
import openai, pytest

def test_swallows_the_error(openai_client, text_model_id):
    with pytest.raises(openai.InternalServerError):
        openai_client.chat.completions.create(
            model=text_model_id, messages=[{"role": "user", "content": "never recorded"}]
        )
"""


@pytest.mark.parametrize("form", ["server", "library"])
def test_replay_miss_names_nearest_recording_diff_and_record_command(project, form):
    project.runpytest_inprocess(
        "--stack-config=run.yaml", "--inference-mode=record", "test_chat.py::test_chat"
    ).assert_outcomes(passed=1)
    project.makepyfile(test_chat=CHAT_TESTS.replace("Name one primary", "Name one secondary"))
    config = f"server:run.yaml:{free_port()}" if form == "server" else "run.yaml"
    run = project.runpytest_subprocess if form == "server" else project.runpytest_inprocess

    result = run(f"--stack-config={config}", "test_chat.py::test_chat")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*stack-harness: replay miss (1)*",
            "Replay miss: no recording for POST /v1/chat/completions",
            "  fingerprint: *",
            "  test id:     test_chat.py::test_chat[[]txt=ollama/llama3.2:3b[]]",
            "  nearest recording: test_chat/*.json",
            "  differences (recorded -> requested):",
            '    body.messages[0].content: "Name one primary colour." ->'
            ' "Name one secondary colour."',
            "  to record it: LLAMA_STACK_TEST_INFERENCE_MODE=record-if-missing pytest"
            " 'test_chat.py::test_chat[[]txt=ollama/llama3.2:3b[]]'"
            f" --stack-config={config}",
        ]
    )
    result.stdout.fnmatch_lines(["*recordings 1 used, 0 recorded, 1 missed*"])


def test_a_test_that_catches_the_miss_still_fails_with_the_diagnostic(project):
    project.makepyfile(test_swallow=SWALLOWED)

    result = project.runpytest_inprocess("--stack-config=run.yaml", "test_swallow.py")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*stack-harness: replay miss (1): the stack had no recording for a request",
            "*test id:     test_swallow.py::test_swallows_the_error[[]txt=ollama/llama3.2:3b[]]",
            "*nearest recording: none*",
        ]
    )


def test_running_the_printed_command_records_the_miss_and_replay_passes(project, monkeypatch):
    new_test = CHAT_TESTS.replace("Name one primary", "Name one tertiary")
    project.makepyfile(test_new=new_test.replace("def test_", "def test_new_"))
    missed = project.runpytest_inprocess("--stack-config=run.yaml", "test_new.py::test_new_chat")
    missed.assert_outcomes(failed=1)
    missed.stdout.fnmatch_lines(
        ["*to record it: LLAMA_STACK_TEST_INFERENCE_MODE=record-if-missing*"]
    )

    monkeypatch.setenv("LLAMA_STACK_TEST_INFERENCE_MODE", "record-if-missing")
    project.runpytest_inprocess(
        "test_new.py::test_new_chat", "--stack-config=run.yaml"
    ).assert_outcomes(passed=1)
    monkeypatch.delenv("LLAMA_STACK_TEST_INFERENCE_MODE")
    replayed = project.runpytest_inprocess("--stack-config=run.yaml", "test_new.py::test_new_chat")

    replayed.assert_outcomes(passed=1)
    replayed.stdout.fnmatch_lines(["*recordings 2 used, 0 recorded, 0 missed*"])


def test_the_printed_command_repeats_every_option_that_shapes_the_request(project, monkeypatch):
    with FakeProvider(models=["llama3.2:3b", "tiny:1b"]) as fake:
        monkeypatch.setenv("OLLAMA_URL", fake.base_url)
        args = ["--stack-config=run.yaml", "--text-model=ollama/tiny:1b", "--env=EXTRA=secret-x"]
        missed = project.runpytest_inprocess(*args, "test_chat.py::test_chat")
        missed.assert_outcomes(failed=1)
        line = [x for x in missed.stdout.lines if "to record it:" in x and "--stack" in x][0]
        command = line.split("to record it:", 1)[1].strip()
        assert "--text-model=ollama/tiny:1b" in command
        assert "secret-x" not in command and '--env=EXTRA="$EXTRA"' in command

        ran = subprocess.run(
            command,
            shell=True,
            cwd=project.path,
            # `pytest` is this interpreter's, whether or not its virtualenv is activated.
            env={
                **os.environ,
                "EXTRA": "secret-x",
                "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr

    replayed = project.runpytest_inprocess(*args, "test_chat.py::test_chat")
    replayed.assert_outcomes(passed=1)


@pytest.mark.parametrize("form", ["server", "library"])
def test_a_miss_inside_a_streamed_response_reaches_the_test_and_the_misses_file(project, form):
    project.runpytest_subprocess(
        "--stack-config=run.yaml", "--inference-mode=record", "test_chat.py::test_stream"
    ).assert_outcomes(passed=1)
    project.makepyfile(test_chat=CHAT_TESTS.replace("Name one primary", "Name one secondary"))
    config = f"server:run.yaml:{free_port()}" if form == "server" else "run.yaml"

    result = project.runpytest_subprocess(
        f"--stack-config={config}", "--misses-file=misses.txt", "test_chat.py::test_stream"
    )

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*stack-harness: replay miss (1)*",
            "  test id:     test_chat.py::test_stream[[]txt=ollama/llama3.2:3b[]]",
            "    body.messages[[]0[]].content: *",
        ]
    )
    assert (project.path / "misses.txt").read_text() == (
        "test_chat.py::test_stream[txt=ollama/llama3.2:3b]\n"
    )


@pytest.mark.parametrize("where", ["ini", "hook"])
def test_a_project_normaliser_keeps_an_edited_prompt_from_missing(project, where):
    if where == "ini":
        project.makeini("[pytest]\nnormalize_request =\n    mood = (?<=Name one )\\w+\n")
    else:
        project.makeconftest(
            "def pytest_harness_request_normalizers(config):\n"
            "    return [('mood', r'(?<=Name one )\\w+')]\n"
        )
    project.runpytest_subprocess(
        "--stack-config=run.yaml", "--inference-mode=record", "test_chat.py::test_chat"
    ).assert_outcomes(passed=1)
    asked = '"content": "Name one primary colour."}]'
    edited = CHAT_TESTS.replace(asked, asked.replace("primary", "secondary"))
    assert edited != CHAT_TESTS
    project.makepyfile(test_chat=edited)  # the question changes; the recorded answer stays

    result = project.runpytest_subprocess("--stack-config=run.yaml", "test_chat.py::test_chat")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*recordings 2 used, 0 recorded, 0 missed*"])
