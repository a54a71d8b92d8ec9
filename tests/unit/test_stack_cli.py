"""`harness stack run` argument handling and the logged run configuration."""

from __future__ import annotations

import argparse

import pytest

from harness.stack.cli import loggable_config, register, resolve_host, resolve_port
from harness.stack.run_config import StackConfigError, load_run_config


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["stack", "run", *argv])


def test_port_comes_from_flag_then_env_then_8321():
    assert resolve_port(9000, {"LLAMA_STACK_PORT": "9100"}) == 9000
    assert resolve_port(None, {"LLAMA_STACK_PORT": "9100"}) == 9100
    assert resolve_port(None, {}) == 8321


def test_run_config_port_comes_after_flag_and_env_and_before_8321():
    assert resolve_port(9000, {"LLAMA_STACK_PORT": "9100"}, config_port=9200) == 9000
    assert resolve_port(None, {"LLAMA_STACK_PORT": "9100"}, config_port=9200) == 9100
    assert resolve_port(None, {}, config_port=9200) == 9200
    assert resolve_port(None, {}, config_port=None) == 8321


def test_host_comes_from_an_explicit_flag_then_the_run_config_then_loopback():
    explicit = parse("starter", "--host", "127.0.0.1")
    absent = parse("starter")

    assert (explicit.host_given, absent.host_given) == (True, False)
    assert resolve_host("127.0.0.1", config_host="0.0.0.0") == "127.0.0.1"
    assert resolve_host(None, config_host="0.0.0.0") == "0.0.0.0"
    assert resolve_host(None, config_host=None) == "127.0.0.1"


def test_non_numeric_port_env_is_a_config_error():
    with pytest.raises(StackConfigError, match="LLAMA_STACK_PORT must be a port number"):
        resolve_port(None, {"LLAMA_STACK_PORT": "x"})


def test_run_parses_config_port_and_host():
    args = parse("starter", "--port", "8400", "--host", "0.0.0.0")

    assert (args.config, args.port, args.host) == ("starter", 8400, "0.0.0.0")
    assert parse("starter").host == "127.0.0.1"


def test_logged_config_redacts_secrets_and_drops_disabled_providers(tmp_path):
    config = load_run_config(
        "starter", env={"OPENAI_API_KEY": "sk-hidden-1234", "SQLITE_STORE_DIR": str(tmp_path)}
    )

    text = loggable_config(config)

    assert "sk-hidden-1234" not in text
    assert "api_key: '********'" in text
    assert "remote::openai" in text
    assert "remote::ollama" not in text and "remote::vllm" not in text
