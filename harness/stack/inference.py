"""Inference routing: model id -> provider, request in, response out with the requested id.

Routing follows Llama Stack's `_get_model_provider`: an exact registered identifier, else
`<provider_id>/<anything>` to an enabled provider (unlisted models pass through), else 404.
Chat completions, streamed or not, are written to the inference store when they finish.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from harness.stack.errors import ModelNotFoundError, ModelTypeError
from harness.stack.models import ModelRegistry
from harness.stack.providers.openai_compat import OpenAICompatProvider
from harness.stack.storage.inference_store import SqliteInferenceStore

logger = logging.getLogger(__name__)
ProviderData = Mapping[str, Any] | None


class InferenceRouter:
    def __init__(
        self,
        providers: dict[str, OpenAICompatProvider],
        models: ModelRegistry,
        store: SqliteInferenceStore | None,
    ) -> None:
        self.providers = providers
        self.models = models
        self.store = store

    def route(self, model_id: str, expected_type: str) -> tuple[OpenAICompatProvider, str]:
        model = self.models.find(model_id)
        if model is not None:
            if model.model_type != expected_type:
                raise ModelTypeError(
                    f"Model '{model_id}' is of type '{model.model_type}', not '{expected_type}'"
                )
            return self.providers[model.provider_id], model.provider_resource_id
        provider_id, sep, provider_model_id = model_id.partition("/")
        if not sep or provider_id not in self.providers:
            raise ModelNotFoundError(model_id)
        return self.providers[provider_id], provider_model_id

    async def chat_completion(
        self, body: dict[str, Any], provider_data: ProviderData = None
    ) -> dict[str, Any] | AsyncIterator[dict[str, Any]]:
        """A completion dict, or (stream=true) an already-opened iterator of chunk dicts."""
        requested = body["model"]
        body = dict(body)
        if body.get("tool_choice") is not None and not body.get("tools"):
            raise ValueError("'tool_choice' is only allowed when 'tools' is also provided")
        if body.get("tool_choice") == "none":
            body.pop("tools", None)
            body.pop("tool_choice", None)
        provider, provider_model_id = self.route(requested, "llm")
        upstream = provider.prepare(body, provider_model_id)
        if body.get("stream"):
            events = await provider.open_stream("/chat/completions", upstream, provider_data)
            return self._stream_chat(events, requested, body["messages"])
        completion = await provider.post("/chat/completions", upstream, provider_data)
        completion["model"] = requested
        for choice in completion.get("choices") or []:
            message = choice.get("message") or {}
            if message.get("tool_calls") == []:
                message["tool_calls"] = None
        await self._store(completion, body["messages"])
        return completion

    async def _stream_chat(
        self, events: AsyncIterator[dict[str, Any]], requested: str, messages: list[Any]
    ) -> AsyncIterator[dict[str, Any]]:
        accumulator = ChunkAccumulator(requested)
        async for chunk in events:
            chunk["model"] = requested
            accumulator.add(chunk)
            yield chunk
        completion = accumulator.completion()
        if completion is not None:
            await self._store(completion, messages)

    async def _store(self, completion: dict[str, Any], messages: list[Any]) -> None:
        if self.store is not None and completion.get("id"):
            await self.store.store(completion, messages)

    async def completion(
        self, body: dict[str, Any], provider_data: ProviderData = None
    ) -> dict[str, Any] | AsyncIterator[dict[str, Any]]:
        requested = body["model"]
        provider, provider_model_id = self.route(requested, "llm")
        upstream = provider.prepare(body, provider_model_id)
        if body.get("stream"):
            events = await provider.open_stream("/completions", upstream, provider_data)
            return _with_model(events, requested)
        response = await provider.post("/completions", upstream, provider_data)
        response["model"] = requested
        return response

    async def embeddings(
        self, body: dict[str, Any], provider_data: ProviderData = None
    ) -> dict[str, Any]:
        requested = body["model"]
        provider, provider_model_id = self.route(requested, "embedding")
        response = await provider.post(
            "/embeddings", {**body, "model": provider_model_id}, provider_data
        )
        response["model"] = requested
        return response


async def _with_model(
    events: AsyncIterator[dict[str, Any]], requested: str
) -> AsyncIterator[dict[str, Any]]:
    async for event in events:
        event["model"] = requested
        yield event


class ChunkAccumulator:
    """Rebuilds the final chat completion from streamed chunks, for the inference store."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id: str | None = None
        self.created = 0
        self.usage: Any = None
        self.choices: dict[int, dict[str, Any]] = {}

    def add(self, chunk: dict[str, Any]) -> None:
        self.id = self.id or chunk.get("id")
        self.created = self.created or chunk.get("created") or 0
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            slot = self.choices.setdefault(
                choice.get("index", 0),
                {"content": [], "role": "assistant", "finish_reason": None, "tool_calls": {}},
            )
            delta = choice.get("delta") or {}
            if delta.get("role"):
                slot["role"] = delta["role"]
            if delta.get("content"):
                slot["content"].append(delta["content"])
            for call in delta.get("tool_calls") or []:
                self._add_tool_call(slot["tool_calls"], call)
            if choice.get("finish_reason"):
                slot["finish_reason"] = choice["finish_reason"]

    @staticmethod
    def _add_tool_call(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
        call = calls.setdefault(
            delta.get("index", len(calls)),
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        call["id"] = delta.get("id") or call["id"]
        function = delta.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""

    def completion(self) -> dict[str, Any] | None:
        if self.id is None:
            return None
        choices = []
        for index in sorted(self.choices):
            slot = self.choices[index]
            tool_calls = [slot["tool_calls"][i] for i in sorted(slot["tool_calls"])] or None
            choices.append(
                {
                    "index": index,
                    "finish_reason": slot["finish_reason"],
                    "logprobs": None,
                    "message": {
                        "role": slot["role"],
                        "content": "".join(slot["content"]) if slot["content"] else None,
                        "tool_calls": tool_calls,
                    },
                }
            )
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage,
        }
