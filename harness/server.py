"""Start, reuse and stop a stack server process on a port.

This module knows processes and ports, not pytest, so it can be tested and benchmarked on
its own. Sharing works across processes through two files per port in a per-user state
directory: a `filelock` that serialises start/stop decisions, and a small JSON state naming
the server we started and the processes holding it (a reference count by pid). The first
holder starts the server while holding the lock, so the others wait and then reuse it; the
last holder to release it stops it. A server that was already running when nobody held it
(started by hand) is reused and never stopped.

The server runs in its own process group (so a terminal's Ctrl-C reaches pytest, which then
stops it cleanly) and is stopped as a group: SIGTERM, then SIGKILL after 5 seconds. Its command
runs under `harness.supervisor`, which ends it once no live session holds it, so a session
killed outright leaves no server behind for more than a few seconds.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

logger = logging.getLogger(__name__)

HEALTH_PATH = "/v1/health"
HEALTHY_BODY = {"status": "OK"}
STOP_GRACE_SECONDS = 5.0
LOG_TAIL_LINES = 40

ORIGIN_STARTED = "started"  # this process started it
ORIGIN_SHARED = "shared"  # another harness session started it; we hold a reference
ORIGIN_EXTERNAL = "external"  # running before any harness session held it; never stopped


class StackServerError(Exception):
    """The stack server could not be started or reused; the message says why and what to do."""


@dataclass(frozen=True)
class ServerSpec:
    """How to start a stack server, and what a reusable one must match."""

    command: Sequence[str]
    port: int
    env: Mapping[str, str]
    log_path: Path
    startup_timeout: float = 60.0
    host: str = "127.0.0.1"
    # Settings a harness-started server was started with (e.g. recording mode and directory).
    # Another session may share it only with equal settings.
    signature: Mapping[str, str] = field(default_factory=dict)
    # Whether a healthy stack the harness did not start may be used as is. Its recording
    # settings are unknown, so only a session that records nothing (live) may use it.
    reuse_unknown: bool = False
    before_start: Callable[[], None] | None = None  # runs under the port lock, just before

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class Probe:
    """What answered on a port: nothing, a healthy stack, or something else (described)."""

    state: str  # "free" | "healthy" | "other"
    description: str = ""


def probe(host: str, port: int, timeout: float = 2.0) -> Probe:
    """Ask `GET /v1/health` once; stdlib only, because reuse must cost milliseconds."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", HEALTH_PATH, headers={"Accept": "application/json"})
        response = conn.getresponse()
        body = response.read(4096)
    except ConnectionRefusedError:
        return Probe("free")
    except TimeoutError:
        return Probe(
            "other",
            f"a service that accepted the connection but did not answer GET {HEALTH_PATH} "
            f"within {timeout:g} s",
        )
    except (http.client.HTTPException, OSError) as exc:
        return Probe("other", f"a service that does not speak HTTP ({exc.__class__.__name__})")
    finally:
        conn.close()
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if response.status == 200 and parsed == HEALTHY_BODY:
        return Probe("healthy")
    server = response.getheader("Server")
    text = body[:200].decode("utf-8", "replace")
    return Probe(
        "other",
        f"HTTP {response.status} {response.reason}"
        + (f" from a '{server}' server" if server else "")
        + f" to GET {HEALTH_PATH}: {text!r}",
    )


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        content = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(content.splitlines()[-lines:]) or "(the log is empty)"


def alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def exit_description(pid: int) -> str:
    """How a server process ended: its exit code or signal when it was our child."""
    child = _children.get(pid)
    code = child.poll() if child is not None else None
    if code is None:
        return "exited"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def state_dir() -> Path:
    """Per-user directory holding one lock and one state file per port."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    path = Path(tempfile.gettempdir()) / f"stack-harness-{uid}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_path_for(port: int) -> Path:
    """Where the server on `port` logs: next to its state, so it outlives the session."""
    return state_dir() / f"stack-server-{port}.log"


# Popen objects of servers this process started, so stopping one also reaps it.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class ServerLease:
    """A hold on a running stack server; `release()` stops it if we were the last holder."""

    port: int
    base_url: str
    origin: str
    pid: int | None
    log_path: Path | None
    _directory: Path
    released: bool = False

    def release(self) -> str:
        """Let go of the server; stop it if we were the last holder. Says what happened."""
        if self.released:
            return "already released"
        self.released = True
        _open_leases.pop(id(self), None)
        if self.origin == ORIGIN_EXTERNAL or self.pid is None:
            return (
                f"left the stack on port {self.port} running (it was started outside the harness)"
            )
        with port_lock(self._directory, self.port, timeout=STOP_GRACE_SECONDS * 4):
            state = read_state(self._directory, self.port)
            if state is None or state.get("pid") != self.pid:
                # The state is gone (e.g. removed by hand): still stop what we know of.
                if self.origin == ORIGIN_STARTED:
                    stop_process_group(self.pid)
                    return f"stopped the stack server (pid {self.pid}) on port {self.port}"
                return f"the stack server (pid {self.pid}) on port {self.port} is no longer ours"
            holders = [h for h in state.get("holders", []) if alive(h)]
            if os.getpid() in holders:
                holders.remove(os.getpid())  # one reference: a process may hold several
            if holders:
                state["holders"] = holders
                write_state(self._directory, self.port, state)
                return (
                    f"left the stack server (pid {self.pid}) on port {self.port} running for "
                    f"{len(holders)} other test session(s) holding it; the last one stops it"
                )
            stop_process_group(self.pid)
            state_path(self._directory, self.port).unlink(missing_ok=True)
            return f"stopped the stack server (pid {self.pid}) on port {self.port}"


_open_leases: dict[int, ServerLease] = {}


@atexit.register
def _release_forgotten_leases() -> None:
    """Last line of defence: never leave a server we hold behind when the interpreter exits."""
    for lease in list(_open_leases.values()):
        with contextlib.suppress(Exception):
            lease.release()


def state_path(directory: Path, port: int) -> Path:
    return directory / f"port-{port}.json"


def port_lock(directory: Path, port: int, timeout: float) -> FileLock:
    return FileLock(str(directory / f"port-{port}.lock"), timeout=timeout)


def read_state(directory: Path, port: int) -> dict | None:
    try:
        return json.loads(state_path(directory, port).read_text())
    except (OSError, ValueError):
        return None


def write_state(directory: Path, port: int, state: dict) -> None:
    path = state_path(directory, port)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _lease(spec: ServerSpec, directory: Path, origin: str, pid: int | None, log: str | None):
    lease = ServerLease(
        port=spec.port,
        base_url=spec.base_url,
        origin=origin,
        pid=pid,
        log_path=Path(log) if log else None,
        _directory=directory,
    )
    _open_leases[id(lease)] = lease
    return lease


def acquire(spec: ServerSpec, directory: Path | None = None) -> ServerLease:
    """Reuse the stack on `spec.port` or start one; raise `StackServerError` when neither works."""
    directory = directory or state_dir()
    lock = port_lock(directory, spec.port, timeout=spec.startup_timeout + 3 * STOP_GRACE_SECONDS)
    try:
        lock.acquire()
    except Timeout:
        raise StackServerError(
            f"timed out after {lock.timeout:g} s waiting for another session to start the stack "
            f"on port {spec.port} (lock {lock.lock_file})"
        ) from None
    try:
        return _acquire_locked(spec, directory)
    finally:
        lock.release()


def _acquire_locked(spec: ServerSpec, directory: Path) -> ServerLease:
    state = read_state(directory, spec.port)
    if state is not None and not alive(int(state.get("pid", 0))):
        state_path(directory, spec.port).unlink(missing_ok=True)
        state = None
    found = probe(spec.host, spec.port)
    if state is not None:
        holders = [h for h in state.get("holders", []) if alive(h)]
        same_settings = state.get("signature") == dict(spec.signature)
        if found.state == "healthy" and holders and not same_settings:
            raise StackServerError(
                f"the stack on port {spec.port} was started by another test session with "
                f"{state.get('signature')}; this session needs {dict(spec.signature)}. "
                "Use another port (--stack-config=server:<config>:<port>) or wait for it to end."
            )
        if found.state == "healthy" and (holders or same_settings):
            # Shared with a running session, or adopted from one that was killed.
            state["holders"] = [*holders, os.getpid()]
            write_state(directory, spec.port, state)
            return _lease(spec, directory, ORIGIN_SHARED, state["pid"], state.get("log"))
        if holders:
            raise StackServerError(
                f"the stack on port {spec.port} (pid {state['pid']}), started by another test "
                f"session that still runs, is not healthy: "
                f"{found.description or 'nothing answers'}. See its log: {state.get('log')}"
            )
        # A harness server nobody holds any more, unhealthy or with other settings: replace it.
        stop_process_group(int(state["pid"]))
        state_path(directory, spec.port).unlink(missing_ok=True)
        found = probe(spec.host, spec.port)
    if found.state == "healthy":
        if spec.reuse_unknown:
            return _lease(spec, directory, ORIGIN_EXTERNAL, None, None)
        raise StackServerError(_unknown_stack_message(spec.port))
    if found.state == "other":
        raise StackServerError(
            f"port {spec.port} is taken by something that is not a healthy stack: "
            f"{found.description}. Stop it or use another port, e.g. "
            f"--stack-config=server:<config>:{spec.port + 1}"
        )
    return _start(spec, directory)


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


def listener_of(port: int) -> tuple[int, str] | None:
    """The pid and command line of the process listening on a local TCP port (Linux; else None)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                return int(proc.name), cmdline.decode("utf-8", "replace")
        except OSError:
            continue
    return None


