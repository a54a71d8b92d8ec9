"""Record and replay provider HTTP traffic at the httpx transport seam.

The stack builds every provider client through one factory that calls
:func:`wrap_async_transport` (or :func:`wrap_transport`). The wrapper computes the request's
fingerprint (see ``fingerprint.py``) under the current test's attribution (see ``context.py``)
and:

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

The transports serve httpx and httpx2 alike: each is written once and bound to the library of
the transport it wraps (see ``httplibs``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.recording import usage
from harness.recording.context import Attribution, current_attribution, note_fault
from harness.recording.diagnostics import build_miss
from harness.recording.errors import RecordingError, ReplayMissError
from harness.recording.fingerprint import canonical_request, fingerprint, parse_body, parse_query
from harness.recording.httplibs import bind, library_of
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.normalize import framing_for
from harness.recording.redaction import REQUEST_HEADERS_KEPT, RESPONSE_HEADERS_KEPT, Redactor
from harness.recording.store import RecordingStore, new_record
from harness.recording.streams import (
    StreamCapture,
    plain_response,
    recording_stream,
    replay_stream,
    stored_plain_response,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pending:
    """A request, fingerprinted and redacted, on its way to being replayed or recorded."""

    canonical: dict[str, Any]
    fingerprint: str
    path: Path
    headers: dict[str, str]
    started: float
    attribution: Attribution
    base_fingerprint: str


class _Core:
    """Everything the sync and async transports share; no I/O on the inner transport here."""

    def __init__(self, settings: RecordingSettings, secrets: Iterable[str | None]) -> None:
        self.settings = settings
        self.store = RecordingStore(settings.directory)
        self.redactor = Redactor(secrets)
        self.usage = usage.UsageLog(settings.usage_log)

    # -- request side -------------------------------------------------------------------------
    def prepare(self, request: Any, content: bytes) -> _Pending:
        attribution = current_attribution()
        body = self.redactor.value(parse_body(content))
        query = self.redactor.value(parse_query(request.url.query))
        path = request.url.path
        base = canonical_request(request.method, path, query, body, attribution.test_id)
        base_fp = fingerprint(base)
        occurrence = attribution.occurrence(base_fp)
        if occurrence:
            canonical = canonical_request(
                request.method, path, query, body, attribution.test_id, occurrence
            )
            fp = fingerprint(canonical)
        else:
            canonical, fp = base, base_fp
        return _Pending(
            canonical=canonical,
            fingerprint=fp,
            path=self.store.path_for(attribution.test_id, fp),
            headers=self.redactor.headers(request.headers, REQUEST_HEADERS_KEPT),
            started=time.monotonic(),
            attribution=attribution,
            base_fingerprint=base_fp,
        )

    def replayable(self, pending: _Pending) -> dict[str, Any] | None:
        """The stored recording to replay, or None when the provider must be called."""
        if self.settings.mode is Mode.RECORD:
            return None
        record = self.store.load_if_exists(pending.path)
        if record is not None:
            self.usage.append(usage.USED, self.store.relative(pending.path))
            return record
        if self.settings.mode is Mode.REPLAY:
            self.usage.append(usage.MISSED, pending.fingerprint, pending.canonical["test_id"])
            pending.attribution.missed(
                pending.base_fingerprint, pending.canonical.get("occurrence", 0)
            )
            raise ReplayMissError(
                build_miss(self.store, pending.canonical, pending.fingerprint, pending.path)
            )
        return None

    # -- response side ------------------------------------------------------------------------
    def response_headers(self, response: Any) -> dict[str, str]:
        return self.redactor.headers(response.headers, RESPONSE_HEADERS_KEPT)

    def record(self, pending: _Pending, response: dict[str, Any]) -> None:
        record = new_record(pending.canonical, pending.fingerprint, pending.headers, response)
        path, changed = self.store.write(record)
        logger.debug("recorded %s (%s)", path, "written" if changed else "unchanged")
        self.usage.append(usage.RECORDED, self.store.relative(path))

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

    def replay(self, stored: dict[str, Any], request: Any, *, is_async: bool) -> Any:
        if "stream" not in stored:
            return plain_response(stored, request)
        chunks = stored["stream"]["chunks"]
        return self.lib_response(
            request,
            stored["status"],
            stored.get("headers", {}),
            replay_stream(request, chunks, self.settings.pace, is_async=is_async),
        )

    @staticmethod
    def lib_response(request: Any, status: int, headers: dict[str, str], stream: Any) -> Any:
        return library_of(request).Response(status, headers=headers, stream=stream, request=request)


class RecordingTransport:
    """A sync transport that records/replays through an inner transport of the same library."""

    def __init__(
        self, inner: Any, settings: RecordingSettings, *, secrets: Iterable[str | None] = ()
    ) -> None:
        self.inner = inner
        self.settings = settings
        self._core = _Core(settings, secrets)

    def handle_request(self, request: Any) -> Any:
        try:
            return self._handle(request)
        except RecordingError as exc:
            note_fault(exc)
            raise

    def _handle(self, request: Any) -> Any:
        core = self._core
        pending = core.prepare(request, request.read())
        stored = core.replayable(pending)
        if stored is not None:
            return core.replay(stored["response"], request, is_async=False)
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
        stream = recording_stream(upstream, capture, is_async=False)
        return core.lib_response(request, upstream.status_code, headers, stream)

    def close(self) -> None:
        self.inner.close()


class AsyncRecordingTransport:
    """An async transport that records/replays through an inner transport of the same library."""

    def __init__(
        self, inner: Any, settings: RecordingSettings, *, secrets: Iterable[str | None] = ()
    ) -> None:
        self.inner = inner
        self.settings = settings
        self._core = _Core(settings, secrets)

    async def handle_async_request(self, request: Any) -> Any:
        try:
            return await self._handle(request)
        except RecordingError as exc:
            note_fault(exc)
            raise

    async def _handle(self, request: Any) -> Any:
        core = self._core
        pending = core.prepare(request, await request.aread())
        stored = core.replayable(pending)
        if stored is not None:
            return core.replay(stored["response"], request, is_async=True)
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
        stream = recording_stream(upstream, capture, is_async=True)
        return core.lib_response(request, upstream.status_code, headers, stream)

    async def aclose(self) -> None:
        await self.inner.aclose()


def wrap_transport(
    inner: Any, settings: RecordingSettings | None, *, secrets: Iterable[str | None] = ()
) -> Any:
    """Wrap a sync httpx/httpx2 transport for record/replay; ``inner`` itself when live or unset."""
    if settings is None or settings.mode is Mode.LIVE:
        return inner
    cls = bind(RecordingTransport, "BaseTransport", library_of(inner))
    return cls(inner, settings, secrets=secrets)


def wrap_async_transport(
    inner: Any, settings: RecordingSettings | None, *, secrets: Iterable[str | None] = ()
) -> Any:
    """Wrap an async httpx/httpx2 transport for record/replay; ``inner`` itself when live/unset."""
    if settings is None or settings.mode is Mode.LIVE:
        return inner
    cls = bind(AsyncRecordingTransport, "AsyncBaseTransport", library_of(inner))
    return cls(inner, settings, secrets=secrets)
