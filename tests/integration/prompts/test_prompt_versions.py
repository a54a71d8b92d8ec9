"""Versions, the default pointer, listing and deletion."""

from __future__ import annotations

import pytest

from tests.integration.wire import deleted, prompt_wire, set_default_version, update_prompt


@pytest.fixture
def prompt(http_client):
    created = http_client.post(
        "/v1/prompts", json={"prompt": "Hi {{ name }}", "variables": ["name"]}
    )
    assert created.status_code == 200, created.text
    return created.json()


def test_update_writes_the_next_version_and_makes_it_default(http_client, prompt):
    pid = prompt["prompt_id"]

    response = update_prompt(
        http_client, pid, prompt="Hello {{ name }}", version=1, variables=["name"]
    )

    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2
    assert http_client.get(f"/v1/prompts/{pid}").json()["prompt"] == "Hello {{ name }}"
    assert http_client.get(f"/v1/prompts/{pid}", params={"version": 1}).json()["version"] == 1


def test_update_does_not_inherit_variables(http_client, prompt):
    response = update_prompt(http_client, prompt["prompt_id"], prompt="no placeholders", version=1)

    assert response.json()["variables"] == []


def test_update_without_set_as_default_keeps_the_old_default(http_client, prompt):
    pid = prompt["prompt_id"]

    update_prompt(http_client, pid, prompt="draft", version=1, set_as_default=False)

    assert http_client.get(f"/v1/prompts/{pid}").json()["version"] == 1
    versions = http_client.get(f"/v1/prompts/{pid}/versions").json()["data"]
    assert [(v["version"], v["is_default"]) for v in versions] == [(1, True), (2, False)]


def test_set_default_version_moves_the_pointer(http_client, prompt):
    pid = prompt["prompt_id"]
    update_prompt(http_client, pid, prompt="second", version=1)

    response = set_default_version(http_client, pid, 1)

    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1
    assert http_client.get(f"/v1/prompts/{pid}").json()["prompt"] == "Hi {{ name }}"
    versions = http_client.get(f"/v1/prompts/{pid}/versions").json()["data"]
    assert [v["is_default"] for v in versions] == [True, False]


def test_list_shows_each_prompts_default_version_sorted_by_id_descending(http_client, prompt):
    other = http_client.post("/v1/prompts", json={"prompt": "other"}).json()
    update_prompt(http_client, prompt["prompt_id"], prompt="v2", version=1, set_as_default=False)

    listed = http_client.get("/v1/prompts").json()["data"]

    ids = [p["prompt_id"] for p in listed]
    assert ids == sorted(ids, reverse=True)
    by_id = {p["prompt_id"]: p for p in listed}
    assert by_id[prompt["prompt_id"]]["version"] == 1
    assert by_id[other["prompt_id"]]["prompt"] == "other"


def test_delete_removes_every_version(http_client, prompt):
    pid = prompt["prompt_id"]
    update_prompt(http_client, pid, prompt="second", version=1)

    response = http_client.delete(f"/v1/prompts/{pid}")

    assert deleted(response), (response.status_code, response.content)
    missing = http_client.get(f"/v1/prompts/{pid}", params={"version": 2})
    assert missing.status_code == prompt_wire(http_client).not_found
    assert pid not in {p["prompt_id"] for p in http_client.get("/v1/prompts").json()["data"]}
