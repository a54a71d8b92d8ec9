"""What one pytest session resolved from flags, environment and ini: one frozen value.

Every setting is resolved once, at configure time, as flag > environment variable > ini >
default, so a bad value is a usage error before any test runs and no hook can change a
setting half-way through a session. What does change during a session (the server lease,
what was collected) lives in `lifecycle` and `reporting`.
"""

from __future__ import annotations

import os
import re
import shlex
import string
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from harness import project, setups
from harness.project import Suite
from harness.recording import usage
from harness.recording.fingerprint import Normalizer
from harness.recording.hosts import THIS_PROCESS, HostPolicy, parse_globs, provider_hosts
from harness.recording.modes import (
    DIR_ENV,
    MODE_ENV,
    PACE_ENV,
    Mode,
    RecordingSettings,
    parse_mode,
    parse_pace,
)
from harness.targets import (
    LibraryTarget,
    ProvidersTarget,
    ServerTarget,
    StackTarget,
    UrlTarget,
    parse_stack_config,
)

STACK_CONFIG_ENV = "LLAMA_STACK_CONFIG"
STACK_COMMAND_ENV = "LLAMA_STACK_TEST_STACK_COMMAND"
DEFAULT_STACK_COMMAND = "harness stack run {config} --port {port}"
COMMAND_FIELDS = ("config", "port")
WORKER_KEY = "stack_harness"  # xdist workerinput key: what the controller shares
DEFAULT_STARTUP_TIMEOUT = 60.0
_FLAGS = {"stack_setup": "--setup"}


@dataclass(frozen=True)
class _Option:
    flag: str
    dest: str  # also the ini key
    help: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    ini_type: str = "string"


OPTIONS = (
    _Option(
        "--stack-config",
        "stack_config",
        f"the stack to test (also ${STACK_CONFIG_ENV}); one of: server:<config>[:<port>], "
        "a URL, a distribution name or run.yaml (library mode), api=provider,...",
    ),
    _Option(
        "--inference-mode",
        "inference_mode",
        f"replay (default), record, live or record-if-missing (also ${MODE_ENV})",
    ),
    _Option(
        "--recordings-dir",
        "recordings_dir",
        f"recordings directory (also ${DIR_ENV}; default <rootdir>/recordings)",
    ),
    _Option(
        "--env",
        "stack_env",
        "set a variable in the stack's environment, e.g. an API key (repeatable)",
        {"action": "append", "default": [], "metavar": "KEY=VALUE"},
        ini_type="linelist",
    ),
    _Option(
        "--text-model",
        "text_model",
        "text model id, or a comma-separated list: each test using text_model_id runs once per "
        "model (default: the setup's)",
    ),
    _Option(
        "--vision-model",
        "vision_model",
        "vision model id(s), comma-separated, for vision_model_id (default: the setup's)",
    ),
    _Option(
        "--embedding-model",
        "embedding_model",
        "embedding model id(s), comma-separated, for embedding_model_id (default: the setup's)",
    ),
    _Option(
        "--embedding-dimension",
        "embedding_dimension",
        "the embedding models' dimension, for embedding_dimension (default: the setup's)",
        {"type": int},
    ),
    _Option(
        "--stack-startup-timeout",
        "stack_startup_timeout",
        "seconds to wait for a started stack to be healthy (default 60)",
        {"type": float},
    ),
    _Option(
        "--stack-command",
        "stack_command",
        "the command that serves a server:<config> target, a template with {config} and {port}, "
        f"run without a shell (also ${STACK_COMMAND_ENV}); default: '{DEFAULT_STACK_COMMAND}', "
        "e.g. 'llama stack run {config} --port {port}'",
    ),
    _Option(
        "--setup",
        "stack_setup",
        f"provider env defaults and default models ({setups.help_text()}; more in "
        "pyproject.toml [tool.stack-harness.setups]); default: the suite's, else ollama",
        {"metavar": "NAME"},
    ),
    _Option(
        "--suite",
        "suite",
        "run only a suite's test roots, with its default setup (suites are declared in "
        "pyproject.toml [tool.stack-harness.suites])",
        {"metavar": "NAME"},
    ),
    _Option(
        "--usage-file",
        "usage_file",
        "after a passing replay run, write the tests it ran and the recordings they used to this "
        "file, for `harness recordings prune --run` (one per CI shard)",
        {"metavar": "PATH"},
    ),
    _Option(
        "--record-hosts",
        "record_hosts",
        "host[:port] globs (comma-separated) whose requests are always recorded, loopback "
        "included (default: providers the run config or setup names, and every non-loopback host)",
        {"metavar": "GLOBS"},
    ),
    _Option(
        "--passthrough-hosts",
        "passthrough_hosts",
        "host[:port] globs (comma-separated) whose requests are never recorded, in every mode "
        "(default: servers the test process itself runs on loopback)",
        {"metavar": "GLOBS"},
    ),
    _Option(
        "--misses-file",
        "misses_file",
        "after the run, write the node ids of the tests that missed a recording to this file "
        "(one per line; empty when none missed)",
        {"metavar": "PATH"},
    ),
)
MODEL_KINDS = ("text", "vision", "embedding")


