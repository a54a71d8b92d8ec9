"""Load a run.yaml (version 2) into typed dataclasses, or say exactly what is wrong with it.

Every user error is one `StackConfigError` naming the file and the dotted key path, so the CLI
and the pytest plugin can print it on a line or two instead of a traceback. Env substitution
(`envsubst`) runs first, on the raw YAML, as in Llama Stack; unknown keys are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.stack.envsubst import EnvVarError, substitute_env
from harness.stack.errors import StackConfigError
from harness.stack.providers.registry import known_apis, resolve_provider_type
from harness.stack.run_config_model import (
    BACKEND_TYPES,
    DEFAULT_PROMPTS_STORE,
    STORE_FAMILIES,
    BackendConfig,
    KVStoreRef,
    ModelSpec,
    ProviderConfig,
    RunConfig,
    SqlStoreRef,
    StorageConfig,
)

__all__ = [
    "DEFAULT_PORT",
    "PORT_ENV",
    "BackendConfig",
    "KVStoreRef",
    "ModelSpec",
    "ProviderConfig",
    "RunConfig",
    "SqlStoreRef",
    "StackConfigError",
    "StorageConfig",
    "known_apis",
    "load_run_config",
    "resolve_run_config_path",
    "run_config_from_providers",
]

DISTRIBUTIONS_DIR = Path(__file__).parent / "distributions"

# Where a stack serves when nothing names a port, and the variable that names one: Llama
# Stack's. `harness stack run` and `--stack-config=server:<config>` both resolve ports with them.
DEFAULT_PORT = 8321
PORT_ENV = "LLAMA_STACK_PORT"


def resolve_run_config_path(name_or_path: str) -> Path:
    """An existing file, else a shipped distribution's run.yaml, else an error listing both."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate.resolve()
    tried = [str(candidate)]
    if not name_or_path.endswith((".yaml", ".yml")) and "/" not in name_or_path:
        distro = DISTRIBUTIONS_DIR / name_or_path / "run.yaml"
        if distro.is_file():
            return distro
        tried.append(f"distribution '{name_or_path}'")
    known = sorted(p.parent.name for p in DISTRIBUTIONS_DIR.glob("*/run.yaml"))
    raise StackConfigError(
        f"run configuration '{name_or_path}' not found (tried: {', '.join(tried)}). "
        f"Give the path of a run.yaml or a distribution name: {', '.join(known)}."
    )


def load_run_config(name_or_path: str | Path, env: Mapping[str, str] | None = None) -> RunConfig:
    """Resolve, parse, substitute and validate a run configuration."""
    import yaml

    path = resolve_run_config_path(str(name_or_path))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise StackConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    except OSError as exc:
        raise StackConfigError(f"{path}: cannot read the run configuration: {exc}") from None
    config = parse_run_config(raw, source=str(path), env=env)
    return _with_path(config, path)


def _with_path(config: RunConfig, path: Path) -> RunConfig:
    from dataclasses import replace

    return replace(config, path=path)


def parse_run_config(raw: Any, *, source: str, env: Mapping[str, str] | None = None) -> RunConfig:
    """Validate already-parsed YAML data; `source` names it in error messages."""
    if not isinstance(raw, dict):
        raise StackConfigError(f"{source}: expected a mapping at the top level, got {_kind(raw)}")
    try:
        data = substitute_env(raw, env)
    except EnvVarError as exc:
        raise StackConfigError(f"{source}: {exc}") from None
    check = _Checker(source)
    image_name = check.typed(data, "image_name", str, required=True)
    version = check.typed(data, "version", int, default=2)
    apis = check.typed(data, "apis", list, default=[])
    providers = _parse_providers(check, check.typed(data, "providers", dict, required=True))
    models = _parse_models(check, data)
    server = check.typed(data, "server", dict, default={}, path="server") or {}
    port = check.typed(server, "port", int, default=None, path="server.port")
    host = check.typed(server, "host", str, default=None, path="server.host")
    storage = _parse_storage(check, check.typed(data, "storage", dict, required=True))
    return RunConfig(
        source=source,
        image_name=image_name,
        version=version,
        apis=[str(a) for a in apis],
        providers=providers,
        models=models,
        storage=storage,
        server_port=port,
        server_host=host,
        data=data,
    )


