"""Every environment variable the harness reads, named once.

A variable the harness reads changes what a test session does, so a test that runs an inner
session must clear each of them, and a list kept by hand in a test goes stale the day a
variable is added. The tests' isolation lists import :data:`HARNESS_VARIABLES` instead, and a
unit test checks that the harness's source reads no variable missing from it.

The recording layer owns the names of its settings (``harness.recording.modes``); this module
only re-exports them.
"""

from __future__ import annotations

from harness.recording.modes import (
    DIR_ENV,
    MODE_ENV,
    OGX_DIR_ENV,
    OGX_MODE_ENV,
    PACE_ENV,
    SERVER_ENV,
)
from harness.stack.ports import PORT_ENV

STACK_CONFIG_ENV = "LLAMA_STACK_CONFIG"  # --stack-config
STACK_COMMAND_ENV = "LLAMA_STACK_TEST_STACK_COMMAND"  # --stack-command
API_KEY_ENV = "LLAMA_STACK_API_KEY"  # the key the client fixtures send to the stack

# What a user sets: the pytest process reads these.
USER_VARIABLES = (
    STACK_CONFIG_ENV,
    PORT_ENV,
    STACK_COMMAND_ENV,
    MODE_ENV,
    OGX_MODE_ENV,
    DIR_ENV,
    OGX_DIR_ENV,
    PACE_ENV,
    API_KEY_ENV,
)
# What the harness hands the stack processes it starts (and what `harness stack run` reads).
SERVER_VARIABLES = SERVER_ENV
HARNESS_VARIABLES = USER_VARIABLES + SERVER_VARIABLES


def without_harness_variables(environ: dict[str, str]) -> dict[str, str]:
    """`environ` less every variable the harness reads: a clean shell for an inner session."""
    return {name: value for name, value in environ.items() if name not in HARNESS_VARIABLES}
