"""Start, reuse and stop a stack server process on a port.

This module knows processes and ports, not pytest, so it can be tested and benchmarked on
its own; what answers on a port is asked through `harness.health`. Sharing works across
processes through files in a per-user state directory (see `harness.serverstate`): per port,
a `filelock` that serialises start/stop decisions and a small JSON state naming the server we
started and the processes holding it (a reference count by process identity). The first
holder starts the server while holding the lock, so the others wait and then reuse it; the
last holder to release it stops it. A server that was already running when nobody held it
(started by hand) is reused only when the spec allows it, and is never stopped.

Which port: an explicit one is used or the session fails saying why; the default port is
preferred, and when it is taken (another test session's server with other settings, a stack
started by hand, another service) the session says so and moves to a free port; port 0 asks
for a free port. Before taking a free port, a session looks for a live harness server with the
same settings on any port and shares it, so a second session of one project finds the first.

The server runs in its own process group (so a terminal's Ctrl-C reaches pytest, which then
stops it cleanly) and is stopped as a group: SIGTERM, then SIGKILL after 5 seconds. Its command
runs under `harness.supervisor`, which ends it once no live session holds it, so a session
killed outright leaves no server behind for more than a few seconds. What this process started
is owned by the lease it returns, not by this module: the caller releases it.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from harness import serverstate
from harness.health import (
    LOG_TAIL_LINES,
    ProbeState,
    log_exit_cause,
    log_tail,
    probe,
    stopped_message,
)
from harness.processes import (
    STOP_GRACE_SECONDS,
    ProcessId,
    describe_exit,
    listener_of,
    stop_process_group,
)
from harness.server_lease import Origin, ServerLease
from harness.serverstate import (
    log_path_for,
    port_lock,
    read_state,
    signature_lock,
    state_dir,
    state_path,
    write_state,
)
from harness.targets import PortRule

__all__ = [
    "Origin",
    "PortTaken",
    "ServerLease",
    "ServerSpec",
    "StackServerError",
    "StartCancelled",
    "acquire",
]

logger = logging.getLogger(__name__)


class StackServerError(Exception):
    """The stack server could not be started or reused; the message says why and what to do."""


class PortTaken(StackServerError):
    """The port holds something this session may not use (it may move to another port)."""


class StartCancelled(StackServerError):
    """The session ended (Ctrl-C, SIGTERM) while its server was still being started."""


@dataclass(frozen=True)
class ServerSpec:
    """How to start a stack server, and what a reusable one must match.

    `command` may be a function of the port: with a free port, the port is known only once it
    is chosen.
    """

    command: Sequence[str] | Callable[[int], Sequence[str]]
    port: int
    env: Mapping[str, str]
    log_path: Path | None = None  # default: next to the port's state, so it outlives us
    startup_timeout: float = 60.0
    host: str = "127.0.0.1"
    port_rule: PortRule = PortRule.EXACT
    # Settings a harness-started server was started with (e.g. recording mode and directory).
    # Another session may share it only with equal settings.
    signature: Mapping[str, str] = field(default_factory=dict)
    # Whether a healthy stack the harness did not start may be used as is. Its recording
    # settings are unknown, so only a session that records nothing (live) may use it.
    reuse_unknown: bool = False
    before_start: Callable[[int], None] | None = None  # under the port lock, just before
    # Asked while waiting for a lock or for the server to be healthy: a session that starts
    # its server in the background and ends meanwhile stops the start, and what it started.
    cancelled: Callable[[], bool] | None = None

    def argv(self, port: int) -> list[str]:
        return list(self.command(port) if callable(self.command) else self.command)

    def log_for(self, port: int, directory: Path) -> Path:
        return self.log_path or log_path_for(port, directory)

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"


def _locked(lock: FileLock, what: str, cancelled: Callable[[], bool] | None = None) -> FileLock:
    # In short waits when it can be cancelled, so a cancel is seen within a fraction of a second.
    attempts = [lock.timeout] if cancelled is None else _slices(lock.timeout, 0.2)
    for wait in attempts:
        if cancelled is not None and cancelled():
            raise StartCancelled(f"cancelled while waiting for another session to {what}")
        try:
            lock.acquire(timeout=wait)
            return lock
        except Timeout:
            continue
    raise StackServerError(
        f"timed out after {lock.timeout:g} s waiting for another session to {what} "
        f"(lock {lock.lock_file})"
    )


def _slices(total: float, step: float) -> Iterator[float]:
    """Waits of at most `step` that add up to `total` (forever when `total` is negative)."""
    deadline = time.monotonic() + total
    while True:
        yield step if total < 0 else max(0.0, min(step, deadline - time.monotonic()))
        if total >= 0 and deadline <= time.monotonic():
            return


@contextmanager
def _holding(lock: FileLock, what: str, cancelled: Callable[[], bool] | None = None):
    _locked(lock, what, cancelled)
    try:
        yield
    finally:
        lock.release()


def acquire(spec: ServerSpec, directory: Path | None = None) -> ServerLease:
    """Reuse a stack for `spec` or start one; raise `StackServerError` when neither works."""
    directory = directory or state_dir()
    wait = spec.startup_timeout + 3 * STOP_GRACE_SECONDS
    if spec.port_rule is PortRule.EXACT:
        held = port_lock(directory, spec.port, wait)
        with _holding(held, f"start the stack on {spec.port}", spec.cancelled):
            return _acquire_locked(spec, spec.port, directory)
    # Moving to another port: first a server with the same settings anywhere, under a lock
    # per settings, so two sessions with equal settings end up on one server.
    same = signature_lock(directory, spec.signature, wait)
    with _holding(same, "start a stack server with the same settings", spec.cancelled):
        shared = _find_same_settings(spec, directory)
        if shared is not None:
            return shared
        note = ""
        if spec.port_rule is PortRule.PREFERRED:
            try:
                held = port_lock(directory, spec.port, wait)
                with _holding(held, "start the stack", spec.cancelled):
                    return _acquire_locked(spec, spec.port, directory)
            except PortTaken as exc:
                note = f"{exc}"
        port = _free_port(spec.host)
        held = port_lock(directory, port, wait)
        with _holding(held, f"start the stack on {port}", spec.cancelled):
            lease = _acquire_locked(spec, port, directory)
        if note:
            lease.note = f"not on port {spec.port}: {note}; using free port {port} instead"
        elif spec.port_rule is PortRule.ANY:
            lease.note = f"port {port} is a free port (port 0 asked for one)"
        return lease


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _find_same_settings(spec: ServerSpec, directory: Path) -> ServerLease | None:
    """A live, healthy harness server started with `spec`'s settings, on any port: shared."""
    for port, state in serverstate.all_states(directory):
        if state.get("signature") != dict(spec.signature):
            continue
        held = port_lock(directory, port, spec.startup_timeout)
        with _holding(held, "share the stack", spec.cancelled):
            state = read_state(directory, port)
            if state is None or state.get("signature") != dict(spec.signature):
                continue
            server = serverstate.server_of(state)
            if server is None or not server.alive():
                continue
            if probe(spec.host, port).state is not ProbeState.HEALTHY:
                continue
            return _share(spec, port, directory, state, serverstate.live_holders(state))
    return None


