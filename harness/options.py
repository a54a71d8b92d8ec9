"""What one pytest session resolved from flags, environment and ini: one frozen value.

Every setting is resolved once, at configure time, as flag > environment variable > ini >
default (see `harness.flags`), so a bad value is a usage error before any test runs and no
hook can change a setting half-way through a session. :func:`resolve` only composes one small
function per concern (project, target, recording, stack command, environment, models, limits,
outputs); none of them creates anything. What a session makes or holds (its scratch
directory, the stack, what an xdist controller hands its workers) lives in `harness.session`.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from harness import project, setups
from harness.environment import (
    DIR_NAMES,
    MODE_NAMES,
    PACE_ENV,
    STACK_COMMAND_ENV,
    STACK_CONFIG_NAMES,
)
from harness.flags import MODEL_KINDS, NORMALIZE_INI, EmptyValue, Sources
from harness.project import Suite
from harness.recording.errors import RecordingError
from harness.recording.fingerprint import Normalizer
from harness.recording.hosts import THIS_PROCESS, HostPolicy, parse_globs, provider_hosts
from harness.recording.modes import Mode, RecordingSettings, parse_mode, parse_pace
from harness.stack.errors import StackConfigError
from harness.stack_command import DEFAULT_STACK_COMMAND, StackCommand, StackCommandError
from harness.targets import (
    LibraryTarget,
    ProvidersTarget,
    ServerTarget,
    StackTarget,
    TargetSource,
    UrlTarget,
    parse_stack_config,
)

DEFAULT_STARTUP_TIMEOUT = 60.0


@dataclass(frozen=True)
class HarnessOptions:
    """Everything the plugin needs to know about the session's settings."""

    target: StackTarget | None
    target_source: TargetSource | None  # where --stack-config came from
    command: StackCommand  # what a server target runs; reference or foreign, decided once
    recording: RecordingSettings  # no usage log: that belongs to the session
    setup: setups.Setup
    stack_env: Mapping[str, str]  # the environment the stack sees (setup defaults, --env)
    models: Mapping[str, tuple[str, ...]]  # per kind (MODEL_KINDS): the ids tests run with
    embedding_dimension: int | None
    suite: Suite | None
    misses_file: Path | None
    usage_file: Path | None  # --usage-file: this run's usage, for prune (one CI shard)
    startup_timeout: float
    record_args: tuple[str, ...]  # shell words a re-record command repeats
    run_config: Any = None  # library targets: the parsed run config

    @property
    def mode(self) -> Mode:
        return self.recording.mode


def resolve(config: pytest.Config) -> HarnessOptions:
    """Resolve the session's options; a user's mistake raises `pytest.UsageError`."""
    try:
        return _resolve(config, Sources(config))
    except (EmptyValue, StackCommandError) as exc:
        raise pytest.UsageError(str(exc)) from None


def _resolve(config: pytest.Config, sources: Sources) -> HarnessOptions:
    suite, setup = _project(config, sources)
    target, target_source, raw_target = _target(sources)
    recording, dir_given = _recording(config, sources)
    command, command_given = _stack_command(sources, setup)
    target = _served_by(target, command, sources, raw_target)
    explicit_env = _explicit_env(sources)
    recording = _recording_rules(config, sources, recording, setup, explicit_env)
    models = {kind: _models(sources, kind, setup) for kind in MODEL_KINDS}
    stack_env = _stack_env(setup, explicit_env, recording.mode, models)
    run_config = _check_target(target, command, stack_env)
    return HarnessOptions(
        target=target,
        target_source=target_source,
        command=command,
        recording=recording,
        setup=setup,
        stack_env=MappingProxyType(stack_env),
        models=MappingProxyType(models),
        embedding_dimension=_embedding_dimension(sources, setup),
        suite=suite,
        misses_file=_output_file(config, sources, "misses_file", "misses.txt"),
        usage_file=_output_file(config, sources, "usage_file", "usage.json"),
        startup_timeout=_startup_timeout(sources),
        record_args=_record_args(
            sources,
            raw_target,
            setup,
            recording.directory if dir_given else None,
            explicit_env,
            command.template if command_given else None,
        ),
        run_config=run_config,
    )


# -- one function per concern -----------------------------------------------------------------


def _project(config: pytest.Config, sources: Sources) -> tuple[Suite | None, setups.Setup]:
    """The suite and setup: from the project's pyproject.toml, the flags and the defaults."""
    try:
        known = project.load(config.rootpath)
    except project.ProjectConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    suite = None
    raw_suite, suite_source = sources.get("suite")
    if raw_suite:
        if raw_suite not in known.suites:
            names = ", ".join(known.suites) or "none (declare them in pyproject.toml)"
            raise pytest.UsageError(
                f"{suite_source}={raw_suite!r} is not a known suite; known suites: {names}"
            )
        suite = known.suites[raw_suite]
    raw_setup, source = sources.get("stack_setup")
    name = raw_setup or (suite.default_setup if suite else None) or setups.DEFAULT_SETUP
    try:
        setup = setups.get_setup(name, source=source or "--setup", known=known.setups)
    except setups.SetupError as exc:
        raise pytest.UsageError(str(exc)) from None
    return suite, setup


