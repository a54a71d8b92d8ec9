"""Load a run.yaml (version 2) into typed dataclasses, or say exactly what is wrong with it.

Every user error is one `StackConfigError` naming the file and the dotted key path, so the CLI
and the pytest plugin can print it on a line or two instead of a traceback. Env substitution
(`envsubst`) runs first, on the raw YAML, as in Llama Stack; the pydantic models of
`run_config_schema` then check the result; unknown keys are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.stack.envsubst import EnvVarError, substitute_env
from harness.stack.errors import StackConfigError
from harness.stack.ports import DEFAULT_PORT, PORT_ENV
from harness.stack.prompts_location import PromptsLocation, prompts_location, stack_flavour
from harness.stack.providers.registry import known_apis, resolve_provider_type
from harness.stack.run_config_model import (
    BackendConfig,
    KVStoreRef,
    ModelSpec,
    ProviderConfig,
    RunConfig,
    SqlStoreRef,
    StorageConfig,
)
from harness.stack.run_config_schema import RunConfigFile, kind_of, validate_file

__all__ = [
    "DEFAULT_PORT",
    "PORT_ENV",
    "BackendConfig",
    "KVStoreRef",
    "ModelSpec",
    "PromptsLocation",
    "ProviderConfig",
    "RunConfig",
    "SqlStoreRef",
    "StackConfigError",
    "StorageConfig",
    "known_apis",
    "load_run_config",
    "parse_run_config",
    "prompts_location",
    "resolve_run_config_path",
    "run_config_from_providers",
    "stack_flavour",
]

DISTRIBUTIONS_DIR = Path(__file__).parent / "distributions"


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
    """Validate already-parsed YAML data; `source` names it in error messages.

    Env substitution runs first, on the raw data, as in Llama Stack: a substituted "8321"
    becomes the int the schema expects, and a disabled provider is gone before validation.
    """
    if not isinstance(raw, dict):
        raise StackConfigError(f"{source}: expected a mapping at the top level, got {kind_of(raw)}")
    try:
        data = substitute_env(raw, env)
    except EnvVarError as exc:
        raise StackConfigError(f"{source}: {exc}") from None
    return _typed(validate_file(data, source), source, data)


def _typed(file: RunConfigFile, source: str, data: dict[str, Any]) -> RunConfig:
    """The stack's typed values from a validated file."""
    backends = {
        name: BackendConfig(name, backend.type, Path(backend.db_path).expanduser())
        for name, backend in file.storage.backends.items()
    }
    stores: dict[str, KVStoreRef | SqlStoreRef] = {}
    for name, ref in file.storage.named_stores().items():
        if backends[ref.backend].family == "kv":
            stores[name] = KVStoreRef(ref.backend, str(ref.namespace))
        else:
            stores[name] = SqlStoreRef(ref.backend, str(ref.table_name))
    return RunConfig(
        source=source,
        image_name=file.image_name,
        version=file.version,
        apis=list(file.apis),
        providers={
            api: [
                ProviderConfig(api, e.provider_id, e.provider_type, dict(e.config)) for e in entries
            ]
            for api, entries in file.providers.items()
        },
        models=[
            ModelSpec(
                m.model_id, m.provider_id, m.provider_model_id, m.model_type, dict(m.metadata)
            )
            for m in file.registered_resources.models
        ],
        storage=StorageConfig(backends, stores),
        server_port=file.server.port,
        server_host=file.server.host,
        data=data,
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
