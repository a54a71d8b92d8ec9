"""The `harness` command: one entry point, each area registers its own sub-commands.

Keeping the dispatcher this thin lets the stack and the recording core own their CLIs
without importing each other.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from harness.recording import cli as recordings_cli
from harness.recording.errors import RecordingError
from harness.stack import cli as stack_cli
from harness.stack.run_config import StackConfigError

USER_ERRORS = (StackConfigError, RecordingError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Run the reference stack and manage record-replay recordings.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stack_cli.register(commands)
    recordings_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