def taken_flags(parser: pytest.Parser) -> list[str]:
    """Our flags that something loaded earlier (a project's conftest) already defines.

    pytest has no public list of defined options (pytest 9 keeps a private map, pytest 8 does
    not), so each flag is asked of the parser through its public parse method: an undefined
    flag comes back unknown; a defined one is consumed, or refused for want of its value.
    """
    return [option.flag for option in OPTIONS if _defined(parser, option.flag)]


def _defined(parser: pytest.Parser, flag: str) -> bool:
    try:
        _, unknown = parser.parse_known_and_unknown_args([flag])
    except (pytest.UsageError, SystemExit):
        return True  # defined, and it wants a value
    return flag not in unknown


NORMALIZE_INI = "normalize_request"


def add_options(parser: pytest.Parser) -> None:
    """Declare the plugin's flags and their ini keys (`pytest --help` lists them)."""
    group = parser.getgroup("stack-harness", "stack-harness (record-replay against a stack)")
    for option in OPTIONS:
        kwargs = {"default": None, **option.kwargs}
        group.addoption(option.flag, dest=option.dest, help=option.help, **kwargs)
        parser.addini(option.dest, f"default for {option.flag}", type=option.ini_type)
    parser.addini(
        NORMALIZE_INI,
        "request normalisers, one 'name = regex' per line: matches become <name:N> in the "
        "request fingerprint (a group named 'keep' is kept)",
        type="linelist",
    )


@dataclass(frozen=True)
class HarnessOptions:
    """Everything the plugin needs to know about the session's settings."""

    target: StackTarget | None
    stack_command: str  # the command template a server target starts ({config}, {port})
    recording: RecordingSettings
    setup: setups.Setup
    stack_env: Mapping[str, str]  # the environment the stack sees (setup defaults, --env)
    models: Mapping[str, tuple[str, ...]]  # per kind (MODEL_KINDS): the ids tests run with
    embedding_dimension: int | None
    suite: Suite | None
    misses_file: Path | None
    usage_file: Path | None
    startup_timeout: float
    work_dir: Path | None  # this session's scratch directory; None without a stack
    owns_work_dir: bool  # created by this process, so removed by it at the end
    session: str  # this pytest session's id (xdist workers share their controller's)
    started: float  # wall-clock time the session started (for prune)
    record_args: tuple[str, ...]  # shell words a re-record command repeats
    run_config: Any = None  # library targets: the parsed run config

    @property
    def mode(self) -> Mode:
        return self.recording.mode

    @property
    def runs_reference_stack(self) -> bool:
        """True when a server target runs this project's own stack, not a foreign command."""
        return self.stack_command == DEFAULT_STACK_COMMAND


