"""`${env.VAR}` substitution over a parsed run config, exactly as Llama Stack does it.

It runs on the raw YAML data before validation, so a substituted "8321" becomes the int the
schema expects, and so a provider whose `provider_id` resolves to "__disabled__" disappears
before anything looks at its config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

# Upper-case names only; the operators are `:=` (default) and `:+` (value if set). A default
# runs up to the first `}`.
ENV_PATTERN = re.compile(r"\$\{env\.([A-Z0-9_]+)(?::([=+])([^}]*))?\}")
DISABLED = "__disabled__"


class EnvVarError(Exception):
    """A bare `${env.VAR}` whose variable is unset or empty."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(
            f"Environment variable '{name}' not set or empty at {path}. "
            f"Use ${{env.{name}:=default_value}} to provide a default value, "
            f"${{env.{name}:+value_if_set}} to make the field conditional, "
            "or ensure the environment variable is set."
        )
        self.name = name
        self.path = path


def substitute_env(data: Any, env: Mapping[str, str] | None = None, path: str = "") -> Any:
    """Return `data` with every string substituted; dict and list structure is preserved."""
    env = os.environ if env is None else env
    if isinstance(data, dict):
        return {
            key: substitute_env(value, env, f"{path}.{key}" if path else str(key))
            for key, value in data.items()
        }
    if isinstance(data, list):
        result = []
        for index, item in enumerate(data):
            item_path = f"{path}[{index}]"
            if isinstance(item, dict) and "provider_id" in item:
                try:
                    provider_id = substitute_env(
                        item["provider_id"], env, f"{item_path}.provider_id"
                    )
                except EnvVarError:
                    provider_id = None
                if provider_id == DISABLED:
                    continue
            result.append(substitute_env(item, env, item_path))
        return result
    if isinstance(data, str):
        return substitute_string(data, env, path)
    return data


def substitute_string(value: str, env: Mapping[str, str], path: str) -> Any:
    """Substitute one string; only a string that changed is converted to None/bool/int/float."""

    def replace(match: re.Match[str]) -> str:
        name, operator, operand = match.group(1), match.group(2), match.group(3)
        current = env.get(name)
        if operator == "=":
            result = current if current else operand
        elif operator == "+":
            result = operand if current else ""
        else:
            if not current:
                raise EnvVarError(name, path)
            result = current
        return os.path.expanduser(result)

    substituted = ENV_PATTERN.sub(replace, value)
    if substituted == value:
        return value
    return convert_scalar(substituted)


def convert_scalar(value: str) -> Any:
    """ "" -> None, true/false -> bool, then int, then float, else the string."""
    if value == "":
        return None
    lowered = value.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
