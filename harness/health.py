"""What answers on a port, and what state a server process is in: the checks that let a
session tell a healthy stack from something else, and a dead or stopped server from a slow one,
and what a dead one's log says killed it.

Stdlib only (one `GET /v1/health` over `http.client`), because reusing a running stack must
cost milliseconds.
"""

from __future__ import annotations

import enum
import http.client
import json
import re
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


TAIL_BYTES = 256 * 1024  # a long run's log is read from here to its end, not from its start


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as log:
            size = log.seek(0, 2)
            log.seek(max(0, size - TAIL_BYTES))
            content = log.read().decode("utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    kept = content.splitlines()
    if size > TAIL_BYTES:
        kept = kept[1:]  # the first line read is likely cut
    return "\n".join(kept[-lines:]) or "(the log is empty)"


# A traceback's header: Python's own ("Traceback (most recent call last):"), also inside a log
# record, or the title of a rich traceback box ("╭─── Traceback (most recent call last) ───╮").
_TRACEBACK = "Traceback (most recent call last)"
# An exception line: a class name, dotted or not, then its message (`ModuleNotFoundError: No
# module named 'aiohttp'`, `pydantic_core._pydantic_core.ValidationError: 1 validation error`),
# or a bare one that reads as an exception (`KeyboardInterrupt`), not a wrapped word.
_EXCEPTION = re.compile(
    r"(?:[A-Za-z_]\w*\.)*[A-Z]\w*"
    r"(?::\s.*|(?<=Error)|(?<=Exception)|(?<=Exit)|(?<=Interrupt)|(?<=Iteration))"
)
# What an exception group puts before each line of its tracebacks.
_GROUP_MARGIN = re.compile(r"^[\s|+]*")
# A log record of a level that does not end a process (a line that only says what went well).
_QUIET_RECORD = re.compile(r"^(?:\[?\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d|(?:DEBUG|INFO|WARNING|WARN)\b)")
_CAUSE_CHARS = 300
_CAUSE_BYTES = 256 * 1024


def exit_cause(text: str) -> str | None:
    """The line of a dead process's log that says what killed it, or None.

    That is the exception line of the log's last Python traceback (plain, inside a log record,
    in a rich box, or in an exception group: the innermost one); with no traceback, the last
    line that is not indented and not a DEBUG/INFO/WARNING record, which is where a
    `SystemExit("...")` message lands (OGX's "TLS required: ..."). Its first 300 characters.
    """
    lines = text.splitlines()
    cause = None
    for index, line in enumerate(lines):
        if _TRACEBACK in line:
            cause = _exception_after(lines[index + 1 :]) or cause
    if cause is None:
        cause = next(
            (
                line.strip()
                for line in reversed(lines)
                if line.strip() and not line[0].isspace() and not _QUIET_RECORD.match(line)
            ),
            None,
        )
    return cause[:_CAUSE_CHARS] if cause else None


def _exception_after(lines: list[str]) -> str | None:
    """The exception line of the traceback whose frames start at `lines[0]`."""
    frame_indent: int | None = None
    for line in lines:
        if _TRACEBACK in line:
            return None  # a traceback without an exception line: the next one counts
        body = _GROUP_MARGIN.sub("", line).rstrip()
        if not body:
            continue
        indent = len(line) - len(line.lstrip(" |+"))
        if body.startswith('File "'):
            frame_indent = indent if frame_indent is None else min(frame_indent, indent)
            continue
        if frame_indent is not None and indent > frame_indent:
            continue  # the source line of a frame, or its ^^^ markers
        if _EXCEPTION.fullmatch(body):
            return body
    return None


def log_exit_cause(path: Path) -> str | None:
    """:func:`exit_cause` of the log at `path` (its last 256 KiB); None if it cannot be read."""
    try:
        with path.open("rb") as log:
            log.seek(max(0, log.seek(0, 2) - _CAUSE_BYTES))
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    return exit_cause(text)


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
