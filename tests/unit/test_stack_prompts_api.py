"""The Prompts API over HTTP: routes, status codes and both error envelopes."""

from __future__ import annotations

import pytest

from tests.support.stack import stack_client


@pytest.fixture
def client(tmp_path):
    with stack_client(tmp_path, []) as client:
        yield client


@pytest.fixture
def pid(client):
    response = client.post("/v1/prompts", json={"prompt": "Hi {{ name }}", "variables": ["name"]})
    assert response.status_code == 200, response.text
    return response.json()["prompt_id"]


def test_empty_list(client):
    assert client.get("/v1/prompts").json() == {"data": []}


def test_create_and_get_return_the_same_resource(client, pid):
    fetched = client.get(f"/v1/prompts/{pid}").json()

    assert fetched == {
        "prompt": "Hi {{ name }}",
        "version": 1,
        "prompt_id": pid,
        "variables": ["name"],
        "is_default": False,
    }


def test_unknown_body_fields_are_ignored(client):
    assert client.post("/v1/prompts", json={"prompt": "x", "foo": 1}).status_code == 200


def test_undeclared_variable_is_400_in_the_detail_envelope(client):
    response = client.post("/v1/prompts", json={"prompt": "{{a}} {{b}}", "variables": ["a"]})

    assert response.status_code == 400
    assert response.json()["detail"] == (
        {
            "errors": [
                {
                    "loc": [],
                    "msg": "Value error, Prompt contains undeclared variables: ['b']",
                    "type": "value_error",
                }
            ]
        }
    )


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({"variables": ["a"]}, ["body", "prompt"], "missing"),
        ({"prompt": "x", "variables": "abc"}, ["body", "variables"], "list_type"),
    ],
)
def test_body_validation_errors_use_the_error_envelope(client, body, loc, kind):
    response = client.post("/v1/prompts", json=body)

    assert response.status_code == 400
    (error,) = response.json()["error"]["detail"]["errors"]
    assert (error["loc"], error["type"]) == (loc, kind)
    assert set(error) == {"loc", "msg", "type"}