def _value(config: pytest.Config, name: str, env: str | None = None) -> tuple[Any, str]:
    """flag > environment variable > ini > unset, with where the value came from.

    A flag given with an empty value is a mistake, not a request for the next source.
    """
    flag = config.getoption(name)
    flag_name = _FLAGS.get(name, "--" + name.replace("_", "-"))
    if isinstance(flag, str) and not flag.strip():
        if name == "stack_config":
            parse_stack_config(flag)  # raises the usage error that lists the five forms
        raise pytest.UsageError(f"{flag_name}= is empty: give it a value or leave it out")
    if flag is not None:
        return flag, flag_name
    if env and os.environ.get(env, "").strip():
        return os.environ[env].strip(), env
    ini = config.getini(name)
    if ini not in (None, "", []):
        return ini, f"{name} (ini)"
    return None, ""


def _explicit_env(config: pytest.Config) -> dict[str, str]:
    """The variables given with --env or the stack_env ini lines."""
    explicit: dict[str, str] = {}
    for line in [*config.getini("stack_env"), *config.getoption("stack_env")]:
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise pytest.UsageError(f"--env {line!r}: expected KEY=VALUE")
        explicit[key.strip()] = value
    return explicit


def _record_args(
    config: pytest.Config,
    raw_target: str | None,
    setup: setups.Setup,
    directory: Path | None,
    explicit_env: Mapping[str, str],
    stack_command: str | None,
) -> tuple[str, ...]:
    """The options that shape requests, as shell words for the command that re-records a miss.

    Values of --env never appear (they may be keys): the command reads them from the shell.
    """
    words = [f"--stack-config={raw_target}"] if raw_target else []
    if setup.name != setups.DEFAULT_SETUP:
        words.append(f"--setup={setup.name}")
    for name in (*(f"{kind}_model" for kind in MODEL_KINDS), "embedding_dimension"):
        value, _ = _value(config, name)
        if value:
            words.append(f"--{name.replace('_', '-')}={value}")
    if directory is not None:
        words.append(f"--recordings-dir={directory}")
    if stack_command is not None:
        words.append(f"--stack-command={stack_command}")
    quoted = [shlex.quote(word) for word in words]
    quoted += [f'--env={shlex.quote(name)}="${name}"' for name in sorted(explicit_env)]
    return tuple(quoted)


def _stack_command(config: pytest.Config, setup: setups.Setup) -> tuple[str, bool]:
    """The stack command template, checked, and whether it was given explicitly."""
    raw, source = _value(config, "stack_command", STACK_COMMAND_ENV)
    template = raw or setup.stack_command or DEFAULT_STACK_COMMAND
    where = source or (f"setup {setup.name}" if setup.stack_command else "the default")
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise pytest.UsageError(f"--stack-command {template!r} ({where}): {exc}") from None
    fields = {name for word in words for _, name, _, _ in string.Formatter().parse(word) if name}
    unknown = sorted(fields - set(COMMAND_FIELDS))
    if not words or "port" not in fields or unknown:
        problem = f"unknown field(s) {unknown}" if unknown else "it must contain {port}"
        raise pytest.UsageError(
            f"--stack-command {template!r} ({where}): {problem}; a command template may use "
            "{config} (the run config or distribution) and {port}, e.g. "
            "--stack-command='llama stack run {config} --port {port}'"
        )
    return template, bool(raw)


def _recordings_dir(config: pytest.Config) -> tuple[Path, bool]:
    """The recordings directory and whether it was given (flag, environment or ini)."""
    raw, source = _value(config, "recordings_dir", DIR_ENV)
    if not raw:
        return (config.rootpath / "recordings").resolve(), False
    base = config.invocation_params.dir
    if source.endswith("(ini)"):
        base = config.inipath.parent if config.inipath else config.rootpath
    return (base / raw).resolve(), True


def _check_writable(directory: Path, mode: Mode) -> None:
    """A recording session must be able to write its recordings: say so now, not per test."""
    if mode not in (Mode.RECORD, Mode.RECORD_IF_MISSING):
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise pytest.UsageError(
            f"recordings directory {directory} is not writable ({exc.strerror or exc}); "
            f"mode {mode} writes recordings there. Make it writable or pass --recordings-dir."
        ) from None


