"""Every form of --stack-config, end to end: record against the fake provider, then replay
with the provider stopped."""

from __future__ import annotations

import json

import pytest

from tests.support.processes import free_port, started_pid, wait_gone
from tests.support.projects import CHAT_TESTS, recordings, run_yaml


def test_env_var_alone_records_through_a_started_server_then_replays_offline(
    project, fake_provider, monkeypatch
):
    port = free_port()
    monkeypatch.setenv("LLAMA_STACK_TEST_INFERENCE_MODE", "record")

    recorded = project.runpytest_subprocess(f"--stack-config=server:run.yaml:{port}")

    recorded.assert_outcomes(passed=3)
    recorded.stdout.fnmatch_lines(["*mode record; recordings 0 used, 3 recorded, 0 missed*"])
    assert wait_gone(started_pid(recorded.stdout.str()))
    files = recordings(project.path / "recordings")
    assert {f.parent.name for f in files} == {"_shared", "test_chat"}
    chat_requests = len(fake_provider.requests)

    fake_provider.stop()
    monkeypatch.delenv("LLAMA_STACK_TEST_INFERENCE_MODE")
    replayed = project.runpytest_subprocess(f"--stack-config=server:run.yaml:{port}")

    replayed.assert_outcomes(passed=3)
    replayed.stdout.fnmatch_lines(["*mode replay; recordings 3 used, 0 recorded, 0 missed*"])
    assert len(fake_provider.requests) == chat_requests
    last_run = json.loads((project.path / "recordings" / ".last-run.json").read_text())
    assert len(last_run["used"]) == 3


def test_server_form_without_port_uses_llama_stack_port(project, monkeypatch):
    port = free_port()
    monkeypatch.setenv("LLAMA_STACK_PORT", str(port))

    result = project.runpytest_subprocess(
        "--stack-config=server:run.yaml", "--inference-mode=record", "test_chat.py::test_chat"
    )

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*started the stack server (pid *) on port {port}*"])


def test_library_form_records_and_replays_in_process(project, fake_provider):
    recorded = project.runpytest_inprocess("--stack-config=run.yaml", "--inference-mode=record")
    recorded.assert_outcomes(passed=3)
    recorded.stdout.fnmatch_lines(["*serving run.yaml in-process*"])
    assert "started the stack server" not in recorded.stdout.str()

    fake_provider.stop()
    narrowed = project.runpytest_inprocess("--stack-config=run.yaml", "-k", "stream")
    narrowed.assert_outcomes(passed=1, deselected=2)
    assert not (project.path / "recordings" / ".last-run.json").exists()  # prune needs all
    replayed = project.runpytest_inprocess("--stack-config=run.yaml")

    replayed.assert_outcomes(passed=3)
    replayed.stdout.fnmatch_lines(["*recordings 3 used, 0 recorded, 0 missed*"])
    assert (project.path / "recordings" / ".last-run.json").exists()


def test_provider_list_form_replays_what_a_run_yaml_recorded(project, fake_provider):
    project.runpytest_inprocess(
        "--stack-config=run.yaml", "--inference-mode=record"
    ).assert_outcomes(passed=3)
    fake_provider.stop()

    result = project.runpytest_inprocess("--stack-config=inference=ollama")

    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*library inference=ollama, mode replay*"])


def test_url_form_records_at_the_client_layer_and_never_stops_the_server(
    project, run_stack_server, fake_provider
):
    port = free_port()
    stack = run_stack_server(project.path / "run.yaml", port)
    url = f"--stack-config=http://127.0.0.1:{port}"

    recorded = project.runpytest_subprocess(url, "--inference-mode=record")

    recorded.assert_outcomes(passed=3)
    assert stack.poll() is None
    assert len(recordings(project.path / "recordings")) == 3  # one per request, each under its test
    recorded.stdout.fnmatch_lines(["*recordings 0 used, 3 recorded, 0 missed*"])

    stack.terminate()
    stack.wait(timeout=10)
    fake_provider.stop()
    replayed = project.runpytest_subprocess(url)
    replayed.assert_outcomes(passed=3)

    project.makepyfile(test_chat=CHAT_TESTS.replace("Name one primary", "Name one secondary"))
    missed = project.runpytest_subprocess(url, "test_chat.py::test_chat")
    missed.assert_outcomes(failed=1)
    missed.stdout.fnmatch_lines(
        [
            "*stack-harness: replay miss (1)*",
            "  nearest recording: test_chat/*.json",
            "*body.messages[[]0[]].content*primary*secondary*",
            "*record-if-missing pytest 'test_chat.py::test_chat[[]txt=ollama/llama3.2:3b[]]'"
            f" {url}",
        ]
    )
    # Only the harness's diagnostic: vcrpy's own advice (change record_mode) contradicts it.
    assert "CannotOverwriteExistingCassetteException" not in missed.stdout.str()
    assert "record_mode" not in missed.stdout.str()


def test_unknown_provider_is_a_usage_error_listing_the_valid_ones(project):
    result = project.runpytest_subprocess("--stack-config=inference=nosuch")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown provider 'nosuch'*remote::ollama*"])
    # It names the option the user typed (there is no --providers option).
    result.stderr.fnmatch_lines(["*--stack-config='inference=nosuch'*"])
    assert "--providers" not in result.stderr.str()


def test_malformed_stack_config_lists_the_five_forms(project):
    result = project.runpytest_inprocess("--stack-config=localhost:8321")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--stack-config='localhost:8321' is not valid*",
            "*server:starter",
            "*server:starter:8322",
            "*http://localhost:8321",
            "*starter  or  ./run.yaml",
            "*inference=ollama,prompts=kv_sqlite",
        ]
    )


def test_without_stack_config_stack_tests_skip_naming_the_option(project):
    result = project.runpytest_inprocess("-rs")

    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["*no stack to test against: pass --stack-config*"])


OPENAI_RUN_YAML = run_yaml(
    """\
    - provider_id: openai
      provider_type: remote::openai
      config:
        api_key: ${env.OPENAI_API_KEY:=}
        base_url: ${env.OPENAI_BASE_URL}
"""
)


@pytest.mark.parametrize("form", ["server", "library"])
def test_replay_needs_no_provider_key(project, fake_provider, monkeypatch, form):
    project.makefile(".yaml", openai_run=OPENAI_RUN_YAML)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{fake_provider.base_url}/v1")
    config = f"server:openai_run.yaml:{free_port()}" if form == "server" else "openai_run.yaml"
    # A server session crosses a process boundary; a library one runs here.
    run = project.runpytest_subprocess if form == "server" else project.runpytest_inprocess
    args = [
        f"--stack-config={config}",
        "--text-model=openai/llama3.2:3b",
        "test_chat.py::test_chat",
    ]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-recording-key-0123456789")
    run(*args, "--inference-mode=record").assert_outcomes(passed=1)
    assert all(
        "sk-recording-key" not in p.read_text() for p in recordings(project.path / "recordings")
    )

    fake_provider.stop()
    monkeypatch.delenv("OPENAI_API_KEY")
    replayed = run(*args)

    replayed.assert_outcomes(passed=1)
    # Recording still needs the real key: without one the stack says so.
    unkeyed = run(*args, "--inference-mode=live")
    unkeyed.assert_outcomes(failed=1)
    unkeyed.stdout.fnmatch_lines(["*API key not provided*"])
