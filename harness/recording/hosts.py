"""What is recorded: provider traffic, not the test's own servers.

A stack sends requests to its model providers, and sometimes to servers that the test itself
runs (Llama Stack's MCP tests serve an MCP server on loopback from the test process; its
long-lived event stream never ends while the test runs, so it could never be recorded, and it
is the test's business anyway). The rule, in this order:

1. a host matching ``--record-hosts`` (ini ``record_hosts``) is recorded;
2. a host matching ``--passthrough-hosts`` (ini ``passthrough_hosts``) passes through;
3. a provider the run config or the setup names (``OLLAMA_URL``, a provider's ``base_url``)
   is recorded, wherever it runs, loopback included;
4. any host that is not loopback is recorded;
5. a loopback port on which the test process itself listens (a pytest session holding the
   stack, or one of its xdist workers; in library mode, the pytest process) passes through, in
   every mode — a server the test starts as a process of its own is a provider, not this;
6. anything else on loopback is recorded (a provider running as its own process), so replay
   stays sealed.

Globs are ``host[:port]`` (``fnmatch``): ``*.internal``, ``127.0.0.1:9000``. Loopback names
(``localhost``, ``127.0.0.1``, ``::1``) are one host. Rule 5 reads ``/proc`` (Linux); elsewhere
loopback servers of the test are recorded unless listed in ``passthrough_hosts``. Every
passed-through request is counted in the session summary.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

RECORD_HOSTS_ENV = "HARNESS_RECORD_HOSTS"
PASSTHROUGH_HOSTS_ENV = "HARNESS_PASSTHROUGH_HOSTS"
PROVIDER_HOSTS_ENV = "HARNESS_PROVIDER_HOSTS"
TEST_PROCESSES_ENV = "HARNESS_TEST_PROCESSES"
LOOPBACK = "loopback"
THIS_PROCESS = "this-process"
_CACHE_SECONDS = 1.0


class Route(enum.StrEnum):
    RECORD = "record"
    PASSTHROUGH = "passthrough"


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in ("localhost", "ip6-localhost", "ip6-loopback"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def host_key(host: str, port: int | None) -> str:
    """`host:port` with every loopback name written the same way."""
    name = LOOPBACK if is_loopback(host) else host.strip("[]").lower()
    return f"{name}:{port}" if port is not None else name


def url_host(url: str) -> tuple[str, int] | None:
    """(host, port) of an http(s) URL, the scheme's default port filled in; None otherwise."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def provider_hosts(values: Iterable[object]) -> tuple[str, ...]:
    """The `host:port` keys of every http(s) URL among `values` (config values, env values)."""
    found: dict[str, None] = {}
    for value in values:
        if isinstance(value, str) and "://" in value:
            parsed = url_host(value)
            if parsed is not None:
                found[host_key(*parsed)] = None
    return tuple(found)


@dataclass(frozen=True)
class HostPolicy:
    """The rule above, with a project's lists and the providers its configuration names."""

    record: tuple[str, ...] = ()
    passthrough: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()  # host_key values
    # Whose servers are the test's: THIS_PROCESS (library mode, the client layer), a server's
    # state file naming the sessions that hold it, or "" for nobody (rule 5 never applies).
    test_processes: str = ""

    ENV: ClassVar[tuple[str, ...]] = (
        RECORD_HOSTS_ENV,
        PASSTHROUGH_HOSTS_ENV,
        PROVIDER_HOSTS_ENV,
        TEST_PROCESSES_ENV,
    )

    def route(self, host: str, port: int) -> tuple[Route, str]:
        """Record or pass through, and which part of the rule decided."""
        decided = _static_route(self, host, port)
        if decided is not None:
            return decided
        if self.test_processes and served_by_tests(port, self.test_processes):
            return Route.PASSTHROUGH, "a server the test process runs"
        return Route.RECORD, "a loopback server that is not the test's"

    def _static_route(self, host: str, port: int) -> tuple[Route, str] | None:
        """Rules 1-4, which depend on the host alone; None for a loopback rule 5 decides."""
        key = host_key(host, port)
        plain = host.strip("[]").lower()
        candidates = {key, key.rsplit(":", 1)[0], f"{plain}:{port}", plain}
        if _matches(self.record, candidates):
            return Route.RECORD, "record_hosts"
        if _matches(self.passthrough, candidates):
            return Route.PASSTHROUGH, "passthrough_hosts"
        if key in self.providers:
            return Route.RECORD, "a provider the configuration names"
        if not is_loopback(host):
            return Route.RECORD, "not a loopback host"
        return None

    def to_env(self) -> dict[str, str]:
        env = {}
        for name, values in (
            (RECORD_HOSTS_ENV, self.record),
            (PASSTHROUGH_HOSTS_ENV, self.passthrough),
            (PROVIDER_HOSTS_ENV, self.providers),
        ):
            if values:
                env[name] = ",".join(values)
        if self.test_processes:
            env[TEST_PROCESSES_ENV] = self.test_processes
        return env

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HostPolicy:
        def listed(name: str) -> tuple[str, ...]:
            return parse_globs(env.get(name, ""))

        return cls(
            record=listed(RECORD_HOSTS_ENV),
            passthrough=listed(PASSTHROUGH_HOSTS_ENV),
            providers=listed(PROVIDER_HOSTS_ENV),
            test_processes=env.get(TEST_PROCESSES_ENV, "").strip(),
        )


