"""Which test a provider request belongs to, and which repeat of an identical request it is.

The recording transport files every interaction under the test that caused it. The plugin's
clients send two headers with every request to the stack; :class:`AttributionMiddleware`, which
wraps the stack's ASGI app, turns them into an :class:`Attribution` that holds for the whole
HTTP request (streamed body and background work included), so the stack's own code never has to
pass a test id around. This works the same in a server process and in library mode, where the
plugin's clients reach the app through an in-process transport.

Headers (sent by the plugin's clients, read by the middleware):

- ``X-Harness-Test-Id``: the pytest node id of the test making the request.
- ``X-Harness-Test-Invocation``: unique per run of that test (a uuid). Identical requests are
  counted per invocation, so a reused server replays a re-run test from its first recording.

Requests without them (e.g. the stack's start-up model listing) are in the shared scope, whose
requests are never counted: they may repeat any number of times over a server's life and always
map to the same recording.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from harness.recording.errors import RECORDING_MISS_HEADER, RecordingError, error_response

TEST_ID_HEADER = "X-Harness-Test-Id"
INVOCATION_HEADER = "X-Harness-Test-Invocation"
SHARED_TEST_ID = ""
MAX_TRACKED_INVOCATIONS = 4096


class OccurrenceCounter:
    """Numbers identical requests (same base fingerprint) 0, 1, 2, ... within one invocation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def next(self, base_fingerprint: str) -> int:
        with self._lock:
            n = self._counts.get(base_fingerprint, 0)
            self._counts[base_fingerprint] = n + 1
            return n

    def give_back(self, base_fingerprint: str, n: int) -> None:
        """Undo `next` for a request that found no recording, so a retry asks for the same one."""
        with self._lock:
            if self._counts.get(base_fingerprint) == n + 1:
                self._counts[base_fingerprint] = n


@dataclass(frozen=True)
class Attribution:
    """The test (pytest node id) and the run of it (invocation id) a request belongs to."""

    test_id: str
    invocation: str
    occurrences: OccurrenceCounter = field(
        default_factory=OccurrenceCounter, compare=False, repr=False
    )

    @property
    def is_shared(self) -> bool:
        return self.test_id == SHARED_TEST_ID

    def occurrence(self, base_fingerprint: str) -> int:
        """Which repeat of this request this is in the invocation; always 0 when shared."""
        return 0 if self.is_shared else self.occurrences.next(base_fingerprint)

    def missed(self, base_fingerprint: str, occurrence: int) -> None:
        """The request had no recording: its retry is the same occurrence, not the next one."""
        if not self.is_shared:
            self.occurrences.give_back(base_fingerprint, occurrence)


SHARED = Attribution(test_id=SHARED_TEST_ID, invocation="")

_current: ContextVar[Attribution] = ContextVar("harness_attribution", default=SHARED)
# The recording faults of the HTTP request being served (set by the middleware).
_faults: ContextVar[list[Exception] | None] = ContextVar("harness_faults", default=None)


def current_attribution() -> Attribution:
    """The attribution of the running code; the shared scope when none is set."""
    return _current.get()


@contextmanager
def attributed(attribution: Attribution) -> Iterator[Attribution]:
    """Run a block as part of a test: every recorded request inside is filed under it."""
    token = _current.set(attribution)
    try:
        yield attribution
    finally:
        _current.reset(token)


def note_fault(exc: Exception) -> None:
    """Remember a recording fault of the request being served, for the middleware to report.

    A stack we did not write may catch the error and answer with its own bare HTTP 500 (or
    retry); the middleware then answers with the harness's diagnostic instead.
    """
    faults = _faults.get()
    if faults is not None:
        faults.append(exc)


def attribution_headers(test_id: str, invocation: str) -> dict[str, str]:
    """The headers a client sends so the stack files its provider traffic under the test."""
    return {TEST_ID_HEADER: test_id, INVOCATION_HEADER: invocation}


class _Invocations:
    """One Attribution per invocation id, so its requests share one occurrence counter.

    Bounded: the oldest invocations are forgotten, so a long-lived server does not grow.
    """

    def __init__(self, limit: int = MAX_TRACKED_INVOCATIONS) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._known: OrderedDict[tuple[str, str], Attribution] = OrderedDict()

    def get(self, test_id: str, invocation: str) -> Attribution:
        if not test_id:
            return SHARED
        key = (test_id, invocation)
        with self._lock:
            found = self._known.get(key)
            if found is None:
                found = self._known[key] = Attribution(test_id, invocation)
                while len(self._known) > self._limit:
                    self._known.popitem(last=False)
            else:
                self._known.move_to_end(key)
            return found


def _header(headers: list[tuple[bytes, bytes]], name: str) -> str:
    wanted = name.lower().encode("latin-1")
    for key, value in headers:
        if key.lower() == wanted:
            return value.decode("utf-8", "replace")
    return ""


class AttributionMiddleware:
    """Pure ASGI middleware: each HTTP request runs attributed to the test its headers name.

    Pure ASGI (not BaseHTTPMiddleware) so streaming responses and background tasks run inside
    the same context, and nothing is buffered. A request without an invocation id gets its own.
    """

    def __init__(self, app: Any, *, max_invocations: int = MAX_TRACKED_INVOCATIONS) -> None:
        self.app = app
        self._invocations = _Invocations(max_invocations)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        test_id = _header(headers, TEST_ID_HEADER)
        invocation = _header(headers, INVOCATION_HEADER)
        if test_id and not invocation:
            invocation = uuid.uuid4().hex
        faults: list[Exception] = []
        token = _faults.set(faults)
        replaced = False

        async def reporting_send(message: dict[str, Any]) -> None:
            nonlocal replaced
            if replaced:
                return
            if message["type"] == "http.response.start" and faults and not _has_report(message):
                replaced = True
                await _send_fault(send, faults[-1])
                return
            await send(message)

        try:
            with attributed(self._invocations.get(test_id, invocation)):
                await self.app(scope, receive, reporting_send)
        finally:
            _faults.reset(token)


def _has_report(message: dict[str, Any]) -> bool:
    """True when the app answered with the harness's own fault report (the reference stack)."""
    wanted = RECORDING_MISS_HEADER.lower().encode("latin-1")
    return any(name.lower() == wanted for name, _ in message.get("headers") or [])


async def _send_fault(send: Any, fault: Exception) -> None:
    error = fault if isinstance(fault, RecordingError) else RecordingError(str(fault))
    body, headers = error_response(error)
    data = json.dumps(body).encode("utf-8")
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": 500, "headers": raw})
    await send({"type": "http.response.body", "body": data, "more_body": False})