def test_body_that_is_not_json_is_json_invalid(client):
    response = client.post(
        "/v1/prompts", content=b"{nope", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["detail"]["errors"][0]["msg"] == "JSON decode error"


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_update_by_post_or_put(client, pid, method):
    response = client.request(
        method, f"/v1/prompts/{pid}", json={"prompt": "v2 {{x}}", "version": 1, "variables": ["x"]}
    )

    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2


def test_update_errors(client, pid):
    client.post(f"/v1/prompts/{pid}", json={"prompt": "v2", "version": 1})

    stale = client.post(f"/v1/prompts/{pid}", json={"prompt": "v3", "version": 1})
    zero = client.post(f"/v1/prompts/{pid}", json={"prompt": "v3", "version": 0})
    no_version = client.post(f"/v1/prompts/{pid}", json={"prompt": "v3"})
    unknown = client.post("/v1/prompts/pmpt_doesnotexist", json={"prompt": "x", "version": 1})

    assert stale.json()["detail"] == (
        f"Invalid value: '1' is not the latest prompt version for prompt_id='{pid}'. "
        "Use the latest version '2' in request."
    )
    assert zero.json()["detail"] == "Invalid value: Version must be >= 1"
    assert no_version.json()["error"]["detail"]["errors"][0]["loc"] == ["body", "version"]
    assert unknown.json()["detail"] == "Invalid value: Prompt pmpt_doesnotexist not found"
    assert {r.status_code for r in (stale, zero, no_version, unknown)} == {400}


def test_get_errors(client, pid):
    missing_version = client.get(f"/v1/prompts/{pid}", params={"version": 9})
    bad_version = client.get(f"/v1/prompts/{pid}", params={"version": "abc"})
    missing = client.get("/v1/prompts/pmpt_doesnotexist")
    no_versions = client.get("/v1/prompts/pmpt_doesnotexist/versions")

    assert missing_version.json()["detail"] == f"Invalid value: Prompt {pid}:9 not found"
    assert bad_version.json()["error"]["detail"]["errors"][0] == {
        "loc": ["query", "version"],
        "msg": "Input should be a valid integer, unable to parse string as an integer",
        "type": "int_parsing",
    }
    assert missing.json()["detail"] == "Invalid value: Prompt pmpt_doesnotexist:default not found"
    assert no_versions.json()["detail"] == "Invalid value: Prompt pmpt_doesnotexist not found"
    assert {r.status_code for r in (missing_version, bad_version, missing, no_versions)} == {400}


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_set_default_version(client, pid, method):
    client.post(f"/v1/prompts/{pid}", json={"prompt": "v2", "version": 1})

    moved = client.request(method, f"/v1/prompts/{pid}/set-default-version", json={"version": 1})
    missing = client.post(f"/v1/prompts/{pid}/set-default-version", json={"version": 7})

    assert moved.status_code == 200 and moved.json()["version"] == 1
    versions = client.get(f"/v1/prompts/{pid}/versions").json()["data"]
    assert [(v["version"], v["is_default"]) for v in versions] == [(1, True), (2, False)]
    assert missing.status_code == 400
    assert missing.json()["detail"] == f"Invalid value: Prompt {pid} version 7 not found"


def test_delete_is_204_with_empty_body_then_not_found(client, pid):
    deleted = client.delete(f"/v1/prompts/{pid}")
    again = client.delete(f"/v1/prompts/{pid}")

    assert (deleted.status_code, deleted.content) == (204, b"")
    assert again.status_code == 400
    assert again.json()["detail"] == f"Invalid value: Prompt {pid}:default not found"


def test_unknown_path_and_wrong_method(client):
    assert client.get("/v1/nothing").json() == {"detail": "Not Found"}
    wrong = client.patch("/v1/prompts")
    assert (wrong.status_code, wrong.json()) == (405, {"detail": "Method Not Allowed"})


def test_a_lone_surrogate_is_rejected_before_anything_is_written(client, pid):
    # JSON can carry an escaped lone surrogate; no text store can keep it.
    response = client.post(
        "/v1/prompts",
        content=b'{"prompt": "\\ud800 x"}',
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 400, response.text
    error = response.json()["error"]["detail"]["errors"][0]
    assert error["loc"] == ["body", "prompt"] and error["type"] == "string_unicode"
    assert [p["prompt_id"] for p in client.get("/v1/prompts").json()["data"]] == [pid]


def test_an_unreadable_row_breaks_neither_the_listing_nor_its_own_delete(client, pid, tmp_path):
    import sqlite3

    bad = "pmpt_" + "f" * 48
    with sqlite3.connect(tmp_path / "kvstore.db") as db:  # a row an older version left behind
        db.execute(
            "INSERT INTO kvstore (key, value) VALUES (?, ?), (?, ?)",
            (
                f"prompts:v1:{bad}:1",
                '{"prompt": "\\ud800", "version": 1}',
                f"prompts:v1:{bad}:default",
                "1",
            ),
        )

    listed = client.get("/v1/prompts")
    assert listed.status_code == 200, listed.text
    assert [p["prompt_id"] for p in listed.json()["data"]] == [pid]
    assert client.delete(f"/v1/prompts/{bad}").status_code == 204
    with sqlite3.connect(tmp_path / "kvstore.db") as db:
        assert db.execute(
            "SELECT count(*) FROM kvstore WHERE key LIKE ?", (f"%{bad}%",)
        ).fetchone() == (0,)


def test_version_zero_is_not_the_default_and_true_is_not_a_version(client, pid):
    zero = client.get(f"/v1/prompts/{pid}", params={"version": 0})
    assert zero.status_code == 400
    assert zero.json()["detail"] == f"Invalid value: Prompt {pid}:0 not found"

    for body in ({"prompt": "v2", "version": True}, {"version": True}):
        path = (
            f"/v1/prompts/{pid}" if "prompt" in body else f"/v1/prompts/{pid}/set-default-version"
        )
        response = client.post(path, json=body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["detail"]["errors"][0]["loc"] == ["body", "version"]
    assert client.get(f"/v1/prompts/{pid}").json()["version"] == 1
