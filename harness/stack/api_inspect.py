"""Inspection routes: health, version, providers (secrets redacted) and the route list.

They describe the running stack; starting and stopping stack server processes is the job of
`harness/server.py`, which is why this module is not called "server".
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from harness.stack.http_api import route
from harness.stack.providers.registry import redact
from harness.stack.run_config_model import ProviderConfig, RunConfig

NO_HEALTH = {"status": "Not Implemented", "message": "Provider does not implement health check"}
# Route prefix -> API, for /v1/inspect/routes (Llama Stack lists neither models nor prompts).
ROUTE_APIS = {
    "/v1/chat/completions": "inference",
    "/v1/completions": "inference",
    "/v1/embeddings": "inference",
    "/v1/providers": "providers",
    "/v1/inspect": "inspect",
    "/v1/health": "inspect",
    "/v1/version": "inspect",
}


def stack_version() -> str:
    try:
        return metadata.version("stack-harness")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def provider_info(provider: ProviderConfig) -> dict[str, Any]:
    return {
        "api": provider.api,
        "provider_id": provider.provider_id,
        "provider_type": provider.provider_type,
        "config": redact(provider.config),
        "health": NO_HEALTH,
    }


def _enabled(run_config: RunConfig) -> list[ProviderConfig]:
    return [p for entries in run_config.providers.values() for p in entries if p.enabled]


async def health(request: Request) -> dict[str, str]:
    return {"status": "OK"}


async def version(request: Request) -> dict[str, str]:
    return {"version": stack_version()}


async def list_providers(request: Request) -> dict[str, Any]:
    run_config: RunConfig = request.app.state.stack.run_config
    return {"data": [provider_info(p) for p in _enabled(run_config)]}


async def inspect_provider(request: Request) -> dict[str, Any]:
    provider_id = request.path_params["provider_id"]
    for provider in _enabled(request.app.state.stack.run_config):
        if provider.provider_id == provider_id:
            return provider_info(provider)
    raise ValueError(f"Provider {provider_id} not found")


async def list_routes(request: Request) -> dict[str, Any]:
    run_config: RunConfig = request.app.state.stack.run_config
    data = []
    for app_route in request.app.routes:
        if not isinstance(app_route, Route) or not app_route.methods:
            continue
        path = app_route.path
        api = next((a for p, a in ROUTE_APIS.items() if path.startswith(p)), None)
        served = api in ("providers", "inspect") or api in run_config.providers
        if api is None or not served:
            continue
        types = sorted({p.provider_type for p in run_config.providers.get(api, [])})
        for method in sorted(app_route.methods - {"HEAD"}):
            data.append({"route": path, "method": method, "provider_types": types})
    return {"data": data}


def build_routes() -> list[Route]:
    return [
        route("/v1/health", health, ["GET"]),
        route("/v1/version", version, ["GET"]),
        route("/v1/providers", list_providers, ["GET"]),
        route("/v1/providers/{provider_id}", inspect_provider, ["GET"]),
        route("/v1/inspect/routes", list_routes, ["GET"]),
    ]