def _target(sources: Sources) -> tuple[StackTarget | None, TargetSource | None, str | None]:
    try:
        raw, source = sources.get("stack_config", STACK_CONFIG_NAMES)
    except EmptyValue:
        raw, source = "", "--stack-config"
    if raw is None:
        return None, None, None
    try:
        target = parse_stack_config(raw, env=sources.environ, source=source)
    except StackConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    return target, TargetSource.of(source), raw


def _recording(config: pytest.Config, sources: Sources) -> tuple[RecordingSettings, bool]:
    """Mode, recordings directory and pace; the directory is checked for what the mode does."""
    try:
        raw_mode, mode_source = sources.get("inference_mode", MODE_NAMES)
        mode = parse_mode(raw_mode, source=mode_source) if raw_mode else Mode.REPLAY
        raw_pace = sources.environ.get(PACE_ENV, "").strip()
        pace = parse_pace(raw_pace) if raw_pace else 0.0
    except RecordingError as exc:
        raise pytest.UsageError(str(exc)) from None
    raw_dir, dir_source = sources.get("recordings_dir", DIR_NAMES)
    if raw_dir:
        base = config.invocation_params.dir
        if dir_source.endswith("(ini)"):
            base = config.inipath.parent if config.inipath else config.rootpath
        directory = (base / raw_dir).resolve()
    else:
        directory = (config.rootpath / "recordings").resolve()
    _check_recordings_dir(directory, dir_source or "the default recordings directory", mode)
    return RecordingSettings(mode=mode, directory=directory, pace=pace), bool(raw_dir)


def _check_recordings_dir(directory: Path, source: str, mode: Mode) -> None:
    """A directory that cannot hold recordings is named now, not in a traceback at the end."""
    if directory.exists() and not directory.is_dir():
        raise pytest.UsageError(
            f"recordings directory {directory} ({source}) is not a directory. Remove or rename "
            "that file, or pass --recordings-dir=<a directory>."
        )
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


def _stack_command(sources: Sources, setup: setups.Setup) -> tuple[StackCommand, bool]:
    """The checked stack command template, and whether it was given explicitly."""
    raw, source = sources.get("stack_command", STACK_COMMAND_ENV)
    template = raw or setup.stack_command or DEFAULT_STACK_COMMAND
    where = source or (f"setup {setup.name}" if setup.stack_command else "the default")
    return StackCommand.parse(template, where), bool(raw)


def _served_by(
    target: StackTarget | None, command: StackCommand, sources: Sources, raw: str | None
) -> StackTarget | None:
    """The target as the stack command serves it. A `{providers}` command makes the
    `api=provider,...` form a server it starts (else that form is library mode with the
    reference stack), and has no config to start a `server:<config>` target with."""
    if not command.serves_providers:
        return target
    source = sources.get("stack_config", STACK_CONFIG_NAMES)[1]
    if isinstance(target, ProvidersTarget):
        try:
            return ServerTarget.for_providers(target, sources.environ, source)
        except StackConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    if isinstance(target, ServerTarget):
        raise pytest.UsageError(
            f"{source}={raw!r} names a config, but --stack-command {command.template!r} takes "
            "{providers}, the list of the api=provider,... form: give the form (e.g. "
            "--stack-config=inference=remote::openai) or a command with {config}"
        )
    return target


def _explicit_env(sources: Sources) -> dict[str, str]:
    """The variables given with --env or the stack_env ini lines."""
    explicit: dict[str, str] = {}
    for line in sources.lines("stack_env"):
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise pytest.UsageError(f"--env {line!r}: expected KEY=VALUE")
        explicit[key.strip()] = value
    return explicit


def _stack_env(
    setup: setups.Setup,
    explicit_env: Mapping[str, str],
    mode: Mode,
    models: Mapping[str, tuple[str, ...]],
) -> dict[str, str]:
    """What the stack sees: this environment, the setup's defaults, then --env."""
    stack_env = {**os.environ, **setup.env_defaults(os.environ), **explicit_env}
    if mode is Mode.REPLAY:  # replay never reaches a provider, but stacks insist on a key
        every_model = [m for ids in models.values() for m in ids]
        for name in setups.key_variables(setup, every_model):
            if not stack_env.get(name):
                stack_env[name] = setups.REPLAY_KEY_PLACEHOLDER
    return stack_env


