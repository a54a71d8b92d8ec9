"""OGX's run-config layout: `distro_name`, a SQL prompts store, and where each stack keeps the
prompts of a run config (`prompts_location`)."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from harness.stack.app import create_app
from harness.stack.run_config import (
    PromptsLocation,
    SqlStoreRef,
    StackConfigError,
    load_run_config,
    prompts_location,
    stack_flavour,
)
from tests.support.stack_process import StackProcess, stack_env

# What an OGX 1.5.0 user writes: distro_name, TLS waived, an explicit apis list, prompts in SQL.
OGX_RUN_YAML = """
version: 2
distro_name: ogx-check
apis: [inference, prompts]
providers:
  inference:
  - provider_id: openai
    provider_type: remote::openai
    config: {api_key: "${env.OPENAI_API_KEY:=}", base_url: "http://127.0.0.1:9/v1"}
server: {insecure: true}
storage:
  backends:
    kv_default: {type: kv_sqlite, db_path: "${env.SQLITE_STORE_DIR}/kvstore.db"}
    sql_default: {type: sql_sqlite, db_path: "${env.SQLITE_STORE_DIR}/sql_store.db"}
  stores:
    metadata: {namespace: registry, backend: kv_default}
    inference: {table_name: inference_store, backend: sql_default}
    conversations: {table_name: openai_conversations, backend: sql_default}
    prompts: {table_name: prompts, backend: sql_default}
"""
KV_PROMPTS = "prompts: {table_name: prompts, backend: sql_default}"


def load(tmp_path: Path, text: str = OGX_RUN_YAML):
    path = tmp_path / "run.yaml"
    path.write_text(textwrap.dedent(text))
    return load_run_config(path, env={"SQLITE_STORE_DIR": str(tmp_path)})


def test_an_ogx_config_loads_with_its_sql_prompts_store(tmp_path):
    config = load(tmp_path)

    assert config.image_name == "ogx-check"
    assert config.storage.stores["prompts"] == SqlStoreRef("sql_default", "prompts")
    assert config.sql_store_path("prompts") == tmp_path / "sql_store.db"


def test_distro_name_wins_over_image_name_as_in_ogx(tmp_path):
    config = load(tmp_path, OGX_RUN_YAML.replace("distro_name:", "image_name: old\ndistro_name:"))

    assert config.image_name == "ogx-check"


@pytest.mark.parametrize(
    ("prompts", "flavour", "expected"),
    [
        ("prompts: {namespace: prompts, backend: kv_default}", "llama-stack", ("kv", "kvstore")),
        ("prompts: {namespace: prompts, backend: kv_default}", "ogx", ("sql", "sql_store")),
        ("prompts: {table_name: mine, backend: sql_default}", "llama-stack", ("sql", "sql_store")),
        ("prompts: {table_name: mine, backend: sql_default}", "ogx", ("sql", "sql_store")),
    ],
)
def test_prompts_location_is_where_each_stack_writes(tmp_path, prompts, flavour, expected):
    config = load(tmp_path, OGX_RUN_YAML.replace(KV_PROMPTS, prompts))

    location = prompts_location(config, flavour)

    kind, stem = expected
    if kind == "kv":
        assert location == PromptsLocation("kv", tmp_path / "kvstore.db", key_prefix="prompts:v1:")
    else:  # the table is `prompts` whatever table_name or namespace says, as in OGX
        assert location == PromptsLocation("sql", tmp_path / f"{stem}.db", table="prompts")


def test_ogx_moves_a_kv_store_on_kv_x_to_sql_x(tmp_path):
    text = OGX_RUN_YAML.replace(KV_PROMPTS, "prompts: {namespace: p, backend: kv_main}").replace(
        "  stores:",
        '    kv_main: {type: kv_sqlite, db_path: "${env.SQLITE_STORE_DIR}/main.kv"}\n'
        '    sql_main: {type: sql_sqlite, db_path: "${env.SQLITE_STORE_DIR}/main.sql"}\n  stores:',
    )

    location = prompts_location(load(tmp_path, text), "ogx")

    assert location == PromptsLocation("sql", tmp_path / "main.sql", table="prompts")


def test_ogx_moving_prompts_to_an_undefined_backend_names_the_file(tmp_path):
    text = OGX_RUN_YAML.replace(KV_PROMPTS, "prompts: {namespace: p, backend: kv_main}").replace(
        "  stores:",
        '    kv_main: {type: kv_sqlite, db_path: "${env.SQLITE_STORE_DIR}/m.kv"}\n  stores:',
    )
    config = load(tmp_path, text)

    with pytest.raises(StackConfigError) as caught:
        prompts_location(config, "ogx")

    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'run.yaml'}: storage.stores.prompts.backend:")
    assert "to the SQL backend 'sql_main', but storage.backends does not define it" in message
    assert prompts_location(config, "llama-stack").db_path == tmp_path / "m.kv"


def test_an_unknown_flavour_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown stack flavour 'vllm'"):
        prompts_location(load(tmp_path), "vllm")


@pytest.mark.parametrize(
    ("version", "flavour"),
    [
        ("1.5.0", "ogx"),
        ("2.0.0rc1", "ogx"),
        ("0.7.3", "llama-stack"),
        ("0.4.0.dev0", "llama-stack"),
    ],
)
def test_the_version_tells_the_flavour(version, flavour):
    assert stack_flavour(version) == flavour


def test_a_version_that_is_not_one_is_refused():
    with pytest.raises(ValueError, match="not a stack version: 'latest'"):
        stack_flavour("latest")


def test_the_reference_stack_reads_as_llama_stack_and_keeps_sql_prompts_where_ogx_does(tmp_path):
    config = load(tmp_path)
    with TestClient(create_app(config)) as client:
        flavour = stack_flavour(client.get("/v1/version").json()["version"])
        created = client.post("/v1/prompts", json={"prompt": "Hi {{n}}", "variables": ["n"]})
        assert created.status_code == 200, created.text
    pid = created.json()["prompt_id"]

    location = prompts_location(config, flavour)
    with sqlite3.connect(location.db_path) as db:
        stored = db.execute(
            f"SELECT version, is_default, prompt_data FROM {location.table} WHERE prompt_id = ?",
            (pid,),
        ).fetchall()

    assert flavour == "llama-stack"
    assert stored == [(1, 1, json.dumps({"prompt": "Hi {{n}}", "variables": ["n"]}))]
    assert not (tmp_path / "kvstore.db").exists()  # no prompt went to a KV store


def test_harness_stack_run_serves_an_ogx_config_from_its_sql_prompts_store(tmp_path):
    config_path = tmp_path / "run.yaml"
    config_path.write_text(OGX_RUN_YAML)
    env = stack_env(tmp_path)
    stack = StackProcess(tmp_path, str(config_path), env)
    try:
        stack.wait_healthy()
        created = httpx.post(
            f"{stack.url}/v1/prompts", json={"prompt": "Hi {{n}}", "variables": ["n"]}
        )
        version = httpx.get(f"{stack.url}/v1/version").json()["version"]
    finally:
        stack.stop()

    assert created.status_code == 200, created.text
    config = load_run_config(config_path, env=env)
    location = prompts_location(config, stack_flavour(version))
    assert location.db_path == tmp_path / "store" / "sql_store.db"
    with sqlite3.connect(location.db_path) as db:
        assert db.execute(
            f"SELECT version, is_default FROM {location.table} WHERE prompt_id = ?",
            (created.json()["prompt_id"],),
        ).fetchall() == [(1, 1)]
