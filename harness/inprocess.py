"""Library mode: serve an ASGI app inside the pytest process, through sync httpx transports.

The stack's app (with its lifespan: provider start-up, stores) runs on one event loop in a
dedicated thread for the whole session, exactly as under a server, so async resources created
at start-up stay on the loop that created them. Tests use ordinary *sync* clients; each
request is submitted to that loop and the response body flows back chunk by chunk through a
queue as the app sends it. `httpx.ASGITransport` (async only) and Starlette's `TestClient`
would buffer a streamed body until the app finished, which hides streaming behaviour.

One transport serves both `httpx` (the `http_client` fixture) and `httpx2` (what the openai
3.x SDK accepts as `http_client`), bound to each by `harness.recording.httplibs`. An async
twin serves the async clients a test builds itself: it waits for the app's messages in a
worker thread, so the test's event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

from harness.recording.httplibs import bind

logger = logging.getLogger(__name__)

_END = object()


class InProcessStackError(Exception):
    """The in-process app failed to start (its lifespan reported a failure)."""


class _Exchange:
    """One request/response between a client thread and the app's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.messages: queue.Queue[Any] = queue.Queue()
        self.disconnected = asyncio.Event()  # only touched on the loop

    def disconnect(self) -> None:
        """The client closed the response: let the app see `http.disconnect`."""
        if not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
                self.loop.call_soon_threadsafe(self.disconnected.set)


