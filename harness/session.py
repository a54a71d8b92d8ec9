"""What one pytest session resolved for the plugin: settings, the stack handle, reporting.

`harness.plugin` holds only hooks and fixtures; this module does the work they delegate that
is not about processes (`server`), in-process serving (`inprocess`) or recordings
(`harness.recording`): resolving options (flag > environment > ini > default) into one
`Harness` value, lending session transports to per-test clients, rendering a replay miss with
the exact command that records it, and deciding whether a run was complete enough for prune.
"""

from __future__ import annotations

import os
import shlex
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness import setups
from harness.recording.errors import ReplayMissError, format_miss
from harness.recording.modes import MODE_ENV, Mode, RecordingSettings, parse_mode
from harness.stack_config import (
    LibraryTarget,
    ProvidersTarget,
    ServerTarget,
    StackTarget,
    UrlTarget,
    parse_stack_config,
)

STACK_CONFIG_ENV = "LLAMA_STACK_CONFIG"
RECORDING_DIR_ENV = "LLAMA_STACK_TEST_RECORDING_DIR"
WORKER_KEY = "stack_harness"  # xdist workerinput key: what the controller shares


@dataclass
class Harness:
    """Everything resolved from options, environment and ini, once per process."""

    raw_target: str | None
    target: StackTarget | None
    settings: RecordingSettings
    setup: setups.Setup
    stack_env: dict[str, str]  # the environment the stack sees (setup defaults, --env)
    text_model: str | None
    embedding_model: str | None
    startup_timeout: float
    work_dir: Path
    run_config: Any = None  # harness.stack.config.RunConfig, or None for a remote stack
    lease: Any = None  # harness.server.ServerLease while this process holds a server
    base_url: str | None = None  # a server's URL (from the lease or the xdist controller)
    origin: str = ""  # how this session got its stack, for the summary
    record_args: list[str] = field(default_factory=list)  # options a re-record command repeats
    deselected: bool = False
    collected_modules: set[str] = field(default_factory=set)
    owns_usage_log: bool = True


_FLAGS = {"stack_setup": "--setup"}


def _value(config: pytest.Config, name: str, env: str | None = None) -> tuple[Any, str]:
    """flag > environment variable > ini > unset, with where the value came from."""
    flag = config.getoption(name)
    if flag not in (None, ""):
        return flag, _FLAGS.get(name, "--" + name.replace("_", "-"))
    if env and os.environ.get(env, "").strip():
        return os.environ[env].strip(), env
    ini = config.getini(name)
    if ini not in (None, "", []):
        return ini, f"{name} (ini)"
    return None, ""


def _stack_env(config: pytest.Config, setup: setups.Setup) -> dict[str, str]:
    explicit: dict[str, str] = {}
    for line in [*config.getini("stack_env"), *config.getoption("stack_env")]:
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise pytest.UsageError(f"--env {line!r}: expected KEY=VALUE")
        explicit[key.strip()] = value
    env = dict(os.environ)
    env.update(setup.env_defaults(os.environ))
    env.update(explicit)
    return env


def build_harness(config: pytest.Config) -> Harness:
    raw_setup, source = _value(config, "stack_setup")
    setup = setups.get_setup(raw_setup or setups.DEFAULT_SETUP, source=source or "--setup")
    raw_target, _ = _value(config, "stack_config", STACK_CONFIG_ENV)
    target = parse_stack_config(raw_target) if raw_target else None
    raw_mode, mode_source = _value(config, "inference_mode", MODE_ENV)
    mode = parse_mode(raw_mode, source=mode_source) if raw_mode else Mode.REPLAY
    raw_dir, dir_source = _value(config, "recordings_dir", RECORDING_DIR_ENV)
    base = config.invocation_params.dir
    if dir_source.endswith("(ini)"):
        base = config.inipath.parent if config.inipath else config.rootpath
    directory = (base / raw_dir) if raw_dir else config.rootpath / "recordings"
    timeout, timeout_source = _value(config, "stack_startup_timeout")
    try:
        startup_timeout = float(timeout or 60.0)
    except ValueError:
        raise pytest.UsageError(f"{timeout_source}={timeout!r}: expected seconds") from None
    if hasattr(config, "workerinput"):
        shared = config.workerinput[WORKER_KEY]
        work_dir, usage_log = Path(shared["work_dir"]), Path(shared["usage_log"])
    else:
        # Only a session with a stack creates files (server logs, the usage log).
        work_dir = _work_dir(config) if target is not None else Path(tempfile.gettempdir())
        usage_log = work_dir / f"usage-{os.getpid()}-{uuid.uuid4().hex[:8]}.log"
    harness = Harness(
        raw_target=raw_target,
        target=target,
        settings=RecordingSettings(
            mode=mode, directory=directory.resolve(), usage_log=usage_log.resolve()
        ),
        setup=setup,
        stack_env=_stack_env(config, setup),
        text_model=_value(config, "text_model")[0] or setup.text_model,
        embedding_model=_value(config, "embedding_model")[0] or setup.embedding_model,
        startup_timeout=startup_timeout,
        work_dir=work_dir,
    )
    harness.record_args = [f"--stack-config={raw_target}"] if raw_target else []
    if setup.name != setups.DEFAULT_SETUP:
        harness.record_args.append(f"--setup={setup.name}")
    if raw_dir:
        harness.record_args.append(f"--recordings-dir={harness.settings.directory}")
    if isinstance(target, LibraryTarget | ProvidersTarget):
        harness.run_config = load_run_config_for(target, harness.stack_env)
    elif isinstance(target, ServerTarget):
        # The server validates its own config; here only check it exists. Parsing it (and
        # importing yaml) waits for a test that asks for it: reuse must stay cheap.
        from harness.stack.run_config import resolve_run_config_path

        resolve_run_config_path(target.config)
    if isinstance(target, LibraryTarget | ProvidersTarget):
        harness.origin = f"serving {target.describe().split(' ', 1)[1]} in-process"
    elif isinstance(target, UrlTarget):
        harness.origin = f"using the stack at {target.url} (recorded at the client layer)"
    return harness