def _start(spec: ServerSpec, directory: Path) -> ServerLease:
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    if spec.before_start is not None:
        spec.before_start()
    # Isolated (-I): the supervisor must not load what the command's environment adds to
    # Python's path (a bootstrap meant for the stack), only harness and its dependencies.
    supervised = [sys.executable, "-I", "-m", "harness.supervisor", "--state-dir", str(directory)]
    supervised += ["--port", str(spec.port), "--", *spec.command]
    with open(spec.log_path, "wb") as log:
        process = subprocess.Popen(
            supervised,
            env=dict(spec.env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[process.pid] = process
    state = {
        "pid": process.pid,
        "holders": [os.getpid()],
        "log": str(spec.log_path),
        "signature": dict(spec.signature),
        "command": list(spec.command),
    }
    write_state(directory, spec.port, state)
    lease = _lease(spec, directory, ORIGIN_STARTED, process.pid, str(spec.log_path))
    try:
        _wait_healthy(spec, process)
    except BaseException:
        lease.released = True
        _open_leases.pop(id(lease), None)
        stop_process_group(process.pid)
        state_path(directory, spec.port).unlink(missing_ok=True)
        raise
    logger.info("started stack server pid %d on port %d", process.pid, spec.port)
    return lease


def _wait_healthy(spec: ServerSpec, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + spec.startup_timeout
    delay = 0.02
    while True:
        code = process.poll()
        if code is not None:
            raise StackServerError(
                f"the stack server exited with code {code} before it was healthy.\n"
                f"command: {' '.join(spec.command)}\n"
                f"last {LOG_TAIL_LINES} lines of {spec.log_path}:\n{log_tail(spec.log_path)}"
            )
        found = probe(spec.host, spec.port, timeout=1.0)
        if found.state == "healthy":
            return
        if time.monotonic() > deadline:
            detail = (
                f" (port {spec.port} answered: {found.description})" if found.description else ""
            )
            raise StackServerError(
                f"the stack server was not healthy after {spec.startup_timeout:g} s{detail}; "
                "raise --stack-startup-timeout if it is just slow.\n"
                f"command: {' '.join(spec.command)}\n"
                f"last {LOG_TAIL_LINES} lines of {spec.log_path}:\n{log_tail(spec.log_path)}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def stop_process_group(pid: int, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL it after `grace` seconds; reap if ours."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        pgid = pid
    if pgid == os.getpgid(0):  # never signal our own group (a server not started by us)
        pgid = None
    _signal(pid, pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    child = _children.pop(pid, None)
    while time.monotonic() < deadline:
        if child is not None and child.poll() is not None:
            break
        if child is None and not alive(pid):
            break
        time.sleep(0.02)
    else:
        logger.warning("stack server pid %d ignored SIGTERM for %g s; killing it", pid, grace)
    _signal(pid, pgid, signal.SIGKILL)  # also reaches anything left in the group
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=grace)


def _signal(pid: int, pgid: int | None, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if pgid is not None:
            os.killpg(pgid, signum)
        else:
            os.kill(pid, signum)
