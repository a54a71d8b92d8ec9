"""What every foreign-stack fake shares: its command line and its health route.

The fakes run as programs (``python tests/fakes/<fake>.py <config> --port N``), the way a stack
command runs, so they import this module as a sibling file; none of them imports the harness.
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
    """Parse `<config> --port N` (the config is accepted and ignored) and serve `app` there."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config", help="accepted and ignored")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info")
