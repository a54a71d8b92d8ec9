"""The typed shape of a run configuration (run.yaml version 2), shared by loader and stack.

Kept apart from the loader so the stack's parts can depend on the data without the parsing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.stack.envsubst import DISABLED

# Backend type -> the store family it serves. Llama Stack also has kv_redis, kv_postgres,
# kv_mongodb and sql_postgres; this stack keeps all state in sqlite files, so the loader rejects
# any other type where the run.yaml names it. Both types need only `db_path`.
BACKEND_TYPES = {"kv_sqlite": "kv", "sql_sqlite": "sql"}
# Store -> the backend families it may live on. Prompts are a KV namespace in Llama Stack (and
# the seed) and a SQL table in OGX; this stack serves either (see `prompts_location`).
STORE_FAMILIES = {
    "metadata": ("kv",),
    "inference": ("sql",),
    "conversations": ("sql",),
    "responses": ("sql",),
    "prompts": ("kv", "sql"),
}
DEFAULT_PROMPTS_STORE = {"backend": "kv_default", "namespace": "prompts"}


@dataclass(frozen=True)
class BackendConfig:
    name: str
    type: str
    db_path: Path

    @property
    def family(self) -> str:
        return BACKEND_TYPES[self.type]


@dataclass(frozen=True)
class KVStoreRef:
    backend: str
    namespace: str


@dataclass(frozen=True)
class SqlStoreRef:
    backend: str
    table_name: str


@dataclass(frozen=True)
class StorageConfig:
    backends: dict[str, BackendConfig]
    stores: dict[str, KVStoreRef | SqlStoreRef]


@dataclass(frozen=True)
class ProviderConfig:
    api: str
    provider_id: str | None
    provider_type: str
    config: dict[str, Any]

    @property
    def enabled(self) -> bool:
        return bool(self.provider_id) and self.provider_id != DISABLED


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    provider_id: str | None
    provider_model_id: str | None
    model_type: str = "llm"
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        """Registered at startup: it names a provider, and not the disabled one."""
        return bool(self.provider_id) and self.provider_id != DISABLED


@dataclass(frozen=True)
class RunConfig:
    """A validated run configuration; `data` is the substituted YAML (for logging)."""

    source: str
    image_name: str
    version: int
    apis: list[str]
    providers: dict[str, list[ProviderConfig]]
    models: list[ModelSpec]
    storage: StorageConfig
    server_port: int | None
    server_host: str | None
    data: dict[str, Any]
    path: Path | None = None

    def enabled_providers(self, api: str) -> list[ProviderConfig]:
        return [p for p in self.providers.get(api, []) if p.enabled]

    def store_backend(self, store: str) -> BackendConfig | None:
        ref = self.storage.stores.get(store)
        return self.storage.backends[ref.backend] if ref else None

    def kv_store_path(self, store: str) -> Path | None:
        """The sqlite file behind a KV store, or None if it is not on a kv_sqlite backend."""
        backend = self.store_backend(store)
        return backend.db_path if backend and backend.type == "kv_sqlite" else None

    def sql_store_path(self, store: str) -> Path | None:
        backend = self.store_backend(store)
        return backend.db_path if backend and backend.type == "sql_sqlite" else None
