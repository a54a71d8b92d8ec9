"""One object per kind of stack a session can test: in-process, the reference server, a foreign
server (`--stack-command`) and a remote URL.

Each answers the same questions, so no caller asks which kind it has:

- :meth:`StackKind.open` starts, shares or adopts the stack and returns its base URL;
- :meth:`StackKind.transport` / :meth:`StackKind.async_transport` reach it with httpx or
  httpx2 (async: only where a client could not reach it on its own, i.e. in-process);
- :meth:`StackKind.gone` says, cheaply, whether it died or was stopped during the run;
- :meth:`StackKind.close` lets go of it and says what became of it;
- :meth:`StackKind.test_scope` wraps one test (the remote kind records the test's own HTTP
  there, as a vcrpy cassette; a no-op for the others).

The two server kinds share their process handling in `harness.kinds_server`; which one a
target gets is decided once, by :func:`kind_for`, from the resolved stack command.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.options import HarnessOptions
from harness.recording.context import Attribution
from harness.recording.modes import Mode, RecordingSettings
from harness.targets import LibraryTarget, ProvidersTarget, ServerTarget, UrlTarget

Announce = Callable[[str], None]


class StackStartError(Exception):
    """The stack could not be started or reused; the message says why and what to do."""


@dataclass(frozen=True)
class Gone:
    """The stack died or stopped answering during the run: what happened, and its log."""

    what: str  # e.g. "the stack server (pid 12) on port 8321 was killed by signal SIGKILL"
    log: Path | None = None
    tail: str = ""
    advice: str = ""  # what the user can do about it, if anything

    def message(self) -> str:
        head = f"{self.what} during the run." + (f" {self.advice}" if self.advice else "")
        if self.log is None:
            return head
        return f"{head}\nlast 40 lines of {self.log}:\n{self.tail}"

    def ending(self) -> str:
        return f"{self.what} during the run" + (f"; see {self.log}" if self.log else "")


_PLAIN_LOCK = type(threading.Lock())
_REENTRANT_LOCK = type(threading.RLock())


def reentrant_pool(transport: Any) -> Any:
    """`transport`, with its connection pool safe against a stream closed from a finalizer.

    Every client of a session shares one transport, so a streamed response one test dropped
    unread may be finalized by the garbage collector in the middle of another request's pass
    over the pool, on the same thread. Its close takes the pool's lock again: with httpcore's
    plain `threading.Lock` the run hangs for good (encode/httpcore#990; Llama Stack's own
    suite hit it through the harness). An RLock alone is not enough: the close then runs its
    own pass inside the outer one, and the outer one removes a connection the inner one
    already removed (`ValueError`, seen as a connection error). So the lock is made reentrant
    and a pass started inside a pass is put off until the outer one ends. Both are private
    attributes (httpx2's pool has the RLock already): a pool shaped otherwise is left as it is."""
    pool = getattr(transport, "_pool", None)
    lock = getattr(pool, "_optional_thread_lock", None)
    assign = getattr(pool, "_assign_requests_to_connections", None)
    inner = getattr(lock, "_lock", None)
    if not isinstance(inner, (_PLAIN_LOCK, _REENTRANT_LOCK)) or assign is None:
        return transport
    if isinstance(inner, _PLAIN_LOCK):
        lock._lock = threading.RLock()  # type: ignore[union-attr]
    state = {"depth": 0, "put_off": False}  # guarded by the pool's lock, held by every pass

    def one_pass_at_a_time() -> list[Any]:
        if state["depth"]:
            state["put_off"] = True
            return []
        state["depth"] += 1
        try:
            closing = assign()
            while state["put_off"]:
                state["put_off"] = False
                closing += assign()
            return closing
        finally:
            state["depth"] -= 1

    pool._assign_requests_to_connections = one_pass_at_a_time  # type: ignore[union-attr]
    return transport


class StackKind:
    """The interface; the base's answers are those of a stack with nothing to watch."""

    options: HarnessOptions

    origin = ""  # how this session got its stack, once open
    keepalive = True  # reuse connections to it
    trusted_by_prune = True  # a complete replay run's usage may tell prune what is unused
    holds_process = False  # a process that SIGTERM to pytest must still stop
    routes_clients = False  # clients a test builds must be routed to it (no socket)

    def open(self, cancelled: Callable[[], bool] | None = None) -> str:
        """Start, share or adopt the stack; its base URL. `cancelled` is asked while it waits
        (opening in the background): once true, it undoes what it did and raises."""
        raise NotImplementedError

    def describe(self) -> str:
        """The target, as the summary names it (a server: on the port it really took)."""
        target = self.options.target
        return target.describe() if target is not None else ""

    def transport(self, lib: Any) -> Any:
        limits = {} if self.keepalive else {"limits": lib.Limits(max_keepalive_connections=0)}
        verify = self.base_url.startswith("https:")
        return reentrant_pool(lib.HTTPTransport(verify=verify, **limits))

    def async_transport(self, lib: Any) -> Any | None:
        return None

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    def gone(self) -> Gone | None:
        return None

    def close(self) -> str:
        return ""

    def test_scope(self, attribution: Attribution) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def run_config(self) -> Any:
        return None

    def for_workers(self) -> dict[str, Any] | None:
        """What xdist workers need to use this (controller's) stack; None: each opens its own."""
        return None


class LibraryKind(StackKind):
    """The reference stack's app inside the pytest process; clients reach it without a socket."""

    routes_clients = True

    def __init__(self, options: HarnessOptions, recording: Callable[[], RecordingSettings]):
        assert isinstance(options.target, LibraryTarget | ProvidersTarget)
        self.options = options
        self._recording = recording
        self._stack: Any = None  # harness.inprocess.InProcessStack

    @property
    def base_url(self) -> str:
        return self._stack.base_url

    def open(self, cancelled: Callable[[], bool] | None = None) -> str:
        from harness.inprocess import InProcessStack
        from harness.stack.app import create_app

        target = self.options.target
        assert target is not None
        try:
            from harness.recording.redaction import secret_values

            recording = self._recording()
            secrets = secret_values(self.options.stack_env, recording.secret_names)
            app = create_app(self.options.run_config, recording=recording, secrets=secrets)
            self._stack = InProcessStack(app).start(timeout=self.options.startup_timeout)
        except Exception as exc:
            raise StackStartError(f"the in-process stack failed to start: {exc}") from exc
        self.origin = f"serving {target.describe().split(' ', 1)[1]} in-process"
        return self._stack.base_url

    def transport(self, lib: Any) -> Any:
        return self._stack.transport(lib)

    def async_transport(self, lib: Any) -> Any:
        return self._stack.async_transport(lib)

    def close(self) -> str:
        if self._stack is None:
            return ""
        self._stack.stop()
        self._stack = None
        return "stopped the in-process stack"

    def run_config(self) -> Any:
        return self.options.run_config


class RemoteKind(StackKind):
    """A stack someone else runs, given by URL: recorded at the client layer, per test."""

    keepalive = False

    def __init__(self, options: HarnessOptions, recording: Callable[[], RecordingSettings]):
        assert isinstance(options.target, UrlTarget)
        self.options = options
        self.url = options.target.url
        self._recording = recording

    @property
    def base_url(self) -> str:
        return self.url

    def open(self, cancelled: Callable[[], bool] | None = None) -> str:
        self.origin = f"using the stack at {self.url} (recorded at the client layer)"
        return self.url

    trusted_by_prune = False  # a remote stack's recordings are not all its tests'

    def close(self) -> str:
        return f"left the stack at {self.url} to its owner"

    @contextlib.contextmanager
    def test_scope(self, attribution: Attribution) -> Iterator[Any]:
        settings = self._recording()
        if settings.mode is Mode.LIVE:
            yield None
            return
        from dataclasses import replace

        from harness.recording.cassettes import client_cassette
        from harness.recording.hosts import url_host

        named = url_host(self.url)  # the stack itself is what this kind records
        if named is not None:
            record = (*settings.hosts.record, f"{named[0]}:{named[1]}")
            settings = replace(settings, hosts=replace(settings.hosts, record=record))
        with client_cassette(settings, attribution.test_id, attribution=attribution) as cassette:
            yield cassette


def kind_for(
    options: HarnessOptions,
    recording: Callable[[], RecordingSettings],
    worker_server: Any = None,
) -> StackKind | None:
    """The kind of stack the session's target is; None without a target."""
    target = options.target
    if target is None:
        return None
    if isinstance(target, UrlTarget):
        return RemoteKind(options, recording)
    if isinstance(target, ServerTarget):
        from harness.kinds_server import ForeignServerKind, ReferenceServerKind

        kind = ReferenceServerKind if options.command.reference else ForeignServerKind
        return kind(options, recording, worker_server)
    return LibraryKind(options, recording)
