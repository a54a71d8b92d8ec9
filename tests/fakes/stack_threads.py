"""A stack that calls its provider off the event loop, with a client it built at import time.

Some stacks build a provider client when a module is imported, before the server serves
anything, and use it from worker threads. Here one sync `httpx.Client` is made at import time
and used three ways (the stack never imports the harness):

- `POST /v1/chat/completions`: from a plain `threading.Thread` (no context is copied into it);
- `POST /v1/embeddings`: through `loop.run_in_executor(None, ...)` (no context copied either);
- `POST /v1/completions`: through `asyncio.to_thread`, which copies the caller's context, the
  way Llama Stack runs its faiss searches (a control: this one keeps the request's context).

Each forwards its JSON body to the same path at the provider and answers with the provider's
status and JSON; a provider that cannot be reached is a bare HTTP 500. `GET /v1/health` is OK.

    THREADS_PROVIDER_URL=http://127.0.0.1:PORT python tests/fakes/stack_threads.py <config> --port N

`THREADS_PROVIDER_URL` is the provider's root (an OpenAI-wire server such as the fake provider),
read at import time; `<config>` is accepted and ignored.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from typing import Any

import httpx
from serving import HEALTH, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# Built at import time: before uvicorn starts, before any request exists.
PROVIDER = httpx.Client(base_url=os.environ["THREADS_PROVIDER_URL"].rstrip("/"), timeout=30)


def forward(path: str, body: Any) -> Response:
    """Call the provider (blocking) and turn its answer into this stack's response."""
    try:
        answer = PROVIDER.post(path, json=body)
    except httpx.HTTPError:
        return JSONResponse({"detail": "Internal server error: An unexpected error occurred."}, 500)
    return JSONResponse(answer.json(), status_code=answer.status_code)


async def chat_from_a_plain_thread(request: Request) -> Response:
    body = await request.json()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Response] = loop.create_future()

    def work() -> None:
        response = forward("/v1/chat/completions", body)
        loop.call_soon_threadsafe(done.set_result, response)

    threading.Thread(target=work, name="provider-call", daemon=True).start()
    return await done


async def embeddings_from_an_executor(request: Request) -> Response:
    body = await request.json()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(forward, "/v1/embeddings", body))


async def completions_from_to_thread(request: Request) -> Response:
    body = await request.json()
    return await asyncio.to_thread(forward, "/v1/completions", body)


app = Starlette(
    routes=[
        HEALTH,
        Route("/v1/chat/completions", chat_from_a_plain_thread, methods=["POST"]),
        Route("/v1/embeddings", embeddings_from_an_executor, methods=["POST"]),
        Route("/v1/completions", completions_from_to_thread, methods=["POST"]),
    ]
)


def main() -> None:
    serve(app, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
