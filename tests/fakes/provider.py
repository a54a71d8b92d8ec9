"""A fake inference provider: a real HTTP server speaking the OpenAI and Ollama wire formats.

Answers are deterministic functions of the request (the reply echoes the last user message,
embeddings come from a hash of the input), while `id` and `created` vary like a real
provider's, so tests can tell a replayed answer from a fresh one.

Two chat model names fail at the transport instead, for stacks' fault handling: `fault:reset`
resets the connection before any byte of a response, `fault:stall` answers only after
`stall_seconds` (longer than a client's read timeout).

    with FakeProvider() as fake:
        fake.base_url            # Ollama-style root; the OpenAI API is under /v1
        fake.requests            # what it received, in order

Run standalone: `python -m tests.fakes.provider --port 11434`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import socket
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_MODELS = ["llama3.2:3b"]
DEFAULT_EMBEDDING_MODELS = {"all-minilm:l6-v2": 384}
RESET_MODEL = "fault:reset"
STALL_MODEL = "fault:stall"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that drops its kept-alive connection (a stack shutting down) is no error of
        # the provider's; anything else still prints its traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeProvider:
    def __init__(
        self,
        *,
        port: int = 0,
        models: list[str] | None = None,
        embedding_models: dict[str, int] | None = None,
        chunk_delay: float = 0.0,
        api_key: str | None = None,
        fail_stream_after: int | None = None,
        stall_seconds: float = 5.0,
    ) -> None:
        """`fail_stream_after=N` sends an SSE error event after N chunks of every stream;
        `stall_seconds` is how long a `fault:stall` chat request waits for its answer."""
        self.port = port
        self.models = list(DEFAULT_MODELS if models is None else models)
        self.embedding_models = dict(
            DEFAULT_EMBEDDING_MODELS if embedding_models is None else embedding_models
        )
        self.chunk_delay = chunk_delay
        self.api_key = api_key
        self.fail_stream_after = fail_stream_after
        self.stall_seconds = stall_seconds
        self.requests: list[dict[str, Any]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeProvider:
        fake = self

        class Handler(_Handler):
            provider = fake

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def all_models(self) -> list[str]:
        return self.models + list(self.embedding_models)


def reply_text(messages: list[dict[str, Any]]) -> str:
    """The deterministic answer: it echoes the last user message."""
    for message in reversed(messages):
        if message.get("role") == "tool":
            return f"The tool said: {_text(message.get('content'))}"
        if message.get("role") == "user":
            return f"You said: {_text(message.get('content'))}"
    return "Hello from the fake provider."


def _text(content: Any) -> str:
    """The text of a message; each image part reads as "[image]", as a vision model sees one."""
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict)]
        return " ".join(
            "[image]" if p.get("type") == "image_url" else str(p.get("text", "")) for p in parts
        )
    return str(content or "")


def embedding(text: str, dimension: int) -> list[float]:
    """A unit vector derived from sha256 of the text: same text, same vector."""
    values: list[float] = []
    counter = 0
    while len(values) < dimension:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    values = values[:dimension]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def tool_call(tools: list[dict[str, Any]], messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A call of the first tool, each required parameter set to the last user message."""
    function = tools[0].get("function", {})
    required = function.get("parameters", {}).get("required") or []
    argument = _text(
        next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    )
    return {
        "id": f"call_{uuid.uuid4().hex[:12]}",
        "type": "function",
        "function": {
            "name": function.get("name", "tool"),
            "arguments": json.dumps({name: argument for name in required}),
        },
    }


