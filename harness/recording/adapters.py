"""Recording for the HTTP clients that are not httpx: urllib3 (requests, botocore), aiohttp and
urllib.request.

A stack we did not write may call a provider with any of them (Bedrock's SDK is urllib3;
some providers use aiohttp). Each adapter catches the one call through which its library
sends a request and reads the answer — ``HTTPConnectionPool.urlopen``,
``ClientSession._request``, ``AbstractHTTPHandler.do_open`` — and runs it through the same
pipeline as the httpx transport (``recorder.py``). These libraries are read whole: in record
mode the answer is read to its end, recorded, and the caller gets the stored answer (a stream
arrives all at once rather than event by event); in replay the provider is never contacted.
A request that fails before any answer is recorded as that failure and replayed by raising the
library's own error for it. :mod:`harness.recording.patch` installs them; nothing else calls
them.
"""

from __future__ import annotations

import email.message
import errno
import http.client
import io
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from harness.recording.hosts import Route
from harness.recording.normalize import framing_for
from harness.recording.recorder import Pending, Recorder, failure_kind, sending
from harness.recording.records import (
    Failure,
    FailureKind,
    RecordedResponse,
    Stream,
    TextBody,
)
from harness.recording.streams import read_whole

Sent = tuple[int, Mapping[str, str], bytes]


# -- the whole-body exchange every adapter shares -----------------------------------------------


def _answer(recorder: Recorder, pending: Pending, sent: Sent) -> RecordedResponse:
    status, raw_headers, data = sent
    headers = recorder.response_headers(raw_headers)
    framing = framing_for(headers.get("content-type"))
    if framing is None:
        response = recorder.plain_response(pending, status, headers, data)
        recorder.record(pending, response)
        return response
    capture = read_whole(recorder.capture(pending, status, headers, framing), data)
    payload = Stream(framing, tuple(capture.chunks)) if capture.chunks else TextBody("")
    return RecordedResponse(status, headers, payload)


def exchange(
    recorder: Recorder,
    method: str,
    url: str,
    headers: Mapping[str, str],
    content: bytes,
    send: Callable[[], Sent],
    kind_of: Callable[[BaseException], FailureKind | None] = failure_kind,
) -> RecordedResponse:
    """Replay or record one request the host rule records."""
    pending = recorder.prepare(method, url, headers, content)
    stored = recorder.replayable(pending)
    if stored is not None:
        return stored.response
    try:
        sent = send()
    except Exception as exc:
        recorder.failed(pending, exc, kind_of)
        raise
    return _answer(recorder, pending, sent)


async def exchange_async(
    recorder: Recorder,
    method: str,
    url: str,
    headers: Mapping[str, str],
    content: bytes,
    send: Callable[[], Awaitable[Sent]],
    kind_of: Callable[[BaseException], FailureKind | None] = failure_kind,
) -> RecordedResponse:
    """`exchange` for a client whose send is a coroutine (aiohttp)."""
    pending = recorder.prepare(method, url, headers, content)
    stored = recorder.replayable(pending)
    if stored is not None:
        return stored.response
    try:
        sent = await send()
    except Exception as exc:
        recorder.failed(pending, exc, kind_of)
        raise
    return _answer(recorder, pending, sent)


def _bytes(body: Any) -> bytes:
    """A request body as bytes (reading a file or joining an iterable; urllib3/urllib take all)."""
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if hasattr(body, "read"):
        data = body.read()
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if isinstance(body, Iterable):
        return b"".join(p.encode("utf-8") if isinstance(p, str) else bytes(p) for p in body)
    return str(body).encode("utf-8")


_DROPPED = ("content-encoding", "content-length", "transfer-encoding")


def _headers_of(response: RecordedResponse, content: bytes) -> dict[str, str]:
    headers = {k: v for k, v in response.headers.items() if k.lower() not in _DROPPED}
    headers["content-length"] = str(len(content))
    return headers


