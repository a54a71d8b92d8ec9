"""Inference modes and the settings that select them.

Settings travel from the pytest process to a stack server process through environment
variables only (names fixed in one place here), so a server started by hand with the same
variables behaves exactly like one started by the plugin.
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
        raw_mode = env.get(MODE_ENV, "").strip()
        if not raw_mode:
            return None
        mode = parse_mode(raw_mode)
        directory = Path(env.get(DIR_ENV, "").strip() or DEFAULT_DIRECTORY).absolute()
        raw_pace = env.get(PACE_ENV, "").strip()
        pace = parse_pace(raw_pace) if raw_pace else 0.0
        raw_log = env.get(USAGE_LOG_ENV, "").strip()
        usage_log = Path(raw_log).absolute() if raw_log else None
        return cls(mode=mode, directory=directory, pace=pace, usage_log=usage_log)

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a subprocess."""
        env = {
            MODE_ENV: self.mode.value,
            DIR_ENV: str(self.directory),
            PACE_ENV: repr(float(self.pace)),
        }
        if self.usage_log is not None:
            env[USAGE_LOG_ENV] = str(self.usage_log)
        return env
