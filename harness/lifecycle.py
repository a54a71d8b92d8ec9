"""The session's stack: started, reused or adopted at most once, and let go of once.

One entry point, :meth:`StackLifecycle.stack`, gives the client fixtures what they need for
every kind of target: a server process (started or reused through `server`), an in-process
app (`inprocess`), a remote URL, or, in an xdist worker, the server its controller holds. The
plugin calls it from the fixture that needs a stack, and earlier from two hooks only to put
the start-up message before the test progress and, under xdist, to start the server before the
workers exist. This module knows pytest only through the `announce` callback it is given.
"""

from __future__ import annotations

import importlib
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.options import HarnessOptions
from harness.recording.modes import Mode, is_recorder_variable
from harness.targets import LibraryTarget, ProvidersTarget, ServerTarget, UrlTarget

CLIENT_TIMEOUT = 120.0  # seconds: a local model may take a while to answer


class StackStartError(Exception):
    """The stack could not be started or reused; the message says why and what to do."""


class KeepOpen:
    """Lends a session transport to per-test clients, whose close() must not close it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def handle_request(self, request: Any) -> Any:
        return self.inner.handle_request(request)

    def close(self) -> None:
        pass

    def __enter__(self) -> KeepOpen:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


@dataclass
class StackHandle:
    """What the client fixtures need: a base URL and, in library mode, the in-process stack.

    One transport per client library per session, built on first use: per-test clients then
    cost no connection pool or TLS set-up. Plain-http targets skip loading CA certificates.
    """

    base_url: str
    inprocess: Any = None  # harness.inprocess.InProcessStack
    # Reuse connections only with the reference stack. Llama Stack 0.7 drops a connection
    # after a request whose handler raised, so the next request on it is reset; a stack we
    # did not write gets a fresh connection per request (cheap on loopback).
    keepalive: bool = True
    _transports: dict[str, Any] = field(default_factory=dict)

    def transport(self, lib: Any) -> KeepOpen:
        """A sync transport of `lib` (httpx or httpx2) to the stack."""
        name = lib.__name__
        if name not in self._transports:
            if self.inprocess is not None:
                self._transports[name] = self.inprocess.transport(lib)
            else:
                limits = (
                    {} if self.keepalive else {"limits": lib.Limits(max_keepalive_connections=0)}
                )
                self._transports[name] = lib.HTTPTransport(
                    verify=self.base_url.startswith("https:"), **limits
                )
        return KeepOpen(self._transports[name])

    def client(
        self, lib: Any, headers: dict[str, str], hooks: dict[str, list[Any]], *, base_url: str = ""
    ) -> Any:
        """A sync client of `lib` on the session transport: what the client fixtures hand out
        (as themselves, or as the `http_client` of an SDK)."""
        return lib.Client(
            base_url=base_url,
            transport=self.transport(lib),
            headers=headers,
            event_hooks=hooks,
            timeout=CLIENT_TIMEOUT,
        )

    def close(self) -> None:
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()
        if self.inprocess is not None:
            self.inprocess.stop()


class StackLifecycle:
    """Holds the session's stack from its first use to the end of the session."""

    def __init__(self, options: HarnessOptions, announce: Callable[[str], None]) -> None:
        self.options = options
        self._announce = announce
        self._handle: StackHandle | None = None
        self._lease: Any = None  # harness.server.ServerLease
        self.origin = ""  # how this session got its stack
        self.ending = ""  # what it did with the stack at the end, for the summary
        self.dead: str | None = None  # set once the server is found dead mid-run
        self._adopted_pid: int | None = None

    @property
    def base_url(self) -> str | None:
        return self._handle.base_url if self._handle else None

    def adopt(self, base_url: str, pid: int | None) -> None:
        """An xdist worker: use the server its controller started or reused."""
        self._handle = StackHandle(base_url=base_url, keepalive=self.options.runs_reference_stack)
        self._adopted_pid = pid

    @property
    def server_pid(self) -> int | None:
        return self._lease.pid if self._lease is not None else self._adopted_pid

    def stack_gone(self) -> str | None:
        """If the session's server died during the run: what happened and its log; else None.

        Cheap (a signal-0 check, or one health probe for a server we did not start), so the
        plugin asks only when a test has failed.
        """
        target = self.options.target
        if self.dead is not None or not isinstance(target, ServerTarget) or self._handle is None:
            return self.dead
        from harness import server

        pid = self.server_pid
        if pid is not None:
            if server.alive(pid):
                return None
            what = (
                f"the stack server (pid {pid}) on port {target.port} {server.exit_description(pid)}"
            )
        elif server.probe("127.0.0.1", target.port, timeout=1.0).state == "healthy":
            return None
        else:
            what = f"the stack on port {target.port} stopped answering"
        log = server.log_path_for(target.port)
        tail = server.log_tail(log) if pid is not None else "(its log is not ours to read)"
        self.dead = f"{what} during the run.\nlast {server.LOG_TAIL_LINES} lines of {log}:\n{tail}"
        self.ending = f"{what} during the run; see {log}"
        return self.dead

    def stack(self) -> StackHandle:
        """The session's stack, started or reused on the first call; StackStartError if not."""
        if self._handle is None:
            self._handle = self._open()
        return self._handle

    def close(self) -> str:
        """Stop what this session started, let go of what it shares; say which. Idempotent."""
        said = ""
        if self._handle is not None:
            if self._handle.inprocess is not None:
                said = "stopped the in-process stack"
            elif isinstance(self.options.target, UrlTarget):
                said = f"left the stack at {self._handle.base_url} to its owner"
            self._handle.close()
            self._handle = None
        if self._lease is not None:
            said = self._lease.release()
            self._lease = None
        if said and self.dead is None:
            self.ending = said
        return said

    # -- one way per kind of target -----------------------------------------------------------

    def _open(self) -> StackHandle:
        target = self.options.target
        if isinstance(target, UrlTarget):
            self.origin = f"using the stack at {target.url} (recorded at the client layer)"
            self._announce(self.origin)
            return StackHandle(base_url=target.url, keepalive=False)
        if isinstance(target, ServerTarget):
            base_url = self._acquire_server(target)
            return StackHandle(base_url=base_url, keepalive=self.options.runs_reference_stack)
        assert isinstance(target, LibraryTarget | ProvidersTarget)
        self.origin = f"serving {target.describe().split(' ', 1)[1]} in-process"
        inprocess = self._start_inprocess()
        self._announce(self.origin)
        return StackHandle(base_url=inprocess.base_url, inprocess=inprocess)

    def _acquire_server(self, target: ServerTarget) -> str:
        from harness import server  # filelock & co. only when a server is used

        options = self.options
        state_file = server.state_path(server.state_dir(), target.port)
        settings = server_recording(options, target, state_file)
        env = stack_environment(options, settings)
        bootstrap_report = None
        if not options.runs_reference_stack and settings.mode is not Mode.LIVE:
            from harness import bootstrap

            bootstrap_report = server.state_dir() / f"stack-server-{target.port}.bootstrap"
            directory = bootstrap.prepare(server.state_dir())
            env = bootstrap.environment(directory, bootstrap_report, env)
        command = stack_command(options.stack_command, target)
        spec = server.ServerSpec(
            command=command,
            port=target.port,
            env=env,
            log_path=server.log_path_for(target.port),
            startup_timeout=options.startup_timeout,
            signature={
                "command": options.stack_command,
                "config": target.config,
                "mode": str(settings.mode),
                "recordings": str(settings.directory),
                "pace": repr(float(settings.pace)),
                "hosts": repr((settings.hosts.record, settings.hosts.passthrough)),
                "normalizers": repr([n.to_json() for n in settings.normalizers]),
                "setup": settings.setup,
            },
            reuse_unknown=settings.mode is Mode.LIVE,
            before_start=(lambda: bootstrap_report.unlink(missing_ok=True))
            if bootstrap_report
            else None,
        )
        _trap_sigterm()
        try:
            lease = server.acquire(spec)
        except server.StackServerError as exc:
            raise StackStartError(str(exc)) from None
        self._lease = lease
        if bootstrap_report is not None and lease.origin == server.ORIGIN_STARTED:
            from harness import bootstrap

            problem = bootstrap.attach_problem(bootstrap_report, shlex.join(command))
            if problem is not None:
                self.close()
                raise StackStartError(problem)
        self.origin = {
            server.ORIGIN_STARTED: f"started the stack server (pid {lease.pid}) on port "
            f"{lease.port}; log: {lease.log_path}",
            server.ORIGIN_SHARED: f"sharing the stack server (pid {lease.pid}) on port "
            f"{lease.port} started by another test session",
            server.ORIGIN_EXTERNAL: f"using the stack already running on port {lease.port} as "
            "it is (live mode: nothing is recorded)",
        }[lease.origin]
        self._announce(self.origin)
        return lease.base_url

    def _start_inprocess(self) -> Any:
        from harness.inprocess import InProcessStack
        from harness.stack.app import create_app

        try:
            from harness.recording.redaction import secret_values

            recording = self.options.recording
            secrets = secret_values(self.options.stack_env, recording.secret_names)
            app = create_app(self.options.run_config, recording=recording, secrets=secrets)
            return InProcessStack(app).start(timeout=self.options.startup_timeout)
        except Exception as exc:
            raise StackStartError(f"the in-process stack failed to start: {exc}") from exc