def _models(sources: Sources, kind: str, setup: setups.Setup) -> tuple[str, ...]:
    raw, _ = sources.get(f"{kind}_model")
    if not raw:
        default = getattr(setup, f"{kind}_model")
        return (default,) if default else ()
    return tuple(dict.fromkeys(m.strip() for m in str(raw).split(",") if m.strip()))


def _embedding_dimension(sources: Sources, setup: setups.Setup) -> int | None:
    raw, source = sources.get("embedding_dimension")
    if not raw:
        return setup.embedding_dimension
    try:
        dimension = int(raw)
    except ValueError:
        raise pytest.UsageError(f"{source}={raw!r}: expected a whole number") from None
    if dimension <= 0:
        raise pytest.UsageError(
            f"{source}={raw!r}: an embedding dimension is a whole number above 0 "
            "(e.g. 384); leave it out to use the setup's"
        )
    return dimension


def _startup_timeout(sources: Sources) -> float:
    raw, source = sources.get("stack_startup_timeout")
    if raw is None:
        return DEFAULT_STARTUP_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        raise pytest.UsageError(f"{source}={raw!r}: expected seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise pytest.UsageError(
            f"{source}={raw!r}: expected a number of seconds above 0 (e.g. 120); "
            f"leave it out for the default {DEFAULT_STARTUP_TIMEOUT:g}"
        )
    return seconds


def _output_file(config: pytest.Config, sources: Sources, name: str, example: str) -> Path | None:
    """A file the session writes at its end, checked now: never a traceback then."""
    raw, source = sources.get(name)
    if not raw:
        return None
    path = (config.invocation_params.dir / raw).resolve()
    if path.is_dir():
        raise pytest.UsageError(
            f"{source}={raw!r} names the directory {path}; it takes a file to write, e.g. "
            f"{source}={Path(raw) / example}"
        )
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise pytest.UsageError(
            f"{source}={raw!r}: {blocker} is a file, so {path} cannot be created there; "
            "name a file in a directory"
        )
    return path


def _recording_rules(
    config: pytest.Config,
    sources: Sources,
    recording: RecordingSettings,
    setup: setups.Setup,
    explicit_env: Mapping[str, str],
) -> RecordingSettings:
    """What is recorded (hosts), what matching sees through (normalisers), what stays off
    disk (secrets by name), and which setup the recordings say made them."""
    providers = provider_hosts([*setup.env.values(), *explicit_env.values()])
    hosts = HostPolicy(
        record=parse_globs(sources.get("record_hosts")[0] or ""),
        passthrough=parse_globs(sources.get("passthrough_hosts")[0] or ""),
        providers=providers,
        test_processes=THIS_PROCESS,  # a started server is told its holders instead
    )
    return replace(
        recording,
        hosts=hosts,
        normalizers=_normalizers(config),
        setup=setup.name,
        secret_names=tuple(sorted({*setup.env, *explicit_env, *setup.keys})),
    )


def _normalizers(config: pytest.Config) -> tuple[Normalizer, ...]:
    """The project's request normalisers: the ini lines, then the conftest hook's."""
    found: list[Normalizer] = []
    lines: list[object] = [*config.getini(NORMALIZE_INI)]
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


def _check_target(
    target: StackTarget | None, command: StackCommand, stack_env: Mapping[str, str]
) -> Any:
    """The library run config, parsed now; a reference server's config only found (parsing
    it and importing yaml wait for a test that asks: reuse must stay cheap). A foreign stack
    command resolves its config itself."""
    try:
        if isinstance(target, LibraryTarget | ProvidersTarget):
            return load_run_config_for(target, stack_env)
        if isinstance(target, ServerTarget) and command.reference:
            from harness.stack.run_config import resolve_run_config_path

            resolve_run_config_path(target.config)
    except StackConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    return None


def _record_args(
    sources: Sources,
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
        value, _ = sources.get(name)
        if value:
            words.append(f"--{name.replace('_', '-')}={value}")
    if directory is not None:
        words.append(f"--recordings-dir={directory}")
    if stack_command is not None:
        words.append(f"--stack-command={stack_command}")
    quoted = [shlex.quote(word) for word in words]
    quoted += [f'--env={shlex.quote(name)}="${name}"' for name in sorted(explicit_env)]
    return tuple(quoted)


def load_run_config_for(target: StackTarget, env: Mapping[str, str]) -> Any:
    """The run config a server or library target uses, with the stack's environment."""
    from harness.stack.run_config import load_run_config, run_config_from_providers

    if isinstance(target, ProvidersTarget):
        return run_config_from_providers(target.spec, env=env)
    assert not isinstance(target, UrlTarget)
    return load_run_config(target.config, env=env)
