"""The prompts store on a sql_sqlite backend: OGX's `prompts` table, one row per version.

OGX keeps prompts in a SQL table whatever the run config's `table_name` says (the name is
fixed in its prompt service), with the default version marked by `is_default` rather than a
pointer key. Writing the same table and columns means a file this stack wrote reads the same
in OGX and in a test's `SELECT ... FROM prompts`. The service's rules (versions, the default,
errors) stay in `harness.stack.prompts`; this module only stores.

The step updates rely on is atomic: a version is inserted only if its `<id>:<version>` key is
new, so of two writers of the same version exactly one wins, in one process or several.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from harness.stack.storage.sqlite_conn import SerialConnection

TABLE = "prompts"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id VARCHAR,
    prompt_id VARCHAR,
    version INTEGER,
    is_default BOOLEAN,
    created_at INTEGER,
    prompt_data JSON,
    access_attributes JSON,
    owner_principal VARCHAR,
    PRIMARY KEY (id)
)
"""


class SqlitePromptTable:
    """Prompt versions as rows; what it returns are the KV layout's JSON record texts."""

    def __init__(self, db_path: Path | str) -> None:
        self.db_path = Path(db_path).expanduser()
        self._db = SerialConnection(self.db_path, SCHEMA)

    def close(self) -> None:
        self._db.close()

    async def add(self, prompt_id: str, version: int, record: dict[str, Any]) -> bool:
        """Insert a version (not the default); False if that version is already stored."""
        data = json.dumps({"prompt": record["prompt"], "variables": record["variables"]})
        cursor = await asyncio.to_thread(
            self._db.run,
            f"INSERT OR IGNORE INTO {TABLE} (id, prompt_id, version, is_default, created_at, "
            "prompt_data, access_attributes, owner_principal) "
            "VALUES (?, ?, ?, 0, ?, ?, 'null', '')",
            (f"{prompt_id}:{version}", prompt_id, version, int(time.time()), data),
        )
        return cursor.rowcount == 1

    async def get(self, prompt_id: str, version: int | str) -> str | None:
        rows = await asyncio.to_thread(
            self._db.query,
            f"SELECT prompt_id, version, prompt_data FROM {TABLE} WHERE id = ?",
            (f"{prompt_id}:{version}",),
        )
        return _record(*rows[0]) if rows else None

    async def default(self, prompt_id: str) -> str | None:
        rows = await asyncio.to_thread(
            self._db.query,
            f"SELECT version FROM {TABLE} WHERE prompt_id = ? AND is_default ORDER BY version",
            (prompt_id,),
        )
        return str(rows[0][0]) if rows else None

    async def set_default(self, prompt_id: str, version: int) -> None:
        """One statement, so no reader ever sees two defaults or none."""
        await asyncio.to_thread(
            self._db.run,
            f"UPDATE {TABLE} SET is_default = (version = ?) WHERE prompt_id = ?",
            (version, prompt_id),
        )

    async def versions(self, prompt_id: str) -> list[tuple[str, str, bool]]:
        """(row id, record, is default) of each stored version, in version order."""
        rows = await asyncio.to_thread(
            self._db.query,
            f"SELECT id, prompt_id, version, prompt_data, is_default FROM {TABLE} "
            "WHERE prompt_id = ? ORDER BY version",
            (prompt_id,),
        )
        return [(row_id, _record(pid, v, data), bool(d)) for row_id, pid, v, data, d in rows]

    async def defaults(self) -> dict[str, str]:
        """Prompt id -> its default version, for every prompt that has one."""
        rows = await asyncio.to_thread(
            self._db.query, f"SELECT prompt_id, version FROM {TABLE} WHERE is_default"
        )
        return {prompt_id: str(version) for prompt_id, version in rows}

    async def delete(self, prompt_id: str) -> None:
        await asyncio.to_thread(
            self._db.run, f"DELETE FROM {TABLE} WHERE prompt_id = ?", (prompt_id,)
        )


def _record(prompt_id: str, version: int, prompt_data: str | None) -> str:
    """The KV layout's record for a row; a `prompt_data` that is not a JSON object is passed
    on as it is, so the service reports it as an unreadable row."""
    try:
        data = json.loads(prompt_data or "")
    except ValueError:
        return str(prompt_data)
    if not isinstance(data, dict):
        return str(prompt_data)
    return json.dumps(
        {
            "prompt_id": prompt_id,
            "prompt": data.get("prompt"),
            "version": version,
            "variables": data.get("variables") or [],
            "is_default": False,
        }
    )
