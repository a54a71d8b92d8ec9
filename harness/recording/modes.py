"""Inference modes and the settings that select them.

Users choose with Llama Stack's variables (``LLAMA_STACK_TEST_INFERENCE_MODE``, ...) or OGX's
(``OGX_TEST_INFERENCE_MODE``, ...; the Llama Stack name wins when both are set). Settings
travel from the pytest process to a stack server process under the harness's own names
(``HARNESS_RECORDING_*``), because Llama Stack and OGX turn on their own recorders when they
see theirs: no ``LLAMA_STACK_TEST_*`` or ``OGX_TEST_*`` variable ever reaches a stack the
plugin starts (:func:`is_recorder_variable`). A server started by hand reads the harness names
first and falls back to the users', so ``LLAMA_STACK_TEST_INFERENCE_MODE=record harness stack
run starter`` records as expected.
"""

from __future__ import annotations

import enum
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.recording.errors import RecordingError
from harness.recording.fingerprint import Normalizer
from harness.recording.hosts import HostPolicy

MODE_ENV = "LLAMA_STACK_TEST_INFERENCE_MODE"
DIR_ENV = "LLAMA_STACK_TEST_RECORDING_DIR"
PACE_ENV = "LLAMA_STACK_TEST_REPLAY_PACE"
OGX_MODE_ENV = "OGX_TEST_INFERENCE_MODE"
OGX_DIR_ENV = "OGX_TEST_RECORDING_DIR"
# Each user-facing setting, by the names that may carry it, first name first.
MODE_NAMES = (MODE_ENV, OGX_MODE_ENV)
DIR_NAMES = (DIR_ENV, OGX_DIR_ENV)
RECORDER_PREFIXES = ("LLAMA_STACK_TEST_", "OGX_TEST_")

# What the plugin hands a stack process (see the module docstring).
SERVER_MODE_ENV = "HARNESS_RECORDING_MODE"
SERVER_DIR_ENV = "HARNESS_RECORDING_DIR"
SERVER_PACE_ENV = "HARNESS_REPLAY_PACE"
USAGE_LOG_ENV = "HARNESS_RECORDING_USAGE_LOG"
SESSIONS_ENV = "HARNESS_RECORDING_SESSIONS"
NORMALIZERS_ENV = "HARNESS_NORMALIZERS"
SETUP_ENV = "HARNESS_SETUP"
SECRET_NAMES_ENV = "HARNESS_SECRET_NAMES"
# The file a foreign stack's bootstrap reports to (harness/bootstrap, recording/patch.py).
BOOTSTRAP_REPORT_ENV = "HARNESS_BOOTSTRAP_REPORT"
SERVER_ENV = (
    SERVER_MODE_ENV,
    SERVER_DIR_ENV,
    SERVER_PACE_ENV,
    USAGE_LOG_ENV,
    SESSIONS_ENV,
    NORMALIZERS_ENV,
    SETUP_ENV,
    SECRET_NAMES_ENV,
    BOOTSTRAP_REPORT_ENV,
    *HostPolicy.ENV,
)
DEFAULT_DIRECTORY = "recordings"


def is_recorder_variable(name: str) -> bool:
    """True for a variable that turns on (or steers) Llama Stack's or OGX's own recorder."""
    return name.startswith(RECORDER_PREFIXES)


class Mode(enum.StrEnum):
    """What the recording layer does with a provider request."""

    REPLAY = "replay"  # never call the provider; a missing recording is an error
    RECORD = "record"  # always call the provider and (over)write the recording
    LIVE = "live"  # no recording layer at all
    RECORD_IF_MISSING = "record-if-missing"  # replay what exists, record the rest


VALID_MODES = tuple(m.value for m in Mode)


def parse_mode(value: str, *, source: str = MODE_ENV) -> Mode:
    """Parse a mode name; an unknown one is a user error naming where it came from."""
    cleaned = value.strip().lower()
    try:
        return Mode(cleaned)
    except ValueError:
        raise RecordingError(
            f"{source}={value!r} is not a valid inference mode; "
            f"use one of: {', '.join(VALID_MODES)}"
        ) from None


