"""The real stacks the tests in this directory run: Llama Stack, named by
HARNESS_LLAMA_STACK_BIN (its `llama`), and OGX, named by HARNESS_OGX_BIN (its `ogx`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The scenario modules are run by test_llama_stack_scenarios.py in a session of their own, and
# own_suite is the glue test_llama_stack_own_suite.py puts into Llama Stack's own suite.
collect_ignore = ["scenarios", "own_suite"]

# flavour -> the variable naming its executable, and what .ci/run installs there
BINARIES = {
    "llama-stack": ("HARNESS_LLAMA_STACK_BIN", "Llama Stack", "`llama`", "llama-stack 0.7.3"),
    "ogx": ("HARNESS_OGX_BIN", "OGX", "`ogx`", "ogx 1.5.0"),
}


def stack_binary(flavour: str) -> str:
    """The executable of a virtualenv where the stack of `flavour` is installed; skips the
    test when its variable is unset."""
    variable, stack, executable, release = BINARIES[flavour]
    binary = os.environ.get(variable, "").strip()
    if not binary:
        pytest.skip(
            f"no real {stack}: set {variable} to its {executable} executable "
            f"(.ci/run installs {release} in a Python 3.12 virtualenv and sets it)"
        )
    assert Path(binary).is_file(), f"{variable}={binary} does not exist"
    return binary


@pytest.fixture(scope="module")
def llama() -> str:
    """The `llama` executable of a virtualenv where Llama Stack is installed."""
    return stack_binary("llama-stack")


@pytest.fixture(scope="module")
def ogx() -> str:
    """The `ogx` executable of a virtualenv where OGX is installed."""
    return stack_binary("ogx")
