"""Which test a provider request belongs to, and how a recording fault becomes the answer.

The recording layer files every interaction under the test that caused it. The plugin's
clients (and any client a test builds itself) send three headers with every request to the
stack; :class:`AttributionMiddleware`, which wraps the stack's ASGI app, turns them into an
:class:`Attribution` that holds for the whole HTTP request (streamed body and background work
included), so the stack's own code never passes a test id around. This works the same in a
server process and in library mode.

- ``X-Harness-Session``: the pytest session (a hex id); its events go to its own log.
- ``X-Harness-Test-Id``: the pytest node id of the test making the request.
- ``X-Harness-Test-Invocation``: unique per run of that test. Identical requests are counted,
  and ids numbered, per invocation, so a reused server replays a re-run test from the start.

Work the stack does away from the request (a task, a thread, an executor's call) belongs to the
test whose request started it, even once that test is over: a vector store's file batch is
ingested in a task that may outlive the test that asked for it. Work handed to a long-lived
worker through a queue belongs to the test that handed it over (recording/patch.py); work in a
context that names no test (a task made with a fresh context), to the one test with a request
in flight; see :func:`resolve_attribution`. A request filed under a test that way and not
found in replay is looked for in the shared scope too, so periodic work that happened to run
during a test (a model-list refresh) replays wherever it falls. Requests made outside any
test (the stack's start-up model listing) are in the shared scope, whose requests are never
counted.

The middleware is also the one place where a recording fault becomes the stack's HTTP answer,
for the reference stack and for stacks the harness did not write alike: a fault raised through
the app, or noted by the recording layer and then swallowed by the stack's own error handling
(Llama Stack answers its own bare 500), is answered with the fault itself (``error_response``)
as long as the response has not started.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from harness.recording.errors import (
    FAULT_STATUS,
    Fault,
    RecordingError,
    error_response,
    fault_of,
)
from harness.recording.fingerprint import IdNumbers

logger = logging.getLogger(__name__)

SESSION_HEADER = "X-Harness-Session"
TEST_ID_HEADER = "X-Harness-Test-Id"
INVOCATION_HEADER = "X-Harness-Test-Invocation"
ATTRIBUTION_HEADERS = (SESSION_HEADER, TEST_ID_HEADER, INVOCATION_HEADER)
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
    """The session, test (pytest node id) and run of it (invocation id) a request belongs to."""

    test_id: str
    invocation: str
    session: str = ""
    occurrences: OccurrenceCounter = field(
        default_factory=OccurrenceCounter, compare=False, repr=False
    )
    ids: IdNumbers = field(default_factory=IdNumbers, compare=False, repr=False)
    made: OccurrenceCounter = field(  # ids the stack made for this run, per kind (patch.py)
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

    def id_numbers(self) -> IdNumbers:
        """Where ids are numbered: the invocation's, or a fresh one per shared request."""
        return IdNumbers() if self.is_shared else self.ids


SHARED = Attribution(test_id=SHARED_TEST_ID, invocation="")

_current: ContextVar[Attribution] = ContextVar("harness_attribution", default=SHARED)
# The recording faults of the HTTP request being served (set by the middleware).
_faults: ContextVar[list[Fault] | None] = ContextVar("harness_faults", default=None)


class Invocations:
    """One Attribution per invocation, so its requests share one occurrence counter and one
    id numbering. Bounded: the oldest are forgotten, so a long-lived server does not grow."""

    def __init__(self, limit: int = MAX_TRACKED_INVOCATIONS) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._known: OrderedDict[tuple[str, str, str], Attribution] = OrderedDict()

    def get(self, session: str, test_id: str, invocation: str) -> Attribution:
        if not test_id:
            return SHARED
        key = (session, test_id, invocation)
        with self._lock:
            found = self._known.get(key)
            if found is None:
                found = self._known[key] = Attribution(test_id, invocation, session)
                while len(self._known) > self._limit:
                    self._known.popitem(last=False)
            else:
                self._known.move_to_end(key)
            return found