MAX_PACE = 100.0


def parse_pace(value: str, *, source: str = PACE_ENV) -> float:
    try:
        pace = float(value)
    except ValueError:
        pace = -1.0
    if not math.isfinite(pace) or not 0 <= pace <= MAX_PACE:
        raise RecordingError(
            f"{source}={value!r} is not a valid replay pace; use a number from 0 to "
            f"{MAX_PACE:g} (0 = replay streams instantly, 1.0 = at the recorded pace)"
        )
    return pace


def first_set(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str]:
    """The value and name of the first of `names` set (non-blank) in `env`, else ("", names[0])."""
    for name in names:
        if env.get(name, "").strip():
            return env[name].strip(), name
    return "", names[0]


@dataclass(frozen=True)
class RecordingSettings:
    """Everything a recording layer needs to know, as one immutable value."""

    mode: Mode
    directory: Path
    pace: float = 0.0
    usage_log: Path | None = None  # the events of requests outside any test session
    sessions_dir: Path | None = None  # each session's event log (usage.session_log)
    hosts: HostPolicy = field(default_factory=HostPolicy)
    normalizers: tuple[Normalizer, ...] = ()  # the project's own, beside the built-in ones
    setup: str = ""  # the setup the recordings are made with (provenance)
    secret_names: tuple[str, ...] = ()  # variables whose values never reach disk

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> RecordingSettings | None:
        """Settings from the environment; None when no mode is set (a stack run by hand is live)."""
        raw_mode, mode_source = first_set(env, (SERVER_MODE_ENV, *MODE_NAMES))
        if not raw_mode:
            return None
        mode = parse_mode(raw_mode, source=mode_source)
        directory = Path(first_set(env, (SERVER_DIR_ENV, *DIR_NAMES))[0] or DEFAULT_DIRECTORY)
        raw_pace, pace_source = first_set(env, (SERVER_PACE_ENV, PACE_ENV))
        pace = parse_pace(raw_pace, source=pace_source) if raw_pace else 0.0

        def path(name: str) -> Path | None:
            raw = env.get(name, "").strip()
            return Path(raw).absolute() if raw else None

        return cls(
            mode=mode,
            directory=directory.absolute(),
            pace=pace,
            usage_log=path(USAGE_LOG_ENV),
            sessions_dir=path(SESSIONS_ENV),
            hosts=HostPolicy.from_env(env),
            normalizers=_normalizers_from(env.get(NORMALIZERS_ENV, "")),
            setup=env.get(SETUP_ENV, "").strip(),
            secret_names=tuple(n for n in env.get(SECRET_NAMES_ENV, "").split(",") if n),
        )

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a subprocess."""
        env = {
            SERVER_MODE_ENV: self.mode.value,
            SERVER_DIR_ENV: str(self.directory),
            SERVER_PACE_ENV: repr(float(self.pace)),
            **self.hosts.to_env(),
        }
        if self.usage_log is not None:
            env[USAGE_LOG_ENV] = str(self.usage_log)
        if self.sessions_dir is not None:
            env[SESSIONS_ENV] = str(self.sessions_dir)
        if self.normalizers:
            env[NORMALIZERS_ENV] = json.dumps([n.to_json() for n in self.normalizers])
        if self.setup:
            env[SETUP_ENV] = self.setup
        if self.secret_names:
            env[SECRET_NAMES_ENV] = ",".join(self.secret_names)
        return env


def _normalizers_from(raw: str) -> tuple[Normalizer, ...]:
    if not raw.strip():
        return ()
    try:
        return tuple(
            Normalizer.compile(str(name), str(pattern)) for name, pattern in json.loads(raw)
        )
    except (ValueError, TypeError) as exc:
        raise RecordingError(f"{NORMALIZERS_ENV}: not a list of [name, pattern]: {exc}") from None
