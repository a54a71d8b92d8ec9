"""The plugin's flags and ini keys, and where each value of a session comes from.

Declared once, here: `pytest --help` lists them under "stack-harness", every flag is also an
ini key, and :class:`Sources` looks each value up as flag > environment variable > ini, saying
where it came from so that an error can name what the user typed. A setting may have more than
one variable (Llama Stack's name and OGX's); the first one set wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness import setups
from harness.environment import (
    DIR_NAMES,
    MODE_NAMES,
    STACK_COMMAND_ENV,
    STACK_CONFIG_NAMES,
)
from harness.stack_command import DEFAULT_STACK_COMMAND

_FLAGS = {"stack_setup": "--setup"}


def _either(names: tuple[str, ...]) -> str:
    """`$A or $B`, for a help text."""
    return " or ".join(f"${name}" for name in names)


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
        f"the stack to test (also {_either(STACK_CONFIG_NAMES)}); one of: server:<config>[:<port>] "
        "(port 0: a free one), a URL, a distribution name or run.yaml (library mode), "
        "api=provider,...",
    ),
    _Option(
        "--inference-mode",
        "inference_mode",
        f"replay (default), record, live or record-if-missing (also {_either(MODE_NAMES)})",
    ),
    _Option(
        "--recordings-dir",
        "recordings_dir",
        f"recordings directory (also {_either(DIR_NAMES)}; default <rootdir>/recordings)",
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
        "seconds to wait for a started stack to be healthy, more than 0 (default 60)",
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


class Sources:
    """A session's values: flag > environment variable > ini > unset, with their source."""

    def __init__(self, config: pytest.Config, environ: Mapping[str, str] = os.environ) -> None:
        self.config = config
        self.environ = environ

    @staticmethod
    def flag_name(name: str) -> str:
        return _FLAGS.get(name, "--" + name.replace("_", "-"))

    def get(self, name: str, env: str | tuple[str, ...] = ()) -> tuple[Any, str]:
        """The value of option `name` and where it came from ("" when unset).

        `env` is the variable, or the variables in order of precedence, that may carry it; a
        blank one counts as unset, and the source returned is the variable that was used.
        A flag given with an empty value is a mistake, not a request for the next source.
        """
        flag = self.config.getoption(name)
        flag_name = self.flag_name(name)
        if isinstance(flag, str) and not flag.strip():
            raise EmptyValue(flag_name)
        if flag is not None:
            return flag, flag_name
        for variable in (env,) if isinstance(env, str) else env:
            if self.environ.get(variable, "").strip():
                return self.environ[variable].strip(), variable
        ini = self.config.getini(name)
        if ini not in (None, "", []):
            return ini, f"{name} (ini)"
        return None, ""

    def lines(self, name: str) -> list[str]:
        """A repeatable option: the ini lines, then the flags."""
        return [*self.config.getini(name), *self.config.getoption(name)]


class EmptyValue(ValueError):
    """A flag given with an empty value (`--text-model=`)."""

    def __init__(self, flag: str) -> None:
        super().__init__(f"{flag}= is empty: give it a value or leave it out")
        self.flag = flag
