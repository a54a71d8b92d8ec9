"""Everything one pytest session makes or holds, owned by one object and let go of in one place.

A :class:`HarnessSession` owns: the session's id, scratch directory and event log (through
which every recording fault reaches its test: :class:`~harness.reporting.FaultCollector`),
the stack (its lifecycle and kind: a server lease and the process it started, an in-process
app, a remote's cassettes), the current test (its attribution headers), the patch that
stamps clients a test builds itself, and the SIGTERM handler that turns a `kill` of pytest
into an orderly stop. :meth:`HarnessSession.close` is the one teardown path; no module keeps
process-wide state, so in-process pytest sessions (pytester) do not leak into each other. A
session killed outright is covered by the supervisor, which stops a server no one holds.

Under pytest-xdist the controller starts or reuses a server before its workers exist and hands
them :class:`WorkerData` (its id, scratch directory and server); a worker's session is
built with it and adopts the server rather than holding it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from harness.kinds import StackStartError, kind_for
from harness.lifecycle import StackHandle, StackLifecycle
from harness.options import HarnessOptions
from harness.recording import usage
from harness.recording.context import Attribution, attribution_headers
from harness.recording.modes import RecordingSettings
from harness.reporting import FaultCollector

logger = logging.getLogger(__name__)

WORKER_KEY = "stack_harness"  # xdist workerinput key: what the controller shares
SERVER_FILE = "stack-server.json"  # in the controller's work_dir: the server it started
PUBLISH_GRACE_SECONDS = 30.0  # beyond the controller's own waits, before a worker gives up


@dataclass(frozen=True)
class WorkerData:
    """What an xdist controller hands each worker."""

    work_dir: str
    session: str  # the controller's session id: its workers' events go to its log
    started: float  # when the controller's session started
    server: dict[str, Any] | None = None  # harness.kinds_server.WorkerServer, as a dict
    start_error: str | None = None  # the controller could not start the stack: why
    # Still starting when the workers were made: the file the controller writes the server
    # (or the start error) to once it knows, in the same shape as the two fields above.
    server_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "work_dir": self.work_dir,
            "session": self.session,
            "started": self.started,
            "server": self.server,
            "start_error": self.start_error,
            "server_file": self.server_file,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerData:
        return cls(
            data["work_dir"],
            data["session"],
            float(data["started"]),
            data.get("server"),
            data.get("start_error"),
            data.get("server_file"),
        )


@dataclass
class TestScope:
    """One run of one test: who it is, in which session."""

    test_id: str
    session: str
    invocation: str = field(default_factory=lambda: uuid.uuid4().hex)
    exits: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def headers(self) -> dict[str, str]:
        """The headers that file a request's provider traffic under this run of the test.

        Every client the harness builds or stamps gets its headers here, and only here.
        """
        return attribution_headers(self.session, self.test_id, self.invocation)

    def attribution(self) -> Attribution:
        """The same, for a recording layer in this process (the remote kind's cassette)."""
        return Attribution(self.test_id, self.invocation, self.session)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """All of it or nothing: a worker polling for the file never reads half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _wait_for_json(path: Path, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)
    found = json.loads(path.read_text(encoding="utf-8"))
    return found if isinstance(found, dict) else None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class HarnessSession:
    """The harness's part of one pytest session (see the module docstring)."""

    def __init__(
        self,
        options: HarnessOptions,
        announce: Callable[[str], None],
        worker: WorkerData | None = None,
    ) -> None:
        self.options = options
        self.worker = worker
        self._work_dir = Path(worker.work_dir) if worker else None
        self.id = worker.session if worker else uuid.uuid4().hex
        self.started = worker.started if worker else usage.now()
        self._sessions_dir = usage.default_sessions_dir()
        self._usage_log: Path | None = None
        self._owns_usage_log = False
        self._owns_work_dir = False
        worker_server = None
        if worker is not None and worker.server is not None:
            from harness.kinds_server import WorkerServer

            worker_server = WorkerServer.from_dict(worker.server)
        self.lifecycle = StackLifecycle(kind_for(options, self.recording, worker_server), announce)
        if worker is not None and worker.start_error:
            self.lifecycle.start_error = StackStartError(worker.start_error)
        self.current: TestScope | None = None
        self.faults = FaultCollector(self.usage_log if options.target is not None else None)
        self.usage: Any = None  # harness.recording.usage.UsageSummary, read at close
        self.closed = False
        self._patch: Any = None  # harness.client_patch.ClientPatch
        self._sigterm_trapped = False
        self._adopted = False  # a worker has read its controller's server file

    @property
    def is_worker(self) -> bool:
        return self.worker is not None

    # -- what the session owns --------------------------------------------------------------

    @property
    def work_dir(self) -> Path:
        """The session's scratch directory (the controller's under xdist), made on first use."""
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="stack-harness-session-"))
            self._owns_work_dir = True
        return self._work_dir

    @property
    def usage_log(self) -> Path:
        """This session's event log (``harness.recording.usage``): the controller makes it,
        its workers and every stack it uses, shared or not, append to it."""
        if self._usage_log is None:
            self._usage_log = usage.session_log(self._sessions_dir, self.id)
            if not self.is_worker and not self._usage_log.exists():
                usage.create_log(self._usage_log)
                self._owns_usage_log = True
        return self._usage_log

    def recording(self) -> RecordingSettings:
        """The recording settings the stack runs with: the options', with this session's log."""
        return replace(
            self.options.recording, usage_log=self.usage_log, sessions_dir=self._sessions_dir
        )

    def worker_data(self) -> WorkerData:
        kind = self.lifecycle.kind
        opened = self.lifecycle.opened and kind is not None
        error = self.lifecycle.start_error
        return WorkerData(
            work_dir=str(self.work_dir),
            session=self.id,
            started=self.started,
            server=kind.for_workers() if opened else None,
            start_error=str(error) if error is not None else None,
            server_file=str(self._server_file) if self.lifecycle.opening else None,
        )

    # -- the stack --------------------------------------------------------------------------

    @property
    def _server_file(self) -> Path:
        return self.work_dir / SERVER_FILE

    def begin_stack(self, *, for_workers: bool = False) -> None:
        """Start the server in the background (while pytest collects, or its xdist workers
        boot); :meth:`stack` waits for it. `for_workers`: the workers made meanwhile learn of
        it from a file (:class:`WorkerData`'s `server_file`)."""
        kind = self.lifecycle.kind
        if kind is None or not kind.holds_process or self.is_worker or self.lifecycle.opened:
            return
        self._trap_sigterm()  # before starting: a SIGTERM meanwhile still stops it
        # The scratch directory is made here, in this thread, not in the starting one.
        self.lifecycle.begin(partial(self._publish, self._server_file) if for_workers else None)

    def _publish(self, path: Path, base_url: str | None, error: str | None) -> None:
        kind = self.lifecycle.kind
        found = {"server": kind.for_workers()} if base_url and kind else {"start_error": error}
        try:
            _write_json(path, found)
        except OSError as exc:  # the workers then give up waiting, naming the file
            logger.warning("stack-harness: could not tell the xdist workers of the stack: %s", exc)

    def _adopt_published_server(self) -> None:
        """A worker made while its controller was still starting the server: wait to learn it."""
        worker = self.worker
        if worker is None or worker.server_file is None or self._adopted:
            return
        from harness.kinds_server import WorkerServer

        wait = 2 * self.options.startup_timeout + PUBLISH_GRACE_SECONDS
        found = _wait_for_json(Path(worker.server_file), wait)
        self._adopted = True  # not before: a worker never starts a server of its own
        kind = self.lifecycle.kind
        if found is None:
            self.lifecycle.start_error = StackStartError(
                f"the xdist controller did not say within {wait:g} s whether the stack "
                f"started (no {worker.server_file})"
            )
        elif found.get("server") and kind is not None:
            kind.worker = WorkerServer.from_dict(found["server"])  # type: ignore[attr-defined]
        else:
            self.lifecycle.start_error = StackStartError(str(found.get("start_error")))

    def stack(self) -> StackHandle:
        """The session's stack, opened on first use; StackStartError if it cannot be."""
        if self.lifecycle.opened:
            return self.lifecycle.stack()
        self._adopt_published_server()
        kind = self.lifecycle.kind
        if kind is not None and kind.holds_process and not self.is_worker:
            self._trap_sigterm()  # before starting: a SIGTERM meanwhile still stops it
        handle = self.lifecycle.stack()
        if self._patch is None:
            from harness.client_patch import ClientPatch

            routes = kind is not None and kind.routes_clients
            self._patch = ClientPatch(
                handle.base_url,
                self.headers,
                transport=handle.transport if routes else None,
                async_transport=handle.async_transport if routes else None,
            ).install()
        return handle

    def _trap_sigterm(self) -> None:
        """A SIGTERM to pytest unwinds like Ctrl-C, so the server we hold is stopped."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _interrupt)
            self._sigterm_trapped = True

    def _restore_sigterm(self) -> None:
        if self._sigterm_trapped and signal.getsignal(signal.SIGTERM) is _interrupt:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self._sigterm_trapped = False

    # -- the current test -------------------------------------------------------------------

    def begin_test(self, test_id: str, uses_stack: bool) -> TestScope:
        """The test `test_id` starts (its setup): requests from now on are filed under it."""
        scope = TestScope(test_id, self.id)
        self.current = scope
        kind = self.lifecycle.kind
        if uses_stack and kind is not None:
            scope.exits.enter_context(kind.test_scope(scope.attribution()))
        return scope

    def end_test(self, scope: TestScope) -> None:
        """The test's teardown is over: leave its scope (a cassette is saved here)."""
        try:
            scope.exits.close()
        finally:
            if self.current is scope:
                self.current = None

    def headers(self) -> dict[str, str]:
        """The current test's attribution headers (none between tests)."""
        return self.current.headers() if self.current is not None else {}

    def client_hooks(self) -> dict[str, list[Callable[[Any], None]]]:
        """The event hooks of a client fixture: stamp each request with the current test."""
        return {"request": [self._stamp]}

    def _stamp(self, request: Any) -> None:
        for name, value in self.headers().items():
            request.headers[name] = value

    # -- the end ----------------------------------------------------------------------------

    def close(self) -> str:
        """Let go of everything the session holds; say what became of the stack. Idempotent."""
        if self.closed:
            return self.lifecycle.ending
        self.closed = True
        try:
            if self._patch is not None:
                self._patch.uninstall()
                self._patch = None
            said = self.lifecycle.close()
        finally:
            self._restore_sigterm()
            if not self.is_worker and self._usage_log is not None:
                self.usage = usage.read_usage(self._usage_log)
                if self._owns_usage_log:
                    self._usage_log.unlink(missing_ok=True)
            if self._owns_work_dir and self._work_dir is not None:
                shutil.rmtree(self._work_dir, ignore_errors=True)
        return said
