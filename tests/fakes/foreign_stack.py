"""A stack server the harness did not write: it never imports the harness.

It stands in for a real Llama Stack when testing `--stack-command`: an ASGI app served by
uvicorn in its own process, calling its provider the way real stacks do:

- through the openai SDK's async client, made once at start-up (which also lists the
  provider's models at start-up, outside any test), for chat completions, streamed or not;
- through a plain `httpx.AsyncClient`, for embeddings;
- through a sync `httpx.Client` in a worker thread, for completions.

Like Llama Stack it answers any provider failure with a bare HTTP 500 that says nothing
useful, and it passes a stream on event by event as the provider sends it.

    python tests/fakes/foreign_stack.py <config> --port N

`<config>` is accepted and ignored (a stack command template passes one). The provider is
`FOREIGN_PROVIDER_URL` (an OpenAI-wire root, e.g. the fake provider's); its key
`FOREIGN_API_KEY` is required, as real providers' keys are. `FOREIGN_ENV_DUMP` names a file
to which the process writes its environment (a JSON object, name -> value) at start-up.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
from serving import HEALTH, serve
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    dump = os.environ.get("FOREIGN_ENV_DUMP")
    if dump:
        with open(dump, "w") as handle:
            json.dump(dict(sorted(os.environ.items())), handle)
    root = os.environ["FOREIGN_PROVIDER_URL"].rstrip("/")
    key = os.environ.get("FOREIGN_API_KEY")
    if not key:
        raise RuntimeError("FOREIGN_API_KEY is not set: this stack needs its provider's key")
    app.state.openai = openai.AsyncOpenAI(base_url=f"{root}/v1", api_key=key)
    app.state.http = httpx.AsyncClient(base_url=root, headers={"Authorization": f"Bearer {key}"})
    app.state.sync_http = httpx.Client(base_url=root, headers={"Authorization": f"Bearer {key}"})
    app.state.models = [m.id async for m in app.state.openai.models.list()]
    yield
    await app.state.openai.close()
    await app.state.http.aclose()
    app.state.sync_http.close()


def bare_500() -> Response:
    return JSONResponse({"detail": "Internal server error: An unexpected error occurred."}, 500)


async def models(request: Request) -> Response:
    return JSONResponse({"data": [{"id": m, "object": "model"} for m in request.app.state.models]})


async def chat(request: Request) -> Response:
    body: dict[str, Any] = await request.json()
    client: openai.AsyncOpenAI = request.app.state.openai
    try:
        if not body.get("stream"):
            completion = await client.chat.completions.create(**body)
            return JSONResponse(completion.model_dump(mode="json"))
        stream = await client.chat.completions.create(**body)
    except Exception:
        return bare_500()

    async def events() -> AsyncIterator[str]:
        async for chunk in stream:
            yield f"data: {chunk.model_dump_json()}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def embeddings(request: Request) -> Response:
    try:
        answer = await request.app.state.http.post("/v1/embeddings", json=await request.json())
    except Exception:
        return bare_500()
    return JSONResponse(answer.json(), status_code=answer.status_code)


async def completions(request: Request) -> Response:
    body = await request.json()
    try:
        answer = await run_in_threadpool(
            request.app.state.sync_http.post, "/v1/completions", json=body
        )
    except Exception:
        return bare_500()
    return JSONResponse(answer.json(), status_code=answer.status_code)


app = Starlette(
    routes=[
        HEALTH,
        Route("/v1/models", models),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
    ],
    lifespan=lifespan,
)


def main() -> None:
    serve(app, "A stack server that is not the harness's.")


if __name__ == "__main__":
    main()
