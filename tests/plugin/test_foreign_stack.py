"""`--stack-command`: record and replay inside a stack the harness did not write.

The stack is tests/fakes/foreign_stack.py, a uvicorn app that never imports the harness and
calls its provider with the openai SDK's async client (made at start-up), a plain
httpx.AsyncClient and a sync httpx.Client. Everything runs for real: pytest, the stack
process with the bootstrap on its path, the fake provider, files on disk.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import threading
from pathlib import Path

import pytest

from tests.support.processes import free_port, started_pid, wait_gone
from tests.support.projects import recordings

FOREIGN = Path(__file__).resolve().parents[1] / "fakes" / "foreign_stack.py"
COMMAND = f"{shlex.quote(sys.executable)} {shlex.quote(str(FOREIGN))} {{config}} --port {{port}}"
KEY = "sk-foreign-key-never-on-disk-123"

FOREIGN_TESTS = """
QUESTION = [{"role": "user", "content": "Name one primary colour."}]
ANSWER = "You said: Name one primary colour."


def test_chat(openai_client):
    reply = openai_client.chat.completions.create(model="llama3.2:3b", messages=QUESTION)
    assert reply.choices[0].message.content == ANSWER


def test_stream(openai_client):
    stream = openai_client.chat.completions.create(
        model="llama3.2:3b", messages=QUESTION, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == ANSWER


def test_embeddings(http_client):
    answer = http_client.post("/v1/embeddings", json={"model": "all-minilm:l6-v2", "input": ["a"]})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["data"][0]["embedding"]) == 384


