"""Env substitution in run configs, form by form, as Llama Stack's replace_env_vars does it."""

from __future__ import annotations

import os

import pytest

from harness.stack.envsubst import EnvVarError, substitute_env


def sub(value, **env):
    return substitute_env(value, env)


def test_bare_variable_takes_the_value():
    assert sub("${env.FOO}", FOO="bar") == "bar"


@pytest.mark.parametrize("env", [{}, {"FOO": ""}])
def test_bare_variable_unset_or_empty_names_variable_and_key_path(env):
    with pytest.raises(EnvVarError) as caught:
        substitute_env({"providers": {"inference": [{"config": {"url": "${env.FOO}"}}]}}, env)

    message = str(caught.value)
    assert "'FOO' not set or empty at providers.inference[0].config.url" in message
    assert "${env.FOO:=default_value}" in message


def test_default_applies_when_unset_or_empty():
    assert sub("${env.FOO:=fallback}") == "fallback"
    assert sub("${env.FOO:=fallback}", FOO="") == "fallback"
    assert sub("${env.FOO:=fallback}", FOO="set") == "set"


def test_empty_default_becomes_none():
    assert sub("${env.FOO:=}") is None


def test_plus_form_gives_value_only_when_set():
    assert sub("${env.FOO:+ollama}", FOO="http://x") == "ollama"
    assert sub("${env.FOO:+ollama}") is None
    assert sub("${env.FOO:+}", FOO="x") is None


def test_zero_counts_as_set():
    assert sub("${env.FOO:+on}", FOO="0") == "on"


def test_substituted_values_are_converted_to_bool_int_float():
    assert sub("${env.P:=8321}") == 8321
    assert sub("${env.B:=false}") is False
    assert sub("${env.B:=TRUE}") is True
    assert sub("${env.NUM}", NUM="42") == 42
    assert sub("${env.F:=0.5}") == 0.5


def test_literal_strings_without_substitution_stay_strings():
    assert sub("8080") == "8080"
    assert sub("true") == "true"
    assert sub("~/not/expanded") == "~/not/expanded"


def test_several_occurrences_and_surrounding_text():
    assert sub("prefix-${env.A}-${env.B:=b}-suffix", A="a") == "prefix-a-b-suffix"


def test_default_may_contain_a_colon():
    assert sub("${env.UNSET:=a:b}") == "a:b"


def test_tilde_in_a_substituted_value_is_expanded():
    assert sub("${env.DIR:=~/.llama/d}/kv.db") == os.path.expanduser("~/.llama/d") + "/kv.db"


@pytest.mark.parametrize(
    "literal", ["${env.lower:=x}", "${env.UNSET:-x}", "${env.INFERENCE_MODEL:__disabled__}"]
)
def test_forms_outside_the_grammar_stay_literal(literal):
    assert sub(literal) == literal


def test_provider_resolving_to_disabled_is_dropped_without_expanding_its_config():
    entries = [
        {"provider_id": "${env.X:=__disabled__}", "config": {"url": "${env.MISSING}"}},
        {"provider_id": "kept", "config": {}},
    ]

    assert sub(entries) == [{"provider_id": "kept", "config": {}}]


def test_provider_resolving_to_none_is_kept_and_its_config_still_expanded():
    entries = [
        {"provider_id": "${env.OLLAMA_URL:+ollama}", "config": {"url": "${env.U:=http://h}"}}
    ]

    assert sub(entries) == [{"provider_id": None, "config": {"url": "http://h"}}]


def test_bare_variable_inside_a_provider_disabled_by_plus_still_fails():
    entries = [{"provider_id": "${env.OLLAMA_URL:+ollama}", "config": {"url": "${env.REQUIRED}"}}]

    with pytest.raises(EnvVarError, match=r"'REQUIRED'.*\[0\]\.config\.url"):
        sub(entries)


def test_non_string_scalars_pass_through():
    assert sub({"a": 1, "b": None, "c": [True, 2.5]}) == {"a": 1, "b": None, "c": [True, 2.5]}
