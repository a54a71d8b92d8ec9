"""Fixtures the integration suite adds on top of the harness plugin's."""

from __future__ import annotations

import pytest

from harness.stack.run_config import PromptsLocation, prompts_location, stack_flavour


@pytest.fixture
def stored_prompts(stack_run_config, http_client) -> PromptsLocation:
    """Where the stack in use keeps its prompts: its run config read as that stack reads it.

    Llama Stack (and the reference stack) keep a KV prompts store in `kvstore`; OGX moves it to
    a SQL table when the config loads. Which stack runs is what `GET /v1/version` says.
    """
    if stack_run_config is None:
        pytest.skip("the stack's run config is not readable here: its prompts store is unknown")
    answer = http_client.get("/v1/version")
    assert answer.status_code == 200, answer.text
    return prompts_location(stack_run_config, stack_flavour(answer.json()["version"]))
