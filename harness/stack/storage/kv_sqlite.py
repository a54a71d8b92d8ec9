"""The kv_sqlite backend: Llama Stack's `kvstore` table, keys stored without a namespace.

Keeping Llama Stack's exact table and key layout means the seed's
`SELECT * FROM kvstore WHERE key LIKE 'prompts:v1:%'` works on our files too. One connection
per store, serialised by a lock and used from a worker thread, plus WAL and a busy timeout for
other processes on the same file: concurrent requests never see "database is locked".
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness.stack.storage.sqlite_conn import SerialConnection

SCHEMA = """
CREATE TABLE IF NOT EXISTS kvstore (
    key TEXT PRIMARY KEY,
    value TEXT,
    expiration TIMESTAMP
)
"""


class SqliteKVStore:
    """Async key-value store over one sqlite file (blocking calls run in a worker thread)."""

    def __init__(self, db_path: Path | str) -> None:
        self.db_path = Path(db_path).expanduser()
        self._db = SerialConnection(self.db_path, SCHEMA)

    def close(self) -> None:
        self._db.close()

    async def get(self, key: str) -> str | None:
        rows = await asyncio.to_thread(
            self._db.query, "SELECT value FROM kvstore WHERE key = ?", (key,)
        )
        return rows[0][0] if rows else None

    async def set(self, key: str, value: str) -> None:
        await asyncio.to_thread(
            self._db.run,
            "INSERT OR REPLACE INTO kvstore (key, value, expiration) VALUES (?, ?, NULL)",
            (key, value),
        )

    async def set_if_absent(self, key: str, value: str) -> bool:
        """Insert only if the key is new; True if it was written. The atomic step of updates."""
        cursor = await asyncio.to_thread(
            self._db.run,
            "INSERT OR IGNORE INTO kvstore (key, value, expiration) VALUES (?, ?, NULL)",
            (key, value),
        )
        return cursor.rowcount == 1

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._db.run, "DELETE FROM kvstore WHERE key = ?", (key,))

    async def items_with_prefix(self, prefix: str) -> list[tuple[str, str]]:
        """(key, value) pairs whose key starts with `prefix`, in key order, the prefix included.

        A range over the primary key rather than LIKE, so the `_` in ids such as `pmpt_...` is
        not a wildcard.
        """
        rows = await asyncio.to_thread(
            self._db.query,
            "SELECT key, value FROM kvstore WHERE key >= ? AND key < ? ORDER BY key",
            (prefix, prefix + "\uffff"),
        )
        return [(k, v) for k, v in rows]
