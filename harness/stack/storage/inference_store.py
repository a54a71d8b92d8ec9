"""The inference store on a sql_sqlite backend: every chat completion, with its input messages.

Llama Stack keeps these in the table `chat_completions` whatever `table_name` says, so we do
too; `GET /v1/chat/completions` pages through it with an `after` cursor.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from harness.stack.storage.sqlite_conn import SerialConnection

SCHEMA = """
CREATE TABLE IF NOT EXISTS chat_completions (
    id TEXT PRIMARY KEY,
    created INTEGER,
    model TEXT,
    completion TEXT,
    input_messages TEXT
)
"""


class ChatCompletionNotFoundError(Exception):
    status_code = 404

    def __init__(self, completion_id: str) -> None:
        super().__init__(f"Chat completion '{completion_id}' not found")


class SqliteInferenceStore:
    """Stores finished chat completions and lists them newest (or oldest) first."""

    def __init__(self, db_path: Path | str) -> None:
        self.db_path = Path(db_path).expanduser()
        self._db = SerialConnection(self.db_path, SCHEMA)

    def close(self) -> None:
        self._db.close()

    async def store(self, completion: dict[str, Any], input_messages: list[Any]) -> None:
        await asyncio.to_thread(
            self._db.query,
            "INSERT OR REPLACE INTO chat_completions (id, created, model, completion, "
            "input_messages) VALUES (?, ?, ?, ?, ?)",
            (
                completion["id"],
                int(completion.get("created") or 0),
                completion.get("model"),
                json.dumps(completion),
                json.dumps(input_messages),
            ),
        )

    async def get(self, completion_id: str) -> dict[str, Any]:
        rows = await asyncio.to_thread(
            self._db.query,
            "SELECT completion, input_messages FROM chat_completions WHERE id = ?",
            (completion_id,),
        )
        if not rows:
            raise ChatCompletionNotFoundError(completion_id)
        return _row(rows[0])

    async def list(
        self,
        *,
        after: str | None = None,
        limit: int = 20,
        model: str | None = None,
        order: str = "desc",
    ) -> dict[str, Any]:
        if order not in ("asc", "desc"):
            raise ValueError(f"order must be 'asc' or 'desc', got {order!r}")
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        where, params = [], []
        if model:
            where.append("model = ?")
            params.append(model)
        if after:
            cursor = await asyncio.to_thread(
                self._db.query, "SELECT created FROM chat_completions WHERE id = ?", (after,)
            )
            if not cursor:
                raise ValueError(f"Record with id='{after}' not found in table 'chat_completions'")
            op = "<" if order == "desc" else ">"
            where.append(f"(created, id) {op} (?, ?)")
            params += [cursor[0][0], after]
        direction = "DESC" if order == "desc" else "ASC"
        sql = (
            "SELECT completion, input_messages FROM chat_completions"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY created {direction}, id {direction} LIMIT ?"
        )
        rows = await asyncio.to_thread(self._db.query, sql, (*params, limit + 1))
        data = [_row(r) for r in rows[:limit]]
        return {
            "data": data,
            "has_more": len(rows) > limit,
            "first_id": data[0]["id"] if data else "",
            "last_id": data[-1]["id"] if data else "",
            "object": "list",
        }


def _row(row: tuple) -> dict[str, Any]:
    completion = json.loads(row[0])
    completion["input_messages"] = json.loads(row[1])
    return completion
