"""HTTP routes of the OpenAI-compatible inference API, the models API and stored completions.

Streaming answers are SSE `data: {json}\\n\\n` events passed on as they arrive, without a
final `[DONE]` (as Llama Stack). The upstream stream is opened before the response starts,
so an upstream or replay error is an ordinary error response; one that happens later becomes
a `data: {"error": {"message": "<status>: <detail>"}}` event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from harness.stack.errors import translate_exception

logger = logging.getLogger(__name__)
PROVIDER_DATA_HEADER = "X-LlamaStack-Provider-Data"


class _OpenAIRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str


class ChatCompletionRequest(_OpenAIRequest):
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool | None = None


class CompletionRequest(_OpenAIRequest):
    prompt: str | list[Any]
    stream: bool | None = None


class EmbeddingsRequest(_OpenAIRequest):
    input: str | list[Any]


class RegisterModelRequest(BaseModel):
    model_id: str
    provider_model_id: str | None = None
    provider_id: str | None = None
    metadata: dict[str, Any] | None = None
    model_type: Literal["llm", "embedding"] | None = None


def _provider_data(request: Request) -> dict[str, Any] | None:
    raw = request.headers.get(PROVIDER_DATA_HEADER)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        logger.warning("ignoring %s header: not JSON", PROVIDER_DATA_HEADER)
        return None
    return data if isinstance(data, dict) else None


async def sse(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    try:
        async for event in events:
            yield f"data: {json.dumps(event)}\n\n"
    except Exception as exc:  # the status line is sent: report the error as an event
        status, detail = translate_exception(exc)
        logger.warning("error while streaming: %s", exc)
        yield f"data: {json.dumps({'error': {'message': f'{status}: {detail}'}})}\n\n"


def _respond(result: dict[str, Any] | AsyncIterator[dict[str, Any]]) -> Response:
    if isinstance(result, dict):
        return JSONResponse(result)
    return StreamingResponse(
        sse(result), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.post("/chat/completions", tags=["inference"])
    async def chat_completions(request: Request, body: ChatCompletionRequest) -> Response:
        router_ = request.app.state.stack.inference
        payload = body.model_dump(exclude_unset=True)
        return _respond(await router_.chat_completion(payload, _provider_data(request)))

    @router.post("/completions", tags=["inference"])
    async def completions(request: Request, body: CompletionRequest) -> Response:
        router_ = request.app.state.stack.inference
        payload = body.model_dump(exclude_unset=True)
        return _respond(await router_.completion(payload, _provider_data(request)))

    @router.post("/embeddings", tags=["inference"])
    async def embeddings(request: Request, body: EmbeddingsRequest) -> dict[str, Any]:
        router_ = request.app.state.stack.inference
        payload = body.model_dump(exclude_unset=True)
        return await router_.embeddings(payload, _provider_data(request))

    @router.get("/chat/completions", tags=["inference"])
    async def list_chat_completions(
        request: Request,
        after: str | None = None,
        limit: int = 20,
        model: str | None = None,
        order: Literal["asc", "desc"] = "desc",
    ) -> dict[str, Any]:
        store = _store(request)
        return await store.list(after=after, limit=limit, model=model, order=order)

    @router.get("/chat/completions/{completion_id}", tags=["inference"])
    async def get_chat_completion(request: Request, completion_id: str) -> dict[str, Any]:
        return await _store(request).get(completion_id)

    @router.get("/models", tags=["models"])
    async def list_models(request: Request) -> dict[str, Any]:
        return {"data": [m.to_wire() for m in request.app.state.stack.models.list()]}

    @router.get("/models/{model_id:path}", tags=["models"])
    async def get_model(request: Request, model_id: str) -> dict[str, Any]:
        return request.app.state.stack.models.get(model_id).to_detail()

    @router.post("/models", tags=["models"])
    async def register_model(request: Request, body: RegisterModelRequest) -> dict[str, Any]:
        model = request.app.state.stack.models.register(
            body.model_id,
            provider_model_id=body.provider_model_id,
            provider_id=body.provider_id,
            metadata=body.metadata,
            model_type=body.model_type,
        )
        return model.to_detail()

    @router.delete("/models/{model_id:path}", tags=["models"], status_code=204)
    async def unregister_model(request: Request, model_id: str) -> Response:
        request.app.state.stack.models.unregister(model_id)
        return Response(status_code=204)

    return router


def _store(request: Request) -> Any:
    store = request.app.state.stack.inference.store
    if store is None:
        raise NotImplementedError("storage.stores.inference is not configured in the run config")
    return store