class _Handler(BaseHTTPRequestHandler):
    provider: FakeProvider
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.provider.requests.append(
            {"method": method, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        key = self.provider.api_key
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            return self._error(401, "Incorrect API key provided.", "invalid_api_key")
        route = {
            ("GET", "/v1/models"): self._models,
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/completions"): self._completion,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("GET", "/api/tags"): self._tags,
            ("POST", "/api/chat"): self._ollama_chat,
        }.get((method, self.path.split("?")[0]))
        if route is None:
            return self._error(404, f"no route {method} {self.path}", "not_found")
        if route in (self._models, self._tags):
            return route()
        if not isinstance(body, dict):
            return self._error(400, "body must be a JSON object", "invalid_request_error")
        try:
            return route(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its read timeout): nothing to say

    # --- responses -------------------------------------------------------------------------
    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, code: str) -> None:
        self._json(status, {"error": {"message": message, "type": code, "code": code}})

    def _stream(self, content_type: str, lines: list[str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, line in enumerate(lines):
            if index and self.provider.chunk_delay:
                time.sleep(self.provider.chunk_delay)
            data = line.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _known(self, model: str, kinds: list[str]) -> bool:
        if model in kinds:
            return True
        self._error(404, f'model "{model}" not found, try pulling it first', "model_not_found")
        return False

    # --- OpenAI wire -----------------------------------------------------------------------
    def _models(self) -> None:
        created = int(time.time())
        data = [
            {"id": m, "object": "model", "created": created, "owned_by": "library"}
            for m in self.provider.all_models()
        ]
        self._json(200, {"object": "list", "data": data})

    def _reset(self) -> None:
        """Drop the connection with a TCP reset (linger 0), before any response byte."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _chat(self, body: dict[str, Any]) -> None:
        model = str(body.get("model"))
        if model == RESET_MODEL:
            return self._reset()
        if model == STALL_MODEL:
            time.sleep(self.provider.stall_seconds)
            model = self.provider.models[0]  # then answer as the first chat model
        if not self._known(model, self.provider.models):
            return
        messages = body.get("messages") or []
        tools = body.get("tools") or []
        wants_tool = bool(tools) and messages and messages[-1].get("role") != "tool"
        text = None if wants_tool else reply_text(messages)
        calls = [tool_call(tools, messages)] if wants_tool else None
        finish = "tool_calls" if wants_tool else "stop"
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
            "created": int(time.time()),
            "model": model,
        }
        usage = {
            "prompt_tokens": len(json.dumps(messages)) // 4,
            "completion_tokens": len((text or "").split()) or 1,
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not body.get("stream"):
            message = {"role": "assistant", "content": text, "tool_calls": calls}
            choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            return self._json(
                200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        if calls:
            deltas.append({"tool_calls": [{"index": 0, **calls[0]}]})
        else:
            words = (text or "").split(" ")
            deltas += [{"content": w if i == 0 else " " + w} for i, w in enumerate(words)]
        events = []
        for delta in deltas:
            choice = {"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}
            events.append({**base, "object": "chat.completion.chunk", "choices": [choice]})
        final = {"index": 0, "delta": {}, "finish_reason": finish, "logprobs": None}
        events.append(
            {**base, "object": "chat.completion.chunk", "choices": [final], "usage": usage}
        )
        lines = [f"data: {json.dumps(e)}\n\n" for e in events]
        limit = self.provider.fail_stream_after
        if limit is not None:
            error = {"error": {"message": "the fake provider failed mid-stream", "code": 500}}
            lines = lines[:limit] + [f"data: {json.dumps(error)}\n\n"]
        self._stream("text/event-stream", lines + ["data: [DONE]\n\n"])

    def _completion(self, body: dict[str, Any]) -> None:
        model = str(body.get("model"))
        if not self._known(model, self.provider.models):
            return
        prompt = body.get("prompt")
        prompt = " ".join(map(str, prompt)) if isinstance(prompt, list) else str(prompt)
        text = f" and so on, after: {prompt}"
        base = {"id": f"cmpl-{uuid.uuid4().hex[:16]}", "created": int(time.time()), "model": model}
        choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
        if not body.get("stream"):
            return self._json(200, {**base, "object": "text_completion", "choices": [choice]})
        chunks = [{**choice, "text": w, "finish_reason": None} for w in text.split(" ")]
        chunks.append({**choice, "text": "", "finish_reason": "stop"})
        lines = [
            f"data: {json.dumps({**base, 'object': 'text_completion', 'choices': [c]})}\n\n"
            for c in chunks
        ]
        self._stream("text/event-stream", lines + ["data: [DONE]\n\n"])

    def _embeddings(self, body: dict[str, Any]) -> None:
        model = str(body.get("model"))
        if not self._known(model, list(self.provider.embedding_models)):
            return
        inputs = body.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        dimension = self.provider.embedding_models[model]
        data = [
            {"object": "embedding", "index": i, "embedding": embedding(str(text), dimension)}
            for i, text in enumerate(inputs)
        ]
        tokens = sum(len(str(t).split()) for t in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._json(200, {"object": "list", "data": data, "model": model, "usage": usage})

    # --- Ollama native ---------------------------------------------------------------------
    def _tags(self) -> None:
        models = [
            {
                "name": m,
                "model": m,
                "modified_at": "2025-01-01T00:00:00Z",
                "size": 1000 + len(m),
                "digest": hashlib.sha256(m.encode()).hexdigest(),
                "details": {"format": "gguf", "family": m.split(":")[0]},
            }
            for m in self.provider.all_models()
        ]
        self._json(200, {"models": models})

    def _ollama_chat(self, body: dict[str, Any]) -> None:
        model = str(body.get("model"))
        if not self._known(model, self.provider.models):
            return
        text = reply_text(body.get("messages") or [])
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        done = {"model": model, "created_at": now, "done": True, "done_reason": "stop"}
        if body.get("stream") is False:
            message = {"role": "assistant", "content": text}
            return self._json(200, {**done, "message": message})
        words = text.split(" ")
        lines = [
            json.dumps(
                {
                    "model": model,
                    "created_at": now,
                    "message": {"role": "assistant", "content": w if i == 0 else " " + w},
                    "done": False,
                }
            )
            + "\n"
            for i, w in enumerate(words)
        ]
        lines.append(json.dumps({**done, "message": {"role": "assistant", "content": ""}}) + "\n")
        self._stream("application/x-ndjson", lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the fake inference provider.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--api-key", default=None)
    parser.add_argument(
        "--models", default=",".join(DEFAULT_MODELS), help="comma-separated chat model ids"
    )
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    fake = FakeProvider(
        port=args.port, chunk_delay=args.chunk_delay, api_key=args.api_key, models=models
    ).start()
    print(f"fake provider listening on {fake.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
