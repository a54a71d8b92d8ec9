"""What a project declares for the harness in its pyproject.toml: suites and setups.

    [tool.stack-harness.suites.vision]
    roots = ["tests/integration/vision"]     # test paths, relative to the rootdir
    default_setup = "ollama"                 # optional: the setup --suite implies

    [tool.stack-harness.setups.local-vllm]
    description = "vLLM on the GPU box"
    env = { VLLM_URL = "http://gpu-box:8000/v1" }
    text_model = "vllm/Qwen/Qwen3-8B"
    embedding_model = ...                    # also vision_model, embedding_dimension,
    keys = ["VLLM_API_TOKEN"]                #   keys, stack_command

A project adds suites and setups without forking the harness; a project setup with a
built-in's name replaces it. A malformed table is a usage error naming the file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness.setups import SETUPS, Setup

SECTION = ("tool", "stack-harness")


class ProjectConfigError(ValueError):
    """A malformed [tool.stack-harness] table: the message names the file and the key."""


@dataclass(frozen=True)
class Suite:
    name: str
    roots: tuple[str, ...]
    default_setup: str | None = None


@dataclass(frozen=True)
class Project:
    suites: dict[str, Suite]
    setups: dict[str, Setup]


def _table(data: dict[str, Any], path: Path) -> dict[str, Any]:
    section: Any = data
    for key in SECTION:
        section = section.get(key, {}) if isinstance(section, dict) else {}
    if not isinstance(section, dict):
        raise ProjectConfigError(f"{path}: [tool.stack-harness] must be a table")
    return section


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ProjectConfigError(f"{where}: expected a list of non-empty strings, got {value!r}")
    return tuple(value)


def _optional(entry: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = entry.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise ProjectConfigError(f"{where}.{key}: expected a {kind.__name__}, got {value!r}")
    return value


def _suite(name: str, entry: Any, where: str) -> Suite:
    if not isinstance(entry, dict):
        raise ProjectConfigError(f"{where}: expected a table with roots = [...]")
    if "roots" not in entry:
        raise ProjectConfigError(f"{where}.roots: missing; list the suite's test paths")
    return Suite(
        name=name,
        roots=_strings(entry["roots"], f"{where}.roots"),
        default_setup=_optional(entry, "default_setup", str, where),
    )


def _setup(name: str, entry: Any, where: str) -> Setup:
    if not isinstance(entry, dict):
        raise ProjectConfigError(f"{where}: expected a table")
    env = entry.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ProjectConfigError(f"{where}.env: expected a table of strings, got {env!r}")
    return Setup(
        name=name,
        description=_optional(entry, "description", str, where) or f"declared in {where}",
        env=MappingProxyType(dict(env)),
        text_model=_optional(entry, "text_model", str, where),
        embedding_model=_optional(entry, "embedding_model", str, where),
        vision_model=_optional(entry, "vision_model", str, where),
        embedding_dimension=_optional(entry, "embedding_dimension", int, where),
        keys=_strings(entry.get("keys", []), f"{where}.keys"),
        stack_command=_optional(entry, "stack_command", str, where),
    )


def load(rootdir: Path) -> Project:
    """The suites and setups of the project at `rootdir` (the built-in setups included)."""
    path = rootdir / "pyproject.toml"
    table: dict[str, Any] = {}
    if path.is_file():
        try:
            table = _table(tomllib.loads(path.read_text(encoding="utf-8")), path)
        except tomllib.TOMLDecodeError as exc:
            raise ProjectConfigError(f"{path}: invalid TOML: {exc}") from None
    where = f"{path} [tool.stack-harness"
    suites_raw = table.get("suites", {})
    setups_raw = table.get("setups", {})
    for key, value in (("suites", suites_raw), ("setups", setups_raw)):
        if not isinstance(value, dict):
            raise ProjectConfigError(f"{where}.{key}]: expected a table of tables")
    suites = {n: _suite(n, e, f"{where}.suites.{n}]") for n, e in suites_raw.items()}
    setups = dict(SETUPS)
    setups.update({n: _setup(n, e, f"{where}.setups.{n}]") for n, e in setups_raw.items()})
    for suite in suites.values():
        if suite.default_setup is not None and suite.default_setup not in setups:
            raise ProjectConfigError(
                f"{where}.suites.{suite.name}].default_setup: unknown setup "
                f"{suite.default_setup!r}; known: {', '.join(setups)}"
            )
    return Project(suites=suites, setups=setups)
