"""Response bodies between the provider, the caller and the recording file.

Live streams pass through a recording stream, which hands each complete event to the caller as
soon as it arrives and collects it for the recording; replayed streams come from a replay
stream, instantly or at the recorded pace. Each is written once and bound to httpx and httpx2
(see ``httplibs``): :func:`recording_stream` and :func:`replay_stream` pick the binding.
Plain (non-stream) responses are stored as a JSON body, else as text.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio

from harness.recording.completeness import cut_reason
from harness.recording.httplibs import bind, library_of
from harness.recording.normalize import EventSplitter, normalize_event, normalize_json
from harness.recording.redaction import Redactor

logger = logging.getLogger(__name__)


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


def plain_response(stored: dict[str, Any], request: Any) -> Any:
    """A stored non-stream response as a response of the request's library (httpx or httpx2)."""
    lib = library_of(request)
    content = response_content(stored)
    headers = {**stored.get("headers", {}), "content-length": str(len(content))}
    return lib.Response(
        stored["status"], headers=headers, stream=lib.ByteStream(content), request=request
    )


class StreamCapture:
    """Splits a live stream into events, normalises them, and hands the recording over at the end.

    ``on_complete`` receives the stored response (status, headers, stream) once the stream has
    been read to its end and its events say it finished (see ``completeness``); a stream that
    fails midway or ends cut short is never handed over, so it never replaces a recording.
    """

    def __init__(
        self,
        *,
        fingerprint: str,
        started: float,
        status: int,
        headers: dict[str, str],
        framing: str,
        redactor: Redactor,
        on_complete: Callable[[dict[str, Any]], None],
        label: str = "",
    ) -> None:
        self.fingerprint = fingerprint
        self.started = started
        self.status = status
        self.headers = headers
        self.framing = framing
        self.redactor = redactor
        self.on_complete = on_complete
        self.label = label
        self.splitter = EventSplitter(framing)
        self.chunks: list[dict[str, Any]] = []
        self.done = False

    def _events(self, events: list[str]) -> list[bytes]:
        out = []
        now = round(time.monotonic() - self.started, 4)
        for event in events:
            data = self.redactor.text(normalize_event(event, self.framing, self.fingerprint))
            self.chunks.append({"at": now, "data": data})
            out.append(data.encode("utf-8"))
        return out

    def feed(self, raw: bytes) -> list[bytes]:
        return self._events(self.splitter.feed(raw))

    def finish(self) -> list[bytes]:
        """Flush the last partial event and hand over the recording (once), unless it is cut."""
        if self.done:
            return []
        self.done = True
        out = self._events(self.splitter.flush())
        reason = cut_reason(self.framing, (c["data"] for c in self.chunks))
        if reason is not None:
            logger.warning("not recording %s: the stream was cut short (%s)", self.label, reason)
            return out
        self.on_complete(
            {
                "status": self.status,
                "headers": self.headers,
                "stream": {"framing": self.framing, "chunks": self.chunks},
            }
        )
        return out


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
        except self.lib.HTTPError as exc:
            # The caller is done with this response; a failed drain only means no recording.
            logger.warning(
                "not recording %s: stream failed while draining: %s", self.capture.label, exc
            )
        finally:
            self.upstream.close()


class _ReplaySyncStreamMixin:
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
        except self.lib.HTTPError as exc:
            logger.warning(
                "not recording %s: stream failed while draining: %s", self.capture.label, exc
            )
        finally:
            await self.upstream.aclose()


class _ReplayAsyncStreamMixin:
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


def recording_stream(upstream: Any, capture: StreamCapture, *, is_async: bool) -> Any:
    """A byte stream of the upstream response's library that records as it passes through."""
    lib = library_of(upstream)
    if is_async:
        return bind(_RecordingAsyncStreamMixin, "AsyncByteStream", lib)(upstream, capture)
    return bind(_RecordingSyncStreamMixin, "SyncByteStream", lib)(upstream, capture)


def replay_stream(
    request: Any, chunks: list[dict[str, Any]], pace: float, *, is_async: bool
) -> Any:
    """A byte stream of the request's library that plays stored chunks back."""
    lib = library_of(request)
    if is_async:
        return bind(_ReplayAsyncStreamMixin, "AsyncByteStream", lib)(chunks, pace)
    return bind(_ReplaySyncStreamMixin, "SyncByteStream", lib)(chunks, pace)
