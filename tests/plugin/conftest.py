"""Shared pieces for the plugin's end-to-end tests: a fake provider, a stack project, runs.

Each test builds a small project in pytester's directory (a run.yaml for the fake Ollama-wire
provider with its sqlite stores in tmp_path, and a test module using the plugin's fixtures)
and runs pytest on it, in a subprocess wherever a process boundary matters.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import server
from tests.fakes.provider import FakeProvider

HARNESS_ENV = (
    "LLAMA_STACK_CONFIG",
    "LLAMA_STACK_PORT",
    "LLAMA_STACK_TEST_INFERENCE_MODE",
    "LLAMA_STACK_TEST_RECORDING_DIR",
    "LLAMA_STACK_TEST_REPLAY_PACE",
    "HARNESS_RECORDING_USAGE_LOG",
)

RUN_YAML = """\
version: 2
image_name: plugin-test
apis: [inference, prompts]
providers:
  inference:
    - provider_id: ollama
      provider_type: remote::ollama
      config:
        url: ${env.OLLAMA_URL}
storage:
  backends:
    kv_default: {type: kv_sqlite, db_path: "${env.SQLITE_STORE_DIR}/kvstore.db"}
    sql_default: {type: sql_sqlite, db_path: "${env.SQLITE_STORE_DIR}/sql_store.db"}
  stores:
    metadata: {backend: kv_default, namespace: registry}
    inference: {backend: sql_default, table_name: inference_store}
    conversations: {backend: sql_default, table_name: openai_conversations}
    prompts: {backend: kv_default, namespace: prompts}
"""

CHAT_TESTS = """
QUESTION = [{"role": "user", "content": "Name one primary colour."}]


def test_chat(openai_client, text_model_id):
    response = openai_client.chat.completions.create(model=text_model_id, messages=QUESTION)
    assert response.choices[0].message.content == "You said: Name one primary colour."


def test_stream(openai_client, text_model_id):
    stream = openai_client.chat.completions.create(
        model=text_model_id, messages=QUESTION, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "You said: Name one primary colour."


def test_models(http_client, text_model_id):
    response = http_client.get("/v1/models")
    assert response.status_code == 200, response.text
    assert text_model_id in [m["id"] for m in response.json()["data"]]
"""


def pytest_configure(config: pytest.Config) -> None:
    # pytester is not loaded by default; a non-root conftest may not set `pytest_plugins`.
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def started_pid(output: str) -> int:
    """The pid the plugin announces when it starts a server."""
    found = re.search(r"started the stack server \(pid (\d+)\)", output)
    assert found, output
    return int(found.group(1))


def interrupt(process: subprocess.Popen, signum: int = signal.SIGINT) -> None:
    """End an inner pytest like Ctrl-C does, so it stops its server; SIGKILL only as a last
    resort (that would orphan the server, which is what the interrupt tests rule out)."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def recordings(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.json") if not p.name.startswith("."))


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def project(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path_factory, fake_provider
):
    """A project with run.yaml and a chat test module; the environment points at the fake."""
    for name in HARNESS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OLLAMA_URL", fake_provider.base_url)
    monkeypatch.setenv("SQLITE_STORE_DIR", str(tmp_path_factory.mktemp("stores")))
    pytester.makefile(".yaml", run=RUN_YAML)
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_chat=CHAT_TESTS)
    return pytester


@pytest.fixture
def run_stack_server(fake_provider):
    """Start `harness stack run` ourselves (as a user would by hand); stopped at teardown."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(config: Path, port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "stack", "run", str(config), "--port", str(port)],
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        processes.append(process)
        deadline = time.monotonic() + 30
        while server.probe("127.0.0.1", port).state != "healthy":
            assert process.poll() is None, "the stack server exited"
            assert time.monotonic() < deadline, "the stack server never got healthy"
            time.sleep(0.05)
        return process

    yield start
    for process in processes:
        server.stop_process_group(process.pid)
        process.wait(timeout=10)


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()
