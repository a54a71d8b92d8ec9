"""A `requests` transport adapter over an httpx transport: how a `requests` session a test
builds itself reaches the in-process stack (see `harness.client_patch`).

Only what a test's requests to a stack need: the method, URL, headers and a bytes, str or
iterable body out; the status, headers and a streamed body back (so ``stream=True`` and
``iter_lines`` see each chunk as the app sends it).
"""

from __future__ import annotations

import http
import io
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers


class _RawBody(io.RawIOBase):
    """The response body as the file-like object requests reads (`Response.raw`)."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self._chunks: Iterator[bytes] = response.iter_raw()
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        if not self.closed:
            self._response.close()
        super().close()

    def release_conn(self) -> None:
        self.close()


def _content(body: Any) -> bytes | Iterator[bytes]:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if hasattr(body, "read"):
        return body.read()
    return (chunk.encode("utf-8") if isinstance(chunk, str) else chunk for chunk in body)


def _read_timeout(timeout: Any) -> float | None:
    if isinstance(timeout, tuple):
        return timeout[1]
    return timeout


class TransportAdapter(BaseAdapter):
    """Sends a `requests.PreparedRequest` through a sync httpx (or httpx2) transport."""

    def __init__(self, lib: Any, transport: Any) -> None:
        super().__init__()
        self.lib = lib
        self.transport = transport

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        read = _read_timeout(timeout)
        outgoing = self.lib.Request(
            request.method or "GET",
            request.url or "",
            headers=list(request.headers.items()),
            content=_content(request.body),
            extensions={"timeout": {"connect": read, "read": read, "write": read, "pool": read}},
        )
        answer = self.transport.handle_request(outgoing)
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers = CaseInsensitiveDict(answer.headers.multi_items())
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = _RawBody(answer)  # unbuffered: read(n) returns what has arrived
        try:
            response.reason = http.HTTPStatus(answer.status_code).phrase
        except ValueError:
            response.reason = ""
        response.url = request.url or ""
        response.request = request
        response.connection = self
        if not stream:
            _ = response.content
        return response

    def close(self) -> None:
        pass
