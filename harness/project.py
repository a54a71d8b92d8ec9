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
built-in's name replaces it. The tables are checked by pydantic models that forbid unknown
keys: a typo (`text_modle`) would otherwise leave a setup without its model, and a suite root
that is missing or outside the project would deselect every test without a word. Each problem
is a usage error naming the file, the table and the key.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from harness.setups import SETUPS, Setup

SECTION = ("tool", "stack-harness")
PROBLEM = "project_config"


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


NonEmpty = Annotated[StrictStr, Field(min_length=1)]


def _problem(message: str) -> PydanticCustomError:
    return PydanticCustomError(PROBLEM, "{problem}", {"problem": message})


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SuiteTable(_Table):
    roots: list[NonEmpty]
    default_setup: StrictStr | None = None

    @field_validator("roots")
    @classmethod
    def _roots_are_in_the_project(cls, roots: list[str], info: ValidationInfo) -> list[str]:
        """A root that is not there would deselect every test of the suite, silently."""
        rootdir = Path((info.context or {})["rootdir"]).resolve()
        for root in roots:
            path = (rootdir / root).resolve()
            if not path.is_relative_to(rootdir):
                raise _problem(f"{root!r} lies outside the project root {rootdir}")
            if not path.exists():
                raise _problem(f"{root!r} does not exist under the project root {rootdir}")
        return roots


class SetupTable(_Table):
    description: StrictStr | None = None
    env: dict[str, StrictStr] = {}
    text_model: StrictStr | None = None
    embedding_model: StrictStr | None = None
    vision_model: StrictStr | None = None
    embedding_dimension: Annotated[StrictInt, Field(gt=0)] | None = None
    keys: list[NonEmpty] = []
    stack_command: StrictStr | None = None


class HarnessTable(_Table):
    suites: dict[str, SuiteTable] = {}
    setups: dict[str, SetupTable] = {}


def load(rootdir: Path) -> Project:
    """The suites and setups of the project at `rootdir` (the built-in setups included)."""
    path = rootdir / "pyproject.toml"
    table: Any = {}
    if path.is_file():
        try:
            table = _section(tomllib.loads(path.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as exc:
            raise ProjectConfigError(f"{path}: invalid TOML: {exc}") from None
    if not isinstance(table, dict):
        raise ProjectConfigError(f"{path}: [tool.stack-harness] must be a table")
    try:
        declared = HarnessTable.model_validate(table, context={"rootdir": rootdir})
    except ValidationError as exc:
        raise ProjectConfigError(_describe(exc, path)) from None
    where = f"{path} [tool.stack-harness"
    suites = {
        name: Suite(name, tuple(entry.roots), entry.default_setup)
        for name, entry in declared.suites.items()
    }
    setups = dict(SETUPS)
    setups.update(
        {
            name: _setup(name, entry, f"{where}.setups.{name}]")
            for name, entry in declared.setups.items()
        }
    )
    for suite in suites.values():
        if suite.default_setup is not None and suite.default_setup not in setups:
            raise ProjectConfigError(
                f"{where}.suites.{suite.name}].default_setup: unknown setup "
                f"{suite.default_setup!r}; known: {', '.join(setups)}"
            )
    return Project(suites=suites, setups=setups)


def _section(data: dict[str, Any]) -> Any:
    section: Any = data
    for key in SECTION:
        section = section.get(key, {}) if isinstance(section, dict) else {}
    return section


def _setup(name: str, entry: SetupTable, where: str) -> Setup:
    return Setup(
        name=name,
        description=entry.description or f"declared in {where}",
        env=MappingProxyType(dict(entry.env)),
        text_model=entry.text_model,
        embedding_model=entry.embedding_model,
        vision_model=entry.vision_model,
        embedding_dimension=entry.embedding_dimension,
        keys=tuple(entry.keys),
        stack_command=entry.stack_command,
    )


# What a pydantic error expected, in the words of a TOML file.
EXPECTED = {
    "list_type": "a list of non-empty strings",
    "string_type": "a string",
    "string_too_short": "a non-empty string",
    "int_type": "a whole number",
    "greater_than": "a whole number above 0",
    "dict_type": "a table",
    "model_type": "a table",
}
TABLES = {"suites": SuiteTable, "setups": SetupTable}


def _describe(exc: ValidationError, path: Path) -> str:
    return "\n".join(_line(error, path) for error in exc.errors(include_url=False))


def _line(error: Any, path: Path) -> str:
    """`<file> [tool.stack-harness.<section>.<name>].<key>: <problem>`, one per error."""
    loc = [str(part) for part in error["loc"]]
    if error["type"] == "extra_forbidden":
        model = TABLES[loc[0]] if len(loc) == 3 else HarnessTable
        table = ".".join(["tool.stack-harness", *loc[:-1]])
        return f"{path} [{table}]: unknown key {loc[-1]!r}; {_closest(loc[-1], model)}"
    depth = 2 if loc[0] in TABLES and len(loc) > 1 else 1
    table = ".".join(["tool.stack-harness", *loc[:depth]])
    keys = loc[depth:]
    key = "".join(f"[{k}]" if k.isdigit() else f".{k}" for k in keys)
    if error["type"] == PROBLEM:
        problem = error["ctx"]["problem"]
    elif error["type"] == "dict_type" and depth == 1:
        problem = "expected a table of tables"
    else:
        expected = EXPECTED.get(error["type"], error["msg"].lower())
        problem = f"expected {expected}, got {error.get('input')!r}"
    return f"{path} [{table}]{key}: {problem}"


def _closest(key: str, model: type[BaseModel]) -> str:
    valid = list(model.model_fields)
    match = difflib.get_close_matches(key, valid, n=1)
    return f"did you mean {match[0]!r}?" if match else f"valid keys: {', '.join(valid)}"
