"""Every environment variable the harness reads (or sets for a stack it starts), named once.

A variable the harness reads changes what a test session does, so a test that runs an inner
session must clear each of them, and a list kept by hand in a test goes stale the day a
variable is added. The tests' isolation lists import :data:`HARNESS_VARIABLES` instead, and a
unit test checks that the harness's source reads no variable missing from it.

The recording layer owns the names of its settings (``harness.recording.modes``); this module
only re-exports them.

Llama Stack was renamed OGX, and its variables with it (``LLAMA_STACK_PORT`` became
``OGX_PORT``, and so on). The pytest side reads both names of each setting, the Llama Stack
name first (it wins when both are set), so an OGX user's shell needs no Llama Stack name and a
Llama Stack user's sees no change. Each setting's names (`STACK_CONFIG_NAMES`, `PORT_NAMES`,
`MODE_NAMES`, `DIR_NAMES`) are in that order.
"""

from __future__ import annotations

from harness.recording.modes import DIR_NAMES, MODE_NAMES, PACE_ENV, SERVER_ENV
from harness.targets import PORT_NAMES

STACK_CONFIG_ENV = "LLAMA_STACK_CONFIG"  # --stack-config
# OGX sets OGX_CONFIG itself, in its own process, to the config file it resolved; only the
# pytest side reads it as a --stack-config value.
OGX_CONFIG_ENV = "OGX_CONFIG"
STACK_CONFIG_NAMES = (STACK_CONFIG_ENV, OGX_CONFIG_ENV)
STACK_COMMAND_ENV = "LLAMA_STACK_TEST_STACK_COMMAND"  # --stack-command
API_KEY_ENV = "LLAMA_STACK_API_KEY"  # the key the client fixtures send to the stack

# What a user sets: the pytest process reads these.
USER_VARIABLES = (
    *STACK_CONFIG_NAMES,
    *PORT_NAMES,
    STACK_COMMAND_ENV,
    *MODE_NAMES,
    *DIR_NAMES,
    PACE_ENV,
    API_KEY_ENV,
)
# What the harness hands the stack processes it starts (and what `harness stack run` reads).
SERVER_VARIABLES = SERVER_ENV
# What the harness sets to "1" in every stack it starts: the clients the tests use are rarely
# of the stack's own major.minor release, and both Llama Stack and OGX answer such a client's
# version header with 426 Upgrade Required unless told not to check. A value in the calling
# shell is overridden, so clearing these for an inner session changes nothing; they are listed
# because this is the one list of the names the harness handles.
VERSION_CHECK_VARIABLES = ("LLAMA_STACK_DISABLE_VERSION_CHECK", "OGX_DISABLE_VERSION_CHECK")
HARNESS_VARIABLES = USER_VARIABLES + SERVER_VARIABLES + VERSION_CHECK_VARIABLES


def without_harness_variables(environ: dict[str, str]) -> dict[str, str]:
    """`environ` less every variable the harness reads: a clean shell for an inner session."""
    return {name: value for name, value in environ.items() if name not in HARNESS_VARIABLES}
