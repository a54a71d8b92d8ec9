"""Record and replay provider HTTP traffic at the httpx transport seam.

The stack builds every provider client through one factory that calls
:func:`wrap_async_transport` (or :func:`wrap_transport`). The wrapper computes the request's
fingerprint (see ``fingerprint.py``) in the current test scope (see ``context.py``) and:

- ``replay``: serves the recording, never touching the inner transport; a missing recording
  raises :class:`ReplayMissError` with a diagnostic;
- ``record``: always calls the provider and (over)writes the recording;
- ``record-if-missing``: replays what exists, records the rest;
- ``live``: is not installed at all.

Streams (SSE, NDJSON) are recorded as they pass through: each event reaches the caller as soon
as it is complete — nothing is drained first — and the file is written when the stream ends.
Replay yields the stored events as a real stream, instantly or at the recorded pace.

In record mode the caller receives exactly what is stored (normalised ids and timestamps, the
kept headers), so a test sees the same response in record and replay.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from harness.recording import usage
from harness.recording.context import current_scope
from harness.recording.diagnostics import build_miss
from harness.recording.errors import ReplayMissError
from harness.recording.fingerprint import (
    OCCURRENCES,
    canonical_request,
    fingerprint,
    parse_body,
    parse_query,
)
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.normalize import (
    EventSplitter,
    framing_for,
    normalize_event,
    normalize_json,
)
from harness.recording.redaction import (
    REQUEST_HEADERS_KEPT,
    RESPONSE_HEADERS_KEPT,
    Redactor,
)
from harness.recording.store import RecordingStore

logger = logging.getLogger(__name__)

RECORDING_MISS_HEADER = "X-Harness-Recording-Miss"


@dataclass(frozen=True)
class _Pending:
    """A request, fingerprinted and redacted, on its way to being replayed or recorded."""

    canonical: dict[str, Any]
    fingerprint: str
    path: Path
    headers: dict[str, str]
    started: float


class _Core:
    """Everything the sync and async transports share; no I/O on the inner transport here."""

    def __init__(self, settings: RecordingSettings, secrets: Iterable[str | None]) -> None:
        self.settings = settings
        self.store = RecordingStore(settings.directory)
        self.redactor = Redactor(secrets)

    # -- request side -------------------------------------------------------------------------
    def prepare(self, request: httpx.Request, content: bytes) -> _Pending:
        test_scope = current_scope()
        body = self.redactor.value(parse_body(content))
        query = self.redactor.value(parse_query(request.url.query))
        base = canonical_request(request.method, request.url.path, query, body, test_scope.test_id)
        base_fp = fingerprint(base)
        occurrence = 0 if test_scope.is_shared else OCCURRENCES.next(test_scope.invocation, base_fp)
        if occurrence:
            canonical = canonical_request(
                request.method, request.url.path, query, body, test_scope.test_id, occurrence
            )
            fp = fingerprint(canonical)
        else:
            canonical, fp = base, base_fp
        return _Pending(
            canonical=canonical,
            fingerprint=fp,
            path=self.store.path_for(test_scope.test_id, fp),
            headers=self.redactor.headers(request.headers, REQUEST_HEADERS_KEPT),
            started=time.monotonic(),
        )

    def replayable(self, pending: _Pending) -> dict[str, Any] | None:
        """The stored recording to replay, or None when the provider must be called."""
        if self.settings.mode is Mode.RECORD:
            return None
        record = self.store.load_if_exists(pending.path)
        if record is not None:
            self._log(usage.USED, self.store.relative(pending.path))
            return record
        if self.settings.mode is Mode.REPLAY:
            self._log(usage.MISSED, pending.fingerprint, pending.canonical["test_id"])
            raise ReplayMissError(
                build_miss(self.store, pending.canonical, pending.fingerprint, pending.path)
            )
        return None

    # -- response side ------------------------------------------------------------------------
    def response_headers(self, response: httpx.Response) -> dict[str, str]:
        return self.redactor.headers(response.headers, RESPONSE_HEADERS_KEPT)

    def record(self, pending: _Pending, response: dict[str, Any]) -> None:
        record: dict[str, Any] = {
            "fingerprint": pending.fingerprint,
            "test_id": pending.canonical["test_id"],
            "request": {
                "method": pending.canonical["method"],
                "path": pending.canonical["path"],
                "query": pending.canonical["query"],
                "headers": pending.headers,
                "body": pending.canonical["body"],
            },
            "response": response,
        }
        if pending.canonical.get("occurrence"):
            record["occurrence"] = pending.canonical["occurrence"]
        path, changed = self.store.write(record)
        logger.debug("recorded %s (%s)", path, "written" if changed else "unchanged")
        self._log(usage.RECORDED, self.store.relative(path))

    def plain_record(
        self, pending: _Pending, status: int, headers: dict[str, str], content: bytes
    ) -> dict[str, Any]:
        return stored_plain_response(status, headers, content, pending.fingerprint, self.redactor)

    def _log(self, kind: str, *values: str) -> None:
        if self.settings.usage_log is not None:
            usage.append_usage(self.settings.usage_log, kind, *values)


def stored_plain_response(
    status: int, headers: dict[str, str], content: bytes, fp: str, redactor: Redactor
) -> dict[str, Any]:
    """The stored form of a non-stream response: normalised JSON body, else text; redacted."""
    text = redactor.text(content.decode("utf-8", "replace"))
    response: dict[str, Any] = {"status": status, "headers": headers}
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    if parsed is not None and "json" in headers.get("content-type", "json"):
        response["body"] = normalize_json(parsed, fp)
    else:
        response["text"] = text
    return response


def response_content(response: dict[str, Any]) -> bytes:
    """The bytes a stored non-stream response replays as."""
    if "text" in response:
        return response["text"].encode("utf-8")
    return json.dumps(response.get("body"), ensure_ascii=False, sort_keys=True).encode("utf-8")


def _plain_response(stored: dict[str, Any], request: httpx.Request) -> httpx.Response:
    content = response_content(stored)
    headers = {**stored.get("headers", {}), "content-length": str(len(content))}
    return httpx.Response(
        stored["status"], headers=headers, stream=httpx.ByteStream(content), request=request
    )


class _StreamCapture:
    """Splits a live stream into events, normalises them, and writes the recording at the end."""

    def __init__(
        self, core: _Core, pending: _Pending, status: int, headers: dict[str, str], framing: str
    ) -> None:
        self.core = core
        self.pending = pending
        self.status = status
        self.headers = headers
        self.framing = framing
        self.splitter = EventSplitter(framing)
        self.chunks: list[dict[str, Any]] = []
        self.done = False

    def _events(self, events: list[str]) -> list[bytes]:
        out = []
        now = round(time.monotonic() - self.pending.started, 4)
        for event in events:
            data = self.core.redactor.text(
                normalize_event(event, self.framing, self.pending.fingerprint)
            )
            self.chunks.append({"at": now, "data": data})
            out.append(data.encode("utf-8"))
        return out

    def feed(self, raw: bytes) -> list[bytes]:
        return self._events(self.splitter.feed(raw))

    def finish(self) -> list[bytes]:
        """Flush the last partial event and write the recording (once)."""
        if self.done:
            return []
        self.done = True
        out = self._events(self.splitter.flush())
        self.core.record(
            self.pending,
            {
                "status": self.status,
                "headers": self.headers,
                "stream": {"framing": self.framing, "chunks": self.chunks},
            },
        )
        return out


# -- sync -------------------------------------------------------------------------------------
class _RecordingSyncStream(httpx.SyncByteStream):
    def __init__(self, upstream: httpx.Response, capture: _StreamCapture) -> None:
        self.upstream = upstream
        self.capture = capture
        self._iterator: Iterator[bytes] | None = None

    def _source(self) -> Iterator[bytes]:
        if self._iterator is None:
            self._iterator = self.upstream.iter_bytes()
        return self._iterator

    def __iter__(self) -> Iterator[bytes]:
        for raw in self._source():
            yield from self.capture.feed(raw)
        yield from self.capture.finish()

    def close(self) -> None:
        try:
            if not self.capture.done:
                # Closed early: drain the provider so the recording is complete, not truncated.
                for raw in self._source():
                    self.capture.feed(raw)
                self.capture.finish()
        except httpx.HTTPError as exc:
            # The caller is done with this response; a failed drain only means no recording.
            logger.warning(
                "not recording %s: stream failed while draining: %s", self.capture.pending.path, exc
            )
        finally:
            self.upstream.close()


class _ReplaySyncStream(httpx.SyncByteStream):
    def __init__(self, chunks: list[dict[str, Any]], pace: float) -> None:
        self.chunks = chunks
        self.pace = pace

    def __iter__(self) -> Iterator[bytes]:
        start = time.monotonic()
        for chunk in self.chunks:
            if self.pace > 0:
                delay = chunk["at"] * self.pace - (time.monotonic() - start)
                if delay > 0:
                    time.sleep(delay)
            yield chunk["data"].encode("utf-8")


class RecordingTransport(httpx.BaseTransport):
    """A sync httpx transport that records/replays through an inner transport."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        settings: RecordingSettings,
        *,
        secrets: Iterable[str | None] = (),
    ) -> None:
        self.inner = inner
        self.settings = settings
        self._core = _Core(settings, secrets)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core = self._core
        pending = core.prepare(request, request.read())
        stored = core.replayable(pending)
        if stored is not None:
            return self._replay(stored["response"], request)
        upstream = self.inner.handle_request(request)
        headers = core.response_headers(upstream)
        framing = framing_for(upstream.headers.get("content-type"))
        if framing is None:
            try:
                content = upstream.read()
            finally:
                upstream.close()
            response = core.plain_record(pending, upstream.status_code, headers, content)
            core.record(pending, response)
            return _plain_response(response, request)
        capture = _StreamCapture(core, pending, upstream.status_code, headers, framing)
        return httpx.Response(
            upstream.status_code,
            headers=headers,
            stream=_RecordingSyncStream(upstream, capture),
            request=request,
        )

    def _replay(self, stored: dict[str, Any], request: httpx.Request) -> httpx.Response:
        if "stream" not in stored:
            return _plain_response(stored, request)
        return httpx.Response(
            stored["status"],
            headers=stored.get("headers", {}),
            stream=_ReplaySyncStream(stored["stream"]["chunks"], self.settings.pace),
            request=request,
        )

    def close(self) -> None:
        self.inner.close()