# -- urllib3 (and requests, botocore) -----------------------------------------------------------


def _urllib3_kind(exc: BaseException) -> FailureKind | None:
    reason = getattr(exc, "reason", None)
    if type(exc).__name__ == "MaxRetryError" and isinstance(reason, BaseException):
        return failure_kind(reason)
    if type(exc).__name__ == "ProtocolError":
        inner = exc.args[1] if len(exc.args) > 1 else None
        if isinstance(inner, ConnectionResetError):
            return FailureKind.RESET
    return failure_kind(exc)


def urllib3_urlopen(recorder: Recorder, original: Callable[..., Any]) -> Callable[..., Any]:
    """A replacement for ``HTTPConnectionPool.urlopen`` that records and replays."""
    import urllib3
    from urllib3.exceptions import (
        ConnectTimeoutError,
        MaxRetryError,
        NewConnectionError,
        ProtocolError,
        ReadTimeoutError,
    )

    def urlopen(self: Any, method: str, url: str, body: Any = None, headers: Any = None,
                **kwargs: Any) -> Any:  # fmt: skip
        full = url if "://" in url else f"{self.scheme}://{self.host}:{self.port}{url}"
        content = _bytes(body)

        def send() -> Sent:
            response = original(
                self, method, url, body=content or None, headers=headers,
                **{**kwargs, "preload_content": False},
            )  # fmt: skip
            try:
                data = response.read(decode_content=True)
            finally:
                response.release_conn()
            return response.status, dict(response.headers), data

        with sending():
            if recorder.route(full) is Route.PASSTHROUGH:
                return original(self, method, url, body=body, headers=headers, **kwargs)
            stored = exchange(
                recorder, method, full, dict(headers or {}), content, send, _urllib3_kind
            )
        payload = stored.payload
        if isinstance(payload, Failure):
            message = f"{payload.message} (replayed)"
            if payload.kind is FailureKind.CONNECT:
                raise MaxRetryError(self, url, NewConnectionError(self, message))
            if payload.kind is FailureKind.CONNECT_TIMEOUT:
                raise MaxRetryError(self, url, ConnectTimeoutError(self, message))
            if payload.kind is FailureKind.READ_TIMEOUT:
                raise ReadTimeoutError(self, url, message)
            raise ProtocolError(message, ConnectionResetError(errno.ECONNRESET, message))
        content_out = stored.content()
        return urllib3.HTTPResponse(
            body=io.BytesIO(content_out),
            headers=_headers_of(stored, content_out),
            status=stored.status,
            reason=http.client.responses.get(stored.status, ""),
            preload_content=kwargs.get("preload_content", True),
            decode_content=False,
            request_method=method,
            request_url=full,
        )

    urlopen.__wrapped__ = original  # type: ignore[attr-defined]
    return urlopen


# -- urllib.request -----------------------------------------------------------------------------


def _urllib_kind(exc: BaseException) -> FailureKind | None:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ConnectionRefusedError):
        return FailureKind.CONNECT
    if isinstance(reason, TimeoutError):
        return FailureKind.READ_TIMEOUT
    if isinstance(reason, ConnectionResetError):
        return FailureKind.RESET
    if isinstance(exc, http.client.RemoteDisconnected | http.client.BadStatusLine):
        return FailureKind.PROTOCOL
    if isinstance(reason, OSError) and type(exc).__name__ == "URLError":
        return FailureKind.CONNECT  # no such host, unreachable
    return None


