"""A stack that calls its provider with HTTP clients other than httpx.

Provider SDKs and plugins bring their own clients: `requests` (Llama Stack 0.7.3's web-search
tool runtimes declare it), the standard library's `urllib.request`, and `aiohttp` (OGX's own
recorder patches `aiohttp.ClientSession.post`). One endpoint per client (the stack never imports
the harness):

- `POST /v1/chat/completions`: `requests.post`, in the thread pool;
- `POST /v1/completions`: `urllib.request.urlopen`, in the thread pool;
- `POST /v1/embeddings`: an `aiohttp.ClientSession` made at start-up.

Each forwards its JSON body to the same path at the provider and answers with the provider's
status and JSON; a provider that cannot be reached is a bare HTTP 500. `GET /v1/health` is OK.

    OTHER_CLIENTS_PROVIDER_URL=http://127.0.0.1:PORT python tests/fakes/stack_other_clients.py \
        <config> --port N

`OTHER_CLIENTS_PROVIDER_URL` is the provider's root (an OpenAI-wire server such as the fake
provider); `<config>` is accepted and ignored. Needs `requests` and `aiohttp` (the test extra).
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import requests
from serving import HEALTH, serve
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def provider_url(path: str) -> str:
    return os.environ["OTHER_CLIENTS_PROVIDER_URL"].rstrip("/") + path


def bare_500() -> Response:
    return JSONResponse({"detail": "Internal server error: An unexpected error occurred."}, 500)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.aiohttp = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    yield
    await app.state.aiohttp.close()


async def chat_with_requests(request: Request) -> Response:
    body = await request.json()
    try:
        answer = await run_in_threadpool(
            requests.post, provider_url("/v1/chat/completions"), json=body, timeout=30
        )
    except requests.RequestException:
        return bare_500()
    return JSONResponse(answer.json(), status_code=answer.status_code)


def _urlopen(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:  # a 4xx/5xx is an answer, not a failure
        return error.code, json.loads(error.read() or b"null")


async def completions_with_urllib(request: Request) -> Response:
    body = await request.json()
    try:
        status, payload = await run_in_threadpool(_urlopen, provider_url("/v1/completions"), body)
    except (urllib.error.URLError, OSError):
        return bare_500()
    return JSONResponse(payload, status_code=status)


async def embeddings_with_aiohttp(request: Request) -> Response:
    body = await request.json()
    session: aiohttp.ClientSession = request.app.state.aiohttp
    try:
        async with session.post(provider_url("/v1/embeddings"), json=body) as answer:
            return JSONResponse(await answer.json(), status_code=answer.status)
    except aiohttp.ClientError:
        return bare_500()


app = Starlette(
    routes=[
        HEALTH,
        Route("/v1/chat/completions", chat_with_requests, methods=["POST"]),
        Route("/v1/completions", completions_with_urllib, methods=["POST"]),
        Route("/v1/embeddings", embeddings_with_aiohttp, methods=["POST"]),
    ],
    lifespan=lifespan,
)


def main() -> None:
    serve(app, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
