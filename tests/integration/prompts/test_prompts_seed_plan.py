"""The seed's test plan: create the prompt, read it back, find it in the prompts store.

The seed queries the KV store of Llama Stack; OGX keeps the same prompt as a row of its SQL
`prompts` table. `stored_prompts` says which, for the stack that runs.
"""

from __future__ import annotations

import json
import re
import sqlite3

from harness.stack.run_config import PromptsLocation
from tests.integration.wire import prompt_wire

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
    # OGX reads the only version back as the default one; Llama Stack as it was created.
    assert fetched.json() == {
        **created,
        "is_default": prompt_wire(http_client).read_back_is_default,
    }


def test_prompt_rows_sit_in_the_prompts_store(http_client, stored_prompts):
    created = http_client.post(
        "/v1/prompts", json={"prompt": SEED_PROMPT, "variables": SEED_VARIABLES}
    ).json()
    prompt_id = created["prompt_id"]

    if stored_prompts.kind == "kv":
        key = f"{stored_prompts.key_prefix}{prompt_id}"
        rows = kv_rows(stored_prompts, prompt_id)
        assert set(rows) == {f"{key}:1", f"{key}:default"}
        assert rows[f"{key}:default"] == "1"
        assert json.loads(rows[f"{key}:1"]) == {
            "prompt_id": prompt_id,
            "prompt": SEED_PROMPT,
            "version": 1,
            "variables": SEED_VARIABLES,
            "is_default": False,
        }
    else:
        ((row_id, version, is_default, data),) = sql_rows(stored_prompts, prompt_id)
        assert (row_id, version, is_default) == (f"{prompt_id}:1", 1, 1)
        assert json.loads(data) == {"prompt": SEED_PROMPT, "variables": SEED_VARIABLES}


def kv_rows(location: PromptsLocation, prompt_id: str) -> dict[str, str]:
    """The seed's query, for one prompt: its `kvstore` rows."""
    with sqlite3.connect(location.db_path) as db:
        pattern = f"{location.key_prefix}{prompt_id}:%"
        return dict(db.execute("SELECT key, value FROM kvstore WHERE key LIKE ?", (pattern,)))


def sql_rows(location: PromptsLocation, prompt_id: str) -> list[tuple[str, int, int, str]]:
    """OGX's rows of one prompt: id, version, is_default, prompt_data."""
    with sqlite3.connect(location.db_path) as db:
        return db.execute(
            f"SELECT id, version, is_default, prompt_data FROM {location.table} "
            "WHERE prompt_id = ? ORDER BY version",
            (prompt_id,),
        ).fetchall()
