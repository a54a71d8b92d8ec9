"""Inference modes and the settings that select them.

Users choose with Llama Stack's variables (``LLAMA_STACK_TEST_INFERENCE_MODE``, ...). Settings
travel from the pytest process to a stack server process under the harness's own names
(``HARNESS_RECORDING_*``), because Llama Stack turns on its own recorder when it sees its
variables: the plugin never passes those to a stack. A server started by hand reads the
harness names first and falls back to Llama Stack's, so
``LLAMA_STACK_TEST_INFERENCE_MODE=record harness stack run starter`` records as expected.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.recording.errors import RecordingError

MODE_ENV = "LLAMA_STACK_TEST_INFERENCE_MODE"
DIR_ENV = "LLAMA_STACK_TEST_RECORDING_DIR"
PACE_ENV = "LLAMA_STACK_TEST_REPLAY_PACE"
USAGE_LOG_ENV = "HARNESS_RECORDING_USAGE_LOG"
# What the plugin hands a stack process (see the module docstring).
SERVER_MODE_ENV = "HARNESS_RECORDING_MODE"
SERVER_DIR_ENV = "HARNESS_RECORDING_DIR"
SERVER_PACE_ENV = "HARNESS_REPLAY_PACE"
USER_ONLY_ENV = (MODE_ENV, DIR_ENV, PACE_ENV)
DEFAULT_DIRECTORY = "recordings"


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


def parse_pace(value: str, *, source: str = PACE_ENV) -> float:
    try:
        pace = float(value)
    except ValueError:
        pace = -1.0
    if pace < 0:
        raise RecordingError(
            f"{source}={value!r} is not a valid replay pace; use a number >= 0 "
            "(0 = replay streams instantly, 1.0 = at the recorded pace)"
        )
    return pace


@dataclass(frozen=True)
class RecordingSettings:
    """Mode, recordings directory and replay options, as one immutable value."""

    mode: Mode
    directory: Path
    pace: float = 0.0
    usage_log: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> RecordingSettings | None:
        """Settings from the environment; None when no mode is set (a stack run by hand is live)."""

        def read(server_name: str, user_name: str) -> tuple[str, str]:
            for name in (server_name, user_name):
                if env.get(name, "").strip():
                    return env[name].strip(), name
            return "", user_name

        raw_mode, mode_source = read(SERVER_MODE_ENV, MODE_ENV)
        if not raw_mode:
            return None
        mode = parse_mode(raw_mode, source=mode_source)
        directory = Path(read(SERVER_DIR_ENV, DIR_ENV)[0] or DEFAULT_DIRECTORY).absolute()
        raw_pace, pace_source = read(SERVER_PACE_ENV, PACE_ENV)
        pace = parse_pace(raw_pace, source=pace_source) if raw_pace else 0.0
        raw_log = env.get(USAGE_LOG_ENV, "").strip()
        usage_log = Path(raw_log).absolute() if raw_log else None
        return cls(mode=mode, directory=directory, pace=pace, usage_log=usage_log)

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a subprocess."""
        env = {
            SERVER_MODE_ENV: self.mode.value,
            SERVER_DIR_ENV: str(self.directory),
            SERVER_PACE_ENV: repr(float(self.pace)),
        }
        if self.usage_log is not None:
            env[USAGE_LOG_ENV] = str(self.usage_log)
        return env
