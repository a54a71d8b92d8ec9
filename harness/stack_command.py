"""The command that serves a `server:<config>` target: a template checked once, then filled in.

Whether the command is this project's reference stack or a foreign one (a real Llama Stack)
decides how the harness records (the stack's own transport, or the bootstrap), whether
connections are kept alive and whether its run config can be read. It is decided once, here,
when the template is resolved, and carried as :attr:`StackCommand.reference`.

A template has `{port}` and either `{config}` (a run config or distribution) or `{providers}`
(`llama stack run --providers {providers} --port {port}`, `ogx run --providers {providers}
--port {port} --insecure`). A `{providers}` command serves the `api=provider,...` form of
`--stack-config` as a server, the list passed as given; with a `{config}` command that form is
library mode with the reference stack (:attr:`StackCommand.serves_providers`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import string
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STACK_COMMAND = "harness stack run {config} --port {port}"
COMMAND_FIELDS = ("config", "port", "providers")
EXAMPLE = "--stack-command='llama stack run {config} --port {port}'"
FIELDS_HELP = (
    "a command template has {port} and either {config} (the run config or distribution of "
    "--stack-config=server:<config>) or {providers} (the list of --stack-config=api=provider,...)"
)


class StackCommandError(ValueError):
    """A stack command template that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class StackCommand:
    """A checked command template with `{port}`, and `{config}` or `{providers}`."""

    template: str
    reference: bool  # the harness's own stack (`harness stack run`), not a foreign command
    serves_providers: bool = False  # `{providers}`: it serves the api=provider form

    @classmethod
    def parse(cls, template: str, where: str) -> StackCommand:
        """Check a template (from `where`, for the message); StackCommandError if unusable."""
        prefix = f"--stack-command {template!r} ({where})"
        try:
            words = shlex.split(template)
        except ValueError as exc:
            raise StackCommandError(f"{prefix}: {exc}") from None
        try:
            fields = {
                name for word in words for _, name, _, _ in string.Formatter().parse(word) if name
            }
        except ValueError as exc:  # a stray { or }
            raise StackCommandError(
                f"{prefix}: {exc}; only {{config}}, {{providers}} and {{port}} may appear in "
                "braces, and a literal brace is written twice ({{ or }}), e.g. " + EXAMPLE
            ) from None
        unknown = sorted(fields - set(COMMAND_FIELDS))
        if not words or "port" not in fields or unknown:
            problem = f"unknown field(s) {unknown}" if unknown else "it must contain {port}"
            raise StackCommandError(f"{prefix}: {problem}; {FIELDS_HELP}, e.g. {EXAMPLE}")
        if {"config", "providers"} <= fields:
            raise StackCommandError(
                f"{prefix}: it has both {{config}} and {{providers}}, but a target gives only "
                f"one of them; {FIELDS_HELP}"
            )
        return cls(
            template=template,
            reference=template == DEFAULT_STACK_COMMAND,
            serves_providers="providers" in fields,
        )

    def argv(self, config: str, port: int) -> list[str]:
        """The argv for a target's config and a port: split shell-style, then each word filled
        in; `config` fills `{config}`, or `{providers}` (an api=provider list) as given.

        An existing run.yaml is passed as an absolute path. A bare program name is looked up
        next to the running Python first (so `harness` is this installation's, activated or
        not), then on PATH.
        """
        if not self.serves_providers and Path(config).expanduser().is_file():
            config = str(Path(config).expanduser().resolve())
        words = [
            w.format(config=config, providers=config, port=port) for w in shlex.split(self.template)
        ]
        beside = Path(sys.executable).parent / words[0]
        if os.sep not in words[0] and beside.is_file() and os.access(beside, os.X_OK):
            words[0] = str(beside)
        return words

    def program(self) -> str:
        """The program the command runs, as `argv` resolves it (part of a server's identity:
        two checkouts' `harness` are two different stacks)."""
        program = self.argv("config", 0)[0]
        return shutil.which(program) or program