class _Checker:
    """Typed lookups that raise StackConfigError with the file and key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> StackConfigError:
        return StackConfigError(f"{self.source}: {path}: {problem}")

    def typed(
        self,
        mapping: dict[str, Any],
        key: str,
        kind: type | tuple[type, ...],
        *,
        required: bool = False,
        default: Any = None,
        path: str | None = None,
    ) -> Any:
        path = path or key
        if key not in mapping or mapping[key] is None:
            if required:
                raise self.fail(path, f"missing required key '{key}'")
            return default
        value = mapping[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            expected = " or ".join(k.__name__ for k in kinds)
            raise self.fail(path, f"expected {expected}, got {_kind(value)} {value!r}")
        return value


def _kind(value: Any) -> str:
    names = {dict: "mapping", list: "list", str: "string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _parse_providers(check: _Checker, raw: dict[str, Any]) -> dict[str, list[ProviderConfig]]:
    apis = known_apis()
    result: dict[str, list[ProviderConfig]] = {}
    for api, entries in raw.items():
        path = f"providers.{api}"
        if api not in apis:
            raise check.fail(path, f"unknown API '{api}'; this stack serves: {', '.join(apis)}")
        if not isinstance(entries, list):
            raise check.fail(path, f"expected a list of providers, got {_kind(entries)}")
        result[api] = []
        for index, entry in enumerate(entries):
            item = f"{path}[{index}]"
            if not isinstance(entry, dict):
                raise check.fail(item, f"expected a mapping, got {_kind(entry)}")
            provider_type = check.typed(
                entry, "provider_type", str, required=True, path=f"{item}.provider_type"
            )
            if resolve_provider_type(api, provider_type) != provider_type:
                raise check.fail(
                    f"{item}.provider_type",
                    f"unknown provider type '{provider_type}' for API '{api}'; "
                    f"valid: {', '.join(apis[api])}",
                )
            provider_id = check.typed(entry, "provider_id", str, path=f"{item}.provider_id")
            config = check.typed(entry, "config", dict, default={}, path=f"{item}.config")
            result[api].append(ProviderConfig(api, provider_id, provider_type, dict(config)))
    return result


def _parse_models(check: _Checker, data: dict[str, Any]) -> list[ModelSpec]:
    resources = check.typed(data, "registered_resources", dict, default={}) or {}
    raw = check.typed(resources, "models", list, default=[], path="registered_resources.models")
    models = []
    for index, entry in enumerate(raw):
        path = f"registered_resources.models[{index}]"
        if not isinstance(entry, dict):
            raise check.fail(path, f"expected a mapping, got {_kind(entry)}")
        model_type = check.typed(entry, "model_type", str, default="llm", path=f"{path}.model_type")
        if model_type not in ("llm", "embedding"):
            raise check.fail(
                f"{path}.model_type", f"expected 'llm' or 'embedding', got {model_type!r}"
            )
        models.append(
            ModelSpec(
                model_id=str(
                    check.typed(
                        entry, "model_id", (str, int, float), required=True, path=f"{path}.model_id"
                    )
                ),
                provider_id=check.typed(entry, "provider_id", str, path=f"{path}.provider_id"),
                provider_model_id=check.typed(
                    entry, "provider_model_id", str, path=f"{path}.provider_model_id"
                ),
                model_type=model_type,
                metadata=check.typed(entry, "metadata", dict, default={}, path=f"{path}.metadata"),
            )
        )
    return models


def _parse_storage(check: _Checker, raw: dict[str, Any]) -> StorageConfig:
    backends_raw = check.typed(raw, "backends", dict, required=True, path="storage.backends")
    backends: dict[str, BackendConfig] = {}
    for name, entry in backends_raw.items():
        path = f"storage.backends.{name}"
        if not isinstance(entry, dict):
            raise check.fail(path, f"expected a mapping, got {_kind(entry)}")
        backend_type = check.typed(entry, "type", str, required=True, path=f"{path}.type")
        if backend_type not in BACKEND_TYPES:
            raise check.fail(
                f"{path}.type",
                f"unsupported backend type '{backend_type}'; this stack supports: "
                f"{', '.join(BACKEND_TYPES)}",
            )
        db_path = check.typed(entry, "db_path", (str, int), required=True, path=f"{path}.db_path")
        backends[name] = BackendConfig(name, backend_type, Path(str(db_path)).expanduser())

    stores_raw = dict(check.typed(raw, "stores", dict, default={}, path="storage.stores") or {})
    if stores_raw.get("prompts") is None:
        stores_raw["prompts"] = dict(DEFAULT_PROMPTS_STORE)
    stores: dict[str, KVStoreRef | SqlStoreRef] = {}
    for name, entry in stores_raw.items():
        if name not in STORE_FAMILIES or entry is None:
            continue
        path = f"storage.stores.{name}"
        if not isinstance(entry, dict):
            raise check.fail(path, f"expected a mapping, got {_kind(entry)}")
        backend = check.typed(entry, "backend", str, required=True, path=f"{path}.backend")
        _ensure_backend(check, path, name, backend, backends)
        if STORE_FAMILIES[name] == "kv":
            namespace = check.typed(
                entry, "namespace", str, required=True, path=f"{path}.namespace"
            )
            stores[name] = KVStoreRef(backend, namespace)
        else:
            # Llama Stack's max_write_queue_size / num_writers tune its async write queue; this
            # stack writes each completion directly, so they are ignored like any unknown key.
            table_name = check.typed(
                entry, "table_name", str, required=True, path=f"{path}.table_name"
            )
            stores[name] = SqlStoreRef(backend, table_name)
    return StorageConfig(backends, stores)


def _ensure_backend(
    check: _Checker, path: str, store: str, name: str, backends: dict[str, BackendConfig]
) -> None:
    if name not in backends:
        raise check.fail(
            f"{path}.backend",
            f"{store} references unknown backend '{name}'. Available backends: {sorted(backends)}",
        )
    backend = backends[name]
    family = STORE_FAMILIES[store]
    if backend.family != family:
        raise check.fail(
            f"{path}.backend",
            f"{store} references backend '{name}' of type '{backend.type}', "
            f"but a backend of type {family}_* is required.",
        )


def run_config_from_providers(spec: str, env: Mapping[str, str] | None = None) -> RunConfig:
    """A library-mode config from "api=provider,...", with default provider configs and storage."""
    from harness.stack.providers.registry import INFERENCE_PROVIDERS

    source = f"--stack-config={spec!r}"
    apis = known_apis()
    providers: dict[str, list[dict[str, Any]]] = {}
    store_dir = "${env.SQLITE_STORE_DIR:=~/.llama/distributions/providers-run}"
    for part in filter(None, (p.strip() for p in spec.split(","))):
        api, sep, name = part.partition("=")
        api, name = api.strip(), name.strip()
        if not sep or api not in apis:
            raise StackConfigError(
                f"{source}: '{part}' is not api=provider with a known API; "
                f"known: {'; '.join(f'{a}=' + '|'.join(t) for a, t in apis.items())}"
            )
        provider_type = resolve_provider_type(api, name)
        if provider_type is None:
            raise StackConfigError(
                f"{source}: unknown provider '{name}' for API '{api}'; "
                f"valid: {', '.join(apis[api])}"
            )
        if api == "inference":
            providers.setdefault(api, []).append(
                {
                    "provider_id": provider_type.split("::")[-1],
                    "provider_type": provider_type,
                    "config": dict(INFERENCE_PROVIDERS[provider_type].default_config),
                }
            )
    raw = {
        "version": 2,
        "image_name": "providers-run",
        "apis": sorted(set(providers) | {"prompts"}),
        "providers": providers,
        "storage": {
            "backends": {
                "kv_default": {"type": "kv_sqlite", "db_path": f"{store_dir}/kvstore.db"},
                "sql_default": {"type": "sql_sqlite", "db_path": f"{store_dir}/sql_store.db"},
            },
            "stores": {
                "metadata": {"backend": "kv_default", "namespace": "registry"},
                "inference": {"backend": "sql_default", "table_name": "inference_store"},
                "conversations": {"backend": "sql_default", "table_name": "openai_conversations"},
                "prompts": {"backend": "kv_default", "namespace": "prompts"},
            },
        },
    }
    return parse_run_config(raw, source=source, env=env)
