"""Every error rule of the Prompts API, with the status codes and messages of the stack that
runs: Llama Stack's, or OGX's where they differ (`PROMPT_WIRE` in tests/integration/wire.py)."""

from __future__ import annotations

import pytest

from tests.integration.wire import (
    error_message,
    prompt_wire,
    set_default_version,
    update_prompt,
    validation_errors,
)


@pytest.fixture
def prompt_id(http_client):
    response = http_client.post("/v1/prompts", json={"prompt": "x {{a}}", "variables": ["a"]})
    return response.json()["prompt_id"]


def test_undeclared_placeholder_is_rejected_naming_it(http_client):
    response = http_client.post(
        "/v1/prompts", json={"prompt": "Hello {{name}} {{undeclared}}", "variables": ["name"]}
    )

    assert response.status_code == 400
    message = validation_errors(response)[0]["msg"]
    assert message.endswith("Prompt contains undeclared variables: ['undeclared']")


def test_missing_prompt_field_is_a_validation_error(http_client):
    response = http_client.post("/v1/prompts", json={"variables": ["name"]})

    assert response.status_code == 400
    error = validation_errors(response)[0]
    assert error["loc"] == ["body", "prompt"]
    assert error["type"] == "missing"


def test_body_that_is_not_json_is_rejected(http_client):
    response = http_client.post(
        "/v1/prompts", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert validation_errors(response)[0]["type"] == "json_invalid"


def test_update_of_a_stale_version_names_the_latest(http_client, prompt_id):
    update_prompt(http_client, prompt_id, prompt="v2", version=1)

    response = update_prompt(http_client, prompt_id, prompt="v3", version=1)

    assert response.status_code == 400
    expected = prompt_wire(http_client).text(
        "stale_version", prompt_id=prompt_id, version=1, latest=2
    )
    assert error_message(response) == expected


def test_update_needs_a_version(http_client, prompt_id):
    response = update_prompt(http_client, prompt_id, prompt="x")

    assert response.status_code == 400
    assert validation_errors(response)[0]["loc"] == ["body", "version"]


def test_version_zero_is_rejected(http_client, prompt_id):
    response = update_prompt(http_client, prompt_id, prompt="x", version=0)

    assert response.status_code == 400
    assert error_message(response) == prompt_wire(http_client).text("version_below_one", version=0)


def test_unknown_version_is_not_found(http_client, prompt_id):
    wire = prompt_wire(http_client)

    response = http_client.get(f"/v1/prompts/{prompt_id}", params={"version": 9})

    assert response.status_code == wire.not_found
    assert error_message(response) == wire.text("unknown_version", prompt_id=prompt_id, version=9)


def test_unknown_prompt_is_not_found(http_client):
    wire = prompt_wire(http_client)

    response = http_client.get("/v1/prompts/pmpt_doesnotexist")

    assert response.status_code == wire.not_found
    assert error_message(response) == wire.text("unknown_prompt", prompt_id="pmpt_doesnotexist")


def test_non_integer_version_query_is_a_validation_error(http_client, prompt_id):
    response = http_client.get(f"/v1/prompts/{prompt_id}", params={"version": "abc"})

    assert response.status_code == 400
    assert validation_errors(response)[0]["type"] == "int_parsing"


def test_set_default_to_a_missing_version_is_rejected(http_client, prompt_id):
    wire = prompt_wire(http_client)

    response = set_default_version(http_client, prompt_id, 7)

    assert response.status_code == wire.not_found
    expected = wire.text("missing_default_version", prompt_id=prompt_id, version=7)
    assert error_message(response) == expected


def test_delete_of_an_unknown_prompt_is_rejected(http_client):
    wire = prompt_wire(http_client)

    response = http_client.delete("/v1/prompts/pmpt_doesnotexist")

    assert response.status_code == wire.not_found
    assert error_message(response) == wire.text("unknown_prompt", prompt_id="pmpt_doesnotexist")
