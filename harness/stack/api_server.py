"""Server routes: health, version, providers (secrets redacted) and route inspection."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from fastapi import APIRouter, Request

from harness.stack.config import ProviderConfig, RunConfig
from harness.stack.providers.registry import redact

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


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/health", tags=["inspect"])
    async def health() -> dict[str, str]:
        return {"status": "OK"}

    @router.get("/version", tags=["inspect"])
    async def version() -> dict[str, str]:
        return {"version": stack_version()}

    @router.get("/providers", tags=["providers"])
    async def list_providers(request: Request) -> dict[str, Any]:
        run_config: RunConfig = request.app.state.stack.run_config
        return {"data": [provider_info(p) for p in _enabled(run_config)]}

    @router.get("/providers/{provider_id}", tags=["providers"])
    async def inspect_provider(request: Request, provider_id: str) -> dict[str, Any]:
        for provider in _enabled(request.app.state.stack.run_config):
            if provider.provider_id == provider_id:
                return provider_info(provider)
        raise ValueError(f"Provider {provider_id} not found")

    @router.get("/inspect/routes", tags=["inspect"])
    async def list_routes(request: Request) -> dict[str, Any]:
        run_config: RunConfig = request.app.state.stack.run_config
        data = []
        for path, methods in request.app.state.stack_routes:
            api = next((a for p, a in ROUTE_APIS.items() if path.startswith(p)), None)
            served = api in ("providers", "inspect") or api in run_config.providers
            if api is None or not served:
                continue
            types = sorted({p.provider_type for p in run_config.providers.get(api, [])})
            for method in sorted(methods - {"HEAD"}):
                data.append({"route": path, "method": method, "provider_types": types})
        return {"data": data}

    return router
