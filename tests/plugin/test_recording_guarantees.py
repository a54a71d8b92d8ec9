"""Recordings are never lost or wrong: cut streams, re-records, replay pace and file modes,
each through pytest, a real stack server process and real files."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.provider import FakeProvider
from tests.support.processes import free_port, inner_pytest, started_pid, wait_gone
from tests.support.projects import recordings

STREAM_TEST = """
import pathlib

QUESTION = [{"role": "user", "content": "Count from one to nine, slowly."}]


def test_stream(openai_client, text_model_id):
    stream = openai_client.chat.completions.create(
        model=text_model_id, messages=QUESTION, stream=True
    )
    text = ""
    for index, chunk in enumerate(stream):
        if index == 1:
            pathlib.Path("mid-stream").write_text("")
        text += "".join(c.delta.content or "" for c in chunk.choices)
    assert text == "You said: Count from one to nine, slowly."
"""

TOOL_TEST = """
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}


def test_tool_round_trip(openai_client, text_model_id):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = openai_client.chat.completions.create(
        model=text_model_id, messages=messages, tools=[WEATHER]
    )
    call = first.choices[0].message.tool_calls[0]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18 C"})
    second = openai_client.chat.completions.create(
        model=text_model_id, messages=messages, tools=[WEATHER]
    )
    assert second.choices[0].message.content == "The tool said: 18 C"
"""

PACED_TEST = """
import pathlib, time


def test_paced(openai_client, text_model_id):
    stream = openai_client.chat.completions.create(
        model=text_model_id,
        messages=[{"role": "user", "content": "a b c d e f g h i j k l m n o p q r s"}],
        stream=True,
    )
    times = [time.monotonic() for _ in stream]
    pathlib.Path("span").write_text(str(times[-1] - times[0]))
"""


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in recordings(directory)}


def _verify(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "recordings", "verify", "--dir", str(directory)],
        capture_output=True,
        text=True,
    )


def _cutting_provider(stub_server, events_before_cut: int):
    """An OpenAI-wire provider whose chat stream stops after a few events, at a clean EOF."""
    model = {"id": "llama3.2:3b", "object": "model", "created": 1, "owned_by": "x"}

    def answer(request, reply):
        if request.path.endswith("/models"):
            return reply.json(200, {"object": "list", "data": [model]})
        base = {"id": "chatcmpl-cut", "object": "chat.completion.chunk", "created": 1}
        words = ["You", " said", ":", " Count"]
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]}
            for w in words[:events_before_cut]
        ]
        reply.stream((f"data: {json.dumps(c)}\n\n".encode() for c in chunks), chunked=False)

    return stub_server(answer)


def test_a_stream_cut_short_never_replaces_a_good_recording(project, monkeypatch, stub_server):
    project.makepyfile(test_stream=STREAM_TEST)
    port = free_port()
    args = [f"--stack-config=server:run.yaml:{port}", "--inference-mode=record", "test_stream.py"]
    project.runpytest_subprocess(*args).assert_outcomes(passed=1)
    directory = project.path / "recordings"
    good = _snapshot(directory / "test_stream")

    monkeypatch.setenv("OLLAMA_URL", _cutting_provider(stub_server, 3).url)
    project.runpytest_subprocess(*args).assert_outcomes(failed=1)  # the test saw a cut answer

    # The start-up model listing is re-recorded as it should be; the stream is not.
    assert _snapshot(directory / "test_stream") == good
    assert _verify(directory).returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_an_interrupted_record_run_keeps_the_good_recording(project, monkeypatch, signum):
    project.makepyfile(test_stream=STREAM_TEST)
    port = free_port()
    args = [f"--stack-config=server:run.yaml:{port}", "--inference-mode=record", "test_stream.py"]
    project.runpytest_subprocess(*args).assert_outcomes(passed=1)
    directory = project.path / "recordings"
    good = _snapshot(directory)

    (project.path / "mid-stream").unlink()  # written by the good run: wait for this one's
    with FakeProvider(chunk_delay=0.3) as slow:
        monkeypatch.setenv("OLLAMA_URL", slow.base_url)
        with inner_pytest(project.path, *args, marker="mid-stream") as inner:
            server_pid = inner.server_pid
            inner.process.send_signal(signum)
            inner.process.wait(timeout=30)
        # Whatever the stack was doing when pytest went, it has finished once it has exited:
        # at once after Ctrl-C, within a few seconds of a kill -9 (its supervisor's check).
        assert wait_gone(server_pid, timeout=20)

    assert _snapshot(directory) == good
    assert _verify(directory).returncode == 0


def test_verify_tells_a_cut_stream_from_a_complete_one(project):
    project.makepyfile(test_stream=STREAM_TEST)
    args = [f"--stack-config=server:run.yaml:{free_port()}", "--inference-mode=record"]
    project.runpytest_subprocess(*args, "test_stream.py").assert_outcomes(passed=1)
    directory = project.path / "recordings"
    (path,) = [p for p in recordings(directory) if p.parent.name == "test_stream"]
    assert _verify(directory).returncode == 0

    record = json.loads(path.read_text())
    record["response"]["stream"]["chunks"] = record["response"]["stream"]["chunks"][:3]
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

    result = _verify(directory)
    assert result.returncode == 1
    assert "the stream was cut short" in result.stdout and path.name in result.stdout


def test_re_recording_an_unchanged_tool_call_test_is_byte_stable(project):
    project.makepyfile(test_tools=TOOL_TEST)
    args = [f"--stack-config=server:run.yaml:{free_port()}", "--inference-mode=record"]
    project.runpytest_subprocess(*args, "test_tools.py").assert_outcomes(passed=1)
    first = _snapshot(project.path / "recordings")

    project.runpytest_subprocess(*args, "test_tools.py").assert_outcomes(passed=1)

    assert _snapshot(project.path / "recordings") == first


def test_new_recordings_get_the_usual_file_mode(project):
    previous = os.umask(0o022)
    try:
        args = [f"--stack-config=server:run.yaml:{free_port()}", "--inference-mode=record"]
        project.runpytest_subprocess(*args, "test_chat.py::test_chat").assert_outcomes(passed=1)
    finally:
        os.umask(previous)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in recordings(project.path / "recordings")}
    assert modes == {0o644}


def test_replay_pace_reaches_the_stack_server(project, monkeypatch):
    project.makepyfile(test_paced=PACED_TEST)
    port = free_port()
    with FakeProvider(chunk_delay=0.02) as paced:
        monkeypatch.setenv("OLLAMA_URL", paced.base_url)
        recorded = project.runpytest_subprocess(
            f"--stack-config=server:run.yaml:{port}", "--inference-mode=record", "test_paced.py"
        )
    recorded.assert_outcomes(passed=1)
    assert wait_gone(started_pid(recorded.stdout.str()))
    (path,) = [p for p in recordings(project.path / "recordings") if "test_paced" in str(p)]
    chunks = json.loads(path.read_text())["response"]["stream"]["chunks"]
    recorded_span = chunks[-1]["at"] - chunks[0]["at"]
    assert recorded_span > 0.2

    monkeypatch.setenv("LLAMA_STACK_TEST_REPLAY_PACE", "1.0")
    project.runpytest_subprocess(
        f"--stack-config=server:run.yaml:{port}", "test_paced.py"
    ).assert_outcomes(passed=1)

    # A lower bound only: a busy machine may replay slower, never faster than recorded.
    assert float((project.path / "span").read_text()) >= 0.8 * recorded_span
