"""The seed's test plan: create the prompt, read it back, find it in the prompts KV store."""

from __future__ import annotations

import json
import re
import sqlite3

SEED_PROMPT = (
    "Hello {{name}}! You are working at {{company}}. Your role is {{role}} at {{company}}. "
    "Remember, {{name}}, to be {{tone}}."
)
SEED_VARIABLES = ["name", "company", "role", "tone"]


def test_create_returns_version_one_with_a_pmpt_id(http_client):
    response = http_client.post(
        "/v1/prompts", json={"prompt": SEED_PROMPT, "variables": SEED_VARIABLES}
    )

    assert response.status_code == 200, response.text
    prompt = response.json()
    assert list(prompt) == ["prompt", "version", "prompt_id", "variables", "is_default"]
    assert re.fullmatch(r"pmpt_[0-9a-f]{48}", prompt["prompt_id"])
    assert prompt["version"] == 1
    assert prompt["variables"] == SEED_VARIABLES
    assert prompt["is_default"] is False


def test_get_returns_what_was_created(http_client):
    created = http_client.post(
        "/v1/prompts", json={"prompt": SEED_PROMPT, "variables": SEED_VARIABLES}
    ).json()

    fetched = http_client.get(f"/v1/prompts/{created['prompt_id']}")

    assert fetched.status_code == 200
    assert fetched.json() == created


def test_prompt_rows_sit_in_the_prompts_kv_store(http_client, prompts_kvstore_path):
    created = http_client.post(
        "/v1/prompts", json={"prompt": SEED_PROMPT, "variables": SEED_VARIABLES}
    ).json()
    prompt_id = created["prompt_id"]

    with sqlite3.connect(prompts_kvstore_path) as db:
        rows = dict(
            db.execute(
                "SELECT key, value FROM kvstore WHERE key LIKE ?", (f"prompts:v1:{prompt_id}:%",)
            ).fetchall()
        )

    assert set(rows) == {f"prompts:v1:{prompt_id}:1", f"prompts:v1:{prompt_id}:default"}
    assert rows[f"prompts:v1:{prompt_id}:default"] == "1"
    stored = json.loads(rows[f"prompts:v1:{prompt_id}:1"])
    assert stored == {
        "prompt_id": prompt_id,
        "prompt": SEED_PROMPT,
        "version": 1,
        "variables": SEED_VARIABLES,
        "is_default": False,
    }