def test_completion_through_a_sync_client(http_client):
    answer = http_client.post("/v1/completions", json={"model": "llama3.2:3b", "prompt": "once"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["text"].endswith("once")
"""


@pytest.fixture
def foreign(project, fake_provider, monkeypatch):
    """The project, set up to run its tests against the foreign stack."""
    monkeypatch.setenv("FOREIGN_PROVIDER_URL", fake_provider.base_url)
    monkeypatch.setenv("FOREIGN_API_KEY", KEY)
    project.makepyfile(test_foreign=FOREIGN_TESTS)
    return project


def run(project, *args: str, port: int | None = None):
    port = port or free_port()
    return project.runpytest_subprocess(
        f"--stack-config=server:foreign:{port}", f"--stack-command={COMMAND}", *args
    )


def test_records_then_replays_with_the_provider_stopped(foreign, fake_provider, monkeypatch):
    recorded = run(foreign, "--inference-mode=record", "test_foreign.py")
    recorded.assert_outcomes(passed=4)
    assert wait_gone(started_pid(recorded.stdout.str()))
    files = recordings(foreign.path / "recordings")
    assert {f.parent.name for f in files} == {"_shared", "test_foreign"}
    assert all(KEY not in f.read_text() for f in files)
    calls = len(fake_provider.requests)

    fake_provider.stop()
    monkeypatch.setenv("FOREIGN_API_KEY", "another-key-replays-the-same")
    replayed = run(foreign, "test_foreign.py")

    replayed.assert_outcomes(passed=4)
    replayed.stdout.fnmatch_lines(["*mode replay; recordings 5 used, 0 recorded, 0 missed*"])
    assert len(fake_provider.requests) == calls


def test_a_providers_command_serves_the_api_provider_form_as_a_server_that_records(
    foreign, fake_provider, monkeypatch
):
    """With `{providers}` in the stack command, `--stack-config=api=provider,...` is no longer
    library mode with the reference stack: the command is started with the list as given, on
    the port $OGX_PORT names, and records and replays like any server target."""
    command = COMMAND.replace("{config}", "--providers {providers}")
    port = free_port()
    monkeypatch.setenv("OGX_PORT", str(port))
    args = ("--stack-config=inference=remote::openai", f"--stack-command={command}")

    recorded = foreign.runpytest_subprocess(*args, "--inference-mode=record", "test_foreign.py")

    recorded.assert_outcomes(passed=4)
    output = recorded.stdout.str()
    assert f"started the stack server (pid {started_pid(output)}) on port {port}" in output
    assert f"stack-harness: server for inference=remote::openai on port {port}" in output
    log = Path(re.search(r"log: (\S+)", output).group(1)).read_text()
    assert "serving config=None providers=inference=remote::openai" in log
    fake_provider.stop()
    replayed = foreign.runpytest_subprocess(*args, "test_foreign.py")
    replayed.assert_outcomes(passed=4)
    replayed.stdout.fnmatch_lines(["*mode replay; recordings 5 used, 0 recorded, 0 missed*"])


def test_each_provider_request_is_filed_under_its_test_with_two_workers(foreign):
    many = "\n".join(
        f"""
def test_q{i}(openai_client):
    reply = openai_client.chat.completions.create(
        model="llama3.2:3b", messages=[{{"role": "user", "content": "q{i}"}}]
    )
    assert reply.choices[0].message.content == "You said: q{i}"
"""
        for i in range(6)
    )
    foreign.makepyfile(test_many=many)

    result = run(foreign, "-n", "2", "--inference-mode=record", "test_many.py")

    result.assert_outcomes(passed=6)
    filed = {}
    for path in recordings(foreign.path / "recordings" / "test_many"):
        record = json.loads(path.read_text())
        filed[record["test_id"]] = record["request"]["body"]["messages"][0]["content"]
    assert filed == {f"test_many.py::test_q{i}": f"q{i}" for i in range(6)}


def test_a_missing_recording_fails_with_the_reference_stacks_diagnostic(foreign):
    run(foreign, "--inference-mode=record", "test_foreign.py::test_chat").assert_outcomes(passed=1)
    foreign.makepyfile(test_foreign=FOREIGN_TESTS.replace("Name one primary", "Name one other"))

    missed = run(foreign, "test_foreign.py::test_chat")

    missed.assert_outcomes(failed=1)
    missed.stdout.fnmatch_lines(
        [
            "*stack-harness: replay miss (1)*",
            "Replay miss: no recording for POST /v1/chat/completions",
            "  test id:     test_foreign.py::test_chat",
            "  nearest recording: test_foreign/*.json",
            '    body.messages[0].content: "Name one primary colour." -> "Name one other colour."',
            "  to record it: LLAMA_STACK_TEST_INFERENCE_MODE=record-if-missing pytest*",
        ]
    )


def test_the_first_chunk_arrives_while_the_provider_is_still_streaming(
    project, stub_server, monkeypatch
):
    release = threading.Event()
    model = {"id": "llama3.2:3b", "object": "model", "created": 1, "owned_by": "x"}

    def provider(request, reply):
        if request.path.endswith("/models"):
            return reply.json(200, {"object": "list", "data": [model]})

        def events():
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
            first = {**chunk, "choices": [{"index": 0, "delta": {"content": "one"}}]}
            yield f"data: {json.dumps(first)}\n\n".encode()
            release.wait(timeout=30)
            last = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            yield f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode()

        reply.stream(events())

    upstream = stub_server(provider)
    monkeypatch.setenv("FOREIGN_PROVIDER_URL", upstream.url)
    monkeypatch.setenv("FOREIGN_API_KEY", KEY)
    gate = project.path / "gate"
    project.makepyfile(
        test_gated=f"""
import pathlib

def test_first_chunk(openai_client):
    stream = openai_client.chat.completions.create(
        model="llama3.2:3b", messages=[{{"role": "user", "content": "go"}}], stream=True
    )
    chunks = iter(stream)
    first = next(chunks)
    assert first.choices[0].delta.content == "one"
    assert not pathlib.Path({str(gate)!r}).exists()  # the provider has not finished
    pathlib.Path({str(gate)!r}).write_text("")
    assert [c.choices[0].finish_reason for c in chunks] == ["stop"]
"""
    )
    watcher = threading.Thread(target=lambda: _release_when(gate, release), daemon=True)
    watcher.start()

    result = run(project, "--inference-mode=record", "test_gated.py")

    release.set()
    result.assert_outcomes(passed=1)


def _release_when(path: Path, release: threading.Event) -> None:
    while not release.wait(0.02):
        if path.exists():
            release.set()


def test_the_stack_never_sees_llama_stacks_own_recording_variables(foreign, monkeypatch):
    dump = foreign.path / "child-env.json"
    monkeypatch.setenv("FOREIGN_ENV_DUMP", str(dump))
    monkeypatch.setenv("LLAMA_STACK_TEST_INFERENCE_MODE", "record")
    monkeypatch.setenv("LLAMA_STACK_TEST_RECORDING_DIR", str(foreign.path / "recordings"))

    run(foreign, "test_foreign.py::test_chat").assert_outcomes(passed=1)

    names = set(json.loads(dump.read_text()))
    assert "LLAMA_STACK_TEST_INFERENCE_MODE" not in names
    assert "LLAMA_STACK_TEST_RECORDING_DIR" not in names
    assert {"HARNESS_RECORDING_MODE", "HARNESS_RECORDING_DIR"} <= names


RECORDER_VARIABLES = {
    "LLAMA_STACK_TEST_INFERENCE_MODE": "record",
    "LLAMA_STACK_TEST_RECORDING_DIR": "recordings",
    "LLAMA_STACK_TEST_DEBUG": "1",
    "OGX_TEST_INFERENCE_MODE": "",  # blank: OGX turns its recorder on for the name alone
    "OGX_TEST_RECORDING_DIR": "recordings",
    "OGX_TEST_DEBUG": "1",
}


def test_no_variable_of_either_recorder_reaches_the_stack_and_both_version_checks_are_off(
    foreign, monkeypatch
):
    dump = foreign.path / "child-env.json"
    monkeypatch.setenv("FOREIGN_ENV_DUMP", str(dump))
    for name, value in RECORDER_VARIABLES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OGX_DISABLE_VERSION_CHECK", "")  # the shell's value does not matter

    run(foreign, "test_foreign.py::test_chat").assert_outcomes(passed=1)

    seen = json.loads(dump.read_text())
    assert not [name for name in seen if name.startswith(("LLAMA_STACK_TEST_", "OGX_TEST_"))]
    assert seen["LLAMA_STACK_DISABLE_VERSION_CHECK"] == seen["OGX_DISABLE_VERSION_CHECK"] == "1"
    assert seen["HARNESS_RECORDING_MODE"] == "record"


@pytest.mark.parametrize(
    ("isolated", "reason"),
    [
        (True, "did not load the harness bootstrap"),
        (False, "does not serve its app with uvicorn"),
    ],
    ids=["not-python-path", "not-uvicorn"],
)
def test_a_stack_the_bootstrap_cannot_attach_to_fails_at_start_but_live_works(
    project, tmp_path, isolated, reason
):
    site = tmp_path / "site"
    (site / "v1").mkdir(parents=True)
    (site / "v1" / "health").write_text('{"status": "OK"}')
    flags = "-I " if isolated else ""  # -I: a Python that ignores PYTHONPATH, like a non-Python
    command = (
        f"{shlex.quote(sys.executable)} {flags}-m http.server --bind 127.0.0.1 "
        f"--directory {shlex.quote(str(site))} {{port}}"
    )
    project.makepyfile(test_h="def test_h(http_client):\n    http_client.get('/v1/health')\n")

    replay = project.runpytest_subprocess(
        f"--stack-config=server:x:{free_port()}", f"--stack-command={command}", "test_h.py"
    )

    assert replay.ret != pytest.ExitCode.OK
    replay.assert_outcomes()
    output = replay.stdout.str() + replay.stderr.str()
    assert reason in output and "--inference-mode=live" in output
    live = project.runpytest_subprocess(
        f"--stack-config=server:x:{free_port()}",
        f"--stack-command={command}",
        "--inference-mode=live",
        "test_h.py",
    )
    live.assert_outcomes(passed=1)
