"""One sqlite connection per store, shared by worker threads under a lock.

Both sqlite stores need the same thing: a file opened for concurrent use (WAL, a busy timeout
for other processes) and calls serialised within this process, so concurrent requests never see
"database is locked".
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

BUSY_TIMEOUT_MS = 30_000


def connect(db_path: Path) -> sqlite3.Connection:
    """Open (creating the parent directory) a sqlite file tuned for concurrent use."""
    db_path = Path(db_path).expanduser()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        db_path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


class SerialConnection:
    """A sqlite connection whose statements run one at a time, from any thread."""

    def __init__(self, db_path: Path | str, schema: str) -> None:
        self._lock = threading.Lock()
        self._conn = connect(Path(db_path))
        with self._lock:
            self._conn.execute(schema)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def run(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._conn.execute(sql, params)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()