def _share(
    spec: ServerSpec, port: int, directory: Path, state: dict, holders: list[ProcessId]
) -> ServerLease:
    me = ProcessId.current()
    serverstate.set_holders(state, [*holders, me])
    write_state(directory, port, state)
    log = state.get("log")
    return ServerLease(
        port=port,
        base_url=spec.url(port),
        origin=Origin.SHARED,
        server=serverstate.server_of(state),
        log_path=Path(log) if log else None,
        _directory=directory,
        _holder=me,
    )


def _signature_difference(theirs: Mapping[str, str], ours: Mapping[str, str]) -> str:
    keys = sorted(k for k in {*theirs, *ours} if theirs.get(k) != ours.get(k))
    return "; ".join(f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in keys)


def _acquire_locked(spec: ServerSpec, port: int, directory: Path) -> ServerLease:
    state = read_state(directory, port)
    server = serverstate.server_of(state) if state is not None else None
    if state is not None and (server is None or not server.alive()):
        state_path(directory, port).unlink(missing_ok=True)
        state = None
    found = probe(spec.host, port)
    if state is not None and server is not None:
        holders = serverstate.live_holders(state)
        same_settings = state.get("signature") == dict(spec.signature)
        if found.state is ProbeState.HEALTHY and holders and not same_settings:
            raise PortTaken(
                f"the stack on port {port} was started by another test session with other "
                f"settings ({_signature_difference(state.get('signature') or {}, spec.signature)})"
                ". Use another port (--stack-config=server:<config>:<port>, or :0 for a free "
                "one) or wait for it to end"
            )
        if found.state is ProbeState.HEALTHY and (holders or same_settings):
            # Shared with a running session, or adopted from one that was killed.
            return _share(spec, port, directory, state, holders)
        if holders:
            stopped = stopped_message(server, port)
            raise PortTaken(
                f"the stack on port {port} (pid {server.pid}), started by another test "
                f"session that still runs, is not healthy: "
                f"{found.description or 'nothing answers'}. "
                + (f"{stopped} " if stopped else "")
                + f"See its log: {state.get('log')}"
            )
        # A harness server nobody holds any more, unhealthy or with other settings: replace it.
        stop_process_group(server.pid)
        state_path(directory, port).unlink(missing_ok=True)
        found = probe(spec.host, port)
    if found.state is ProbeState.HEALTHY:
        if spec.reuse_unknown:
            return ServerLease(
                port=port,
                base_url=spec.url(port),
                origin=Origin.EXTERNAL,
                server=None,
                log_path=None,
                _directory=directory,
                _holder=ProcessId.current(),
            )
        raise PortTaken(_unknown_stack_message(port))
    if found.state is ProbeState.OTHER:
        raise PortTaken(
            f"port {port} is taken by something that is not a healthy stack: "
            f"{found.description}. Stop it or use another port, e.g. "
            f"--stack-config=server:<config>:{port + 1}"
        )
    return _start(spec, port, directory)


