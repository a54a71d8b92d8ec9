"""A stack that calls its provider from asyncio tasks that do not run in the request's context.

Stacks hand provider work to tasks that outlive or ignore the request that asked for it: Llama
Stack 0.7.3 starts its background-response workers with a cleared context on the first such
request, and feeds them from a queue. Both shapes are here (the stack never imports the
harness), with one `httpx.AsyncClient` made at start-up:

- `POST /v1/chat/completions`: the call runs in `asyncio.create_task(...,
  context=contextvars.Context())`, a task with a fresh, empty context; the handler awaits it;
- `POST /v1/embeddings`: the handler puts the body on a queue and awaits the answer; a worker
  task started at start-up (so in no request's context at all) makes the call;
- `POST /v1/completions`: the handler checks a "connection" out of a pool of one (an
  `asyncio.Queue`, filled at start-up, the way SQLAlchemy's async pool holds connections),
  makes the call itself and checks the connection back in;
- `POST /v1/batches`: the handler starts a task (in the request's context) that waits `delay`
  seconds and then asks the provider for the embeddings of `input`, and answers at once, the
  way Llama Stack ingests a vector store's file batch; `GET /v1/batches/{id}` says whether it
  is done, with the provider's answer. `POST /v1/hold` just takes `seconds` to answer.

Each forwards its JSON body to the same path at the provider and answers with the provider's
status and JSON; a provider that cannot be reached is a bare HTTP 500. `GET /v1/health` is OK.

    DETACHED_PROVIDER_URL=http://127.0.0.1:PORT python tests/fakes/stack_detached_tasks.py \
        <config> --port N

`DETACHED_PROVIDER_URL` is the provider's root (an OpenAI-wire server such as the fake
provider); `<config>` is accepted and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
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

Job = tuple[str, Any, "asyncio.Future[Response]"]


async def forward(client: httpx.AsyncClient, path: str, body: Any) -> Response:
    try:
        answer = await client.post(path, json=body)
    except httpx.HTTPError:
        return JSONResponse({"detail": "Internal server error: An unexpected error occurred."}, 500)
    return JSONResponse(answer.json(), status_code=answer.status_code)


async def worker(client: httpx.AsyncClient, jobs: asyncio.Queue[Job]) -> None:
    """Serves the queue for the life of the server; started once, at start-up."""
    while True:
        path, body, done = await jobs.get()
        try:
            done.set_result(await forward(client, path, body))
        except Exception as exc:  # keep serving the queue whatever one job does
            done.set_exception(exc)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    root = os.environ["DETACHED_PROVIDER_URL"].rstrip("/")
    app.state.client = httpx.AsyncClient(base_url=root, timeout=30)
    app.state.jobs = asyncio.Queue()
    app.state.pool = asyncio.Queue()
    app.state.pool.put_nowait("connection")
    app.state.batches = {}
    app.state.tasks = set()
    app.state.worker = asyncio.create_task(worker(app.state.client, app.state.jobs))
    yield
    app.state.worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await app.state.worker
    await app.state.client.aclose()


async def chat_in_a_fresh_context(request: Request) -> Response:
    body = await request.json()
    call = forward(request.app.state.client, "/v1/chat/completions", body)
    return await asyncio.create_task(call, context=contextvars.Context())


async def embeddings_through_a_queue(request: Request) -> Response:
    done: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    await request.app.state.jobs.put(("/v1/embeddings", await request.json(), done))
    return await done


async def completions_through_a_pool(request: Request) -> Response:
    pool: asyncio.Queue[str] = request.app.state.pool
    connection = await pool.get()
    try:
        await asyncio.sleep(0.05)  # the connection is in use: a request beside this one waits
        return await forward(request.app.state.client, "/v1/completions", await request.json())
    finally:
        pool.put_nowait(connection)


async def run_batch(client: httpx.AsyncClient, batch: dict[str, Any], body: Any) -> None:
    await asyncio.sleep(float(body.get("delay", 0)))
    answer = await forward(client, "/v1/embeddings", {k: body[k] for k in ("model", "input")})
    batch.update(status="completed", result=json.loads(answer.body))


async def create_batch(request: Request) -> Response:
    body = await request.json()
    batch: dict[str, Any] = {"id": f"batch_{len(request.app.state.batches)}"}
    batch["status"] = "in_progress"
    request.app.state.batches[batch["id"]] = batch
    task = asyncio.create_task(run_batch(request.app.state.client, batch, body))
    request.app.state.tasks.add(task)
    task.add_done_callback(request.app.state.tasks.discard)
    return JSONResponse(batch)


async def get_batch(request: Request) -> Response:
    batch = request.app.state.batches.get(request.path_params["batch_id"])
    return JSONResponse(batch) if batch else JSONResponse({"detail": "no such batch"}, 404)


async def hold(request: Request) -> Response:
    await asyncio.sleep(float((await request.json())["seconds"]))
    return JSONResponse({"held": True})


app = Starlette(
    routes=[
        HEALTH,
        Route("/v1/chat/completions", chat_in_a_fresh_context, methods=["POST"]),
        Route("/v1/embeddings", embeddings_through_a_queue, methods=["POST"]),
        Route("/v1/completions", completions_through_a_pool, methods=["POST"]),
        Route("/v1/batches", create_batch, methods=["POST"]),
        Route("/v1/batches/{batch_id}", get_batch, methods=["GET"]),
        Route("/v1/hold", hold, methods=["POST"]),
    ],
    lifespan=lifespan,
)


def main() -> None:
    serve(app, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
