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

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from harness.recording.normalize import framing_for
from harness.recording.redaction import (
    REQUEST_HEADERS_KEPT,
    RESPONSE_HEADERS_KEPT,
    Redactor,
)
from harness.recording.store import RecordingStore
from harness.recording.streams import (
    RecordingAsyncStream,
    RecordingSyncStream,
    ReplayAsyncStream,
    ReplaySyncStream,
    StreamCapture,
    plain_response,
    stored_plain_response,
)

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

    def capture(
        self, pending: _Pending, status: int, headers: dict[str, str], framing: str
    ) -> StreamCapture:
        """A stream capture that writes this request's recording when the stream ends."""
        return StreamCapture(
            fingerprint=pending.fingerprint,
            started=pending.started,
            status=status,
            headers=headers,
            framing=framing,
            redactor=self.redactor,
            on_complete=lambda response: self.record(pending, response),
            label=str(pending.path),
        )

    def _log(self, kind: str, *values: str) -> None:
        if self.settings.usage_log is not None:
            usage.append_usage(self.settings.usage_log, kind, *values)


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
            return plain_response(response, request)
        capture = core.capture(pending, upstream.status_code, headers, framing)
        return httpx.Response(
            upstream.status_code,
            headers=headers,
            stream=RecordingSyncStream(upstream, capture),
            request=request,
        )

    def _replay(self, stored: dict[str, Any], request: httpx.Request) -> httpx.Response:
        if "stream" not in stored:
            return plain_response(stored, request)
        return httpx.Response(
            stored["status"],
            headers=stored.get("headers", {}),
            stream=ReplaySyncStream(stored["stream"]["chunks"], self.settings.pace),
            request=request,
        )

    def close(self) -> None:
        self.inner.close()


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
            return plain_response(response, request)
        capture = core.capture(pending, upstream.status_code, headers, framing)
        return httpx.Response(
            upstream.status_code,
            headers=headers,
            stream=RecordingAsyncStream(upstream, capture),
            request=request,
        )

    def _replay(self, stored: dict[str, Any], request: httpx.Request) -> httpx.Response:
        if "stream" not in stored:
            return plain_response(stored, request)
        return httpx.Response(
            stored["status"],
            headers=stored.get("headers", {}),
            stream=ReplayAsyncStream(stored["stream"]["chunks"], self.settings.pace),
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
