"""The stack command template: the fields it may have, and the argv it becomes."""

from __future__ import annotations

import pytest

from harness.stack_command import DEFAULT_STACK_COMMAND, StackCommand, StackCommandError


def test_a_providers_command_serves_the_api_provider_form_and_gets_the_list_as_given():
    command = StackCommand.parse("llama stack run --providers {providers} --port {port}", "flag")

    assert command.serves_providers and not command.reference
    assert command.argv("inference=remote::openai,safety=llama-guard", 8400)[-4:] == [
        "--providers",
        "inference=remote::openai,safety=llama-guard",
        "--port",
        "8400",
    ]


def test_a_config_command_does_not_serve_the_api_provider_form():
    assert not StackCommand.parse("llama stack run {config} --port {port}", "flag").serves_providers
    assert not StackCommand.parse(DEFAULT_STACK_COMMAND, "the default").serves_providers


def test_a_command_with_both_config_and_providers_is_refused_naming_both():
    with pytest.raises(StackCommandError, match=r"both \{config\} and \{providers\}"):
        StackCommand.parse("ogx run {config} --providers {providers} --port {port}", "ini")


def test_an_unknown_field_names_the_three_a_template_may_use():
    with pytest.raises(StackCommandError) as error:
        StackCommand.parse("ogx run {distro} --port {port}", "--stack-command")

    message = str(error.value)
    assert "unknown field(s) ['distro']" in message
    assert "{config}" in message and "{providers}" in message and "{port}" in message