class InProcessStack:
    """Runs an ASGI app and its lifespan on a private event loop thread."""

    def __init__(self, app: Any, *, server: tuple[str, int] = ("stack.inprocess", 80)) -> None:
        self.app = app
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="harness-inprocess-stack", daemon=True
        )
        self._state: dict[str, Any] = {}
        self._lifespan_inbox: asyncio.Queue[dict[str, Any]] | None = None
        self._lifespan_task: asyncio.Task[None] | None = None
        self._started = False

    @property
    def base_url(self) -> str:
        return f"http://{self.server[0]}"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> InProcessStack:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._startup(), self._loop).result(timeout)
        except BaseException:
            self._stop_loop()
            raise
        self._started = True
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        if self._started:
            self._started = False
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout)
            except Exception:
                logger.exception("the in-process stack did not shut down cleanly")
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    async def _startup(self) -> None:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lifespan_inbox = inbox

        async def send(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind.endswith(".failed") and not done.done():
                done.set_exception(InProcessStackError(message.get("message", kind)))
            elif kind.endswith(".complete") and not done.done():
                done.set_result(None)

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self._state}
        task = asyncio.ensure_future(self.app(scope, inbox.get, send))
        self._lifespan_task = task
        await inbox.put({"type": "lifespan.startup"})
        await asyncio.wait([task, done], return_when=asyncio.FIRST_COMPLETED)
        if done.done() and done.exception() is None:
            return
        if not task.done():  # failed: the app re-raises its own error right after reporting
            await asyncio.wait([task], timeout=1.0)
        if task.done() and not task.cancelled() and task.exception() is not None:
            self._lifespan_task = None
            raise task.exception()  # the app's own error (e.g. a bad run config)
        if done.done():
            await done  # a reported failure without an exception
        # The app returned without completing start-up: it does not use the lifespan protocol.
        self._lifespan_task = None

    async def _shutdown(self) -> None:
        if self._lifespan_inbox is None or self._lifespan_task is None:
            return
        await self._lifespan_inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(self._lifespan_task, timeout=10)

    # -- requests ----------------------------------------------------------------------------

    def submit(
        self, method: str, url: Any, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> _Exchange:
        """Start one request on the loop; the exchange's queue yields its ASGI messages."""
        if not self._started:
            raise RuntimeError("the in-process stack is not running")
        exchange = _Exchange(self._loop)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": url.scheme,
            "path": url.path,
            "raw_path": url.raw_path.split(b"?")[0],
            "query_string": url.query,
            "root_path": "",
            "headers": [(name.lower(), value) for name, value in headers],
            "server": self.server,
            "client": ("127.0.0.1", 50000),
            "state": dict(self._state),
        }
        asyncio.run_coroutine_threadsafe(self._serve(scope, body, exchange), self._loop)
        return exchange

    async def _serve(self, scope: dict[str, Any], body: bytes, exchange: _Exchange) -> None:
        body_sent = False
        started = False

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await exchange.disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            if not exchange.disconnected.is_set():
                exchange.messages.put(message)

        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            # Like a real server: log the app's error and answer 500 if nothing was sent yet.
            logger.exception("the in-process stack raised while serving %s", scope["path"])
            if not started:
                exchange.messages.put(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                exchange.messages.put(
                    {"type": "http.response.body", "body": b"Internal Server Error"}
                )
            exchange.messages.put(exc)
        finally:
            exchange.messages.put(_END)
            exchange.disconnected.set()

    def transport(self, lib: Any) -> Any:
        """A sync transport of `lib` (httpx, or httpx2 for the openai SDK) into the app."""
        return bind(_InProcessTransportMixin, "BaseTransport", lib)(self)

    def async_transport(self, lib: Any) -> Any:
        """An async transport of `lib` into the app (for async clients)."""
        return bind(_AsyncInProcessTransportMixin, "AsyncBaseTransport", lib)(self)


def _wait_start(exchange: _Exchange, timeout: float | None) -> tuple[int, list[Any]]:
    while True:
        message = exchange.messages.get(timeout=timeout)
        if message is _END or isinstance(message, BaseException):
            raise RuntimeError("the in-process stack sent no response")
        if message["type"] == "http.response.start":
            return message["status"], list(message.get("headers", []))


def _body_chunks(exchange: _Exchange, timeout: float | None) -> Iterator[bytes]:
    while True:
        message = exchange.messages.get(timeout=timeout)
        if message is _END:
            return
        if isinstance(message, BaseException):
            continue  # already answered with a 500 or a truncated body; logged by the loop
        if message["type"] != "http.response.body":
            continue
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _read_timeout(request: Any) -> float | None:
    return (request.extensions.get("timeout") or {}).get("read")


class _ChunkStreamMixin:
    """Yields the body as the app sends it; closing early tells the app the client left."""

    lib: Any

    def __init__(self, exchange: _Exchange, timeout: float | None, request: Any) -> None:
        self._exchange = exchange
        self._timeout = timeout
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from _body_chunks(self._exchange, self._timeout)
        except queue.Empty:
            raise self.lib.ReadTimeout(
                f"the in-process stack sent no data for {self._timeout} s", request=self._request
            ) from None

    def close(self) -> None:
        self._exchange.disconnect()


class _InProcessTransportMixin:
    """A sync transport into the in-process app; bound to httpx and httpx2 by `transport`."""

    lib: Any

    def __init__(self, stack: InProcessStack) -> None:
        self.stack = stack

    def handle_request(self, request: Any) -> Any:
        lib = self.lib
        timeout = _read_timeout(request)
        exchange = self.stack.submit(
            request.method, request.url, list(request.headers.raw), request.read()
        )
        try:
            status, headers = _wait_start(exchange, timeout)
        except queue.Empty:
            exchange.disconnect()
            raise lib.ReadTimeout(
                f"the in-process stack did not answer within {timeout} s", request=request
            ) from None
        stream = bind(_ChunkStreamMixin, "SyncByteStream", lib)(exchange, timeout, request)
        return lib.Response(status, headers=headers, stream=stream, request=request)


class _AsyncChunkStreamMixin:
    """The async body: each chunk is awaited in a worker thread, off the caller's loop."""

    lib: Any

    def __init__(self, exchange: _Exchange, timeout: float | None, request: Any) -> None:
        self._chunks = _body_chunks(exchange, timeout)
        self._exchange = exchange
        self._timeout = timeout
        self._request = request

    async def __aiter__(self) -> Any:
        import anyio.to_thread

        while True:
            try:
                chunk = await anyio.to_thread.run_sync(next, self._chunks, None)
            except queue.Empty:
                raise self.lib.ReadTimeout(
                    f"the in-process stack sent no data for {self._timeout} s",
                    request=self._request,
                ) from None
            if chunk is None:
                return
            yield chunk

    async def aclose(self) -> None:
        self._exchange.disconnect()


class _AsyncInProcessTransportMixin:
    """An async transport into the in-process app; bound to httpx and httpx2."""

    lib: Any

    def __init__(self, stack: InProcessStack) -> None:
        self.stack = stack

    async def handle_async_request(self, request: Any) -> Any:
        import anyio.to_thread

        lib = self.lib
        timeout = _read_timeout(request)
        body = await request.aread()
        exchange = self.stack.submit(request.method, request.url, list(request.headers.raw), body)
        try:
            status, headers = await anyio.to_thread.run_sync(_wait_start, exchange, timeout)
        except queue.Empty:
            exchange.disconnect()
            raise lib.ReadTimeout(
                f"the in-process stack did not answer within {timeout} s", request=request
            ) from None
        stream = bind(_AsyncChunkStreamMixin, "AsyncByteStream", lib)(exchange, timeout, request)
        return lib.Response(status, headers=headers, stream=stream, request=request)