# -- async ------------------------------------------------------------------------------------
class _RecordingAsyncStream(httpx.AsyncByteStream):
    def __init__(self, upstream: httpx.Response, capture: _StreamCapture) -> None:
        self.upstream = upstream
        self.capture = capture
        self._iterator: AsyncIterator[bytes] | None = None

    def _source(self) -> AsyncIterator[bytes]:
        if self._iterator is None:
            self._iterator = self.upstream.aiter_bytes()
        return self._iterator

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for raw in self._source():
            for piece in self.capture.feed(raw):
                yield piece
        for piece in self.capture.finish():
            yield piece

    async def aclose(self) -> None:
        try:
            if not self.capture.done:
                async for raw in self._source():
                    self.capture.feed(raw)
                self.capture.finish()
        except httpx.HTTPError as exc:
            logger.warning(
                "not recording %s: stream failed while draining: %s", self.capture.pending.path, exc
            )
        finally:
            await self.upstream.aclose()


class _ReplayAsyncStream(httpx.AsyncByteStream):
    def __init__(self, chunks: list[dict[str, Any]], pace: float) -> None:
        self.chunks = chunks
        self.pace = pace

    async def __aiter__(self) -> AsyncIterator[bytes]:
        start = time.monotonic()
        for chunk in self.chunks:
            if self.pace > 0:
                delay = chunk["at"] * self.pace - (time.monotonic() - start)
                if delay > 0:
                    await anyio.sleep(delay)
            yield chunk["data"].encode("utf-8")