@functools.lru_cache(maxsize=1024)
def _static_route(policy: HostPolicy, host: str, port: int) -> tuple[Route, str] | None:
    return policy._static_route(host, port)


def parse_globs(raw: str | Iterable[str]) -> tuple[str, ...]:
    """Comma- or line-separated `host[:port]` globs, lower-cased, blanks dropped."""
    items = raw.replace("\n", ",").split(",") if isinstance(raw, str) else raw
    return tuple(dict.fromkeys(item.strip().lower() for item in items if item.strip()))


def _matches(globs: tuple[str, ...], candidates: set[str]) -> bool:
    return any(fnmatchcase(candidate, glob) for glob in globs for candidate in candidates)


# -- whether the test process listens on a port (Linux) ---------------------------------------

_cache: dict[tuple[int, str], tuple[float, bool]] = {}
_cache_lock = threading.Lock()


def served_by_tests(port: int, test_processes: str) -> bool:
    """True when a process of the test session(s) listens on `port` on loopback."""
    key = (port, test_processes)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < _CACHE_SECONDS:
            return hit[1]
    inodes = listening_inodes(port)
    result = bool(inodes) and any(
        holds_socket(pid, inodes) for pid in _session_pids(test_processes)
    )
    with _cache_lock:
        _cache[key] = (now, result)
    return result


def _session_pids(test_processes: str) -> set[int]:
    """The test sessions' pids: this process, or those holding the server this process is.

    A started server is told the directory of the servers' state files; its own is the one
    naming one of its ancestors (the supervisor that runs it) as the server.
    """
    if test_processes == THIS_PROCESS:
        return {os.getpid()}
    directory = Path(test_processes)
    ancestors = _ancestors()
    for path in directory.glob("port-*.json"):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(state, dict) and state.get("pid") in ancestors:
            return {pid for pid in map(_pid_of, _holders(state)) if pid is not None}
    return set()


def _holders(state: dict) -> list[object]:
    return [*state.get("holders", []), *state.get("workers", [])]


def _pid_of(holder: object) -> int | None:
    """A holder's pid, however the state file writes it ({"pid", "start"}, [pid, ...], pid)."""
    if isinstance(holder, dict):
        holder = holder.get("pid")
    elif isinstance(holder, list) and holder:
        holder = holder[0]
    return holder if isinstance(holder, int) and not isinstance(holder, bool) else None


def _ancestors(limit: int = 8) -> set[int]:
    found, pid = set(), os.getppid()
    for _ in range(limit):
        if pid <= 1:
            break
        found.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return found


def listening_inodes(port: int) -> set[str]:
    """The socket inodes listening on TCP `port` (Linux /proc; empty elsewhere)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(f"socket:[{fields[9]}]")
    return inodes


def holds_socket(pid: int, inodes: set[str]) -> bool:
    """True when process `pid` has one of the socket `inodes` open."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd) in inodes:
                return True
        except OSError:
            continue
    return False
