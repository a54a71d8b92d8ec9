"""An MCP server the test process serves itself, as Llama Stack's own suite serves one.

FastMCP over SSE (``GET /sse`` opens the event stream, ``POST /messages/?session_id=…`` carries
the client's JSON-RPC messages), run by uvicorn in a daemon thread on a loopback port of its
own. The stack under test is the MCP client: it reaches this server over HTTP, so the traffic
is the test's business, not the provider's.

    with mcp_server() as url:   # "http://127.0.0.1:<port>/sse"
        ...
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

BOILING_POINTS = {"myawesomeliquid": -100, "water": 100}


def get_boiling_point(liquid_name: str, celsius: bool = True) -> int:
    """Returns the boiling point of a liquid in Celsius or Fahrenheit.

    :param liquid_name: The name of the liquid
    :param celsius: Whether to return the boiling point in Celsius
    """
    celsius_value = BOILING_POINTS.get(liquid_name.strip().lower(), -1)
    return celsius_value if celsius else round(celsius_value * 9 / 5 + 32)


def greet_everyone(url: str) -> str:
    """Greets everyone at a URL."""
    return "Hello, world!"


@contextmanager
def mcp_server(startup_timeout: float = 10.0) -> Iterator[str]:
    """Serve the tools above over SSE on a free loopback port; yield the SSE endpoint's URL."""
    import uvicorn
    from mcp.server.fastmcp import FastMCP

    tools = FastMCP("harness scenario tools", log_level="WARNING")
    tools.tool()(get_boiling_point)  # first: the fake provider calls the first tool offered
    tools.tool()(greet_everyone)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        tools.sse_app(), log_level="warning", timeout_graceful_shutdown=1, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the MCP server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/sse"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
