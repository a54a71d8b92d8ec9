"""Every environment variable the harness reads is listed once, for the tests' isolation."""

from __future__ import annotations

import re
from pathlib import Path

import harness
from harness.environment import HARNESS_VARIABLES, without_harness_variables

SOURCE = Path(harness.__file__).parent
# A whole name; a prefix (ending in "_", e.g. the recorders' LLAMA_STACK_TEST_) is not one.
NAME = re.compile(r"""["']((?:LLAMA_STACK|OGX|HARNESS)_[A-Z0-9_]*[A-Z0-9])["']""")


def test_every_variable_named_in_the_harness_source_is_in_the_exported_list():
    named = {
        match
        for path in SOURCE.rglob("*.py")
        for match in NAME.findall(path.read_text(encoding="utf-8"))
    }

    assert named, "the scan found no variable names at all"
    assert named <= set(HARNESS_VARIABLES), sorted(named - set(HARNESS_VARIABLES))


def test_a_clean_shell_keeps_everything_but_the_harness_variables():
    shell = {name: "junk" for name in HARNESS_VARIABLES} | {"PATH": "/bin", "OLLAMA_URL": "x"}

    assert without_harness_variables(shell) == {"PATH": "/bin", "OLLAMA_URL": "x"}
