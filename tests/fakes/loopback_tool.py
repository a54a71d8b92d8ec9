"""A tool server a test serves itself on loopback, the way Llama Stack's suite serves MCP.

It runs in the test's own process (a thread), so its traffic is the test's business, not a
provider's. It speaks two shapes:

- plain: `POST /answer` `{"question": q}` -> `{"answer": "The tool knows: q"}`;
- MCP-like, over SSE: `GET /sse` opens an event stream whose first event is
  `event: endpoint` / `data: /messages?session_id=<32 hex, new per stream>`; each
  `POST /messages?session_id=…` `{"question": q}` is accepted with a 202 and its answer
  arrives on that stream as `event: message` / `data: {"answer": "The tool knows: q"}`. The
  stream never ends by itself: it stays open until the client closes it or the server stops.

    with LoopbackTool() as tool:
        tool.url        # "http://127.0.0.1:<port>"
        tool.requests   # [(method, path), ...] in order
"""

from __future__ import annotations

import json
import queue
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


def answer_for(question: str) -> str:
    return f"The tool knows: {question}"


class LoopbackTool:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self._sessions: dict[str, queue.Queue[str]] = {}
        self._stopping = threading.Event()
        tool = self

        class Handler(_Handler):
            server_state = tool

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackTool:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LoopbackTool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    server_state: LoopbackTool
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null")

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        # No keep-alive: a stack's pooled connection would outlive this tool, and a later
        # test's tool that is given the same port would see its requests reach this one.
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        state = self.server_state
        state.requests.append(("POST", self.path))
        url = urlparse(self.path)
        body = self._body()
        question = str((body or {}).get("question", ""))
        if url.path == "/answer":
            return self._json(200, {"answer": answer_for(question)})
        if url.path == "/messages":
            session = parse_qs(url.query).get("session_id", [""])[0]
            events = state._sessions.get(session)
            if events is None:
                return self._json(404, {"error": f"no session {session!r}"})
            self._json(202, {"accepted": True})
            events.put(json.dumps({"answer": answer_for(question)}))
            return None
        return self._json(404, {"error": f"no route POST {url.path}"})

    def do_GET(self) -> None:
        state = self.server_state
        state.requests.append(("GET", self.path))
        if urlparse(self.path).path != "/sse":
            return self._json(404, {"error": f"no route GET {self.path}"})
        session = uuid.uuid4().hex
        events: queue.Queue[str] = queue.Queue()
        state._sessions[session] = events
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        try:
            self._event("endpoint", f"/messages?session_id={session}")
            while not state._stopping.is_set():
                try:
                    data = events.get(timeout=0.1)
                except queue.Empty:
                    continue
                self._event("message", data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client closed the stream: the only way it ends
        finally:
            state._sessions.pop(session, None)
        return None

    def _event(self, name: str, data: str) -> None:
        event = f"event: {name}\ndata: {data}\n\n".encode()
        self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
        self.wfile.flush()
