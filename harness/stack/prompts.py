"""The Prompts service: versioned prompt templates, with Llama Stack's rules.

The rules live here once; where the versions are kept is a `PromptRecords`: a KV store in
Llama Stack's layout (`KVPromptRecords`, shared with Llama Stack so existing stores read the
same: `prompts:v1:<id>:<version>` -> the record JSON, `prompts:v1:<id>:default` ->
"<version>"), or OGX's SQL table (`storage.prompts_sql`). Failures a client causes are
`ValueError` (HTTP 400 "Invalid value: ...") or a pydantic `ValidationError` (HTTP 400 with
the error list), exactly as Llama Stack reports them.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Any, Protocol

from pydantic import BaseModel, field_validator, model_validator

from harness.stack.storage.kv_sqlite import SqliteKVStore

PLACEHOLDER = re.compile(r"{{\s*(\w+)\s*}}")
PROMPT_ID = re.compile(r"pmpt_[0-9a-f]{48}")
PREFIX = "prompts:v1:"
logger = logging.getLogger(__name__)


class Prompt(BaseModel):
    """The resource; field order is the wire order (prompt, version, prompt_id, ...)."""

    prompt: str | None = None
    version: int
    prompt_id: str
    variables: list[str] = []
    is_default: bool = False

    @field_validator("prompt_id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not PROMPT_ID.fullmatch(value):
            raise ValueError("prompt_id must be 'pmpt_' followed by 48 lowercase hex characters")
        return value

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: int) -> int:
        if value < 1:
            raise ValueError("version must be >= 1")
        return value

    @model_validator(mode="after")
    def _check_placeholders(self) -> Prompt:
        if self.prompt:
            used = set(PLACEHOLDER.findall(self.prompt))
            undeclared = sorted(used - set(self.variables))
            if undeclared:
                raise ValueError(f"Prompt contains undeclared variables: {undeclared}")
        return self

    def record(self) -> dict[str, Any]:
        """The stored fields in Llama Stack's key order (is_default is stored as built)."""
        return {
            "prompt_id": self.prompt_id,
            "prompt": self.prompt,
            "version": self.version,
            "variables": self.variables,
            "is_default": self.is_default,
        }


def new_prompt_id() -> str:
    return "pmpt_" + secrets.token_hex(24)


def version_key(prompt_id: str, version: int | str) -> str:
    return f"{PREFIX}{prompt_id}:{version}"


def default_key(prompt_id: str) -> str:
    return f"{PREFIX}{prompt_id}:default"


class PromptRecords(Protocol):
    """Where prompt versions and each prompt's default are kept.

    Records come back as the KV layout's JSON text, so the service validates every store's
    rows one way. `add` must be atomic: it writes a version only if it is new.
    """

    async def add(self, prompt_id: str, version: int, record: dict[str, Any]) -> bool: ...
    async def get(self, prompt_id: str, version: int | str) -> str | None: ...
    async def default(self, prompt_id: str) -> str | None: ...
    async def set_default(self, prompt_id: str, version: int) -> None: ...
    # (where it is stored, record, is the default) of every version of one prompt.
    async def versions(self, prompt_id: str) -> list[tuple[str, str, bool]]: ...
    # Prompt id -> its default version, for every prompt.
    async def defaults(self) -> dict[str, str]: ...
    async def delete(self, prompt_id: str) -> None: ...
    def close(self) -> None: ...


class KVPromptRecords:
    """Prompts in a KV store, keyed as Llama Stack keys them (the module docstring)."""

    def __init__(self, kv: SqliteKVStore) -> None:
        self.kv = kv

    def close(self) -> None:
        self.kv.close()

    async def add(self, prompt_id: str, version: int, record: dict[str, Any]) -> bool:
        # Python's default separators, as Llama Stack writes them.
        return await self.kv.set_if_absent(version_key(prompt_id, version), json.dumps(record))

    async def get(self, prompt_id: str, version: int | str) -> str | None:
        return await self.kv.get(version_key(prompt_id, version))

    async def default(self, prompt_id: str) -> str | None:
        return await self.kv.get(default_key(prompt_id))

    async def set_default(self, prompt_id: str, version: int) -> None:
        await self.kv.set(default_key(prompt_id), str(version))

    async def versions(self, prompt_id: str) -> list[tuple[str, str, bool]]:
        items = await self.kv.items_with_prefix(f"{PREFIX}{prompt_id}:")
        pointer = dict(items).get(default_key(prompt_id))
        return [
            (key, value, key.rsplit(":", 1)[1] == pointer)
            for key, value in items
            if key != default_key(prompt_id)
        ]

    async def defaults(self) -> dict[str, str]:
        return {
            key[len(PREFIX) :].rsplit(":", 1)[0]: value
            for key, value in await self.kv.items_with_prefix(PREFIX)
            if key.endswith(":default")
        }

    async def delete(self, prompt_id: str) -> None:
        for key, _ in await self.kv.items_with_prefix(f"{PREFIX}{prompt_id}:"):
            await self.kv.delete(key)


