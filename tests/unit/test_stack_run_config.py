"""run.yaml loading: the starter distribution, defaults, and every config error."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from harness.stack.run_config import (
    SqlStoreRef,
    StackConfigError,
    known_apis,
    load_run_config,
    resolve_run_config_path,
    run_config_from_providers,
)

MINIMAL = """
version: 2
image_name: mini
providers:
  inference:
    - provider_id: ollama
      provider_type: remote::ollama
      config: {url: "http://127.0.0.1:1"}
storage:
  backends:
    kv_default: {type: kv_sqlite, db_path: /kv.db}
    sql_default: {type: sql_sqlite, db_path: /sql.db}
  stores:
    metadata: {backend: kv_default, namespace: registry}
    inference: {backend: sql_default, table_name: inference_store}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def load_error(tmp_path: Path, text: str, env: dict | None = None) -> str:
    path = write(tmp_path, text)
    with pytest.raises(StackConfigError) as caught:
        load_run_config(path, env=env or {})
    message = str(caught.value)
    assert str(path) in message
    return message


def test_starter_without_env_enables_only_openai_and_stores_under_home():
    config = load_run_config("starter", env={})

    enabled = [p.provider_id for p in config.enabled_providers("inference")]
    assert enabled == ["openai"]
    assert config.kv_store_path("prompts") == Path(
        os.path.expanduser("~/.llama/distributions/starter/kvstore.db")
    )
    assert config.storage.stores["prompts"].namespace == "prompts"
    assert config.server_port == 8321


def test_starter_enables_ollama_and_vllm_from_their_env_vars(tmp_path):
    env = {
        "OLLAMA_URL": "http://o:11434",
        "VLLM_URL": "http://v:8000/v1",
        "VLLM_MAX_TOKENS": "99",
        "SQLITE_STORE_DIR": str(tmp_path),
    }

    config = load_run_config("starter", env=env)

    providers = {p.provider_id: p for p in config.enabled_providers("inference")}
    assert set(providers) == {"ollama", "vllm", "openai"}
    assert providers["ollama"].config["url"] == "http://o:11434"
    assert providers["vllm"].config["max_tokens"] == 99
    assert config.kv_store_path("prompts") == tmp_path / "kvstore.db"
    assert config.sql_store_path("inference") == tmp_path / "sql_store.db"


def test_prompts_store_defaults_to_kv_default(tmp_path):
    config = load_run_config(write(tmp_path, MINIMAL), env={})

    prompts = config.storage.stores["prompts"]
    assert (prompts.backend, prompts.namespace) == ("kv_default", "prompts")
    assert config.kv_store_path("prompts") == Path("/kv.db")


def test_unknown_keys_are_ignored(tmp_path):
    text = MINIMAL + "telemetry: {enabled: true}\nvector_stores: {default_provider_id: faiss}\n"

    assert load_run_config(write(tmp_path, text), env={}).image_name == "mini"


def test_inference_store_write_queue_settings_are_accepted_and_ignored(tmp_path):
    text = MINIMAL.replace(
        "table_name: inference_store}",
        "table_name: inference_store, max_write_queue_size: lots, num_writers: 4}",
    )

    config = load_run_config(write(tmp_path, text), env={})

    assert config.storage.stores["inference"] == SqlStoreRef("sql_default", "inference_store")


def test_registered_models_are_read(tmp_path):
    text = MINIMAL + textwrap.dedent(
        """
        registered_resources:
          models:
            - model_id: emb
              provider_id: ollama
              model_type: embedding
              metadata: {embedding_dimension: 8}
        """
    )

    (model,) = load_run_config(write(tmp_path, text), env={}).models

    assert (model.model_id, model.model_type, model.metadata) == (
        "emb",
        "embedding",
        {"embedding_dimension": 8},
    )


def test_yaml_syntax_error_names_the_line(tmp_path):
    message = load_error(tmp_path, "version: 2\nimage_name: x\nproviders: {inference: [\n")

    assert "line 4" in message and "invalid YAML" in message


def test_top_level_must_be_a_mapping(tmp_path):
    assert "expected a mapping at the top level" in load_error(tmp_path, "- a\n- b\n")


@pytest.mark.parametrize(
    ("remove", "path"),
    [
        ("image_name: mini\n", "image_name: missing required key"),
        ("    kv_default: {type: kv_sqlite, db_path: /kv.db}\n", "storage.stores.metadata.backend"),
    ],
)
def test_missing_key_names_its_path(tmp_path, remove, path):
    assert path in load_error(tmp_path, MINIMAL.replace(remove, ""))


def test_missing_storage_is_an_error(tmp_path):
    text = MINIMAL.split("storage:")[0]

    assert "storage: missing required key 'storage'" in load_error(tmp_path, text)


def test_missing_db_path_is_an_error(tmp_path):
    text = MINIMAL.replace("{type: kv_sqlite, db_path: /kv.db}", "{type: kv_sqlite}")

    assert "storage.backends.kv_default.db_path: missing required key" in load_error(tmp_path, text)


def test_wrong_type_names_expected_and_actual(tmp_path):
    text = MINIMAL + "server:\n  port: not-a-port\n"

    message = load_error(tmp_path, text)

    assert "server.port: expected int, got string 'not-a-port'" in message


def test_providers_must_be_a_list(tmp_path):
    text = MINIMAL.replace("  inference:\n", "  inference: {}\n  unused:\n")

    assert "providers.inference" in load_error(tmp_path, text)


