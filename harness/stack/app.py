"""`create_app`: the reference stack as an ASGI (Starlette) application.

Everything a run config asks for is built here, eagerly, so config problems (an unsupported
backend, vLLM without a URL) surface as `StackConfigError` before a server binds its port.
Only the provider model listing waits for the lifespan, since it talks to the network.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from harness.recording.context import AttributionMiddleware
from harness.recording.errors import RecordingError, ReplayMissError
from harness.recording.modes import RecordingSettings
from harness.stack import api_inference, api_inspect, api_prompts
from harness.stack.errors import (
    ModelNotFoundError,
    ModelTypeError,
    StackConfigError,
    UpstreamConnectionError,
    UpstreamError,
    translate_exception,
)
from harness.stack.http_api import RequestValidationError
from harness.stack.inference import InferenceRouter
from harness.stack.models import Model, ModelRegistry
from harness.stack.prompts import PromptService
from harness.stack.providers.openai_compat import OpenAICompatProvider
from harness.stack.run_config_model import RunConfig
from harness.stack.storage.inference_store import (
    ChatCompletionNotFoundError,
    SqliteInferenceStore,
)
from harness.stack.storage.kv_sqlite import SqliteKVStore
from harness.stack.storage.prompts_sql import SqlitePromptTable

logger = logging.getLogger(__name__)

# Exceptions a request can raise that have a defined HTTP translation (see errors.py).
TRANSLATED = (
    ValueError,
    ValidationError,
    ModelNotFoundError,
    ModelTypeError,
    UpstreamError,
    UpstreamConnectionError,
    ChatCompletionNotFoundError,
    PermissionError,
    ConnectionError,
    TimeoutError,
    NotImplementedError,
)


@dataclass
class Stack:
    """The live parts of one stack, reachable from handlers as `request.app.state.stack`."""

    run_config: RunConfig
    providers: dict[str, OpenAICompatProvider]
    models: ModelRegistry
    inference: InferenceRouter
    prompts: PromptService

    async def start(self) -> None:
        """Register every provider's listed models, then the run config's own models."""
        for provider in self.providers.values():
            try:
                ids = await provider.list_models()
            except ReplayMissError as exc:
                logger.warning(
                    "model listing of provider %s not recorded:\n%s", provider.provider_id, exc
                )
                continue
            except RecordingError:
                raise  # an unreadable or unwritable recording is not a provider being down
            except Exception as exc:
                logger.warning(
                    "could not list models of provider %s: %s", provider.provider_id, exc
                )
                continue
            for model_id in ids:
                meta = provider.embedding_metadata.get(model_id)
                self.models.add(
                    Model(
                        f"{provider.provider_id}/{model_id}",
                        provider.provider_id,
                        model_id,
                        "embedding" if meta else "llm",
                        dict(meta or {}),
                    )
                )
            logger.info("provider %s lists %d models", provider.provider_id, len(ids))
        for spec in self.run_config.models:
            if not spec.enabled:
                continue
            provider_model_id = spec.provider_model_id or spec.model_id
            self.models.add(
                Model(
                    f"{spec.provider_id}/{provider_model_id}",
                    spec.provider_id,
                    provider_model_id,
                    spec.model_type,
                    dict(spec.metadata),
                    "via_register_api",
                )
            )

    async def stop(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        self.prompts.close()
        if self.inference.store is not None:
            self.inference.store.close()


def build_stack(
    run_config: RunConfig, recording: RecordingSettings | None, secrets: Iterable[str] = ()
) -> Stack:
    providers = {}
    for provider in run_config.enabled_providers("inference"):
        providers[str(provider.provider_id)] = OpenAICompatProvider(
            provider, recording=recording, secrets=secrets
        )
    for spec in run_config.models:
        if spec.enabled and spec.provider_id not in providers:
            raise StackConfigError(
                f"{run_config.source}: registered_resources.models: model '{spec.model_id}' names "
                f"provider '{spec.provider_id}', which is not an enabled inference provider "
                f"(enabled: {sorted(providers)})"
            )
    prompts = PromptService(_prompt_records(run_config))
    inference_path = run_config.sql_store_path("inference")
    store = SqliteInferenceStore(inference_path) if inference_path else None
    models = ModelRegistry(providers)
    return Stack(
        run_config=run_config,
        providers=providers,
        models=models,
        inference=InferenceRouter(providers, models, store),
        prompts=prompts,
    )


def _prompt_records(run_config: RunConfig) -> SqliteKVStore | SqlitePromptTable:
    """Prompts in a kv_sqlite namespace (Llama Stack's layout) or in OGX's SQL table."""
    kv_path = run_config.kv_store_path("prompts")
    if kv_path is not None:
        return SqliteKVStore(kv_path)
    sql_path = run_config.sql_store_path("prompts")
    assert sql_path is not None, "the reader puts every store on a kv_sqlite or sql_sqlite backend"
    return SqlitePromptTable(sql_path)


def create_app(
    run_config: RunConfig,
    *,
    recording: RecordingSettings | None = None,
    secrets: Iterable[str] = (),
) -> Starlette:
    """The stack's ASGI app; provider calls are recorded or replayed as `recording` says.

    No recording settings means live provider calls. The app never reads the environment: the
    caller decides (`harness stack run` passes `RecordingSettings.from_env`, the pytest plugin
    its resolved settings), so an app built in a test does what the test says. `secrets` are
    values that never reach disk, beside the ones the providers' configs hold (the caller
    reads them from the stack's environment: ``redaction.secret_values``).
    """
    stack = build_stack(run_config, recording, list(secrets))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await stack.start()
        try:
            yield
        finally:
            await stack.stop()

    routes = [
        *api_inspect.build_routes(),
        *api_inference.build_routes(),
        *api_prompts.build_routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=error_handlers())
    app.state.stack = stack
    app.add_middleware(AttributionMiddleware)
    return app


def error_body(detail: Any) -> dict[str, Any]:
    """Llama Stack's `{"detail": ...}` plus an OpenAI-style `error.message`.

    The `detail` is what Llama Stack sends; `error.message` is the one field OpenAI-compatible
    SDKs put into their exception text (openai 3.x shows nothing else), so a test failing on
    a 404 or a replay miss says why.
    """
    if isinstance(detail, str):
        message = detail
    elif isinstance(detail, dict) and isinstance(detail.get("errors"), list):
        message = "; ".join(str(e.get("msg")) for e in detail["errors"])
    else:
        message = json.dumps(detail)
    return {"detail": detail, "error": {"message": message}}


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"error": {"detail": {"errors": exc.errors}}}, status_code=400)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown path / wrong method: FastAPI's (and Llama Stack's) JSON {"detail": ...}."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _translated(request: Request, exc: Exception) -> Response:
    status, detail = translate_exception(exc)
    if status >= 500:
        logger.error("%s %s failed: %r", request.method, request.url.path, exc)
    return JSONResponse(error_body(detail), status_code=status)


def error_handlers() -> dict[type[Exception], object]:
    handlers: dict[type[Exception], object] = {kind: _translated for kind in TRANSLATED}
    handlers[RequestValidationError] = _validation_error
    handlers[HTTPException] = _http_error
    # A RecordingError has no handler: it reaches the attribution middleware, the one place
    # that turns a recording fault into the answer (recording/context.py).
    return handlers
