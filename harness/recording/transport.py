"""Record and replay provider HTTP traffic at the httpx transport seam.

The reference stack builds every provider client through one factory that calls
:func:`wrap_async_transport` (or :func:`wrap_transport`); in a stack we did not write, the
bootstrap wraps every httpx/httpx2 client's transport the same way (``patch.py``). The wrapper
hands each request to the shared pipeline (``recorder.py``) and:

- ``replay``: serves the recording, never touching the inner transport; a missing (or
  unreadable) recording is logged for its test and answered as the stack's fault answer is (a
  500 with the fault in its body), marked ``x-should-retry: false``. An answer, not an
  exception: openai 1.x and 2.x retry any exception a transport raises, with backoff, so each
  miss would cost seconds and be reported once per retry; the header stops SDKs built like
  openai's (Llama Stack's and OGX's clients too) from retrying the answer;
- ``record``: always calls the provider and (over)writes the recording;
- ``record-if-missing``: replays what exists, records the rest;
- ``live``: is not installed at all.

Requests the host rule passes through (``hosts.py``: a server the test itself runs) go to the
inner transport untouched, in every mode. A request that fails before any answer (connection
refused, reset, timeout) is recorded as that failure and replayed by raising the same error.

Streams (SSE, NDJSON) are recorded as they pass through: each event reaches the caller as soon
as it is complete — nothing is drained first — and the file is written when the stream ends.
In record mode the caller receives exactly what is stored (normalised ids and timestamps, the
kept headers), so a test sees the same response in record and replay.

The transports serve httpx and httpx2 alike: each is written once and bound to the library of
the transport it wraps (see ``httplibs``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from harness.recording.errors import FAULT_STATUS, RecordingFault, error_response
from harness.recording.hosts import Route
from harness.recording.httplibs import bind, library_of
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.normalize import framing_for
from harness.recording.recorder import Pending, Recorder, sending
from harness.recording.records import Failure, FailureKind, Recording
from harness.recording.streams import recording_stream, replay_response

# FailureKind -> the httpx/httpx2 exception class that replays it.
_FAILURE_CLASSES = {
    FailureKind.CONNECT: "ConnectError",
    FailureKind.CONNECT_TIMEOUT: "ConnectTimeout",
    FailureKind.READ_TIMEOUT: "ReadTimeout",
    FailureKind.WRITE_TIMEOUT: "WriteTimeout",
    FailureKind.RESET: "ReadError",
    FailureKind.PROTOCOL: "RemoteProtocolError",
}


class _TransportMixin:
    """Everything the sync and async transports share: no I/O on the inner transport here."""

    lib: Any
    recorder: Recorder

    def _prepare(self, request: Any, content: bytes) -> Pending:
        return self.recorder.prepare(request.method, str(request.url), request.headers, content)

    def _replay(self, recording: Recording, request: Any, *, is_async: bool) -> Any:
        payload = recording.response.payload
        if isinstance(payload, Failure):
            exc_class = getattr(self.lib, _FAILURE_CLASSES[payload.kind])
            raise exc_class(f"{payload.message} (replayed)", request=request)
        return replay_response(
            request, recording.response, self.recorder.settings.pace, is_async=is_async
        )

    def _stored(self, pending: Pending, request: Any, *, is_async: bool) -> Any | None:
        """The replayed response, the fault's answer, or None when the provider must answer."""
        try:
            stored = self.recorder.replayable(pending)
        except RecordingFault as exc:  # already logged for its test: see the module docstring
            body, headers = error_response(exc.fault)
            return self.lib.Response(FAULT_STATUS, headers=headers, json=body, request=request)
        return None if stored is None else self._replay(stored, request, is_async=is_async)

    def _recorded_failure(self, pending: Pending, exc: BaseException) -> None:
        if isinstance(exc, self.lib.TransportError):
            self.recorder.failed(pending, exc)

    def _answer(self, pending: Pending, upstream: Any, request: Any, is_async: bool) -> Any:
        headers = self.recorder.response_headers(upstream.headers)
        framing = framing_for(upstream.headers.get("content-type"))
        capture = self.recorder.capture(pending, upstream.status_code, headers, framing)
        stream = recording_stream(upstream, capture, is_async=is_async)
        return self.lib.Response(
            upstream.status_code, headers=headers, stream=stream, request=request
        )

    def _plain(self, pending: Pending, upstream: Any, content: bytes, request: Any) -> Any:
        headers = self.recorder.response_headers(upstream.headers)
        response = self.recorder.plain_response(pending, upstream.status_code, headers, content)
        self.recorder.record(pending, response)
        return replay_response(request, response, 0.0, is_async=False)


