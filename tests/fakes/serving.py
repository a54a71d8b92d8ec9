"""What every foreign-stack fake shares: its command line and its health route.

The fakes run as programs (``python tests/fakes/<fake>.py <config> --port N``, or with
``--providers <list>`` instead of the config), the way a stack command runs, so they import
this module as a sibling file; none of them imports the harness.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "OK"})


HEALTH = Route("/v1/health", _health)


def serve(app: object, description: str) -> None:
    """Parse `<config> --port N` or `--providers <list> --port N` (the config or list is
    accepted, printed and otherwise ignored) and serve `app` there."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config", nargs="?", help="accepted and ignored")
    parser.add_argument("--providers", help="accepted and ignored, as a stack's --providers")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if (args.config is None) == (args.providers is None):
        parser.error("give a config or --providers, not both")
    print(f"serving config={args.config} providers={args.providers}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info")