class InFlight:
    """Which test invocations have a request in flight in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Attribution, int] = {}

    @contextmanager
    def serving(self, attribution: Attribution) -> Iterator[None]:
        if attribution.is_shared:
            yield
            return
        with self._lock:
            self._counts[attribution] = self._counts.get(attribution, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._counts[attribution] - 1
                if left:
                    self._counts[attribution] = left
                else:
                    del self._counts[attribution]

    def sole(self) -> Attribution | None:
        with self._lock:
            active = list(self._counts)
        return active[0] if len(active) == 1 else None


# One per process: the fallback of current_attribution asks it (a stack process serves one
# app; in library mode the pytest process may build several, one after another).
IN_FLIGHT = InFlight()


def current_attribution() -> Attribution:
    """The attribution of the running code (see the module docstring for the fallback)."""
    return resolve_attribution()[0]


def resolve_attribution() -> tuple[Attribution, bool]:
    """The running code's attribution, and whether it was inferred rather than set.

    Set: the context names a test, the one whose request started this work, over or not (a
    job that outlives its test is still its job; filing it under whichever test runs when it
    calls out would depend on timing). Inferred: work with no test in its context belongs to
    the one test with a request in flight, else to nobody (the shared scope).
    """
    attribution = _current.get()
    if not attribution.is_shared:
        return attribution, False
    sole = IN_FLIGHT.sole()
    if sole is not None:
        return sole, True
    return attribution, False


def attribution_context_value() -> Attribution:
    """The attribution set in this context, without the fallback (to carry into a thread)."""
    return _current.get()


def set_attribution(attribution: Attribution) -> None:
    """Attribute the rest of the running task (or thread) to `attribution` (no reset: for a
    task that takes on work handed to it, see recording/patch.py)."""
    _current.set(attribution)


@contextmanager
def attributed(attribution: Attribution) -> Iterator[Attribution]:
    """Run a block as part of a test: every recorded request inside is filed under it."""
    token = _current.set(attribution)
    try:
        yield attribution
    finally:
        _current.reset(token)


def note_fault(fault: Fault) -> None:
    """Remember a recording fault of the request being served, for the middleware to answer.

    A stack we did not write may catch the error and answer with its own bare HTTP 500 (or
    retry); the middleware then answers with the fault instead.
    """
    faults = _faults.get()
    if faults is not None:
        faults.append(fault)


def attribution_headers(session: str, test_id: str, invocation: str) -> dict[str, str]:
    """The headers a client sends so the stack files its provider traffic under the test."""
    return {SESSION_HEADER: session, TEST_ID_HEADER: test_id, INVOCATION_HEADER: invocation}


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
        self._invocations = Invocations(max_invocations)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        session = _header(headers, SESSION_HEADER)
        test_id = _header(headers, TEST_ID_HEADER)
        invocation = _header(headers, INVOCATION_HEADER)
        if test_id and not invocation:
            invocation = uuid.uuid4().hex
        attribution = self._invocations.get(session, test_id, invocation)
        faults: list[Fault] = []
        token = _faults.set(faults)
        started = answered = False

        async def answering_send(message: dict[str, Any]) -> None:
            nonlocal started, answered
            if answered:
                return
            if message["type"] == "http.response.start":
                if faults:
                    answered = True
                    await _send_fault(send, faults[-1])
                    return
                started = True
            await send(message)

        try:
            with attributed(attribution), IN_FLIGHT.serving(attribution):
                await self.app(scope, receive, answering_send)
        except Exception as exc:
            fault = faults[-1] if faults else None
            if fault is None and isinstance(exc, RecordingError):
                fault = fault_of(exc)
            if fault is None or started or scope.get("type") != "http":
                raise
            logger.error("%s %s: %s", scope.get("method"), scope.get("path"), fault.summary())
            if not answered:
                await _send_fault(send, fault)
        finally:
            _faults.reset(token)


async def _send_fault(send: Any, fault: Fault) -> None:
    body, headers = error_response(fault)
    data = json.dumps(body).encode("utf-8")
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": FAULT_STATUS, "headers": raw})
    await send({"type": "http.response.body", "body": data, "more_body": False})
