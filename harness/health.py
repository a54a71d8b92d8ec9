"""What answers on a port, and what state a server process is in: the checks that let a
session tell a healthy stack from something else, and a dead or stopped server from a slow one.

Stdlib only (one `GET /v1/health` over `http.client`), because reusing a running stack must
cost milliseconds.
"""

from __future__ import annotations

import enum
import http.client
import json
from dataclasses import dataclass
from pathlib import Path

from harness.processes import ProcessId, stopped_in_tree

HEALTH_PATH = "/v1/health"
HEALTHY_BODY = {"status": "OK"}
LOG_TAIL_LINES = 40


class ProbeState(enum.StrEnum):
    FREE = "free"  # nothing listens
    HEALTHY = "healthy"  # a stack answers its health check
    OTHER = "other"  # something else answers, or nothing answers in time


@dataclass(frozen=True)
class Probe:
    """What answered on a port: nothing, a healthy stack, or something else (described)."""

    state: ProbeState
    description: str = ""


def probe(host: str, port: int, timeout: float = 2.0) -> Probe:
    """Ask `GET /v1/health` once; stdlib only, because reuse must cost milliseconds."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", HEALTH_PATH, headers={"Accept": "application/json"})
        response = conn.getresponse()
        body = response.read(4096)
    except ConnectionRefusedError:
        return Probe(ProbeState.FREE)
    except TimeoutError:
        return Probe(
            ProbeState.OTHER,
            f"a service that accepted the connection but did not answer GET {HEALTH_PATH} "
            f"within {timeout:g} s",
        )
    except (http.client.HTTPException, OSError) as exc:
        return Probe(
            ProbeState.OTHER, f"a service that does not speak HTTP ({exc.__class__.__name__})"
        )
    finally:
        conn.close()
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if response.status == 200 and parsed == HEALTHY_BODY:
        return Probe(ProbeState.HEALTHY)
    server = response.getheader("Server")
    text = body[:200].decode("utf-8", "replace")
    return Probe(
        ProbeState.OTHER,
        f"HTTP {response.status} {response.reason}"
        + (f" from a '{server}' server" if server else "")
        + f" to GET {HEALTH_PATH}: {text!r}",
    )


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        content = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(content.splitlines()[-lines:]) or "(the log is empty)"


def stopped_report(server: ProcessId, port: int) -> tuple[str, str] | None:
    """If the server's process (or a process it runs) is stopped: what, and what to do."""
    stopped = stopped_in_tree(server.pid)
    if not stopped:
        return None
    which = ", ".join(str(pid) for pid in stopped)
    what = (
        f"the stack server (pid {server.pid}) on port {port} is stopped: process(es) {which} "
        "in state T (SIGSTOP, or Ctrl-Z in its terminal)"
    )
    advice = (
        "A stopped server accepts connections but never answers. Resume it with "
        f"`kill -CONT -{server.pid}`, or end it with `kill -KILL -{server.pid}`."
    )
    return what, advice


def stopped_message(server: ProcessId, port: int) -> str | None:
    """One message for a stopped server (see :func:`stopped_report`), else None."""
    report = stopped_report(server, port)
    return f"{report[0]}. {report[1]}" if report else None
