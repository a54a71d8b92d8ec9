"""Streamed bodies between the provider, the caller and the recording.

A live stream passes through a :class:`StreamCapture`, which hands each complete event on as
soon as it arrives and collects it for the recording; the capture ends in exactly one call of
its ``on_end``, with the stored response when the stream ran to its end and its events say it
finished (``completeness``), or with None and the reason it is not recorded (cut short, failed,
closed early). Every recording layer uses it. For httpx and httpx2 the recording and replay
byte streams are written once here and bound to each library (``httplibs``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio

from harness.recording.completeness import cut_reason
from harness.recording.httplibs import bind, library_of
from harness.recording.normalize import EventSplitter, normalize_event
from harness.recording.records import Chunk, Framing, RecordedResponse, Stream, TextBody
from harness.recording.redaction import Redactor

logger = logging.getLogger(__name__)

# A stream the caller closes early is read on to its end, so its recording is whole; one that
# is still open this long after (an endless event stream) is let go, unrecorded, and named.
DRAIN_SECONDS = 5.0


class StreamCapture:
    """Splits a live stream into events, normalises and redacts them, and records the whole."""

    def __init__(
        self,
        *,
        fingerprint: str,
        started: float,
        status: int,
        headers: dict[str, str],
        framing: Framing,
        redactor: Redactor,
        on_end: Callable[[RecordedResponse | None, str], None],
    ) -> None:
        self.fingerprint = fingerprint
        self.started = started
        self.status = status
        self.headers = headers
        self.framing = framing
        self.redactor = redactor
        self.on_end = on_end
        self.splitter = EventSplitter(framing)
        self.chunks: list[Chunk] = []
        self.done = False

    def _events(self, events: list[str]) -> list[bytes]:
        out = []
        now = round(time.monotonic() - self.started, 4)
        for event in events:
            data = self.redactor.text(normalize_event(event, self.framing, self.fingerprint))
            self.chunks.append(Chunk(now, data))
            out.append(data.encode("utf-8"))
        return out

    def feed(self, raw: bytes) -> list[bytes]:
        return self._events(self.splitter.feed(raw))

    def finish(self) -> list[bytes]:
        """Flush the last partial event and record the stream (once), unless it is cut."""
        if self.done:
            return []
        out = self._events(self.splitter.flush())
        reason = cut_reason(self.framing, (c.data for c in self.chunks))
        if reason is not None:
            self.abandon(f"the stream was cut short ({reason})")
            return out
        self.done = True
        # An empty stream is an empty body: a stream holds at least one event.
        payload = Stream(self.framing, tuple(self.chunks)) if self.chunks else TextBody("")
        self.on_end(RecordedResponse(self.status, self.headers, payload), "")
        return out

    def abandon(self, reason: str) -> None:
        """End without recording (closed early, failed); said once, like finish."""
        if not self.done:
            self.done = True
            self.on_end(None, reason)


def _still_open() -> str:
    return f"the stream was still open {DRAIN_SECONDS:g} s after it was closed"


def read_whole(capture: StreamCapture, data: bytes) -> StreamCapture:
    """Feed a body that was read in one piece (a client layer that buffers), then finish."""
    capture.feed(data)
    capture.finish()
    return capture


def delays(stream: Stream, pace: float) -> Iterator[tuple[float, Chunk]]:
    """Each chunk with the time (from the start) at which a paced replay sends it."""
    for chunk in stream.chunks:
        yield chunk.at * pace, chunk


class _RecordingSyncStreamMixin:
    lib: Any

    def __init__(self, upstream: Any, capture: StreamCapture) -> None:
        self.upstream = upstream
        self.capture = capture
        self._iterator: Iterator[bytes] | None = None

    def _source(self) -> Iterator[bytes]:
        if self._iterator is None:
            self._iterator = self.upstream.iter_bytes()
        return self._iterator

    def __iter__(self) -> Iterator[bytes]:
        try:
            for raw in self._source():
                yield from self.capture.feed(raw)
        except self.lib.HTTPError as exc:
            self.capture.abandon(f"the stream failed: {exc}")
            raise
        yield from self.capture.finish()

    def close(self) -> None:
        try:
            if not self.capture.done:
                # Closed early: drain the provider so the recording is complete, not truncated.
                deadline = time.monotonic() + DRAIN_SECONDS
                for raw in self._source():
                    self.capture.feed(raw)
                    if time.monotonic() > deadline:
                        self.capture.abandon(_still_open())
                        return
                self.capture.finish()
        except self.lib.HTTPError as exc:
            # The caller is done with this response; a failed drain only means no recording.
            self.capture.abandon(f"the stream failed while draining: {exc}")
        finally:
            self.upstream.close()


class _ReplaySyncStreamMixin:
    def __init__(self, stream: Stream, pace: float) -> None:
        self.stream = stream
        self.pace = pace

    def __iter__(self) -> Iterator[bytes]:
        start = time.monotonic()
        for due, chunk in delays(self.stream, self.pace):
            wait = due - (time.monotonic() - start)
            if wait > 0:
                time.sleep(wait)
            yield chunk.data.encode("utf-8")


class _RecordingAsyncStreamMixin:
    lib: Any

    def __init__(self, upstream: Any, capture: StreamCapture) -> None:
        self.upstream = upstream
        self.capture = capture
        self._iterator: AsyncIterator[bytes] | None = None

    def _source(self) -> AsyncIterator[bytes]:
        if self._iterator is None:
            self._iterator = self.upstream.aiter_bytes()
        return self._iterator

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for raw in self._source():
                for piece in self.capture.feed(raw):
                    yield piece
        except self.lib.HTTPError as exc:
            self.capture.abandon(f"the stream failed: {exc}")
            raise
        for piece in self.capture.finish():
            yield piece

    async def aclose(self) -> None:
        try:
            if not self.capture.done:
                with anyio.move_on_after(DRAIN_SECONDS) as scope:
                    async for raw in self._source():
                        self.capture.feed(raw)
                if scope.cancelled_caught:
                    self.capture.abandon(_still_open())
                else:
                    self.capture.finish()
        except self.lib.HTTPError as exc:
            self.capture.abandon(f"the stream failed while draining: {exc}")
        finally:
            await self.upstream.aclose()


class _ReplayAsyncStreamMixin:
    def __init__(self, stream: Stream, pace: float) -> None:
        self.stream = stream
        self.pace = pace

    async def __aiter__(self) -> AsyncIterator[bytes]:
        start = time.monotonic()
        for due, chunk in delays(self.stream, self.pace):
            wait = due - (time.monotonic() - start)
            if wait > 0:
                await anyio.sleep(wait)
            yield chunk.data.encode("utf-8")


def recording_stream(upstream: Any, capture: StreamCapture, *, is_async: bool) -> Any:
    """A byte stream of the upstream response's library that records as it passes through."""
    lib = library_of(upstream)
    if is_async:
        return bind(_RecordingAsyncStreamMixin, "AsyncByteStream", lib)(upstream, capture)
    return bind(_RecordingSyncStreamMixin, "SyncByteStream", lib)(upstream, capture)


def replay_response(
    request: Any, response: RecordedResponse, pace: float, *, is_async: bool
) -> Any:
    """A stored answer as a response of the request's library (httpx or httpx2)."""
    lib = library_of(request)
    payload = response.payload
    if isinstance(payload, Stream):
        if is_async:
            stream = bind(_ReplayAsyncStreamMixin, "AsyncByteStream", lib)(payload, pace)
        else:
            stream = bind(_ReplaySyncStreamMixin, "SyncByteStream", lib)(payload, pace)
        return lib.Response(
            response.status, headers=response.headers, stream=stream, request=request
        )
    content = response.content()
    headers = {**response.headers, "content-length": str(len(content))}
    return lib.Response(
        response.status, headers=headers, stream=lib.ByteStream(content), request=request
    )
