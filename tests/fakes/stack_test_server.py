"""A stack that calls both its provider and a server the test serves on loopback.

Llama Stack's MCP tests serve an MCP server from the test process and pass its URL in each
request; the stack is that server's client as well as the provider's. This stack does the same
with the tool server in `tests/fakes/loopback_tool.py` (it never imports the harness), through
one `httpx.AsyncClient` for both:

- `POST /v1/tool-chat` `{"model", "question", "tool_url"}`: `POST {tool_url}/answer` with the
  question, then a chat completion at the provider whose last user message is
  `Tool answer: <the tool's answer>`;
- `POST /v1/stream-tool-chat` (same body): the MCP shape. `GET {tool_url}/sse` opens the tool's
  event stream (long-lived: it never ends by itself), its first event names the endpoint for
  this session, the question is `POST`ed there, its answer arrives on the stream, the stack
  closes the stream and then asks the provider as above.

Both answer `{"tool_answer": ..., "reply": <the provider's message content>}`; a tool or provider
that fails is a bare HTTP 500. `GET /v1/health` is OK.

    TESTSERVER_PROVIDER_URL=http://127.0.0.1:PORT python tests/fakes/stack_test_server.py \
        <config> --port N

`TESTSERVER_PROVIDER_URL` is the provider's root (an OpenAI-wire server such as the fake
provider); the tool's URL comes with each request; `<config>` is accepted and ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
from serving import HEALTH, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.client = httpx.AsyncClient(timeout=30)
    yield
    await app.state.client.aclose()


def bare_500() -> Response:
    return JSONResponse({"detail": "Internal server error: An unexpected error occurred."}, 500)


async def ask_the_provider(client: httpx.AsyncClient, body: dict[str, Any], answer: str) -> str:
    root = os.environ["TESTSERVER_PROVIDER_URL"].rstrip("/")
    messages = [
        {"role": "user", "content": body["question"]},
        {"role": "user", "content": f"Tool answer: {answer}"},
    ]
    reply = await client.post(
        f"{root}/v1/chat/completions", json={"model": body["model"], "messages": messages}
    )
    reply.raise_for_status()
    return reply.json()["choices"][0]["message"]["content"]


async def tool_over_sse(client: httpx.AsyncClient, tool_url: str, question: str) -> str:
    """The MCP shape: a long-lived event stream carries the answer to a POSTed message."""
    async with client.stream("GET", f"{tool_url}/sse") as stream:
        stream.raise_for_status()
        events = stream.aiter_lines()
        name = ""
        async for line in events:
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: ") and name == "endpoint":
                endpoint = line[len("data: ") :]
                accepted = await client.post(f"{tool_url}{endpoint}", json={"question": question})
                accepted.raise_for_status()
            elif line.startswith("data: ") and name == "message":
                return json.loads(line[len("data: ") :])["answer"]
    raise RuntimeError("the tool's stream ended before its answer")


async def tool_chat(request: Request) -> Response:
    body = await request.json()
    client: httpx.AsyncClient = request.app.state.client
    try:
        tool = await client.post(f"{body['tool_url']}/answer", json={"question": body["question"]})
        tool.raise_for_status()
        answer = tool.json()["answer"]
        reply = await ask_the_provider(client, body, answer)
    except (httpx.HTTPError, KeyError, ValueError):
        return bare_500()
    return JSONResponse({"tool_answer": answer, "reply": reply})


async def stream_tool_chat(request: Request) -> Response:
    body = await request.json()
    client: httpx.AsyncClient = request.app.state.client
    try:
        answer = await tool_over_sse(client, body["tool_url"], body["question"])
        reply = await ask_the_provider(client, body, answer)
    except (httpx.HTTPError, KeyError, ValueError, RuntimeError):
        return bare_500()
    return JSONResponse({"tool_answer": answer, "reply": reply})


app = Starlette(
    routes=[
        HEALTH,
        Route("/v1/tool-chat", tool_chat, methods=["POST"]),
        Route("/v1/stream-tool-chat", stream_tool_chat, methods=["POST"]),
    ],
    lifespan=lifespan,
)


def main() -> None:
    serve(app, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