def test_unknown_backend_type_lists_valid_ones(tmp_path):
    text = MINIMAL.replace("type: kv_sqlite", "type: kv_etcd")

    message = load_error(tmp_path, text)

    assert "storage.backends.kv_default.type: unsupported backend type 'kv_etcd'" in message
    assert "kv_sqlite" in message and "sql_sqlite" in message


def test_unknown_provider_type_lists_valid_ones(tmp_path):
    text = MINIMAL.replace("remote::ollama", "remote::nope")

    message = load_error(tmp_path, text)

    assert "providers.inference[0].provider_type: unknown provider type 'remote::nope'" in message
    assert "remote::ollama" in message


def test_unknown_api_is_an_error(tmp_path):
    text = MINIMAL.replace("providers:\n", "providers:\n  safety: []\n")

    assert "unknown API 'safety'" in load_error(tmp_path, text)


def test_store_naming_an_undefined_backend(tmp_path):
    text = MINIMAL.replace("metadata: {backend: kv_default", "metadata: {backend: kv_nowhere")

    message = load_error(tmp_path, text)

    assert "metadata references unknown backend 'kv_nowhere'" in message
    assert "['kv_default', 'sql_default']" in message


def test_kv_store_on_a_sql_backend(tmp_path):
    text = MINIMAL.replace("metadata: {backend: kv_default", "metadata: {backend: sql_default")

    message = load_error(tmp_path, text)

    assert "storage.stores.metadata.backend" in message
    assert "of type 'sql_sqlite', but a backend of type kv_* is required" in message


def test_sql_store_on_a_kv_backend(tmp_path):
    text = MINIMAL.replace("inference: {backend: sql_default", "inference: {backend: kv_default")

    assert "a backend of type sql_* is required" in load_error(tmp_path, text)


def test_default_prompts_store_needs_kv_default(tmp_path):
    text = MINIMAL.replace("kv_default", "kv_main")

    assert "prompts references unknown backend 'kv_default'" in load_error(tmp_path, text)


def test_postgres_backend_is_not_supported_when_used(tmp_path):
    text = MINIMAL.replace(
        "  stores:\n",
        "    pg: {type: kv_postgres, user: me}\n"
        "  stores:\n"
        "    prompts: {backend: pg, namespace: p}\n",
    )

    message = load_error(tmp_path, text)

    assert "storage.backends.pg.type: unsupported backend type 'kv_postgres'" in message


@pytest.mark.parametrize("backend_type", ["kv_redis", "kv_postgres", "kv_mongodb", "sql_postgres"])
def test_llama_stack_server_backends_are_rejected_even_when_unused(tmp_path, backend_type):
    text = MINIMAL.replace("  stores:\n", f"    other: {{type: {backend_type}}}\n  stores:\n")

    message = load_error(tmp_path, text)

    assert f"storage.backends.other.type: unsupported backend type '{backend_type}'" in message
    assert "this stack supports: kv_sqlite, sql_sqlite" in message


def test_unset_env_var_names_file_variable_and_key_path(tmp_path):
    text = MINIMAL.replace('"http://127.0.0.1:1"', '"${env.MY_URL}"')

    message = load_error(tmp_path, text)

    assert "'MY_URL' not set or empty at providers.inference[0].config.url" in message


def test_resolve_accepts_an_existing_file(tmp_path):
    path = write(tmp_path, MINIMAL)

    assert resolve_run_config_path(str(path)) == path.resolve()


def test_resolve_accepts_a_distribution_name():
    assert resolve_run_config_path("starter").parts[-2:] == ("starter", "run.yaml")


def test_resolve_unknown_name_lists_known_distributions():
    with pytest.raises(StackConfigError, match=r"'nope' not found.*distribution name: starter"):
        resolve_run_config_path("nope")


def test_providers_spec_builds_a_library_config(tmp_path):
    config = run_config_from_providers(
        "inference=ollama,prompts=kv_sqlite", env={"SQLITE_STORE_DIR": str(tmp_path)}
    )

    (provider,) = config.enabled_providers("inference")
    assert (provider.provider_id, provider.provider_type) == ("ollama", "remote::ollama")
    assert provider.config == {"url": "http://localhost:11434"}
    assert config.kv_store_path("prompts") == tmp_path / "kvstore.db"
    assert set(config.storage.stores) == {"metadata", "inference", "conversations", "prompts"}


def test_providers_spec_accepts_full_provider_types():
    config = run_config_from_providers("inference=remote::openai", env={})

    assert config.enabled_providers("inference")[0].provider_type == "remote::openai"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("safety=llama-guard", "known: inference="), ("inference=bedrock", "unknown provider")],
)
def test_providers_spec_rejects_unknown_api_or_provider(spec, expected):
    with pytest.raises(StackConfigError, match=expected):
        run_config_from_providers(spec, env={})


def test_known_apis_lists_inference_providers():
    assert known_apis()["inference"] == [
        "remote::anthropic",
        "remote::ollama",
        "remote::openai",
        "remote::vllm",
    ]


def test_every_problem_is_named_on_its_own_line(tmp_path):
    text = MINIMAL + "server:\n  port: '8321'\n  host: 127\n"

    lines = load_error(tmp_path, text).splitlines()

    path = str(tmp_path / "run.yaml")
    assert lines == [
        f"{path}: server.port: expected int, got string '8321'",
        f"{path}: server.host: expected string, got int 127",
    ]


def test_a_value_substituted_to_nothing_counts_as_missing(tmp_path):
    text = MINIMAL.replace("db_path: /kv.db", "db_path: '${env.KV_PATH:=}'")

    message = load_error(tmp_path, text)

    assert "storage.backends.kv_default.db_path: missing required key 'db_path'" in message
