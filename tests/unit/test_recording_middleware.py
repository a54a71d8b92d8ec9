"""The test scope reaches the provider transport through a real ASGI app and its headers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from harness.recording.context import AttributionMiddleware, attribution_headers
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.transport import wrap_async_transport
from tests.fakes.provider import FakeProvider

SESSION = "5e" * 16
TEST_ID = "tests/integration/inference/test_via_stack.py::test_stream"
CHAT = {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "through the app"}]}


def make_app(provider_url: str, settings: RecordingSettings) -> FastAPI:
    """A minimal stack-like app: one provider client built with the recording transport."""
    app = FastAPI()
    provider = httpx.AsyncClient(
        base_url=provider_url,
        transport=wrap_async_transport(httpx.AsyncHTTPTransport(), settings),
    )

    @app.get("/models")
    async def models() -> dict:
        return (await provider.get("/v1/models")).json()

    @app.post("/chat")
    async def chat() -> StreamingResponse:
        request = provider.build_request(
            "POST", "/v1/chat/completions", json={**CHAT, "stream": True}
        )
        upstream = await provider.send(request, stream=True)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                await upstream.aclose()

        return StreamingResponse(body(), media_type="text/event-stream")

    app.add_middleware(AttributionMiddleware)
    return app


async def call(app: FastAPI, headers: dict[str, str]) -> tuple[dict, bytes]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stack") as client:
        listing = (await client.get("/models")).json()  # no headers: shared scope
        streamed = (await client.post("/chat", headers=headers)).content
    return listing, streamed


def test_headers_file_provider_traffic_under_the_test_and_replay_through_the_app(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "recordings"
    with FakeProvider() as fake:
        recorded = asyncio.run(
            call(
                make_app(fake.base_url, RecordingSettings(Mode.RECORD, directory)),
                attribution_headers(SESSION, TEST_ID, "first-run"),
            )
        )
        provider_url = fake.base_url
    shared = list((directory / "_shared").glob("*.json"))
    per_test = list((directory / "tests/integration/inference/test_via_stack").glob("*.json"))
    assert len(shared) == 1 and len(per_test) == 1
    assert json.loads(per_test[0].read_text())["test_id"] == TEST_ID
    # A new run of the test (new invocation id) replays from its first recording again.
    replayed = asyncio.run(
        call(
            make_app(provider_url, RecordingSettings(Mode.REPLAY, directory)),
            attribution_headers(SESSION, TEST_ID, "second-run"),
        )
    )
    assert replayed == recorded
    assert recorded[1].endswith(b"data: [DONE]\n\n")
