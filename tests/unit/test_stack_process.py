"""`harness stack run` as a real process: the seed's test plan, the openai SDK, signals, errors."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import openai
import pytest
import yaml

from tests.fakes.provider import FakeProvider
from tests.support.processes import free_port
from tests.support.stack import provider_entry, write_run_config
from tests.support.stack_process import ROOT, StackProcess, stack_env

SEED_PROMPT = (
    "Hello {{name}}! You are working at {{company}}. Your role is {{role}} at {{company}}. "
    "Remember, {{name}}, to be {{tone}}."
)
SEED_VARIABLES = ["name", "company", "role", "tone"]


@pytest.fixture
def fake():
    with FakeProvider(chunk_delay=0.1) as fake:
        yield fake


def test_seed_plan_against_the_starter_process(tmp_path):
    with FakeProvider(api_key="sk-never-logged-123") as fake:
        env = stack_env(
            tmp_path, OPENAI_API_KEY="sk-never-logged-123", OPENAI_BASE_URL=f"{fake.base_url}/v1"
        )
        stack = StackProcess(tmp_path, "starter", env)
        try:
            stack.wait_healthy()
            created = httpx.post(
                f"{stack.url}/v1/prompts", json={"prompt": SEED_PROMPT, "variables": SEED_VARIABLES}
            )
            assert created.status_code == 200, created.text
            prompt_id = created.json()["prompt_id"]
            fetched = httpx.get(f"{stack.url}/v1/prompts/{prompt_id}")
            with sqlite3.connect(tmp_path / "store" / "kvstore.db") as db:
                rows = dict(
                    db.execute(
                        "SELECT key, value FROM kvstore WHERE key LIKE 'prompts:v1:%'"
                    ).fetchall()
                )
        finally:
            elapsed = stack.stop(signal.SIGTERM)

    assert fetched.json() == created.json()
    assert list(created.json()) == ["prompt", "version", "prompt_id", "variables", "is_default"]
    assert rows[f"prompts:v1:{prompt_id}:default"] == "1"
    assert json.loads(rows[f"prompts:v1:{prompt_id}:1"]) == {
        "prompt_id": prompt_id,
        "prompt": SEED_PROMPT,
        "version": 1,
        "variables": SEED_VARIABLES,
        "is_default": False,
    }
    assert elapsed < 5
    log = stack.log.read_text()
    assert "Using run configuration: " in log and "starter/run.yaml" in log
    assert f"Listening on http://127.0.0.1:{stack.port}" in log
    assert "api_key: '********'" in log
    assert "sk-never-logged-123" not in log


def test_openai_sdk_lists_chats_streams_and_embeds(tmp_path, fake):
    config = write_run_config(tmp_path, [provider_entry("remote::ollama", fake.base_url)])
    stack = StackProcess(tmp_path, str(config), stack_env(tmp_path))
    try:
        stack.wait_healthy()
        client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="x", max_retries=0)
        models = {m.id: m for m in client.models.list()}
        chat = client.chat.completions.create(
            model="ollama/llama3.2:3b", messages=[{"role": "user", "content": "one two three"}]
        )
        arrivals = []
        chunks = []
        for chunk in client.chat.completions.create(
            model="ollama/llama3.2:3b",
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
        ):
            arrivals.append(time.monotonic())
            chunks.append(chunk)
        embedded = client.embeddings.create(model="ollama/all-minilm:l6-v2", input=["a", "b"])
        with pytest.raises(openai.NotFoundError) as not_found:
            client.chat.completions.create(model="nosuch/model", messages=[{"role": "user"}])
    finally:
        elapsed = stack.stop(signal.SIGINT)

    assert models["ollama/all-minilm:l6-v2"].model_extra["model_type"] == "embedding"
    assert chat.model == "ollama/llama3.2:3b"
    assert chat.choices[0].message.content == "You said: one two three"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: one two three"
    assert {c.model for c in chunks} == {"ollama/llama3.2:3b"}
    # The fake waits 0.1 s between chunks: chunks arriving spread out proves no buffering.
    assert arrivals[-1] - arrivals[0] >= 0.1 * (len(chunks) - 2)
    assert [len(d.embedding) for d in embedded.data] == [384, 384]
    assert "Model 'nosuch/model' not found" in str(not_found.value)
    assert elapsed < 5


def test_server_port_and_host_of_the_run_config_apply_without_flags(tmp_path):
    port = free_port()
    config = write_run_config(tmp_path, [])
    data = yaml.safe_load(config.read_text())
    data["server"] = {"port": port, "host": "localhost"}
    config.write_text(yaml.safe_dump(data))

    stack = StackProcess(tmp_path, str(config), stack_env(tmp_path), port=port)
    try:
        stack.wait_healthy()
    finally:
        stack.stop()

    assert f"Listening on http://localhost:{port}" in stack.log.read_text()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "stack", "run", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_unknown_distribution_is_one_clean_error(tmp_path):
    result = run_cli("nope", env=stack_env(tmp_path))

    assert result.returncode == 1
    assert result.stderr.startswith("harness: error: run configuration 'nope' not found")
    assert "Traceback" not in result.stderr


def test_broken_yaml_is_one_clean_error_with_the_line(tmp_path):
    broken = tmp_path / "run.yaml"
    broken.write_text("version: 2\nimage_name: x\nproviders: {inference: [\n")

    result = run_cli(str(broken), env=stack_env(tmp_path))

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{broken}: line 4" in result.stderr


def test_bad_llama_stack_port_is_a_clean_error(tmp_path):
    result = run_cli("starter", env=stack_env(tmp_path, LLAMA_STACK_PORT="eighty"))

    assert result.returncode == 1
    assert "LLAMA_STACK_PORT must be a port number, got 'eighty'" in result.stderr
