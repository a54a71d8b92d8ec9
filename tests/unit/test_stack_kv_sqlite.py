"""The kv_sqlite store: Llama Stack's table and key layout, and safety under concurrency."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

from harness.stack.storage.kv_sqlite import SqliteKVStore


def test_creates_parent_dir_and_kvstore_table(tmp_path):
    path = tmp_path / "deep" / "dir" / "kvstore.db"

    SqliteKVStore(path).close()

    with sqlite3.connect(path) as db:
        columns = [row[1:3] for row in db.execute("PRAGMA table_info(kvstore)")]
    assert columns == [("key", "TEXT"), ("value", "TEXT"), ("expiration", "TIMESTAMP")]


def test_set_get_delete_round_trip_with_keys_stored_as_given(tmp_path):
    store = SqliteKVStore(tmp_path / "kv.db")

    async def scenario():
        await store.set("prompts:v1:a:1", "one")
        assert await store.get("prompts:v1:a:1") == "one"
        await store.set("prompts:v1:a:1", "uno")
        assert await store.get("prompts:v1:a:1") == "uno"
        await store.delete("prompts:v1:a:1")
        assert await store.get("prompts:v1:a:1") is None

    asyncio.run(scenario())
    asyncio.run(store.set("prompts:v1:b:default", "1"))
    with sqlite3.connect(tmp_path / "kv.db") as db:
        assert db.execute("SELECT key, value, expiration FROM kvstore").fetchall() == [
            ("prompts:v1:b:default", "1", None)
        ]


def test_set_if_absent_writes_only_once(tmp_path):
    store = SqliteKVStore(tmp_path / "kv.db")

    first = asyncio.run(store.set_if_absent("k", "first"))
    second = asyncio.run(store.set_if_absent("k", "second"))

    assert (first, second) == (True, False)
    assert asyncio.run(store.get("k")) == "first"


def test_items_with_prefix_is_inclusive_and_ordered(tmp_path):
    store = SqliteKVStore(tmp_path / "kv.db")
    for key in ["p:b", "p:", "p:a", "q", "p:c"]:
        asyncio.run(store.set(key, key.upper()))

    items = asyncio.run(store.items_with_prefix("p:"))

    assert items == [("p:", "P:"), ("p:a", "P:A"), ("p:b", "P:B"), ("p:c", "P:C")]


def test_items_with_prefix_excludes_neighbours(tmp_path):
    store = SqliteKVStore(tmp_path / "kv.db")
    for key in ["p:1:a", "p:1:b", "p:10:a", "p:2:a"]:
        asyncio.run(store.set(key, "v"))

    keys = [k for k, _ in asyncio.run(store.items_with_prefix("p:1:"))]

    assert keys == ["p:1:a", "p:1:b"]


def test_fifty_concurrent_async_writers_all_land(tmp_path):
    store = SqliteKVStore(tmp_path / "kv.db")

    async def scenario():
        await asyncio.gather(*(store.set(f"key:{i:02d}", str(i)) for i in range(50)))
        return await store.items_with_prefix("key:")

    assert len(asyncio.run(scenario())) == 50


def test_fifty_writer_threads_with_their_own_connections_never_see_a_locked_db(tmp_path):
    path = tmp_path / "kv.db"
    SqliteKVStore(path).close()
    errors: list[BaseException] = []
    barrier = threading.Barrier(50)

    def writer(n: int) -> None:
        try:
            store = SqliteKVStore(path)
            barrier.wait()
            for i in range(5):
                asyncio.run(store.set(f"t{n:02d}:{i}", "x" * 100))
            store.close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM kvstore").fetchone()[0] == 250
