"""Parse `--stack-config` into a target: one frozen dataclass per form.

The value is the one thing every user types, so it gets one parser with one error message
that lists all five forms with an example each. The parser only checks the *shape* of the
value; whether a distribution, file, API or provider exists is decided by
`harness.stack.run_config` when the target is used, with its own error naming what was tried.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from harness.stack.errors import StackConfigError
from harness.stack.ports import DEFAULT_PORT, PORT_ENV

OGX_PORT_ENV = "OGX_PORT"
# The variables that name a server target's port, Llama Stack's first (it wins when both are set).
PORT_NAMES = (PORT_ENV, OGX_PORT_ENV)

FORMS = (
    ("server:<config>", "start or reuse a stack server on LLAMA_STACK_PORT or OGX_PORT (default "
     "8321)", "server:starter"),
    ("server:<config>:<port>", "the same on the given port (0: a free port)",
     "server:starter:8322"),
    ("<url>", "a running stack server, used as is (never started or stopped)",
     "http://localhost:8321"),
    ("<distribution or run.yaml>", "library mode: the stack runs inside the pytest process",
     "starter  or  ./run.yaml"),
    ("<api>=<provider>,...", "library mode with just those APIs and providers (a server when "
     "--stack-command has {providers})", "inference=ollama,prompts=kv_sqlite"),
)  # fmt: skip

_ALMOST_URL = re.compile(r"^https?(?::/?|//)", re.IGNORECASE)  # http//x, http:/x, https:x
_PROVIDER_PAIR = re.compile(r"^[a-z][a-z0-9_]*=[A-Za-z0-9_.:\-]+$")


class PortRule(enum.StrEnum):
    """How a server target treats its port."""

    EXACT = "exact"  # server:<config>:<port>: that port, or the session fails saying why
    PREFERRED = "preferred"  # server:<config>: the default port; when taken, a free one
    ANY = "any"  # server:<config>:0: a free port (or a same-settings server's)


class TargetSource(enum.StrEnum):
    """Where --stack-config came from: the user's choice, or the project's default."""

    FLAG = "flag"
    ENV = "env"
    INI = "ini"

    @classmethod
    def of(cls, source: str) -> TargetSource:
        if source.startswith("--"):
            return cls.FLAG
        return cls.INI if source.endswith("(ini)") else cls.ENV


@dataclass(frozen=True)
class ServerTarget:
    """Forms 1 and 2: a stack server process the harness starts (or reuses) on `port`.

    Form 5 too, when the stack command takes `{providers}`: `config` is then the
    `api=provider,...` list, which the command is given as it is (`providers` is True).
    """

    config: str
    port: int
    # Not part of the target's identity: how strictly `port` is meant.
    port_rule: PortRule = field(default=PortRule.EXACT, compare=False)
    providers: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def label(self) -> str:
        """The target without its port: `server:<config>`, or `server for <providers>`."""
        return f"server for {self.config}" if self.providers else f"server:{self.config}"

    def describe(self) -> str:
        if self.port_rule is PortRule.ANY:
            return f"{self.label} on a free port"
        return f"{self.label} on port {self.port}"

    @classmethod
    def for_providers(
        cls, target: ProvidersTarget, env: Mapping[str, str], source: str = "--stack-config"
    ) -> ServerTarget:
        """Form 5 served by a `{providers}` stack command: on the port `server:<config>` takes
        (LLAMA_STACK_PORT, else OGX_PORT, else 8321, moving to a free one when that is taken)."""
        port = default_port(target.spec, env, source)
        return cls(target.spec, port, port_rule=PortRule.PREFERRED, providers=True)


@dataclass(frozen=True)
class UrlTarget:
    """Form 3: a stack someone else runs; recording happens at the client layer."""

    url: str

    @property
    def base_url(self) -> str:
        return self.url

    def describe(self) -> str:
        return self.url


@dataclass(frozen=True)
class LibraryTarget:
    """Form 4: a distribution name or run.yaml path served in-process."""

    config: str

    def describe(self) -> str:
        return f"library {self.config}"


@dataclass(frozen=True)
class ProvidersTarget:
    """Form 5: a run config built from `api=provider` pairs, served in-process."""

    spec: str

    def describe(self) -> str:
        return f"library {self.spec}"


StackTarget = ServerTarget | UrlTarget | LibraryTarget | ProvidersTarget


def forms_help() -> str:
    width = max(len(form) for form, _, _ in FORMS)
    return "\n".join(f"  {form:<{width}}  {what}; e.g. {example}" for form, what, example in FORMS)


def _malformed(value: str, reason: str, source: str = "--stack-config") -> StackConfigError:
    return StackConfigError(
        f"{source}={value!r} is not valid: {reason}.\nUse one of the five forms:\n{forms_help()}"
    )


def _parse_port(value: str, text: str, what: str, source: str, *, free: bool = False) -> int:
    low = 0 if free else 1
    if not text.isdigit() or not low <= int(text) < 65536:
        raise _malformed(value, f"{what} {text!r} is not a port number ({low}-65535)", source)
    return int(text)


def default_port(value: str, env: Mapping[str, str], source: str = "--stack-config") -> int:
    """The port of a server target whose value names none: LLAMA_STACK_PORT, else OGX_PORT,
    else 8321; a bad one is named by its variable."""
    for name in PORT_NAMES:
        text = env.get(name, "").strip()
        if text:
            return _parse_port(value, text, name, source)
    return DEFAULT_PORT


def _parse_server(value: str, rest: str, env: Mapping[str, str], source: str) -> ServerTarget:
    config, port_text = rest, None
    head, sep, tail = rest.rpartition(":")
    if sep and tail.isdigit():
        config, port_text = head, tail
    elif sep and head and "::" not in rest and not Path(rest).expanduser().exists():
        raise _malformed(value, f"the port {tail!r} after the config is not a number", source)
    if not config:
        raise _malformed(value, "the config after 'server:' is empty", source)
    if port_text is not None:
        port = _parse_port(value, port_text, "port", source, free=True)
        rule = PortRule.ANY if port == 0 else PortRule.EXACT
        return ServerTarget(config=config, port=port, port_rule=rule)
    port = default_port(value, env, source)
    return ServerTarget(config=config, port=port, port_rule=PortRule.PREFERRED)


def _parse_url(value: str, source: str) -> UrlTarget:
    parts = urlsplit(value)
    if not parts.hostname:
        raise _malformed(value, "the URL has no host", source)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is out of range
    except ValueError:
        raise _malformed(value, "the URL's port is not a number in 1-65535", source) from None
    if parts.query or parts.fragment:
        raise _malformed(value, "the URL must not carry a query or fragment", source)
    return UrlTarget(url=value.rstrip("/"))


def _parse_providers(value: str, source: str) -> ProvidersTarget:
    pairs = [pair.strip() for pair in value.split(",")]
    for pair in pairs:
        if not _PROVIDER_PAIR.match(pair):
            raise _malformed(value, f"{pair!r} is not an <api>=<provider> pair", source)
    apis = [pair.split("=", 1)[0] for pair in pairs]
    duplicated = sorted({api for api in apis if apis.count(api) > 1})
    if duplicated:
        raise _malformed(value, f"API {duplicated[0]!r} is given more than once", source)
    return ProvidersTarget(spec=",".join(pairs))


def parse_stack_config(
    value: str, env: Mapping[str, str] | None = None, source: str = "--stack-config"
) -> StackTarget:
    """Parse one `--stack-config` value; a malformed one raises `StackConfigError` naming
    `source`, where the value came from (the flag, `LLAMA_STACK_CONFIG`, `OGX_CONFIG` or the
    ini key): that is what the user has to fix."""
    env = os.environ if env is None else env
    text = value.strip()
    if not text:
        raise _malformed(value, "it is empty", source)
    if text.startswith("server:"):
        return _parse_server(value, text[len("server:") :], env, source)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("http", "https"):
        return _parse_url(text, source)
    if scheme:
        raise _malformed(
            value, f"URL scheme {scheme!r} is not supported (use http or https)", source
        )
    if _ALMOST_URL.match(text):
        raise _malformed(
            value, "it looks like a URL but is not one; write http://host:port", source
        )
    if "=" in text:
        return _parse_providers(text, source)
    if ":" in text and not Path(text).exists():
        raise _malformed(
            value,
            "it has a ':' but is neither 'server:...', a URL, nor an existing file "
            "(for a server on a port, write server:<config>:<port> or http://host:port)",
            source,
        )
    return LibraryTarget(config=text)
