"""The small stack project the plugin's end-to-end tests build with pytester.

A run.yaml for the fake Ollama-wire provider with its sqlite stores in a temporary directory,
and a test module using the plugin's fixtures.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from harness.environment import HARNESS_VARIABLES

# Every variable the harness reads: an inner session runs without any of them.
HARNESS_ENV = HARNESS_VARIABLES

OLLAMA_PROVIDER = """\
    - provider_id: ollama
      provider_type: remote::ollama
      config:
        url: ${env.OLLAMA_URL}
"""


def run_yaml(providers: str) -> str:
    """A run config with these inference provider entries and sqlite stores in SQLITE_STORE_DIR."""
    return RUN_YAML_HEAD + providers + STORAGE


RUN_YAML_HEAD = """\
version: 2
image_name: plugin-test
apis: [inference, prompts]
providers:
  inference:
"""
STORAGE = """\
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
RUN_YAML = run_yaml(OLLAMA_PROVIDER)

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


def recordings(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.json") if not p.name.startswith("."))


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()