def sdk_http_library(sdk: ModuleType) -> ModuleType:
    """The HTTP library (httpx or httpx2) a Stainless-built SDK (openai, llama-stack-client)
    takes as its `http_client`: openai 1.x/2.x use httpx, 3.x httpx2."""
    base = next(c for c in sdk.DefaultHttpxClient.__mro__[1:] if c.__name__ == "Client")
    return importlib.import_module(base.__module__.split(".", 1)[0])


def stack_command(template: str, target: ServerTarget) -> list[str]:
    """The argv of a stack command template: split shell-style, then each word filled in.

    An existing run.yaml is passed as an absolute path. A bare program name is looked up next
    to the running Python first (so `harness` is this installation's, activated or not),
    then on PATH.
    """
    config = target.config
    if Path(config).expanduser().is_file():
        config = str(Path(config).expanduser().resolve())
    words = [w.format(config=config, port=target.port) for w in shlex.split(template)]
    beside = Path(sys.executable).parent / words[0]
    if os.sep not in words[0] and beside.is_file() and os.access(beside, os.X_OK):
        words[0] = str(beside)
    return words


def stack_environment(options: HarnessOptions, settings: Any = None) -> dict[str, str]:
    """What a started stack sees: the stack env and our settings, and not one variable of
    Llama Stack's or OGX's own recorders (the name alone turns OGX's on)."""
    env = {k: v for k, v in options.stack_env.items() if not is_recorder_variable(k)}
    recording = settings if settings is not None else options.recording
    return {**env, **recording.to_env(), "PYTHONUNBUFFERED": "1"}