class PromptService:
    """Create, version, list and delete prompts in one store (a KV store is used as
    `KVPromptRecords`)."""

    def __init__(self, records: PromptRecords | SqliteKVStore) -> None:
        self.records = KVPromptRecords(records) if isinstance(records, SqliteKVStore) else records

    def close(self) -> None:
        self.records.close()

    async def create_prompt(self, prompt: str, variables: list[str] | None = None) -> Prompt:
        while True:
            record = Prompt(
                prompt=prompt, version=1, prompt_id=new_prompt_id(), variables=variables or []
            )
            if await self.records.add(record.prompt_id, 1, record.record()):
                break
        await self.records.set_default(record.prompt_id, 1)
        return record

    async def get_prompt(self, prompt_id: str, version: int | None = None) -> Prompt:
        wanted: int | str | None = version
        if wanted is None:
            wanted = await self.records.default(prompt_id)
            if wanted is None:
                raise ValueError(f"Prompt {prompt_id}:default not found")
        raw = await self.records.get(prompt_id, wanted)
        if raw is None:
            where = version if version is not None else "default"
            raise ValueError(f"Prompt {prompt_id}:{where} not found")
        return Prompt.model_validate_json(raw)

    async def list_prompt_versions(self, prompt_id: str) -> list[Prompt]:
        versions = []
        for where, raw, is_default in await self.records.versions(prompt_id):
            if (prompt := _readable(where, raw)) is not None:
                prompt.is_default = is_default
                versions.append(prompt)
        if not versions:
            raise ValueError(f"Prompt {prompt_id} not found")
        versions.sort(key=lambda p: p.version)
        return versions

    async def update_prompt(
        self,
        prompt_id: str,
        prompt: str,
        version: int,
        variables: list[str] | None = None,
        set_as_default: bool = True,
    ) -> Prompt:
        """Write version+1; only an update naming the latest version wins (atomic insert)."""
        if version < 1:
            raise ValueError("Version must be >= 1")
        latest = max(p.version for p in await self.list_prompt_versions(prompt_id))
        if version != latest:
            raise _not_latest(version, prompt_id, latest)
        record = Prompt(
            prompt=prompt, version=version + 1, prompt_id=prompt_id, variables=variables or []
        )
        if not await self.records.add(prompt_id, record.version, record.record()):
            latest = max(p.version for p in await self.list_prompt_versions(prompt_id))
            raise _not_latest(version, prompt_id, latest)
        if set_as_default:
            await self.records.set_default(prompt_id, record.version)
        return record

    async def set_default_version(self, prompt_id: str, version: int) -> Prompt:
        raw = await self.records.get(prompt_id, version)
        if raw is None:
            raise ValueError(f"Prompt {prompt_id} version {version} not found")
        await self.records.set_default(prompt_id, version)
        return Prompt.model_validate_json(raw)

    async def list_prompts(self) -> list[Prompt]:
        pointers = await self.records.defaults()
        result = []
        for prompt_id in sorted(pointers, reverse=True):
            raw = await self.records.get(prompt_id, pointers[prompt_id])
            where = f"{prompt_id}:{pointers[prompt_id]}"
            if raw is not None and (prompt := _readable(where, raw)) is not None:
                result.append(prompt)
        return result

    async def delete_prompt(self, prompt_id: str) -> None:
        # Only the default must exist: a row that cannot be read can still be deleted.
        if await self.records.default(prompt_id) is None:
            raise ValueError(f"Prompt {prompt_id}:default not found")
        await self.records.delete(prompt_id)


def _readable(key: str, raw: str) -> Prompt | None:
    """A stored prompt, or None (logged) for a row that no longer validates: one bad row must
    not break listing the others."""
    try:
        return Prompt.model_validate_json(raw)
    except ValueError as exc:
        logger.warning("skipping unreadable prompt row %s: %s", key, exc)
        return None


def _not_latest(version: int, prompt_id: str, latest: int) -> ValueError:
    return ValueError(
        f"'{version}' is not the latest prompt version for prompt_id='{prompt_id}'. "
        f"Use the latest version '{latest}' in request."
    )