def urllib_do_open(recorder: Recorder, original: Callable[..., Any]) -> Callable[..., Any]:
    """A replacement for ``AbstractHTTPHandler.do_open`` that records and replays."""
    import urllib.error
    import urllib.response

    def do_open(self: Any, http_class: Any, req: Any, **http_conn_args: Any) -> Any:
        url = req.full_url
        content = _bytes(req.data)
        if req.data is not None and not isinstance(req.data, bytes):
            req.data = content  # read once: the real request (if any) sends these bytes
        headers = {**dict(req.header_items())}

        def send() -> Sent:
            response = original(self, http_class, req, **http_conn_args)
            try:
                data = response.read()
            finally:
                response.close()
            return response.status, dict(response.headers.items()), data

        with sending():
            if recorder.route(url) is Route.PASSTHROUGH:
                return original(self, http_class, req, **http_conn_args)
            stored = exchange(recorder, req.get_method(), url, headers, content, send, _urllib_kind)
        payload = stored.payload
        if isinstance(payload, Failure):
            message = f"{payload.message} (replayed)"
            if payload.kind is FailureKind.CONNECT:
                raise urllib.error.URLError(ConnectionRefusedError(errno.ECONNREFUSED, message))
            if payload.kind in (FailureKind.READ_TIMEOUT, FailureKind.CONNECT_TIMEOUT):
                raise TimeoutError(message)
            if payload.kind is FailureKind.RESET:
                raise ConnectionResetError(errno.ECONNRESET, message)
            raise http.client.RemoteDisconnected(message)
        data = stored.content()
        message_headers = email.message.Message()
        for name, value in _headers_of(stored, data).items():
            message_headers[name] = value
        response = urllib.response.addinfourl(io.BytesIO(data), message_headers, url, stored.status)
        response.msg = http.client.responses.get(stored.status, "")  # type: ignore[attr-defined]
        response.reason = response.msg  # type: ignore[attr-defined]
        return response

    do_open.__wrapped__ = original  # type: ignore[attr-defined]
    return do_open


# -- aiohttp ------------------------------------------------------------------------------------

_AIOHTTP_KINDS = {
    "ClientConnectorError": FailureKind.CONNECT,
    "ConnectionTimeoutError": FailureKind.CONNECT_TIMEOUT,
    "ServerTimeoutError": FailureKind.READ_TIMEOUT,
    "SocketTimeoutError": FailureKind.READ_TIMEOUT,
    "TimeoutError": FailureKind.READ_TIMEOUT,
    "ServerDisconnectedError": FailureKind.PROTOCOL,
    "ClientOSError": FailureKind.RESET,
}


def _aiohttp_kind(exc: BaseException) -> FailureKind | None:
    for cls in type(exc).__mro__:
        if cls.__name__ in _AIOHTTP_KINDS:
            return _AIOHTTP_KINDS[cls.__name__]
    return None


class _ReplayedContent:
    """The part of aiohttp's StreamReader that callers read a body with."""

    def __init__(self, data: bytes) -> None:
        self._buffer = io.BytesIO(data)

    async def read(self, n: int = -1) -> bytes:
        return self._buffer.read(n if n >= 0 else None)

    async def readany(self) -> bytes:
        return self._buffer.read()

    async def readline(self) -> bytes:
        return self._buffer.readline()

    async def readexactly(self, n: int) -> bytes:
        return self._buffer.read(n)

    def at_eof(self) -> bool:
        return self._buffer.tell() >= len(self._buffer.getbuffer())

    async def iter_chunked(self, n: int) -> Any:
        while chunk := self._buffer.read(n):
            yield chunk

    async def iter_any(self) -> Any:
        if chunk := self._buffer.read():
            yield chunk

    async def iter_chunks(self) -> Any:
        if chunk := self._buffer.read():
            yield chunk, True

    def __aiter__(self) -> Any:
        return self._lines()

    async def _lines(self) -> Any:
        while line := self._buffer.readline():
            yield line


