"""A real HTTP server on loopback whose answers a test scripts with one function.

Tests that need a peer which is neither a stack nor a provider (a port held by nginx, a
provider that cuts a stream, a health endpoint that never gets healthy) use this instead of
writing their own `BaseHTTPRequestHandler`:

    def answer(request: StubRequest, reply: Reply) -> None:
        reply.json(200, {"status": "OK"})

    with StubServer(answer) as stub:
        httpx.get(stub.url + "/v1/health")
        stub.requests  # what it received, in order

Streams are written event by event with a flush after each, so the client sees each as it is
sent; `reply.cut()` drops the connection mid-body.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class StubRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Reply:
    """How the answering function writes its response."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self._handler = handler

    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        handler = self._handler
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def stream(
        self,
        events: Iterable[bytes],
        *,
        content_type: str = "text/event-stream",
        chunked: bool = True,
    ) -> None:
        """Send a 200 whose body is `events`, each flushed as soon as it is produced."""
        handler = self._handler
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        else:  # the body ends when the connection closes
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        for event in events:
            handler.wfile.write(
                f"{len(event):x}\r\n".encode() + event + b"\r\n" if chunked else event
            )
            handler.wfile.flush()
        if chunked:
            handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()

    def raw(self, data: bytes) -> None:
        """Write bytes as they are (a partial chunk, say), then flush."""
        self._handler.wfile.write(data)
        self._handler.wfile.flush()

    def cut(self) -> None:
        """Close the connection after what was written so far."""
        self._handler.close_connection = True


Answer = Callable[[StubRequest, Reply], None]


class StubServer:
    def __init__(self, answer: Answer, *, port: int = 0) -> None:
        self.requests: list[StubRequest] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = StubRequest(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                stub.requests.append(request)
                answer(request, Reply(self))

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        """Serve in the calling thread (for a stub run as its own process)."""
        self._server.serve_forever()

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