class AsyncRecordingTransport(httpx.AsyncBaseTransport):
    """An async httpx transport that records/replays through an inner transport."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        settings: RecordingSettings,
        *,
        secrets: Iterable[str | None] = (),
    ) -> None:
        self.inner = inner
        self.settings = settings
        self._core = _Core(settings, secrets)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core = self._core
        pending = core.prepare(request, await request.aread())
        stored = core.replayable(pending)
        if stored is not None:
            return self._replay(stored["response"], request)
        upstream = await self.inner.handle_async_request(request)
        headers = core.response_headers(upstream)
        framing = framing_for(upstream.headers.get("content-type"))
        if framing is None:
            try:
                content = await upstream.aread()
            finally:
                await upstream.aclose()
            response = core.plain_record(pending, upstream.status_code, headers, content)
            core.record(pending, response)
            return _plain_response(response, request)
        capture = _StreamCapture(core, pending, upstream.status_code, headers, framing)
        return httpx.Response(
            upstream.status_code,
            headers=headers,
            stream=_RecordingAsyncStream(upstream, capture),
            request=request,
        )

    def _replay(self, stored: dict[str, Any], request: httpx.Request) -> httpx.Response:
        if "stream" not in stored:
            return _plain_response(stored, request)
        return httpx.Response(
            stored["status"],
            headers=stored.get("headers", {}),
            stream=_ReplayAsyncStream(stored["stream"]["chunks"], self.settings.pace),
            request=request,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def wrap_transport(
    inner: httpx.BaseTransport,
    settings: RecordingSettings | None,
    *,
    secrets: Iterable[str | None] = (),
) -> httpx.BaseTransport:
    """Wrap a sync transport for record/replay; ``inner`` itself when live or unset."""
    if settings is None or settings.mode is Mode.LIVE:
        return inner
    return RecordingTransport(inner, settings, secrets=secrets)


def wrap_async_transport(
    inner: httpx.AsyncBaseTransport,
    settings: RecordingSettings | None,
    *,
    secrets: Iterable[str | None] = (),
) -> httpx.AsyncBaseTransport:
    """Wrap an async transport for record/replay; ``inner`` itself when live or unset."""
    if settings is None or settings.mode is Mode.LIVE:
        return inner
    return AsyncRecordingTransport(inner, settings, secrets=secrets)
