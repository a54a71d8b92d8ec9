"""The real Llama Stack the tests in this directory run, named by HARNESS_LLAMA_STACK_BIN."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The scenario modules are run by test_llama_stack_scenarios.py in a session of their own.
collect_ignore = ["scenarios"]


@pytest.fixture(scope="module")
def llama() -> str:
    """The `llama` executable of a virtualenv where Llama Stack is installed."""
    binary = os.environ.get("HARNESS_LLAMA_STACK_BIN", "").strip()
    if not binary:
        pytest.skip(
            "no real Llama Stack: set HARNESS_LLAMA_STACK_BIN to its `llama` executable "
            "(.ci/run installs llama-stack 0.7.3 and sets it)"
        )
    assert Path(binary).is_file(), f"HARNESS_LLAMA_STACK_BIN={binary} does not exist"
    return binary