def load_run_config_for(target: StackTarget, env: dict[str, str]) -> Any:
    """The run config a server or library target uses, with the stack's environment."""
    from harness.stack.run_config import load_run_config, run_config_from_providers

    if isinstance(target, ProvidersTarget):
        return run_config_from_providers(target.spec, env=env)
    return load_run_config(target.config, env=env)


def _work_dir(config: pytest.Config) -> Path:
    """Server logs and the usage log: under pytest's cache, else a temporary directory."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("stack-harness"))
    return Path(tempfile.mkdtemp(prefix="stack-harness-"))


@dataclass
class StackHandle:
    """What the client fixtures need: a base URL and, in library mode, the in-process stack.

    One transport per client library per session, built on first use: per-test clients then
    cost no connection pool or TLS set-up. Plain-http targets skip loading CA certificates.
    """

    base_url: str
    inprocess: Any = None  # harness.inprocess.InProcessStack
    _transports: dict[str, Any] = field(default_factory=dict)

    def transport(self, module: Any) -> Any:
        name = module.__name__
        if name not in self._transports:
            if self.inprocess is not None:
                inner = (
                    self.inprocess.transport() if name == "httpx" else self.inprocess.transport2()
                )
            else:
                inner = module.HTTPTransport(verify=self.base_url.startswith("https:"))
            self._transports[name] = inner
        return KeepOpen(self._transports[name])

    def close(self) -> None:
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()


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


def miss_text(harness: Harness, miss: dict[str, Any]) -> str:
    """The miss diagnostic, its command extended with the options this session was run with."""
    if "endpoint" not in miss:
        return f"Replay miss (fingerprint {miss.get('fingerprint')}); see the stack's log"
    command = miss.get("command") or ""
    if miss.get("test_id"):  # rebuilt so a parametrised node id is quoted for the shell
        command = f"{MODE_ENV}=record-if-missing pytest {shlex.quote(miss['test_id'])}"
    command = " ".join([command, *map(shlex.quote, harness.record_args)])
    return format_miss({**miss, "command": command})


def chained_miss(excinfo: pytest.ExceptionInfo[BaseException] | None) -> dict | None:
    """The miss behind a failure, also when an SDK wrapped the `ReplayMissError`."""
    seen: set[int] = set()
    exc = excinfo.value if excinfo is not None else None
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ReplayMissError):
            return exc.miss
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def complete_replay(config: pytest.Config, harness: Harness, exitstatus: int) -> bool:
    """True when the usage log covers every recorded test module: prune can trust it."""
    option = config.option
    narrowed = (
        option.keyword
        or option.markexpr
        or getattr(option, "deselect", None)
        or getattr(option, "lf", False)
        or getattr(option, "stepwise", False)
        or harness.deselected
    )
    if narrowed or exitstatus != pytest.ExitCode.OK or harness.settings.mode is not Mode.REPLAY:
        return False
    if not harness.owns_usage_log or isinstance(harness.target, UrlTarget):
        return False
    directory = harness.settings.directory
    recorded_modules = {
        path.parent.relative_to(directory).as_posix()
        for path in directory.rglob("*.json")
        if not path.name.startswith(".") and path.parent != directory
    }
    recorded_modules.discard("_shared")
    return recorded_modules <= {module.removesuffix(".py") for module in harness.collected_modules}


class UrlCassette:
    """The client-layer cassette of one test against a remote stack (URL mode).

    `harness.recording.cassettes.client_cassette` turns vcrpy's "no match" error into a
    `ReplayMissError` as the error leaves its block. A test's exception is caught by pytest
    and never leaves the fixture that holds the cassette, so `miss_for` hands a failure that
    stems from such a miss to the cassette's exit, to get the same diagnostic as a stack miss.
    """

    def __init__(self, settings: RecordingSettings, test_id: str) -> None:
        from harness.recording.cassettes import client_cassette

        self._context = client_cassette(settings, test_id)
        self._open = False

    def __enter__(self) -> UrlCassette:
        self._context.__enter__()
        self._open = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._open:
            self._open = False
            self._context.__exit__(None, None, None)

    def miss_for(self, error: BaseException) -> dict | None:
        """The miss behind `error` (closing the cassette), or None if it is not a replay miss."""
        from harness.recording.cassettes import find_vcr_miss

        if not self._open or find_vcr_miss(error) is None:
            return None
        self._open = False
        try:
            self._context.__exit__(type(error), error, error.__traceback__)
        except ReplayMissError as converted:
            return converted.miss
        except BaseException:
            return None
        return None