class _RecordingTransportMixin(_TransportMixin):
    """A sync transport that records/replays through an inner transport of the same library."""

    def __init__(self, inner: Any, recorder: Recorder) -> None:
        self.inner = inner
        self.recorder = recorder
        self.settings = recorder.settings

    def handle_request(self, request: Any) -> Any:
        if self.recorder.route(str(request.url)) is Route.PASSTHROUGH:
            with sending():
                return self.inner.handle_request(request)
        pending = self._prepare(request, request.read())
        answer = self._stored(pending, request, is_async=False)
        if answer is not None:
            return answer
        try:
            with sending():
                upstream = self.inner.handle_request(request)
        except Exception as exc:
            self._recorded_failure(pending, exc)
            raise
        if framing_for(upstream.headers.get("content-type")) is not None:
            return self._answer(pending, upstream, request, is_async=False)
        try:
            content = upstream.read()
        finally:
            upstream.close()
        return self._plain(pending, upstream, content, request)

    def close(self) -> None:
        self.inner.close()


class _AsyncRecordingTransportMixin(_TransportMixin):
    """An async transport that records/replays through an inner transport of the same library."""

    def __init__(self, inner: Any, recorder: Recorder) -> None:
        self.inner = inner
        self.recorder = recorder
        self.settings = recorder.settings

    async def handle_async_request(self, request: Any) -> Any:
        if self.recorder.route(str(request.url)) is Route.PASSTHROUGH:
            with sending():
                return await self.inner.handle_async_request(request)
        pending = self._prepare(request, await request.aread())
        answer = self._stored(pending, request, is_async=True)
        if answer is not None:
            return answer
        try:
            with sending():
                upstream = await self.inner.handle_async_request(request)
        except Exception as exc:
            self._recorded_failure(pending, exc)
            raise
        if framing_for(upstream.headers.get("content-type")) is not None:
            return self._answer(pending, upstream, request, is_async=True)
        try:
            content = await upstream.aread()
        finally:
            await upstream.aclose()
        return self._plain(pending, upstream, content, request)

    async def aclose(self) -> None:
        await self.inner.aclose()


# The names other modules check with isinstance (a transport that already records).
RecordingTransport = _RecordingTransportMixin
AsyncRecordingTransport = _AsyncRecordingTransportMixin


def wrap_transport(
    inner: Any,
    settings: RecordingSettings | None,
    *,
    secrets: Iterable[str | None] = (),
    recorder: Recorder | None = None,
) -> Any:
    """Wrap a sync httpx/httpx2 transport for record/replay; ``inner`` itself when live or unset."""
    if settings is None or settings.mode is Mode.LIVE or isinstance(inner, RecordingTransport):
        return inner
    cls = bind(_RecordingTransportMixin, "BaseTransport", library_of(inner))
    return cls(inner, recorder or Recorder(settings, secrets=secrets))


def wrap_async_transport(
    inner: Any,
    settings: RecordingSettings | None,
    *,
    secrets: Iterable[str | None] = (),
    recorder: Recorder | None = None,
) -> Any:
    """Wrap an async httpx/httpx2 transport for record/replay; ``inner`` itself when live/unset."""
    if settings is None or settings.mode is Mode.LIVE or isinstance(inner, AsyncRecordingTransport):
        return inner
    cls = bind(_AsyncRecordingTransportMixin, "AsyncBaseTransport", library_of(inner))
    return cls(inner, recorder or Recorder(settings, secrets=secrets))


def reference_provenance() -> Mapping[str, str]:
    """Provenance of recordings the reference stack makes."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {"stack": f"stack-harness {version('stack-harness')}"}
    except PackageNotFoundError:
        return {"stack": "stack-harness"}
