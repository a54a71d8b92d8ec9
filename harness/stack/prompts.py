"""The Prompts service: versioned prompt templates in a KV store, with Llama Stack's rules.

Layout (shared with Llama Stack, so existing stores read the same):
`prompts:v1:<id>:<version>` -> the record JSON, `prompts:v1:<id>:default` -> "<version>".
Failures a client causes are `ValueError` (HTTP 400 "Invalid value: ...") or a pydantic
`ValidationError` (HTTP 400 with the error list), exactly as Llama Stack reports them.
"""

from __future__ import annotations

import json
import logging
import re
import secrets

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

    def record(self) -> str:
        """The stored JSON: Python's default separators, Llama Stack's key order."""
        return json.dumps(
            {
                "prompt_id": self.prompt_id,
                "prompt": self.prompt,
                "version": self.version,
                "variables": self.variables,
                "is_default": self.is_default,
            }
        )


def new_prompt_id() -> str:
    return "pmpt_" + secrets.token_hex(24)


def version_key(prompt_id: str, version: int | str) -> str:
    return f"{PREFIX}{prompt_id}:{version}"


def default_key(prompt_id: str) -> str:
    return f"{PREFIX}{prompt_id}:default"


class PromptService:
    """Create, version, list and delete prompts in one KV store."""

    def __init__(self, kv: SqliteKVStore) -> None:
        self.kv = kv

    async def create_prompt(self, prompt: str, variables: list[str] | None = None) -> Prompt:
        while True:
            record = Prompt(
                prompt=prompt, version=1, prompt_id=new_prompt_id(), variables=variables or []
            )
            if await self.kv.set_if_absent(version_key(record.prompt_id, 1), record.record()):
                break
        await self.kv.set(default_key(record.prompt_id), "1")
        return record

    async def get_prompt(self, prompt_id: str, version: int | None = None) -> Prompt:
        if version is not None:
            key = version_key(prompt_id, version)
        else:
            pointer = await self.kv.get(default_key(prompt_id))
            if pointer is None:
                raise ValueError(f"Prompt {prompt_id}:default not found")
            key = version_key(prompt_id, pointer)
        raw = await self.kv.get(key)
        if raw is None:
            where = version if version is not None else "default"
            raise ValueError(f"Prompt {prompt_id}:{where} not found")
        return Prompt.model_validate_json(raw)

    async def list_prompt_versions(self, prompt_id: str) -> list[Prompt]:
        items = await self.kv.items_with_prefix(f"{PREFIX}{prompt_id}:")
        pointer = None
        versions = []
        for key, value in items:
            suffix = key.rsplit(":", 1)[1]
            if suffix == "default":
                pointer = value
            elif (prompt := _readable(key, value)) is not None:
                versions.append(prompt)
        if not versions:
            raise ValueError(f"Prompt {prompt_id} not found")
        versions.sort(key=lambda p: p.version)
        for p in versions:
            p.is_default = str(p.version) == pointer
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
        if not await self.kv.set_if_absent(version_key(prompt_id, record.version), record.record()):
            latest = max(p.version for p in await self.list_prompt_versions(prompt_id))
            raise _not_latest(version, prompt_id, latest)
        if set_as_default:
            await self.kv.set(default_key(prompt_id), str(record.version))
        return record

    async def set_default_version(self, prompt_id: str, version: int) -> Prompt:
        raw = await self.kv.get(version_key(prompt_id, version))
        if raw is None:
            raise ValueError(f"Prompt {prompt_id} version {version} not found")
        await self.kv.set(default_key(prompt_id), str(version))
        return Prompt.model_validate_json(raw)

    async def list_prompts(self) -> list[Prompt]:
        pointers = {
            key[len(PREFIX) :].rsplit(":", 1)[0]: value
            for key, value in await self.kv.items_with_prefix(PREFIX)
            if key.endswith(":default")
        }
        result = []
        for prompt_id in sorted(pointers, reverse=True):
            key = version_key(prompt_id, pointers[prompt_id])
            raw = await self.kv.get(key)
            if raw is not None and (prompt := _readable(key, raw)) is not None:
                result.append(prompt)
        return result

    async def delete_prompt(self, prompt_id: str) -> None:
        # Only the pointer must exist: a row that cannot be read can still be deleted.
        if await self.kv.get(default_key(prompt_id)) is None:
            raise ValueError(f"Prompt {prompt_id}:default not found")
        for key, _ in await self.kv.items_with_prefix(f"{PREFIX}{prompt_id}:"):
            await self.kv.delete(key)


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
