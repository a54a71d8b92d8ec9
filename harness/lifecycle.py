"""The session's stack: opened at most once, watched, and let go of once.

One entry point, :meth:`StackLifecycle.stack`, gives the client fixtures what they need for
every kind of stack (`harness.kinds`): a base URL and a transport per client library. A stack
that failed to start fails the same way every time it is asked for, without a second try. A
stack found gone during the run is remembered, so the session says so once. This module knows
pytest only through the `announce` callback it is given.

A server takes seconds to start, and so does collecting a large suite or booting xdist
workers; :meth:`StackLifecycle.begin` starts opening the stack in a thread so the two overlap,
and :meth:`StackLifecycle.stack` then waits for it. What the thread finds is handed over only
in the caller's thread (announced, raised), so the session sees the same stack, or the same
error, as if it had opened it itself; a session that ends first cancels the start and stops
what it started.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from harness.kinds import Gone, StackKind, StackStartError

CLIENT_TIMEOUT = 120.0  # seconds: a local model may take a while to answer

__all__ = ["CLIENT_TIMEOUT", "StackHandle", "StackLifecycle", "StackStartError", "sdk_http_library"]


class KeepOpen:
    """Lends a session transport to clients, whose close() must not close it.

    A request that times out asks the stack whether it is still there: a stopped or dead
    server is named in the error, rather than a bare "timed out".
    """

    def __init__(self, inner: Any, lib: Any, explain: Callable[[], Gone | None]) -> None:
        self.inner = inner
        self.lib = lib
        self._explain = explain

    def handle_request(self, request: Any) -> Any:
        try:
            return self.inner.handle_request(request)
        except self.lib.TimeoutException as exc:
            gone = self._explain()
            if gone is None:
                raise
            raise type(exc)(f"{exc}: {gone.message().splitlines()[0]}", request=request) from exc

    def close(self) -> None:
        pass

    def __enter__(self) -> KeepOpen:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


class _KeepOpenAsync:
    """The async twin of :class:`KeepOpen` (in-process only: nothing to explain)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def handle_async_request(self, request: Any) -> Any:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        pass

    async def __aenter__(self) -> _KeepOpenAsync:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass


class StackHandle:
    """What the client fixtures need: the base URL and one transport per client library.

    One transport per library per session, built on first use: clients then cost no
    connection pool or TLS set-up.
    """

    def __init__(self, kind: StackKind, base_url: str, explain: Callable[[], Gone | None]):
        self.kind = kind
        self.base_url = base_url
        self._explain = explain
        self._transports: dict[tuple[str, bool], Any] = {}

    def transport(self, lib: Any) -> Any:
        """A sync transport of `lib` (httpx or httpx2) to the stack, closed with the session."""
        key = (lib.__name__, False)
        if key not in self._transports:
            self._transports[key] = self.kind.transport(lib)
        return KeepOpen(self._transports[key], lib, self._explain)

    def async_transport(self, lib: Any) -> Any | None:
        """An async transport of `lib`, where a client could not reach the stack by itself."""
        key = (lib.__name__, True)
        if key not in self._transports:
            inner = self.kind.async_transport(lib)
            if inner is None:
                return None
            self._transports[key] = inner
        return _KeepOpenAsync(self._transports[key])

    def client(self, lib: Any, hooks: dict[str, list[Any]], *, base_url: str = "") -> Any:
        """A sync client of `lib` on the session transport: what the client fixtures hand out
        (as themselves, or as the `http_client` of an SDK)."""
        return lib.Client(
            base_url=base_url,
            transport=self.transport(lib),
            event_hooks=hooks,
            timeout=CLIENT_TIMEOUT,
        )

    def close(self) -> None:
        for key, transport in self._transports.items():
            if not key[1]:
                transport.close()
        self._transports.clear()


