"""Which test a provider request belongs to.

The recording transport files every interaction under the test that caused it. In library
mode the plugin sets the scope with :func:`scope`; in a server process the plugin's clients
send two headers and :class:`TestScopeMiddleware` sets the same context variable for the
duration of each HTTP request, so the stack's own code never has to pass a test id around.

Headers (sent by the plugin's clients, read by the middleware):

- ``X-Harness-Test-Id``: the pytest node id of the test making the request.
- ``X-Harness-Test-Invocation``: unique per test run (a uuid). It resets the per-test
  occurrence counters, so a reused server replays a re-run test from its first recording.

Requests without them (e.g. the stack's startup model listing) are in the shared scope.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

TEST_ID_HEADER = "X-Harness-Test-Id"
INVOCATION_HEADER = "X-Harness-Test-Invocation"
SHARED_TEST_ID = ""


@dataclass(frozen=True)
class TestScope:
    """The test (pytest node id) and its run (invocation id) a request belongs to."""

    __test__ = False  # not a pytest test class despite the name

    test_id: str
    invocation: str

    @property
    def is_shared(self) -> bool:
        return self.test_id == SHARED_TEST_ID


SHARED_SCOPE = TestScope(test_id=SHARED_TEST_ID, invocation="")

_current: ContextVar[TestScope] = ContextVar("harness_test_scope", default=SHARED_SCOPE)


def current_scope() -> TestScope:
    """The scope of the running code; the shared scope when none is set."""
    return _current.get()


@contextmanager
def scope(test_id: str, invocation: str | None = None) -> Iterator[TestScope]:
    """Run a block as part of a test (library mode and tests). A fresh invocation by default."""
    value = TestScope(test_id=test_id, invocation=invocation or uuid.uuid4().hex)
    token = _current.set(value)
    try:
        yield value
    finally:
        _current.reset(token)


def scope_headers(test_id: str, invocation: str) -> dict[str, str]:
    """The headers a client sends so a stack server files its provider traffic under the test."""
    return {TEST_ID_HEADER: test_id, INVOCATION_HEADER: invocation}


def _scope_from_asgi_headers(headers: list[tuple[bytes, bytes]]) -> TestScope:
    test_id = ""
    invocation = ""
    wanted_id = TEST_ID_HEADER.lower().encode("latin-1")
    wanted_inv = INVOCATION_HEADER.lower().encode("latin-1")
    for name, value in headers:
        lowered = name.lower()
        if lowered == wanted_id:
            test_id = value.decode("utf-8", "replace")
        elif lowered == wanted_inv:
            invocation = value.decode("utf-8", "replace")
    if not test_id:
        return SHARED_SCOPE
    return TestScope(test_id=test_id, invocation=invocation or uuid.uuid4().hex)


class TestScopeMiddleware:
    """Pure ASGI middleware: each HTTP request runs in the scope named by its headers.

    Pure ASGI (not BaseHTTPMiddleware) so streaming responses and background tasks run inside
    the same context, and nothing is buffered.
    """

    __test__ = False

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope_: dict[str, Any], receive: Any, send: Any) -> None:
        if scope_.get("type") not in ("http", "websocket"):
            await self.app(scope_, receive, send)
            return
        token = _current.set(_scope_from_asgi_headers(scope_.get("headers") or []))
        try:
            await self.app(scope_, receive, send)
        finally:
            _current.reset(token)
