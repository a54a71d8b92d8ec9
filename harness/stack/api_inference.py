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

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from harness.stack.errors import translate_exception
from harness.stack.http_api import load_json, parse_body, parse_query, route

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


class ListChatCompletionsQuery(BaseModel):
    after: str | None = None
    limit: int = 20
    model: str | None = None
    order: Literal["asc", "desc"] = "desc"


def _provider_data(request: Request) -> dict[str, Any] | None:
    raw = request.headers.get(PROVIDER_DATA_HEADER)
    if not raw:
        return None
    try:
        data = load_json(raw)
    except ValueError as exc:
        logger.warning("ignoring %s header: not JSON (%s)", PROVIDER_DATA_HEADER, exc)
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


async def chat_completions(request: Request) -> Response:
    body = await parse_body(request, ChatCompletionRequest)
    result = await request.app.state.stack.inference.chat_completion(
        body.model_dump(exclude_unset=True), _provider_data(request)
    )
    return _respond(result)


async def completions(request: Request) -> Response:
    body = await parse_body(request, CompletionRequest)
    result = await request.app.state.stack.inference.completion(
        body.model_dump(exclude_unset=True), _provider_data(request)
    )
    return _respond(result)


async def embeddings(request: Request) -> dict[str, Any]:
    body = await parse_body(request, EmbeddingsRequest)
    return await request.app.state.stack.inference.embeddings(
        body.model_dump(exclude_unset=True), _provider_data(request)
    )


async def list_chat_completions(request: Request) -> dict[str, Any]:
    query = parse_query(request, ListChatCompletionsQuery)
    return await _store(request).list(
        after=query.after, limit=query.limit, model=query.model, order=query.order
    )


async def get_chat_completion(request: Request) -> dict[str, Any]:
    return await _store(request).get(request.path_params["completion_id"])


async def list_models(request: Request) -> dict[str, Any]:
    return {"data": [m.to_wire() for m in request.app.state.stack.models.list()]}


async def get_model(request: Request) -> dict[str, Any]:
    return request.app.state.stack.models.get(request.path_params["model_id"]).to_detail()


async def register_model(request: Request) -> dict[str, Any]:
    body = await parse_body(request, RegisterModelRequest)
    model = request.app.state.stack.models.register(
        body.model_id,
        provider_model_id=body.provider_model_id,
        provider_id=body.provider_id,
        metadata=body.metadata,
        model_type=body.model_type,
    )
    return model.to_detail()


async def unregister_model(request: Request) -> Response:
    request.app.state.stack.models.unregister(request.path_params["model_id"])
    return Response(status_code=204)


def _store(request: Request) -> Any:
    store = request.app.state.stack.inference.store
    if store is None:
        raise NotImplementedError("storage.stores.inference is not configured in the run config")
    return store


def build_routes() -> list[Route]:
    return [
        route("/v1/chat/completions", chat_completions, ["POST"]),
        route("/v1/chat/completions", list_chat_completions, ["GET"]),
        route("/v1/chat/completions/{completion_id}", get_chat_completion, ["GET"]),
        route("/v1/completions", completions, ["POST"]),
        route("/v1/embeddings", embeddings, ["POST"]),
        route("/v1/models", list_models, ["GET"]),
        route("/v1/models", register_model, ["POST"]),
        route("/v1/models/{model_id:path}", get_model, ["GET"]),
        route("/v1/models/{model_id:path}", unregister_model, ["DELETE"]),
    ]
