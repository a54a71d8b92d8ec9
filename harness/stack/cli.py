"""`harness stack run <distro | run.yaml> [--port N] [--host H]`: serve the stack with uvicorn.

Heavy imports (Starlette, uvicorn, httpx) happen only when the command runs, so `harness --help` and
the other sub-commands stay fast.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping
from typing import Any

from harness.stack.ports import DEFAULT_PORT, PORT_ENV

logger = logging.getLogger("harness.stack.run")

DEFAULT_HOST = "127.0.0.1"
SHUTDOWN_TIMEOUT_S = 3


def register(subparsers: Any) -> None:
    stack = subparsers.add_parser("stack", help="Run the reference stack.")
    commands = stack.add_subparsers(dest="stack_command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="Serve a run configuration (a distribution name or a run.yaml path).",
        description="Serve the reference stack. Configuration comes from the run.yaml and the "
        "environment (e.g. OLLAMA_URL=http://localhost:11434 harness stack run starter).",
    )
    run.add_argument("config", help="distribution name (e.g. starter) or path to a run.yaml")
    run.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port to listen on (default: ${PORT_ENV}, else server.port from the run "
        f"config, else {DEFAULT_PORT})",
    )
    run.add_argument(
        "--host",
        default=DEFAULT_HOST,
        action=_NoteGiven,
        help=f"address to bind (default: server.host from the run config, else {DEFAULT_HOST})",
    )
    run.set_defaults(func=run_command, host_given=False)


class _NoteGiven(argparse.Action):
    """Store the option and set `<dest>_given`, so the run config fills in only what is absent.

    The parsed value keeps the last fallback as its default; `<dest>_given` tells an explicit
    `--host 127.0.0.1` apart from no --host at all.
    """

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def resolve_port(
    cli_port: int | None,
    env: Mapping[str, str] | None = None,
    config_port: int | None = None,
) -> int:
    """--port, else LLAMA_STACK_PORT, else server.port from the run config, else 8321.

    Llama Stack's CLI means to use server.port too, but its --port always has a value, so
    there the YAML's port is never reached; here it is the default before 8321.
    """
    from harness.stack.errors import StackConfigError

    if cli_port is not None:
        return cli_port
    raw = (env if env is not None else os.environ).get(PORT_ENV, "").strip()
    if not raw:
        return config_port if config_port is not None else DEFAULT_PORT
    try:
        return int(raw)
    except ValueError:
        raise StackConfigError(f"{PORT_ENV} must be a port number, got {raw!r}") from None


def resolve_host(cli_host: str | None, config_host: str | None = None) -> str:
    """--host, else server.host from the run config, else 127.0.0.1.

    Llama Stack falls back to 0.0.0.0; a stack started for tests stays on loopback unless told.
    """
    if cli_host is not None:
        return cli_host
    return config_host if config_host is not None else DEFAULT_HOST


def loggable_config(run_config: Any) -> str:
    """The run config as YAML, without disabled providers and with secrets redacted."""
    import yaml

    from harness.stack.envsubst import DISABLED
    from harness.stack.providers.registry import redact

    data = dict(run_config.data)
    providers = {}
    for api, entries in (data.get("providers") or {}).items():
        providers[api] = [
            e
            for e in entries
            if isinstance(e, dict) and e.get("provider_id") not in (None, DISABLED)
        ]
    data["providers"] = providers
    return yaml.safe_dump(redact(data), sort_keys=True)


def run_command(args: argparse.Namespace) -> int:
    from harness.stack.run_config import load_run_config

    run_config = load_run_config(args.config)
    port = resolve_port(args.port, config_port=run_config.server_port)
    host = resolve_host(args.host if args.host_given else None, run_config.server_host)
    logger.info("Using run configuration: %s", run_config.path)
    logger.info("Run configuration:\n%s", loggable_config(run_config))

    import uvicorn

    from harness.recording.modes import RecordingSettings
    from harness.recording.redaction import secret_values
    from harness.stack.app import create_app

    recording = RecordingSettings.from_env(os.environ)
    secrets = secret_values(os.environ, recording.secret_names) if recording else []
    app = create_app(run_config, recording=recording, secrets=secrets)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_config=None,
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S,
    )
    server = uvicorn.Server(config)
    logger.info("Listening on http://%s:%d", host, port)
    server.run()
    return 0 if server.started else 1
