"""`--stack-config` parsing: one dataclass per form, one error listing all five forms."""

from __future__ import annotations

import pytest

from harness.stack.run_config import StackConfigError
from harness.targets import (
    LibraryTarget,
    ProvidersTarget,
    ServerTarget,
    UrlTarget,
    parse_stack_config,
)


def test_server_form_uses_llama_stack_port_when_set():
    assert parse_stack_config("server:starter", env={"LLAMA_STACK_PORT": "9000"}) == ServerTarget(
        config="starter", port=9000
    )


def test_server_form_uses_ogx_port_when_llama_stack_port_is_unset():
    assert parse_stack_config("server:starter", env={"OGX_PORT": "9001"}).port == 9001
    blank = {"LLAMA_STACK_PORT": " ", "OGX_PORT": "9001"}  # a blank variable is an unset one
    assert parse_stack_config("server:starter", env=blank).port == 9001


def test_llama_stack_port_wins_over_ogx_port():
    env = {"LLAMA_STACK_PORT": "9000", "OGX_PORT": "9001"}
    assert parse_stack_config("server:starter", env=env).port == 9000


def test_server_form_defaults_to_port_8321():
    assert parse_stack_config("server:starter", env={}) == ServerTarget("starter", 8321)


def test_server_form_with_port_overrides_the_environment():
    target = parse_stack_config("server:starter:8322", env={"LLAMA_STACK_PORT": "9000"})
    assert target == ServerTarget("starter", 8322)
    assert target.base_url == "http://127.0.0.1:8322"


def test_server_form_accepts_a_run_yaml_path():
    assert parse_stack_config("server:./ci/run.yaml:8400", env={}) == ServerTarget(
        "./ci/run.yaml", 8400
    )


@pytest.mark.parametrize("url", ["http://localhost:8321", "https://stack.example.com/"])
def test_url_form_is_kept_without_trailing_slash(url):
    assert parse_stack_config(url, env={}) == UrlTarget(url.rstrip("/"))


def test_distribution_name_is_library_mode():
    assert parse_stack_config("starter", env={}) == LibraryTarget("starter")


def test_run_yaml_path_is_library_mode():
    assert parse_stack_config("configs/run.yaml", env={}) == LibraryTarget("configs/run.yaml")


def test_provider_pairs_are_library_mode_with_spaces_removed():
    assert parse_stack_config("inference=ollama, prompts=kv_sqlite", env={}) == ProvidersTarget(
        "inference=ollama,prompts=kv_sqlite"
    )


def test_provider_pairs_accept_full_provider_types():
    assert parse_stack_config("inference=remote::ollama", env={}) == ProvidersTarget(
        "inference=remote::ollama"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "it is empty"),
        ("server:", "the config after 'server:' is empty"),
        ("server::8321", "the config after 'server:' is empty"),
        ("server:starter:99999", "'99999' is not a port number"),
        ("ftp://host:21", "scheme 'ftp' is not supported"),
        ("http://", "the URL has no host"),
        ("localhost:8321", "neither 'server:...', a URL, nor an existing file"),
        ("inference=", "'inference=' is not an <api>=<provider> pair"),
        ("inference=ollama,inference=openai", "API 'inference' is given more than once"),
        ("http//bad", "looks like a URL but is not one; write http://host:port"),
        ("https:/host:8321", "looks like a URL but is not one"),
    ],
)
def test_malformed_value_names_the_reason_and_lists_the_five_forms(value, reason):
    with pytest.raises(StackConfigError) as caught:
        parse_stack_config(value, env={})

    message = str(caught.value)
    assert reason in message
    for example in (
        "server:starter",
        "server:starter:8322",
        "http://localhost:8321",
        "./run.yaml",
        "inference=ollama,prompts=kv_sqlite",
    ):
        assert example in message


def test_bad_llama_stack_port_is_named():
    with pytest.raises(StackConfigError, match="LLAMA_STACK_PORT 'abc' is not a port number"):
        parse_stack_config("server:starter", env={"LLAMA_STACK_PORT": "abc"})


def test_bad_ogx_port_is_named():
    with pytest.raises(StackConfigError, match="OGX_PORT 'abc' is not a port number"):
        parse_stack_config("server:starter", env={"OGX_PORT": "abc"})


def test_a_malformed_value_names_the_variable_it_came_from():
    with pytest.raises(StackConfigError, match=r"^OGX_CONFIG='server:' is not valid: the config"):
        parse_stack_config("server:", env={}, source="OGX_CONFIG")


def test_server_form_with_a_non_numeric_port_names_the_port():
    with pytest.raises(StackConfigError, match="the port 'notaport' after the config"):
        parse_stack_config("server:starter:notaport", env={})


def test_server_form_keeps_a_run_yaml_path_that_contains_a_colon(tmp_path):
    run_yaml = tmp_path / "a:b.yaml"
    run_yaml.write_text("version: 2\n")

    target = parse_stack_config(f"server:{run_yaml}", env={})

    assert target == ServerTarget(config=str(run_yaml), port=8321)
