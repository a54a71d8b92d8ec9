"""Where a stack really keeps its prompts, read from its run config: for tests that open the
sqlite file and look at the stored rows, whatever stack ran.

The same run config does not mean the same place in every stack:

- **Llama Stack** (0.7.3, and the seed) keeps prompts in the KV store `storage.stores.prompts`
  names. On kv_sqlite the namespace is not a key prefix: the rows are the `kvstore` table's
  keys starting with `prompts:v1:` (`<id>:<version>` -> record JSON, `<id>:default` -> pointer).
- **OGX** (1.5.0) keeps them in a SQL table. A KV reference is migrated when the config loads,
  before env substitution, logging `Migrating prompts store config from KVStoreReference to
  SqlStoreReference`: `namespace` becomes `table_name`, backend `kv_default` becomes
  `sql_default` and any other `kv_<x>` becomes `sql_<x>` (logged as `Remapping prompts backend
  from KV to SQL variant`). Whatever `table_name` says, the rows land in the table `prompts`
  of that backend's file, one per version: `id` = `<id>:<version>`, `prompt_id`, `version`,
  `is_default` (1 on the default version), `created_at`, `prompt_data` = JSON
  `{"prompt", "variables"}`, plus OGX's `access_attributes` and `owner_principal`.
- **This reference stack** reads a config as Llama Stack does, and also serves a prompts store
  on a sql_sqlite backend, in OGX's table and columns (`storage.prompts_sql`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.stack.errors import StackConfigError
from harness.stack.run_config_model import KVStoreRef, RunConfig, SqlStoreRef

FLAVOURS = ("llama-stack", "ogx")
KV_PREFIX = "prompts:v1:"
SQL_TABLE = "prompts"  # OGX's, whatever table_name says; the reference stack uses it too


@dataclass(frozen=True)
class PromptsLocation:
    """A sqlite file and, in it, the prompts: `kvstore` rows under `key_prefix` (kind "kv") or
    the rows of `table` (kind "sql")."""

    kind: Literal["kv", "sql"]
    db_path: Path
    key_prefix: str | None = None
    table: str | None = None


def stack_flavour(version: str) -> str:
    """Which stack answered `GET /v1/version` with `{"version": version}`.

    Observed answers: OGX 1.5.0 says `"1.5.0"` (its package version, also at
    `/v1alpha/admin/version`); Llama Stack 0.7.3 says `"0.7.3"` (the `llama-stack` package's).
    Llama Stack's releases stayed below 1.0 and OGX's start at 1, so the major version tells
    them apart; no route does, as both serve the same prompts, admin and inspect paths. The
    reference stack answers with stack-harness's version (0.x) and reads as "llama-stack",
    which is how it reads a run config.
    """
    major = version.strip().lstrip("v").split(".", 1)[0]
    if not major.isdigit():
        raise ValueError(f"not a stack version: {version!r}")
    return "ogx" if int(major) >= 1 else "llama-stack"


def prompts_location(run_config: RunConfig, flavour: str) -> PromptsLocation:
    """Where the stack of `flavour` ("llama-stack" or "ogx") keeps the prompts of `run_config`.

    A `StackConfigError` names the file when that stack could not keep them anywhere: an OGX
    migration to a SQL backend the config does not define.
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown stack flavour {flavour!r}; expected one of {FLAVOURS}")
    ref = run_config.storage.stores["prompts"]
    if isinstance(ref, KVStoreRef) and flavour == "ogx":
        ref = _migrated_by_ogx(run_config, ref)
    db_path = run_config.storage.backends[ref.backend].db_path
    if isinstance(ref, KVStoreRef):
        return PromptsLocation("kv", db_path, key_prefix=KV_PREFIX)
    return PromptsLocation("sql", db_path, table=SQL_TABLE)


def _migrated_by_ogx(run_config: RunConfig, ref: KVStoreRef) -> SqlStoreRef:
    name = _ogx_sql_backend(ref.backend)
    backends = run_config.storage.backends
    if name not in backends or backends[name].type != "sql_sqlite":
        what = "does not define it" if name not in backends else f"has it as {backends[name].type}"
        raise StackConfigError(
            f"{run_config.source}: storage.stores.prompts.backend: OGX moves a KV prompts store "
            f"'{ref.backend}' to the SQL backend '{name}', but storage.backends {what} "
            f"(backends: {sorted(backends)})"
        )
    return SqlStoreRef(name, ref.namespace)


def _ogx_sql_backend(kv_backend: str) -> str:
    """The backend OGX's migration gives a KV prompts reference (names without `kv_` stay)."""
    if kv_backend == "kv_default":
        return "sql_default"
    if kv_backend.startswith("kv_"):
        return "sql_" + kv_backend[3:]
    return kv_backend