def _scratch(config: pytest.Config, target: StackTarget | None) -> tuple[Path | None, bool]:
    """The session's scratch directory: the controller's under xdist, none without a stack."""
    if hasattr(config, "workerinput"):
        return Path(config.workerinput[WORKER_KEY]["work_dir"]), False
    if target is None:
        return None, False
    return Path(tempfile.mkdtemp(prefix="stack-harness-session-")), True


def _suite(config: pytest.Config, known: Mapping[str, Suite]) -> Suite | None:
    raw, source = _value(config, "suite")
    if not raw:
        return None
    if raw not in known:
        names = ", ".join(known) or "none (declare them in pyproject.toml)"
        raise pytest.UsageError(f"{source}={raw!r} is not a known suite; known suites: {names}")
    return known[raw]


def _models(config: pytest.Config, kind: str, setup: setups.Setup) -> tuple[str, ...]:
    raw, _ = _value(config, f"{kind}_model")
    if not raw:
        default = getattr(setup, f"{kind}_model")
        return (default,) if default else ()
    return tuple(dict.fromkeys(m.strip() for m in str(raw).split(",") if m.strip()))


def resolve(config: pytest.Config) -> HarnessOptions:
    """Resolve the session's options; user errors raise the area's own exception type."""
    try:
        known = project.load(config.rootpath)
    except project.ProjectConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    suite = _suite(config, known.suites)
    raw_setup, source = _value(config, "stack_setup")
    name = raw_setup or (suite.default_setup if suite else None) or setups.DEFAULT_SETUP
    setup = setups.get_setup(name, source=source or "--setup", known=known.setups)
    raw_target, _ = _value(config, "stack_config", STACK_CONFIG_ENV)
    target = parse_stack_config(raw_target) if raw_target else None
    raw_mode, mode_source = _value(config, "inference_mode", MODE_ENV)
    mode = parse_mode(raw_mode, source=mode_source) if raw_mode else Mode.REPLAY
    raw_pace = os.environ.get(PACE_ENV, "").strip()
    pace = parse_pace(raw_pace) if raw_pace else 0.0
    directory, dir_given = _recordings_dir(config)
    _check_writable(directory, mode)
    timeout, timeout_source = _value(config, "stack_startup_timeout")
    try:
        startup_timeout = float(timeout or DEFAULT_STARTUP_TIMEOUT)
    except ValueError:
        raise pytest.UsageError(f"{timeout_source}={timeout!r}: expected seconds") from None
    explicit_env = _explicit_env(config)
    stack_env = {**os.environ, **setup.env_defaults(os.environ), **explicit_env}
    models = {kind: _models(config, kind, setup) for kind in MODEL_KINDS}
    raw_dimension, dimension_source = _value(config, "embedding_dimension")
    try:
        dimension = int(raw_dimension) if raw_dimension else setup.embedding_dimension
    except ValueError:
        raise pytest.UsageError(
            f"{dimension_source}={raw_dimension!r}: expected a whole number"
        ) from None
    if mode is Mode.REPLAY:  # replay never reaches a provider, but stacks insist on a key
        every_model = [m for ids in models.values() for m in ids]
        for name in setups.key_variables(setup, every_model):
            if not stack_env.get(name):
                stack_env[name] = setups.REPLAY_KEY_PLACEHOLDER
    stack_command, command_given = _stack_command(config, setup)
    record_args = _record_args(
        config,
        raw_target,
        setup,
        directory if dir_given else None,
        explicit_env,
        stack_command if command_given else None,
    )
    run_config = None
    if isinstance(target, LibraryTarget | ProvidersTarget):
        run_config = load_run_config_for(target, stack_env)
    elif isinstance(target, ServerTarget) and stack_command == DEFAULT_STACK_COMMAND:
        # The server validates its own config; here only check it exists. Parsing it (and
        # importing yaml) waits for a test that asks for it: reuse must stay cheap. A foreign
        # stack command resolves its config itself.
        from harness.stack.run_config import resolve_run_config_path

        resolve_run_config_path(target.config)
    hosts = HostPolicy(
        record=_globs(config, "record_hosts"),
        passthrough=_globs(config, "passthrough_hosts"),
        providers=provider_hosts([*setup.env.values(), *explicit_env.values()]),
        test_processes=THIS_PROCESS,  # a started server is told its holders instead
    )
    normalizers = _normalizers(config)
    secret_names = tuple(sorted({*setup.env, *explicit_env, *setup.keys}))
    raw_misses, _ = _value(config, "misses_file")
    misses_file = (config.invocation_params.dir / raw_misses).resolve() if raw_misses else None
    raw_usage, _ = _value(config, "usage_file")
    usage_file = (config.invocation_params.dir / raw_usage).resolve() if raw_usage else None
    # Last, so a usage error above leaves no directory or log behind.
    work_dir, owns_work_dir = _scratch(config, target)
    if hasattr(config, "workerinput"):
        shared = config.workerinput[WORKER_KEY]
        session, started = shared["session"], float(shared["started"])
    else:
        session, started = uuid.uuid4().hex, usage.now()
    sessions_dir = usage.default_sessions_dir()
    usage_log = None
    if work_dir is not None:
        usage_log = usage.session_log(sessions_dir, session)
        if owns_work_dir:
            usage.create_log(usage_log)
    return HarnessOptions(
        target=target,
        stack_command=stack_command,
        recording=RecordingSettings(
            mode=mode,
            directory=directory,
            pace=pace,
            usage_log=usage_log,
            sessions_dir=sessions_dir,
            hosts=hosts,
            normalizers=normalizers,
            setup=setup.name,
            secret_names=secret_names,
        ),
        setup=setup,
        stack_env=stack_env,
        models=MappingProxyType(models),
        embedding_dimension=dimension,
        suite=suite,
        misses_file=misses_file,
        usage_file=usage_file,
        startup_timeout=startup_timeout,
        work_dir=work_dir,
        owns_work_dir=owns_work_dir,
        session=session,
        started=started,
        record_args=record_args,
        run_config=run_config,
    )


