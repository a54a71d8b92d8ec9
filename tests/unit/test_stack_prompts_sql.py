"""The prompts store on a sql_sqlite backend: OGX's `prompts` table, read and written."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading

from harness.stack.prompts import PromptService
from harness.stack.storage.prompts_sql import SqlitePromptTable


def run(coro):
    return asyncio.run(coro)


def rows(db, prompt_id):
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT id, version, is_default, prompt_data FROM prompts WHERE prompt_id = ? "
            "ORDER BY version",
            (prompt_id,),
        ).fetchall()


def test_creates_parent_dir_and_ogx_prompts_table(tmp_path):
    path = tmp_path / "deep" / "sql_store.db"

    SqlitePromptTable(path).close()

    with sqlite3.connect(path) as db:
        columns = [row[1:3] for row in db.execute("PRAGMA table_info(prompts)")]
    assert columns == [
        ("id", "VARCHAR"),
        ("prompt_id", "VARCHAR"),
        ("version", "INTEGER"),
        ("is_default", "BOOLEAN"),
        ("created_at", "INTEGER"),
        ("prompt_data", "JSON"),
        ("access_attributes", "JSON"),
        ("owner_principal", "VARCHAR"),
    ]


def test_one_row_per_version_and_is_default_follows_the_default(tmp_path):
    db = tmp_path / "sql_store.db"
    service = PromptService(SqlitePromptTable(db))
    pid = run(service.create_prompt("Hello {{name}}", ["name"])).prompt_id
    assert rows(db, pid) == [
        (f"{pid}:1", 1, 1, json.dumps({"prompt": "Hello {{name}}", "variables": ["name"]}))
    ]

    run(service.update_prompt(pid, "v2", 1))
    run(service.update_prompt(pid, "v3", 2, set_as_default=False))
    assert [(version, is_default) for _, version, is_default, _ in rows(db, pid)] == [
        (1, 0),
        (2, 1),
        (3, 0),
    ]

    run(service.set_default_version(pid, 1))
    assert [is_default for _, _, is_default, _ in rows(db, pid)] == [1, 0, 0]


def test_rows_written_by_ogx_are_served(tmp_path):
    db = tmp_path / "sql_store.db"
    SqlitePromptTable(db).close()
    pid = "pmpt_" + "ab" * 24
    with sqlite3.connect(db) as conn:  # what OGX 1.5.0 wrote for a create and an update
        conn.executemany(
            "INSERT INTO prompts VALUES (?, ?, ?, ?, ?, ?, 'null', '')",
            [
                (f"{pid}:1", pid, 1, 0, 1796116657, '{"prompt": "Hi {{n}}", "variables": ["n"]}'),
                (f"{pid}:2", pid, 2, 1, 1796116660, '{"prompt": "V2 {{n}}", "variables": ["n"]}'),
            ],
        )
    service = PromptService(SqlitePromptTable(db))

    current = run(service.get_prompt(pid))
    versions = run(service.list_prompt_versions(pid))

    assert (current.version, current.prompt, current.variables) == (2, "V2 {{n}}", ["n"])
    assert [(v.version, v.is_default) for v in versions] == [(1, False), (2, True)]
    assert [p.prompt_id for p in run(service.list_prompts())] == [pid]


def test_an_unreadable_row_breaks_neither_the_listing_nor_its_own_delete(tmp_path):
    db = tmp_path / "sql_store.db"
    service = PromptService(SqlitePromptTable(db))
    good = run(service.create_prompt("fine")).prompt_id
    bad = "pmpt_" + "f" * 48
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO prompts VALUES (?, ?, 1, 1, 0, 'not json', 'null', '')", (f"{bad}:1", bad)
        )

    assert [p.prompt_id for p in run(service.list_prompts())] == [good]
    run(service.delete_prompt(bad))
    assert rows(db, bad) == []


def test_concurrent_default_moves_from_separate_connections_leave_exactly_one_default(tmp_path):
    db = tmp_path / "sql_store.db"
    service = PromptService(SqlitePromptTable(db))
    pid = run(service.create_prompt("v1")).prompt_id
    for version in range(1, 8):
        run(service.update_prompt(pid, f"v{version + 1}", version))
    barrier = threading.Barrier(8)

    def mover(version: int) -> None:
        other = PromptService(SqlitePromptTable(db))
        barrier.wait()
        for _ in range(5):
            run(other.set_default_version(pid, version))

    threads = [threading.Thread(target=mover, args=(v,)) for v in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    defaults = [version for _, version, is_default, _ in rows(db, pid) if is_default]
    assert len(defaults) == 1
    assert run(service.get_prompt(pid)).version == defaults[0]