def _unknown_stack_message(port: int) -> str:
    listener = listener_of(port)
    what = f" (pid {listener[0]}: {listener[1]})" if listener else ""
    stop = f"Stop it (kill {listener[0]})" if listener else "Stop it"
    return (
        f"port {port} already serves a healthy stack{what} that the harness did not start, so "
        "this session cannot know whether or how it records. "
        f"{stop}, or use another port, e.g. --stack-config=server:<config>:{port + 1}. "
        "With --inference-mode=live it is used as it is."
    )


def _start(spec: ServerSpec, port: int, directory: Path) -> ServerLease:
    log_path = spec.log_for(port, directory)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if spec.before_start is not None:
        spec.before_start(port)
    command = spec.argv(port)
    # Isolated (-I): the supervisor must not load what the command's environment adds to
    # Python's path (a bootstrap meant for the stack), only harness and its dependencies.
    supervised = [sys.executable, "-I", "-m", "harness.supervisor", "--state-dir", str(directory)]
    supervised += ["--port", str(port), "--", *command]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            supervised,
            env=dict(spec.env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    me = ProcessId.current()
    server = ProcessId.of(process.pid)
    state: dict = {"log": str(log_path), "signature": dict(spec.signature), "command": command}
    serverstate.set_server(state, server)
    serverstate.set_holders(state, [me])
    write_state(directory, port, state)
    try:
        _wait_healthy(spec, port, process, command, log_path)
    except BaseException:
        stop_process_group(process.pid, process=process)
        state_path(directory, port).unlink(missing_ok=True)
        raise
    logger.info("started stack server pid %d on port %d", process.pid, port)
    return ServerLease(
        port=port,
        base_url=spec.url(port),
        origin=Origin.STARTED,
        server=server,
        log_path=log_path,
        _directory=directory,
        _holder=me,
        process=process,
    )


def _wait_healthy(
    spec: ServerSpec,
    port: int,
    process: subprocess.Popen[bytes],
    command: Sequence[str],
    log_path: Path,
) -> None:
    deadline = time.monotonic() + spec.startup_timeout
    delay = 0.02
    while True:
        if spec.cancelled is not None and spec.cancelled():
            raise StartCancelled("cancelled while the stack server was starting")
        code = process.poll()
        if code is not None:
            # The headline names the cause, as the log says it (a missing module, TLS
            # required): the first line is all that a test failing for it shows.
            cause = log_exit_cause(log_path)
            raise StackServerError(
                f"the stack server {describe_exit(code)} before it was healthy"
                + (f": {cause}" if cause else ".")
                + "\n"
                f"command: {' '.join(command)}\n"
                f"last {LOG_TAIL_LINES} lines of {log_path}:\n{log_tail(log_path)}"
            )
        found = probe(spec.host, port, timeout=1.0)
        if found.state is ProbeState.HEALTHY:
            return
        if time.monotonic() > deadline:
            stopped = stopped_message(ProcessId(process.pid), port)
            detail = f" (port {port} answered: {found.description})" if found.description else ""
            raise StackServerError(
                (f"{stopped}\n" if stopped else "")
                + f"the stack server was not healthy after {spec.startup_timeout:g} s{detail}; "
                "raise --stack-startup-timeout if it is just slow.\n"
                f"command: {' '.join(command)}\n"
                f"last {LOG_TAIL_LINES} lines of {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
