"""One adapter for every provider that speaks the OpenAI wire format (ollama, vllm, openai).

They differ only in where the OpenAI API lives, which key they send, and small defaults; those
differences are data in each type's `ProviderSpec` (registry.py), so nothing here branches on
the provider type. All calls go through `provider_http_client`, so recording and replay see
every byte.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import httpx

from harness.recording.modes import RecordingSettings
from harness.stack.errors import StackConfigError, UpstreamConnectionError, UpstreamError
from harness.stack.providers.http import provider_http_client
from harness.stack.providers.registry import INFERENCE_PROVIDERS, secret_values
from harness.stack.run_config_model import ProviderConfig

logger = logging.getLogger(__name__)


class OpenAICompatProvider:
    """An inference provider reached over HTTP with OpenAI's request and response shapes."""

    def __init__(
        self,
        provider: ProviderConfig,
        *,
        recording: RecordingSettings | None,
        secrets: Iterable[str] = (),
    ) -> None:
        self.provider_id = str(provider.provider_id)
        spec = INFERENCE_PROVIDERS[provider.provider_type]
        self.spec = spec
        defaults = _defaults(spec.default_config)
        config = {**defaults, **provider.config}
        self.config = config
        self.embedding_metadata = spec.embedding_models
        url = config.get(spec.url_key) or defaults.get(spec.url_key)
        if not url:
            raise StackConfigError(f"provider '{self.provider_id}': {spec.url_required_message}")
        self.base_url = str(url).rstrip("/") + spec.url_suffix
        self.api_key: str | None = _configured(config, spec.key_field)
        self.default_max_tokens: int | None = _configured(config, spec.max_tokens_key)
        verify: bool | str = config.get(spec.verify_key, True) if spec.verify_key else True
        self.client = provider_http_client(
            self.base_url,
            recording=recording,
            secrets=[*secret_values(config), *secrets],
            verify=verify,
        )
        self.listed_models: set[str] = set()

    @property
    def requires_api_key(self) -> bool:
        return self.spec.key_required

    @property
    def skips_availability_check(self) -> bool:
        return self.spec.unchecked_when_keyed and bool(self.api_key)

    async def aclose(self) -> None:
        await self.client.aclose()

    def _headers(self, provider_data: Mapping[str, Any] | None) -> dict[str, str]:
        key = self.api_key
        field = self.spec.provider_data_key
        if provider_data and field and provider_data.get(field):
            key = str(provider_data[field])
        if key is None and self.requires_api_key:
            raise ValueError(
                "API key not provided. Please provide a valid API key in the provider data "
                f'header, e.g. x-llamastack-provider-data: {{"{field}": "<API_KEY>"}}.'
            )
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def list_models(self) -> list[str]:
        """The upstream model ids (GET {base}/models); none for a keyless openai provider."""
        if self.requires_api_key and not self.api_key:
            logger.info("provider %s has no API key: not listing its models", self.provider_id)
            return []
        response = await self._send("GET", "/models", None, None)
        ids = [str(m["id"]) for m in response.get("data", []) if "id" in m]
        self.listed_models = set(ids)
        return ids

    def is_available(self, provider_model_id: str) -> bool:
        if self.skips_availability_check:
            return True
        candidates = {provider_model_id}
        candidates.update(provider_model_id + suffix for suffix in self.spec.alias_suffixes)
        return bool(candidates & self.listed_models)

    def prepare(self, body: dict[str, Any], provider_model_id: str) -> dict[str, Any]:
        """The upstream body: the bare provider model id, the provider's default max_tokens."""
        body = {**body, "model": provider_model_id}
        generates_text = "prompt" in body or "messages" in body
        if self.default_max_tokens and generates_text and body.get("max_tokens") is None:
            body["max_tokens"] = self.default_max_tokens
        return body

    async def post(
        self, path: str, body: dict[str, Any], provider_data: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return await self._send("POST", path, body, provider_data)

    async def open_stream(
        self, path: str, body: dict[str, Any], provider_data: Mapping[str, Any] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Send a streaming request and check its status now; iterate the SSE events later."""
        request = self.client.build_request(
            "POST", path, json=body, headers=self._headers(provider_data)
        )
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code >= 400:
            await response.aread()
            await response.aclose()
            raise UpstreamError(response.status_code, _error_detail(response))
        return self._events(response)

    async def _events(self, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                event = json.loads(payload)
                if isinstance(event, dict) and event.get("error"):
                    error = event["error"]
                    message = error.get("message", error) if isinstance(error, dict) else error
                    code = error.get("code") if isinstance(error, dict) else None
                    raise UpstreamError(code if isinstance(code, int) else 500, message)
                yield event
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        finally:
            await response.aclose()

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        provider_data: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        try:
            response = await self.client.request(
                method, path, json=body, headers=self._headers(provider_data)
            )
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code >= 400:
            raise UpstreamError(response.status_code, _error_detail(response))
        return response.json()

    def _transport_error(self, exc: httpx.TransportError) -> Exception:
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return TimeoutError(f"provider '{self.provider_id}' at {self.base_url}: {exc!r}")
        return UpstreamConnectionError(self.provider_id, self.base_url, str(exc) or repr(exc))


def _configured(config: dict[str, Any], key: str | None) -> Any:
    """The value of a key the spec names, or None if it names none or the config leaves it empty."""
    return (config.get(key) or None) if key else None


def _defaults(config: dict[str, Any]) -> dict[str, Any]:
    """Provider defaults without the env placeholders (those only apply via a run.yaml)."""
    from harness.stack.envsubst import substitute_env

    return substitute_env(config, {})


def _error_detail(response: httpx.Response) -> Any:
    """The upstream's error message (OpenAI `error.message`, FastAPI `detail`) or its text."""
    try:
        body = response.json()
    except ValueError:
        return response.text or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return error["message"]
        if isinstance(error, str):
            return error
        if "detail" in body:
            return body["detail"]
    return body
