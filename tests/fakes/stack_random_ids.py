"""A stack that writes ids it makes up into its provider requests, new ones on every run.

Llama Stack's file_search puts the uploaded file's random id (`file-<32 hex>`) and a chunk id
(uuid-shaped) into the tool message it sends to the provider; a new upload, on a new run, gets
new ids. This stack does the same (it never imports the harness), keeping its files in memory:

- `POST /v1/files` `{"content": text}` -> `{"id": "file-<32 hex>", "object": "file",
  "chunk_id": "<uuid4>"}`, both random;
- `POST /v1/file-search` `{"model", "file_id", "question"}` -> a chat completion at the
  provider whose first message (system) is
  `[1] document_id: <file id>, chunk_id: <chunk id>, attributes: {'file_id': '<file id>'}`
  followed by the file's text, and whose last message is the question; the body's
  `metadata.request_id` is a fresh uuid4 per request. It answers
  `{"file_id": ..., "answer": <the provider's message content>}`; an unknown file is a 404,
  a provider failure a bare HTTP 500.

`GET /v1/health` is OK.

    RANDOM_IDS_PROVIDER_URL=http://127.0.0.1:PORT python tests/fakes/stack_random_ids.py \
        <config> --port N

`RANDOM_IDS_PROVIDER_URL` is the provider's root (an OpenAI-wire server such as the fake
provider); `<config>` is accepted and ignored.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import httpx
from serving import HEALTH, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    root = os.environ["RANDOM_IDS_PROVIDER_URL"].rstrip("/")
    app.state.client = httpx.AsyncClient(base_url=root, timeout=30)
    app.state.files = {}
    yield
    await app.state.client.aclose()


async def upload(request: Request) -> Response:
    body = await request.json()
    file = {"id": f"file-{uuid.uuid4().hex}", "object": "file", "chunk_id": str(uuid.uuid4())}
    request.app.state.files[file["id"]] = {**file, "content": str(body.get("content", ""))}
    return JSONResponse(file)


async def file_search(request: Request) -> Response:
    body = await request.json()
    file = request.app.state.files.get(body.get("file_id"))
    if file is None:
        return JSONResponse({"detail": f"File {body.get('file_id')} not found"}, 404)
    found = (
        f"[1] document_id: {file['id']}, chunk_id: {file['chunk_id']}, "
        f"attributes: {{'file_id': '{file['id']}'}}\n{file['content']}"
    )
    chat = {
        "model": body["model"],
        "messages": [
            {"role": "system", "content": found},
            {"role": "user", "content": body["question"]},
        ],
        "metadata": {"request_id": str(uuid.uuid4())},
    }
    try:
        reply = await request.app.state.client.post("/v1/chat/completions", json=chat)
        reply.raise_for_status()
    except httpx.HTTPError:
        return JSONResponse({"detail": "Internal server error: An unexpected error occurred."}, 500)
    answer = reply.json()["choices"][0]["message"]["content"]
    return JSONResponse({"file_id": file["id"], "answer": answer})


app = Starlette(
    routes=[
        HEALTH,
        Route("/v1/files", upload, methods=["POST"]),
        Route("/v1/file-search", file_search, methods=["POST"]),
    ],
    lifespan=lifespan,
)


def main() -> None:
    serve(app, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
