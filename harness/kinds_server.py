"""The two server kinds: the reference stack (`harness stack run`) and a foreign stack command.

Both start, share or adopt a server process through `harness.server`, hold it by a lease
until the session closes, and watch it for death or a stop. They differ in what only a stack
we did not write needs: the bootstrap on its path (and the check that it attached), no
kept-alive connections (Llama Stack 0.7 drops a connection after a handler raised, so the
next request on it would be reset), and a run config the harness may not be able to read.

In an xdist worker a server kind adopts the server its controller holds (the controller's
`WorkerServer`) and never releases it.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.environment import SERVER_VARIABLES, VERSION_CHECK_VARIABLES
from harness.kinds import Gone, StackKind, StackStartError
from harness.options import HarnessOptions, load_run_config_for
from harness.processes import ProcessId
from harness.recording.modes import Mode, RecordingSettings, is_recorder_variable
from harness.targets import ServerTarget


@dataclass(frozen=True)
class WorkerServer:
    """The server an xdist controller holds, as its workers adopt it."""

    base_url: str
    port: int
    pid: int | None
    start: int | None
    log: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "port": self.port,
            "pid": self.pid,
            "start": self.start,
            "log": self.log,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkerServer:
        return cls(data["base_url"], data["port"], data["pid"], data["start"], data["log"])


def stack_environment(options: HarnessOptions, recording: RecordingSettings) -> dict[str, str]:
    """What a started stack sees: the stack env and our settings; not one variable of Llama
    Stack's or OGX's own recorders (deleted, not blanked: the name alone turns OGX's on), nor
    whatever values of ours the calling shell happened to hold. Both stacks' client version
    checks are off: a test's client is seldom of the stack's own major.minor release."""
    env = {
        k: v
        for k, v in options.stack_env.items()
        if not is_recorder_variable(k) and k not in SERVER_VARIABLES
    }
    checks_off = dict.fromkeys(VERSION_CHECK_VARIABLES, "1")
    return {**env, **checks_off, **recording.to_env(), "PYTHONUNBUFFERED": "1"}


def server_recording(
    recording: RecordingSettings, config: str, env: Mapping[str, str], state_dir: Path
) -> RecordingSettings:
    """What a started server records with: the session's settings, plus what only a server
    needs — the providers and secret variables its run config names (a stack we did not write
    parses its own config, so the harness reads it for them) and whose processes are the
    test's (the sessions its state file, in `state_dir`, lists as holding it)."""
    providers, secret_names = _config_facts(config, env)
    hosts = replace(
        recording.hosts,
        providers=tuple(dict.fromkeys([*recording.hosts.providers, *providers])),
        test_processes=str(state_dir),
    )
    names = tuple(sorted({*recording.secret_names, *secret_names}))
    return replace(recording, hosts=hosts, secret_names=names)


def _config_facts(config: str, env: Mapping[str, str]) -> tuple[tuple[str, ...], set[str]]:
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
    except Exception:  # the stack reports its own config errors, in its own words
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


class ServerKind(StackKind):
    holds_process = True

    def __init__(
        self,
        options: HarnessOptions,
        recording: Callable[[], RecordingSettings],
        worker: WorkerServer | None = None,
    ) -> None:
        assert isinstance(options.target, ServerTarget)
        self.options = options
        self.target: ServerTarget = options.target
        self._recording = recording
        self.worker = worker
        self.lease: Any = None  # harness.server.ServerLease
        self.server: ProcessId | None = None
        self.port = self.target.port
        self.log: Path | None = None
        self._base_url = ""

    @property
    def base_url(self) -> str:
        return self._base_url

    def describe(self) -> str:
        if not self._base_url:
            return self.target.describe()
        return f"{self.target.label} on port {self.port}"

    @property
    def pid(self) -> int | None:
        return self.server.pid if self.server is not None else None

    def for_workers(self) -> dict[str, Any]:
        """The server this (controller's) kind holds, for its xdist workers to adopt."""
        return WorkerServer(
            base_url=self._base_url,
            port=self.port,
            pid=self.pid,
            start=self.server.start if self.server is not None else None,
            log=str(self.log) if self.log else None,
        ).to_dict()

    # -- opening ----------------------------------------------------------------------------

    def open(self, cancelled: Callable[[], bool] | None = None) -> str:
        if self.worker is not None:
            self._base_url, self.port = self.worker.base_url, self.worker.port
            if self.worker.pid is not None:
                self.server = ProcessId(self.worker.pid, self.worker.start)
            self.log = Path(self.worker.log) if self.worker.log else None
            self.holds_process = False
            from harness import serverstate

            # The worker runs the test's own servers too (rule 5 of recording/hosts.py).
            serverstate.add_worker(serverstate.state_dir(), self.port, ProcessId.current())
            self.origin = f"using the stack server its xdist controller holds at {self._base_url}"
            return self._base_url
        from harness import server, serverstate

        recording = server_recording(
            self._recording(), self.target.config, self.options.stack_env, serverstate.state_dir()
        )
        spec = server.ServerSpec(
            command=lambda port: self.options.command.argv(self.target.config, port),
            port=self.target.port,
            port_rule=self.target.port_rule,
            env=self.environment(recording),
            startup_timeout=self.options.startup_timeout,
            signature=self.signature(recording),
            reuse_unknown=recording.mode is Mode.LIVE,
            before_start=self.before_start,
            cancelled=cancelled,
        )
        try:
            lease = server.acquire(spec)
        except server.StackServerError as exc:
            raise StackStartError(str(exc)) from None
        self.lease = lease
        self._base_url, self.port, self.server = lease.base_url, lease.port, lease.server
        self.log = lease.log_path
        if lease.origin is server.Origin.STARTED:
            problem = self.attach_problem(lease)
            if problem is not None:
                self.close()
                raise StackStartError(problem)
        self.origin = {
            server.Origin.STARTED: f"started the stack server (pid {lease.pid}) on port "
            f"{lease.port}; log: {lease.log_path}",
            server.Origin.SHARED: f"sharing the stack server (pid {lease.pid}) on port "
            f"{lease.port} started by another test session",
            server.Origin.EXTERNAL: f"using the stack already running on port {lease.port} as "
            "it is (live mode: nothing is recorded)",
        }[lease.origin]
        if lease.note:
            self.origin = f"{lease.note}\n{self.origin}"
        return self._base_url

    def signature(self, recording: RecordingSettings) -> dict[str, str]:
        """What a server must have been started with for this session to share it."""
        return {
            "command": self.options.command.template,
            "program": self.options.command.program(),
            "config": self.target.config,
            "mode": str(recording.mode),
            "recordings": str(recording.directory),
            "pace": repr(float(recording.pace)),
            "hosts": repr((recording.hosts.record, recording.hosts.passthrough)),
            "normalizers": repr([n.to_json() for n in recording.normalizers]),
            "setup": recording.setup,
        }

    def environment(self, recording: RecordingSettings) -> dict[str, str]:
        return stack_environment(self.options, recording)

    def before_start(self, port: int) -> None:
        """Runs under the port's lock, just before the server is started."""

    def attach_problem(self, lease: Any) -> str | None:
        """Why the server this session just started cannot be used, or None."""
        return None

    # -- during the run ---------------------------------------------------------------------

    def gone(self) -> Gone | None:
        if not self._base_url:
            return None
        from harness import health

        if self.server is None:  # a stack we did not start: all we can do is ask it
            if health.probe("127.0.0.1", self.port, timeout=1.0).state is health.ProbeState.HEALTHY:
                return None
            return Gone(f"the stack on port {self.port} stopped answering")
        # Asked before every test: the log (long, by then) is read only once it is needed.
        if not self.server.alive():
            how = self.lease.exit_description() if self.lease is not None else "exited"
            what = f"the stack server (pid {self.server.pid}) on port {self.port} {how}"
            return Gone(what, self.log, self._log_tail())
        stopped = health.stopped_report(self.server, self.port)
        if stopped is not None:
            return Gone(stopped[0], self.log, self._log_tail(), advice=stopped[1])
        return None

    def _log_tail(self) -> str:
        from harness import health

        return health.log_tail(self.log) if self.log else ""

    def close(self) -> str:
        if self.lease is None:
            return ""
        lease, self.lease = self.lease, None
        return lease.release()


class ReferenceServerKind(ServerKind):
    """`harness stack run`: records through its own transport; its run config is ours."""

    keepalive = True

    def run_config(self) -> Any:
        return load_run_config_for(self.target, self.options.stack_env)


class ForeignServerKind(ServerKind):
    """A stack the harness did not write: recorded through the bootstrap on its path."""

    keepalive = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._report: Path | None = None

    def environment(self, recording: RecordingSettings) -> dict[str, str]:
        env = super().environment(recording)
        if recording.mode is Mode.LIVE:
            return env
        from harness import bootstrap, serverstate

        state = serverstate.state_dir()
        self._report = state / f"stack-server-{uuid.uuid4().hex[:12]}.bootstrap"
        return bootstrap.environment(bootstrap.prepare(state), self._report, env)

    def before_start(self, port: int) -> None:
        if self._report is not None:
            self._report.unlink(missing_ok=True)

    def attach_problem(self, lease: Any) -> str | None:
        if self._report is None:
            return None
        from harness import bootstrap

        command = self.options.command.argv(self.target.config, lease.port)
        return bootstrap.attach_problem(self._report, shlex.join(command))

    def close(self) -> str:
        said = super().close()
        if self._report is not None and self.worker is None:
            self._report.unlink(missing_ok=True)
        return said

    def run_config(self) -> Any:
        from harness.stack.run_config import StackConfigError

        try:  # a real Llama Stack's run.yaml mostly reads the same; its distro names do not
            if Path(self.target.config).expanduser().is_file():
                return load_run_config_for(self.target, self.options.stack_env)
        except StackConfigError:
            pass
        return None