class _Opening:
    """`kind.open()` running in a thread: its base URL, or what it raised, once it is done."""

    def __init__(self, kind: StackKind, done: Callable[[str | None, str | None], None] | None):
        self.kind = kind
        self.base_url: str | None = None
        self.error: BaseException | None = None
        self._done = done
        self._cancel = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stack-harness-open", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.base_url = self.kind.open(self._cancel.is_set)
        except BaseException as exc:  # handed to the caller's thread, which raises it there
            self.error = exc
        if self._done is not None:
            self._done(self.base_url, None if self.error is None else str(self.error))

    def result(self) -> str:
        """Wait for it; its base URL, or raise what it raised."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        assert self.base_url is not None
        return self.base_url

    def cancel(self) -> bool:
        """Stop it and wait; whether it had opened the stack all the same."""
        self._cancel.set()
        self.thread.join()
        return self.error is None and self.base_url is not None


class StackLifecycle:
    """Holds the session's stack from its first use to the end of the session."""

    def __init__(self, kind: StackKind | None, announce: Callable[[str], None]) -> None:
        self.kind = kind
        self._announce = announce
        self._handle: StackHandle | None = None
        self.start_error: StackStartError | None = None
        self.gone_found: Gone | None = None  # set once the stack is found gone mid-run
        self.gone_reported = False  # the first test it broke has said so
        self.ending = ""  # what became of the stack at the end, for the summary
        self.used = False  # opened, or tried to, at some point of the session
        self._opening: _Opening | None = None

    @property
    def opened(self) -> bool:
        return self._handle is not None

    @property
    def opening(self) -> bool:
        """Begun in the background and not yet handed over."""
        return self._opening is not None

    def begin(self, done: Callable[[str | None, str | None], None] | None = None) -> None:
        """Start opening the stack in a thread; `done(base_url, error)` is called from it at
        the end (for xdist workers, which learn of the stack from a file). Once only."""
        if self._handle is not None or self.start_error is not None or self._opening:
            return
        assert self.kind is not None, "no stack target"
        self.used = True
        self._opening = _Opening(self.kind, done)

    def cancel_opening(self) -> None:
        """Stop a background start no test turned out to need, as if it was never begun."""
        if self._opening is None:
            return
        if self._abandon_opening():
            assert self.kind is not None
            self.kind.close()
        self.used = False

    def _abandon_opening(self) -> bool:
        """Cancel a background start, if any, and wait for it; whether it had opened the
        stack all the same (the kind then holds it, to be closed)."""
        opening, self._opening = self._opening, None
        return opening is not None and opening.cancel()

    @property
    def base_url(self) -> str | None:
        return self._handle.base_url if self._handle else None

    def stack(self) -> StackHandle:
        """The session's stack, opened on the first call; StackStartError if it cannot be."""
        if self._handle is not None:
            return self._handle
        if self.start_error is not None:
            raise self.start_error
        assert self.kind is not None, "no stack target"
        self.used = True
        if self._opening is not None:
            self._opening.thread.join()  # interrupted here, close() still cancels it
        opening, self._opening = self._opening, None
        try:
            base_url = opening.result() if opening is not None else self.kind.open()
        except StackStartError as exc:
            self.start_error = exc
            raise
        self._handle = StackHandle(self.kind, base_url, self.gone)
        self._announce(self.kind.origin)
        return self._handle

    def gone(self) -> Gone | None:
        """If the stack died or stopped during the run: what happened (found once, kept)."""
        if self.gone_found is None and self._handle is not None and self.kind is not None:
            self.gone_found = self.kind.gone()
            if self.gone_found is not None:
                self.ending = self.gone_found.ending()
        return self.gone_found

    def report_gone(self) -> Gone | None:
        """The stack's death or stop, the first time it is asked after it happened; else None."""
        gone = self.gone()
        if gone is None or self.gone_reported:
            return None
        self.gone_reported = True
        return gone

    def close(self) -> str:
        """Stop what this session started, let go of what it shares; say which. Idempotent."""
        opened_meanwhile = self._abandon_opening()  # the session ended before it needed it
        if self._handle is None and not opened_meanwhile:
            return ""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        assert self.kind is not None
        said = self.kind.close()
        if said and self.gone_found is None:
            self.ending = said
        return said


def sdk_http_library(sdk: ModuleType) -> ModuleType:
    """The HTTP library (httpx or httpx2) a Stainless-built SDK (openai, llama-stack-client)
    takes as its `http_client`: openai 1.x/2.x use httpx, 3.x httpx2."""
    base = next(c for c in sdk.DefaultHttpxClient.__mro__[1:] if c.__name__ == "Client")
    return importlib.import_module(base.__module__.split(".", 1)[0])