def _globs(config: pytest.Config, name: str) -> tuple[str, ...]:
    raw, _ = _value(config, name)
    return parse_globs(raw or "")


def _normalizers(config: pytest.Config) -> tuple[Normalizer, ...]:
    """The project's request normalisers: the ini lines, then the conftest hook's."""
    found: list[Normalizer] = []
    lines = [*config.getini(NORMALIZE_INI)]
    for extra in config.hook.pytest_harness_request_normalizers(config=config):
        lines.extend(extra or [])
    for line in lines:
        if isinstance(line, tuple | list) and len(line) == 2:
            name, pattern = str(line[0]), str(line[1])
        else:
            name, sep, pattern = str(line).partition("=")
            if not sep:
                raise pytest.UsageError(
                    f"{NORMALIZE_INI} line {line!r}: expected 'name = regex', e.g. "
                    "'session = sess_[0-9a-z]{16}'"
                )
        name, pattern = name.strip(), pattern.strip()
        if not name.isidentifier():
            raise pytest.UsageError(f"{NORMALIZE_INI}: {name!r} is not a name (letters, _)")
        try:
            found.append(Normalizer.compile(name, pattern))
        except re.error as exc:
            raise pytest.UsageError(
                f"{NORMALIZE_INI} {name}: {pattern!r} is not a regular expression: {exc}"
            ) from None
    return tuple(found)


def load_run_config_for(target: StackTarget, env: Mapping[str, str]) -> Any:
    """The run config a server or library target uses, with the stack's environment."""
    from harness.stack.run_config import load_run_config, run_config_from_providers

    if isinstance(target, ProvidersTarget):
        return run_config_from_providers(target.spec, env=env)
    assert not isinstance(target, UrlTarget)
    return load_run_config(target.config, env=env)