class ReplayedClientResponse:
    """A recorded answer with the API of aiohttp's ClientResponse that callers use."""

    def __init__(self, method: str, url: Any, response: RecordedResponse, lib: Any) -> None:
        from multidict import CIMultiDict, CIMultiDictProxy

        self._lib = lib
        self.method = method
        self.url = url
        self.real_url = url
        self.status = response.status
        self.reason = http.client.responses.get(response.status, "")
        self._body = response.content()
        self.headers = CIMultiDictProxy(CIMultiDict(_headers_of(response, self._body)))
        self.content = _ReplayedContent(self._body)
        self.history: tuple[Any, ...] = ()
        self.closed = False

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "application/octet-stream").split(";")[0].strip()

    @property
    def charset(self) -> str | None:
        _, _, params = self.headers.get("content-type", "").partition("charset=")
        return params.split(";")[0].strip() or None

    async def read(self) -> bytes:
        return self._body

    async def text(self, encoding: str | None = None, errors: str = "strict") -> str:
        return self._body.decode(encoding or self.charset or "utf-8", errors)

    async def json(self, *, loads: Callable[[str], Any] = json.loads, **_: Any) -> Any:
        return loads(await self.text()) if self._body else None

    def raise_for_status(self) -> None:
        if not self.ok:
            raise self._lib.ClientResponseError(
                None, self.history, status=self.status, message=self.reason, headers=self.headers
            )

    def release(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True

    async def wait_for_close(self) -> None:
        return None

    async def __aenter__(self) -> ReplayedClientResponse:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


def aiohttp_request(recorder: Recorder, original: Callable[..., Any]) -> Callable[..., Any]:
    """A replacement for ``ClientSession._request`` that records and replays."""
    import aiohttp
    from yarl import URL

    async def _request(self: Any, method: str, str_or_url: Any, **kwargs: Any) -> Any:
        url = URL(str_or_url) if not isinstance(str_or_url, URL) else str_or_url
        if self._base_url is not None and not url.is_absolute():
            url = self._base_url.join(url)
        if kwargs.get("params"):
            url = url.update_query(kwargs["params"])
        full = str(url)
        content = b""
        if kwargs.get("json") is not None:
            content = json.dumps(kwargs["json"]).encode("utf-8")
        elif kwargs.get("data") is not None:
            content = _bytes(kwargs["data"])
        headers = {**dict(self.headers), **dict(kwargs.get("headers") or {})}

        async def send() -> Sent:
            response = await original(self, method, str_or_url, **kwargs)
            try:
                data = await response.read()
            finally:
                response.release()
            return response.status, dict(response.headers), data

        with sending():
            if recorder.route(full) is Route.PASSTHROUGH:
                return await original(self, method, str_or_url, **kwargs)
            stored = await exchange_async(
                recorder, method, full, headers, content, send, _aiohttp_kind
            )
        payload = stored.payload
        if isinstance(payload, Failure):
            raise _aiohttp_failure(aiohttp, url, payload)
        response = ReplayedClientResponse(method, url, stored, aiohttp)
        if kwargs.get("raise_for_status") or (
            kwargs.get("raise_for_status") is None and self._raise_for_status is True
        ):
            response.raise_for_status()
        return response

    _request.__wrapped__ = original  # type: ignore[attr-defined]
    return _request


def _aiohttp_failure(aiohttp: Any, url: Any, failure: Failure) -> BaseException:
    message = f"{failure.message} (replayed)"
    if failure.kind is FailureKind.CONNECT:
        try:
            from aiohttp.client_reqrep import ConnectionKey

            key = ConnectionKey(url.host, url.port, url.scheme == "https", True, None, None, None)
            return aiohttp.ClientConnectorError(key, OSError(errno.ECONNREFUSED, message))
        except TypeError:
            return aiohttp.ClientConnectionError(message)
    if failure.kind is FailureKind.CONNECT_TIMEOUT:
        return getattr(aiohttp, "ConnectionTimeoutError", aiohttp.ServerTimeoutError)(message)
    if failure.kind in (FailureKind.READ_TIMEOUT, FailureKind.WRITE_TIMEOUT):
        return aiohttp.ServerTimeoutError(message)
    if failure.kind is FailureKind.RESET:
        return aiohttp.ClientOSError(errno.ECONNRESET, message)
    return aiohttp.ServerDisconnectedError(message)