def server_recording(options: HarnessOptions, target: ServerTarget, state_file: Path) -> Any:
    """The recording settings a started server gets: the session's, plus what only a server
    needs — the providers and secrets its run config names (a stack we did not write parses
    its own config, so the harness reads it for them) and whose processes are the test's."""
    from dataclasses import replace

    settings = options.recording
    providers, secret_names = _foreign_config_facts(target.config, options.stack_env)
    hosts = replace(
        settings.hosts,
        providers=tuple(dict.fromkeys([*settings.hosts.providers, *providers])),
        test_processes=str(state_file),
    )
    names = tuple(sorted({*settings.secret_names, *secret_names}))
    return replace(settings, hosts=hosts, secret_names=names)


def _foreign_config_facts(config: str, env: Any) -> tuple[tuple[str, ...], set[str]]:
    """The provider hosts and secret variables a run.yaml names; nothing if it is not one."""
    from harness.recording.hosts import provider_hosts
    from harness.recording.redaction import run_config_secret_variables

    path = Path(config).expanduser()
    if not path.is_file():
        return (), set()
    try:
        import yaml

        from harness.stack.envsubst import substitute_env

        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        data = substitute_env(raw, env) if isinstance(raw, dict) else {}
    except Exception:  # the stack reports its own config errors, with its own words
        return (), set()
    strings: list[str] = []
    stack: list[Any] = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            strings.append(item)
    return provider_hosts(strings), run_config_secret_variables(raw)


def _trap_sigterm() -> None:
    """A SIGTERM to pytest unwinds like Ctrl-C, so the server we hold is stopped, not orphaned."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, interrupt)
