"""The sql_sqlite inference store: chat completions stored, read back and paged."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from harness.stack.storage.inference_store import (
    ChatCompletionNotFoundError,
    SqliteInferenceStore,
)


def completion(n: int, model: str = "p/m") -> dict:
    return {"id": f"chatcmpl-{n}", "created": 100 + n, "model": model, "choices": []}


@pytest.fixture
def store(tmp_path):
    store = SqliteInferenceStore(tmp_path / "sql" / "sql_store.db")
    for n in range(5):
        asyncio.run(store.store(completion(n, "p/a" if n % 2 else "p/b"), [{"n": n}]))
    return store


def test_get_returns_the_completion_with_its_input_messages(store):
    stored = asyncio.run(store.get("chatcmpl-3"))

    assert stored["id"] == "chatcmpl-3"
    assert stored["input_messages"] == [{"n": 3}]


def test_get_unknown_is_404(store):
    with pytest.raises(ChatCompletionNotFoundError) as caught:
        asyncio.run(store.get("nope"))
    assert caught.value.status_code == 404


def test_rows_live_in_the_chat_completions_table(tmp_path, store):
    with sqlite3.connect(tmp_path / "sql" / "sql_store.db") as db:
        assert db.execute("SELECT COUNT(*) FROM chat_completions").fetchone()[0] == 5


def test_list_is_newest_first_and_pages_with_after(store):
    first = asyncio.run(store.list(limit=2))
    second = asyncio.run(store.list(limit=2, after=first["last_id"]))
    last = asyncio.run(store.list(limit=2, after=second["last_id"]))

    assert [c["id"] for c in first["data"]] == ["chatcmpl-4", "chatcmpl-3"]
    assert first["has_more"] is True and first["object"] == "list"
    assert [c["id"] for c in second["data"]] == ["chatcmpl-2", "chatcmpl-1"]
    assert [c["id"] for c in last["data"]] == ["chatcmpl-0"]
    assert last["has_more"] is False and last["first_id"] == last["last_id"] == "chatcmpl-0"


def test_list_ascending_and_filtered_by_model(store):
    listed = asyncio.run(store.list(order="asc", model="p/a"))

    assert [c["id"] for c in listed["data"]] == ["chatcmpl-1", "chatcmpl-3"]


def test_list_with_unknown_cursor_is_a_value_error(store):
    with pytest.raises(ValueError, match="'nope' not found"):
        asyncio.run(store.list(after="nope"))
