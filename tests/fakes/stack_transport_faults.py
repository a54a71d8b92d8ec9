"""A stack whose provider calls fail at the transport, answered with errors a test can tell apart.

A provider that is down, resets the connection or never answers in time makes the stack's HTTP
client raise before any response exists. This stack (it never imports the harness) maps each
such failure to its own answer, so a test can check that record and replay give the same one:

- `POST /v1/chat/completions`: the JSON body goes to the provider's `/v1/chat/completions`.
  With the fake provider, model `fault:reset` resets the connection and `fault:stall` answers
  after the stack's read timeout; any other model answers normally (status and JSON passed on);
- `POST /v1/refused`: the same body goes to a loopback port that this stack found closed at
  start-up (bound, then released), so the connection is refused.

A failure is answered `{"error": {"kind": K, "type": <httpx exception class>}}` with
K = `refused` (502; httpx.ConnectError), `reset` (502; httpx.ReadError or
httpx.RemoteProtocolError), `timeout` (504; httpx.TimeoutException) or `transport` (502; any
other httpx.TransportError). `GET /v1/health` is OK.

    FAULTS_PROVIDER_URL=http://127.0.0.1:PORT python tests/fakes/stack_transport_faults.py \
        <config> --port N

`FAULTS_PROVIDER_URL` is the provider's root; `FAULTS_READ_TIMEOUT` is the client's read
timeout in seconds (default 0.5); `<config>` is accepted and ignored.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
from serving import HEALTH, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

KINDS: list[tuple[type[Exception], str, int]] = [
    (httpx.ConnectError, "refused", 502),
    (httpx.TimeoutException, "timeout", 504),
    (httpx.ReadError, "reset", 502),
    (httpx.RemoteProtocolError, "reset", 502),
    (httpx.TransportError, "transport", 502),
]


def closed_port() -> int:
    """A loopback port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    read = float(os.environ.get("FAULTS_READ_TIMEOUT") or 0.5)
    app.state.client = httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=read))
    app.state.provider = os.environ["FAULTS_PROVIDER_URL"].rstrip("/")
    app.state.closed = f"http://127.0.0.1:{closed_port()}"
    yield
    await app.state.client.aclose()


async def forward(request: Request, root: str) -> Response:
    body: Any = await request.json()
    client: httpx.AsyncClient = request.app.state.client
    try:
        answer = await client.post(f"{root}/v1/chat/completions", json=body)
    except httpx.TransportError as exc:
        kind, status = next((k, s) for cls, k, s in KINDS if isinstance(exc, cls))
        return JSONResponse({"error": {"kind": kind, "type": type(exc).__name__}}, status)
    return JSONResponse(answer.json(), status_code=answer.status_code)


async def chat(request: Request) -> Response:
    return await forward(request, request.app.state.provider)


async def refused(request: Request) -> Response:
    return await forward(request, request.app.state.closed)


app = Starlette(
    routes=[
        HEALTH,
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/refused", refused, methods=["POST"]),
    ],
    lifespan=lifespan,
)


def main() -> None:
    serve(app, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
