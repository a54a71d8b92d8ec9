"""The prompt service: Llama Stack's versioning rules, KV layout and concurrency guarantee.

The rules hold whichever store keeps the prompts: every test of the service runs on a
kv_sqlite store (Llama Stack's layout) and on OGX's SQL table; the layout tests are per store.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading

import pytest
from pydantic import ValidationError

from harness.stack.prompts import PromptService
from harness.stack.storage.kv_sqlite import SqliteKVStore
from harness.stack.storage.prompts_sql import SqlitePromptTable

STORES = {"kv": SqliteKVStore, "sql": SqlitePromptTable}


@pytest.fixture(params=sorted(STORES))
def store(request):
    """The kind of store under the service: "kv" or "sql"."""
    return request.param


@pytest.fixture
def db(tmp_path):
    return tmp_path / "store.db"


def open_service(store: str, db) -> PromptService:
    """A service on its own connection to the sqlite file `db`."""
    return PromptService(STORES[store](db))


@pytest.fixture
def service(store, db):
    return open_service(store, db)


@pytest.fixture
def kv_service(db):
    return open_service("kv", db)


def run(coro):
    return asyncio.run(coro)


def rows(db, prompt_id):
    with sqlite3.connect(db) as conn:
        return dict(
            conn.execute(
                "SELECT key, value FROM kvstore WHERE key LIKE ?", (f"prompts:v1:{prompt_id}:%",)
            )
        )


def test_create_writes_version_one_and_the_default_pointer(kv_service, db):
    prompt = run(kv_service.create_prompt("Hello {{name}}", ["name"]))

    assert re.fullmatch(r"pmpt_[0-9a-f]{48}", prompt.prompt_id)
    assert (prompt.version, prompt.is_default) == (1, False)
    stored = rows(db, prompt.prompt_id)
    assert stored[f"prompts:v1:{prompt.prompt_id}:default"] == "1"
    assert stored[f"prompts:v1:{prompt.prompt_id}:1"] == (
        f'{{"prompt_id": "{prompt.prompt_id}", "prompt": "Hello {{{{name}}}}", "version": 1, '
        '"variables": ["name"], "is_default": false}'
    )


def test_wire_field_order_is_prompt_version_id_variables_is_default(service):
    prompt = run(service.create_prompt("x"))

    assert list(prompt.model_dump()) == [
        "prompt",
        "version",
        "prompt_id",
        "variables",
        "is_default",
    ]


def test_undeclared_placeholders_are_rejected_naming_them(service):
    with pytest.raises(ValidationError) as caught:
        run(service.create_prompt("Hi {{ name }} {{b}} {{a}}", ["name"]))

    (error,) = caught.value.errors()
    assert error["msg"] == "Value error, Prompt contains undeclared variables: ['a', 'b']"


def test_unused_and_duplicate_variables_and_non_word_braces_are_accepted(service):
    prompt = run(service.create_prompt("{{c-d}} {{ e f }} {{}}", ["a", "a", "b_1"]))

    assert prompt.variables == ["a", "a", "b_1"]


def test_missing_variables_become_an_empty_list(service):
    assert run(service.create_prompt("", None)).variables == []


def test_get_without_version_returns_the_default(service):
    created = run(service.create_prompt("v1"))
    run(service.update_prompt(created.prompt_id, "v2", 1, set_as_default=False))

    assert run(service.get_prompt(created.prompt_id)).prompt == "v1"
    assert run(service.get_prompt(created.prompt_id, 2)).prompt == "v2"
    # Version 0 is not a way of asking for the default (Llama Stack's falsy check is a bug).
    with pytest.raises(ValueError, match=rf"^Prompt {created.prompt_id}:0 not found$"):
        run(service.get_prompt(created.prompt_id, 0))


def test_get_missing_prompt_or_version(service):
    created = run(service.create_prompt("v1"))

    with pytest.raises(ValueError, match=r"^Prompt pmpt_nope:default not found$"):
        run(service.get_prompt("pmpt_nope"))
    with pytest.raises(ValueError, match=rf"^Prompt {created.prompt_id}:9 not found$"):
        run(service.get_prompt(created.prompt_id, 9))


def test_update_writes_latest_plus_one_without_inheriting_variables(service):
    created = run(service.create_prompt("Hi {{a}}", ["a"]))

    updated = run(service.update_prompt(created.prompt_id, "plain", 1))

    assert (updated.version, updated.variables) == (2, [])
    assert run(service.get_prompt(created.prompt_id)).version == 2


def test_update_must_name_the_latest_version_not_the_default(service):
    created = run(service.create_prompt("v1"))
    pid = created.prompt_id
    run(service.update_prompt(pid, "v2", 1, set_as_default=False))

    with pytest.raises(ValueError) as caught:
        run(service.update_prompt(pid, "stale", 1))

    assert str(caught.value) == (
        f"'1' is not the latest prompt version for prompt_id='{pid}'. "
        "Use the latest version '2' in request."
    )


def test_update_rejects_version_below_one_and_unknown_prompts(service):
    with pytest.raises(ValueError, match="^Version must be >= 1$"):
        run(service.update_prompt("pmpt_nope", "x", 0))
    with pytest.raises(ValueError, match="^Prompt pmpt_nope not found$"):
        run(service.update_prompt("pmpt_nope", "x", 1))


def test_update_checks_placeholders_too(service):
    created = run(service.create_prompt("v1"))

    with pytest.raises(ValidationError):
        run(service.update_prompt(created.prompt_id, "{{x}}", 1))


def test_versions_are_ascending_with_is_default_from_the_pointer(service):
    pid = run(service.create_prompt("v1")).prompt_id
    run(service.update_prompt(pid, "v2", 1))
    run(service.update_prompt(pid, "v3", 2, set_as_default=False))

    versions = run(service.list_prompt_versions(pid))

    assert [(v.version, v.is_default) for v in versions] == [(1, False), (2, True), (3, False)]


def test_stored_records_keep_is_default_false(kv_service, db):
    pid = run(kv_service.create_prompt("v1")).prompt_id
    run(kv_service.update_prompt(pid, "v2", 1))

    assert run(kv_service.get_prompt(pid)).is_default is False
    assert json.loads(rows(db, pid)[f"prompts:v1:{pid}:2"])["is_default"] is False


def test_set_default_version_moves_the_pointer_and_returns_that_version(service):
    pid = run(service.create_prompt("v1")).prompt_id
    run(service.update_prompt(pid, "v2", 1))

    chosen = run(service.set_default_version(pid, 1))

    assert (chosen.version, chosen.prompt) == (1, "v1")
    assert run(service.get_prompt(pid)).version == 1
    with pytest.raises(ValueError, match=rf"^Prompt {pid} version 7 not found$"):
        run(service.set_default_version(pid, 7))


def test_list_shows_default_versions_sorted_by_id_descending(service):
    ids = [run(service.create_prompt(f"p{i}")).prompt_id for i in range(4)]
    run(service.update_prompt(ids[0], "newer", 1, set_as_default=False))

    listed = run(service.list_prompts())

    assert [p.prompt_id for p in listed] == sorted(ids, reverse=True)
    assert {p.prompt_id: p.version for p in listed}[ids[0]] == 1


def test_delete_removes_every_version_and_the_pointer(kv_service, db):
    pid = run(kv_service.create_prompt("v1")).prompt_id
    other = run(kv_service.create_prompt("keep")).prompt_id
    run(kv_service.update_prompt(pid, "v2", 1))

    run(kv_service.delete_prompt(pid))

    assert rows(db, pid) == {}
    assert len(rows(db, other)) == 2
    with pytest.raises(ValueError, match=":default not found"):
        run(kv_service.delete_prompt(pid))


def test_get_after_delete_is_not_found(service):
    pid = run(service.create_prompt("v1")).prompt_id
    kept = run(service.create_prompt("keep")).prompt_id

    run(service.delete_prompt(pid))

    with pytest.raises(ValueError, match=rf"^Prompt {pid}:default not found$"):
        run(service.get_prompt(pid))
    with pytest.raises(ValueError, match=rf"^Prompt {pid} not found$"):
        run(service.list_prompt_versions(pid))
    assert [p.prompt_id for p in run(service.list_prompts())] == [kept]


def test_concurrent_updates_of_one_version_in_one_loop_let_exactly_one_win(service):
    pid = run(service.create_prompt("v1")).prompt_id

    async def race():
        return await asyncio.gather(
            *(service.update_prompt(pid, f"writer {i}", 1) for i in range(10)),
            return_exceptions=True,
        )

    results = run(race())

    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, ValueError)]
    assert len(winners) == 1 and len(losers) == 9
    assert "Use the latest version '2' in request." in str(losers[0])
    assert [v.version for v in run(service.list_prompt_versions(pid))] == [1, 2]
    assert run(service.get_prompt(pid)).prompt == winners[0].prompt


def test_concurrent_updates_from_separate_connections_let_exactly_one_win(store, service, db):
    pid = run(service.create_prompt("v1")).prompt_id
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def writer(n: int) -> None:
        other = open_service(store, db)
        barrier.wait()
        try:
            run(other.update_prompt(pid, f"writer {n}", 1))
            outcomes.append("won")
        except ValueError as exc:
            assert "is not the latest prompt version" in str(exc)
            outcomes.append("lost")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["lost"] * 7 + ["won"]
    assert [v.version for v in run(service.list_prompt_versions(pid))] == [1, 2]
