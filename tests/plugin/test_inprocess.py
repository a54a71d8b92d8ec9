"""The in-process transports: lifespan on its own loop, streamed bodies chunk by chunk."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import httpx
import httpx2
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from harness.inprocess import InProcessStack


def make_app(events: list[str], gate: threading.Event) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("startup")
        app.state.loop = asyncio.get_running_loop()
        yield
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/v1/health")
    async def health():
        return {"status": "OK"}

    @app.post("/echo")
    async def echo(body: dict, q: str = ""):
        return {"body": body, "q": q, "same_loop": asyncio.get_running_loop() is app.state.loop}

    @app.get("/stream")
    async def stream():
        async def events_():
            yield "data: first\n\n"
            while not gate.is_set():  # the second chunk waits until the client saw the first
                await asyncio.sleep(0.01)
            yield "data: second\n\n"

        return StreamingResponse(events_(), media_type="text/event-stream")

    @app.get("/boom")
    async def boom():
        raise RuntimeError("broken handler")

    return app


@pytest.fixture
def stack():
    events: list[str] = []
    gate = threading.Event()
    running = InProcessStack(make_app(events, gate)).start()
    yield running, events, gate
    running.stop()
    assert events == ["startup", "shutdown"]


@pytest.mark.parametrize("module", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_first_chunk_arrives_before_the_app_sends_the_second(stack, module):
    running, _, gate = stack
    transport = running.transport(module)
    client = module.Client(transport=transport, base_url=running.base_url, timeout=5)
    with client, client.stream("GET", "/stream") as response:
        chunks = response.iter_raw()
        assert next(chunks) == b"data: first\n\n"
        gate.set()
        assert next(chunks) == b"data: second\n\n"


def test_requests_run_on_the_loop_that_ran_the_lifespan(stack):
    running, events, _ = stack
    with httpx.Client(transport=running.transport(httpx), base_url=running.base_url) as client:
        response = client.post("/echo?q=1", json={"a": [1, 2]})

    assert events == ["startup"]
    assert response.json() == {"body": {"a": [1, 2]}, "q": "1", "same_loop": True}


def test_an_app_error_is_a_500_like_a_real_server(stack):
    running, _, _ = stack
    with httpx.Client(transport=running.transport(httpx), base_url=running.base_url) as client:
        response = client.get("/boom")

    assert response.status_code == 500


def test_openai_sdk_accepts_the_httpx2_transport(stack):
    import openai

    running, _, _ = stack
    http = httpx2.Client(transport=running.transport(httpx2))
    client = openai.OpenAI(base_url=f"{running.base_url}/v1", api_key="x", http_client=http)

    assert client.get("/health", cast_to=object) == {"status": "OK"}


def test_a_failing_lifespan_raises_the_apps_own_error():
    @contextlib.asynccontextmanager
    async def lifespan(app):
        raise ValueError("bad run config: storage.stores.prompts is missing")
        yield

    with pytest.raises(ValueError, match="storage.stores.prompts is missing"):
        InProcessStack(FastAPI(lifespan=lifespan)).start()
