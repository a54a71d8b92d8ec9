"""Recording inside a stack we did not write: every patch the harness makes, and only here.

A real Llama Stack (or any server started with ``--stack-command``) builds its provider
clients itself, so the harness cannot hand them a recording transport. The bootstrap
(``harness/bootstrap/sitecustomize.py``, put on the child's ``PYTHONPATH``) calls
:func:`install_from_env`, which patches, as each module is first imported:

- ``httpx.Client`` / ``httpx.AsyncClient`` and the same classes of ``httpx2`` (the openai SDK
  3.x client): after a client is built, its transport and mounted transports are wrapped in
  the recording transports the reference stack uses;
- ``urllib3.connectionpool.HTTPConnectionPool.urlopen`` (requests, botocore),
  ``aiohttp.ClientSession._request`` and ``urllib.request.AbstractHTTPHandler.do_open``:
  routed through the same pipeline (``adapters.py``);
- ``uvicorn.Config.load``: the served ASGI app is wrapped in :class:`AttributionMiddleware`,
  so each provider request is filed under the test whose request caused it;
- the stack's own id hook, where it has one (Llama Stack's and OGX's
  ``core.id_generation.set_id_override``, which their own recorder uses): the ids a test makes
  (an uploaded file's ``file-…``, a vector store's ``vs_…``) are derived from the test and how
  many it made before, so they are the same in record and replay, and so is everything the
  stack derives from them (a token count of a search result that names the file); a test run
  twice on one server gets new ones;
- ``threading.Thread.start`` and ``ThreadPoolExecutor.submit`` (so ``run_in_executor`` too):
  the thread, or the submitted call, runs attributed to the test of the code that started it
  (only the harness's attribution travels; the rest of the thread's context is untouched);
- ``asyncio``'s event loop ``create_task``: a task made with a context of its own (a fresh
  ``contextvars.Context()``) still gets the attribution of the code that made it;
- ``asyncio.Queue``'s put and get: an item carries the attribution of the code that put it,
  and the task that gets it works for that test until its next get, so a long-lived worker
  task serving a queue (Llama Stack's background responses) files each job under the test
  that queued it, also with two xdist workers at once. A queue its takers put back into is a
  pool of resources (SQLAlchemy's async connection pool), and carries nothing;
- ``socket.socket.connect``: the seal. In replay, a connection to a provider (a host the
  configuration names, a ``record_hosts`` match, or any non-loopback host on port 80 or 443)
  that does not come from a recording layer is refused, and the test that caused it fails
  naming it; in record mode it is let through and the test fails saying it was not recorded.

Nothing else is touched, nothing here is used outside the bootstrap, and
:meth:`Installation.uninstall` restores every original. Transports that already record (the
reference stack wraps its own) are left as they are. What attached is appended to the report
file the harness named (``HARNESS_BOOTSTRAP_REPORT``): one ``loaded`` line per Python process,
one ``app`` line per served app, so the harness can tell a stack it could not attach to.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import errno
import hashlib
import importlib.abc
import os
import re
import socket
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

from harness.recording.context import (
    AttributionMiddleware,
    attributed,
    attribution_context_value,
    current_attribution,
    set_attribution,
)
from harness.recording.errors import FaultKind
from harness.recording.hosts import Route, host_key, is_loopback
from harness.recording.modes import BOOTSTRAP_REPORT_ENV as REPORT_ENV
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.recorder import Recorder, is_sending
from harness.recording.redaction import secret_values
from harness.recording.transport import (
    AsyncRecordingTransport,
    RecordingTransport,
    wrap_async_transport,
    wrap_transport,
)

SEALED_PORTS = frozenset({80, 443})


def _report(line: str) -> None:
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{line} pid={os.getpid()}\n")
    except OSError:
        pass  # the session that asked is gone; nothing to tell


def stack_provenance() -> Mapping[str, str]:
    """Which stack records: the serving distribution's name and version, when readable."""
    from importlib.metadata import PackageNotFoundError, version

    for module, distribution in (("ogx", "ogx"), ("llama_stack", "llama-stack")):
        if module in sys.modules:
            try:
                return {"stack": f"{distribution} {version(distribution)}"}
            except PackageNotFoundError:
                return {"stack": distribution}
    return {}


class Installation:
    """The patches of one process, and how to undo them."""

    def __init__(self, settings: RecordingSettings, secrets: Iterable[str] = ()) -> None:
        self.settings = settings
        self.recorder = Recorder(settings, secrets=secrets, provenance=stack_provenance)
        self._undo: list[tuple[object, str, Any]] = []
        self._finder: PostImportFinder | None = None
        self._resolved: dict[str, str] = {}  # address -> host name it was looked up by
        self._lock = threading.Lock()
        self._test_runs: dict[str, list[str]] = {}  # test id -> its invocations, in order

    def _replace(self, owner: object, name: str, value: Any) -> None:
        self._undo.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def install(self) -> Installation:
        patches: dict[str, Callable[[ModuleType], None]] = {
            "httpx": self._patch_clients,
            "httpx2": self._patch_clients,
            "urllib3.connectionpool": self._patch_urllib3,
            "aiohttp.client": self._patch_aiohttp,
            "urllib.request": self._patch_urllib,
            "uvicorn.config": self._patch_uvicorn,
            "llama_stack.core.id_generation": self._patch_ids,
            "ogx.core.id_generation": self._patch_ids,
        }
        for name in list(patches):
            module = sys.modules.get(name)
            if module is not None:
                patches.pop(name)(module)
        self._patch_threads()
        if self.settings.mode is not Mode.LIVE:
            self._patch_socket()
        self._finder = PostImportFinder(patches)
        sys.meta_path.insert(0, self._finder)
        _report("loaded")
        return self

    def uninstall(self) -> None:
        """Restore every patched attribute and stop watching imports."""
        if self._finder is not None and self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        self._finder = None
        while self._undo:
            owner, name, original = self._undo.pop()
            setattr(owner, name, original)

    # -- clients ----------------------------------------------------------------------------
    def _patch_clients(self, lib: ModuleType) -> None:
        """Wrap the transports of every Client and AsyncClient `lib` builds from now on."""
        settings, recorder = self.settings, self.recorder
        plans: list[tuple[type, Callable[..., Any], tuple[type, ...]]] = [
            (lib.Client, wrap_transport, (RecordingTransport,)),
            (lib.AsyncClient, wrap_async_transport, (AsyncRecordingTransport,)),
        ]
        for cls, wrap, already in plans:
            original = cls.__init__

            def __init__(
                self: Any,
                *args: Any,
                _original: Callable[..., None] = original,
                _wrap: Callable[..., Any] = wrap,
                _already: tuple[type, ...] = already,
                **kwargs: Any,
            ) -> None:
                _original(self, *args, **kwargs)

                def recorded(transport: Any) -> Any:
                    if transport is None or isinstance(transport, _already):
                        return transport
                    return _wrap(transport, settings, recorder=recorder)

                self._transport = recorded(self._transport)
                self._mounts = {pattern: recorded(t) for pattern, t in self._mounts.items()}

            __init__.__wrapped__ = original  # type: ignore[attr-defined]
            self._replace(cls, "__init__", __init__)

    def _patch_urllib3(self, module: ModuleType) -> None:
        from harness.recording.adapters import urllib3_urlopen

        pool = module.HTTPConnectionPool
        self._replace(pool, "urlopen", urllib3_urlopen(self.recorder, pool.urlopen))

    def _patch_aiohttp(self, module: ModuleType) -> None:
        from harness.recording.adapters import aiohttp_request

        session = module.ClientSession
        self._replace(session, "_request", aiohttp_request(self.recorder, session._request))

    def _patch_urllib(self, module: ModuleType) -> None:
        from harness.recording.adapters import urllib_do_open

        handler = module.AbstractHTTPHandler
        self._replace(handler, "do_open", urllib_do_open(self.recorder, handler.do_open))

    def _patch_uvicorn(self, config_module: ModuleType) -> None:
        """Wrap the app uvicorn serves in the attribution middleware."""
        original = config_module.Config.load

        def load(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            self.loaded_app = AttributionMiddleware(self.loaded_app)
            _report("app")

        self._replace(config_module.Config, "load", load)

    def _patch_ids(self, module: ModuleType) -> None:
        previous = module.set_id_override(self._stable_id)
        self._undo.append((module, "_id_override", previous))

    def _stable_id(self, kind: str, factory: Callable[[], str]) -> str:
        """An id of the factory's shape, derived from the test that makes it."""
        attribution = current_attribution()
        raw = factory()
        if attribution.is_shared:
            return raw
        with self._lock:
            runs = self._test_runs.setdefault(attribution.test_id, [])
            if attribution.invocation not in runs:
                runs.append(attribution.invocation)
            run = runs.index(attribution.invocation)
        made = attribution.made.next(kind)
        seed = f"{attribution.test_id}\0{kind}\0{made}\0{run}".encode()
        return derived_id(raw, hashlib.sha256(seed).hexdigest())

    # -- attribution across threads ---------------------------------------------------------
    def _patch_threads(self) -> None:
        start = threading.Thread.start
        submit = concurrent.futures.ThreadPoolExecutor.submit

        def thread_start(thread: threading.Thread) -> None:
            attribution = attribution_context_value()
            if not attribution.is_shared:
                run = thread.run

                def attributed_run() -> None:
                    with attributed(attribution):
                        run()

                thread.run = attributed_run  # type: ignore[method-assign]
            start(thread)

        def executor_submit(executor: Any, fn: Callable[..., Any], /, *args: Any, **kw: Any) -> Any:
            attribution = attribution_context_value()
            if attribution.is_shared:
                return submit(executor, fn, *args, **kw)

            def attributed_call() -> Any:
                with attributed(attribution):
                    return fn(*args, **kw)

            return submit(executor, attributed_call)

        self._replace(threading.Thread, "start", thread_start)
        self._replace(concurrent.futures.ThreadPoolExecutor, "submit", executor_submit)
        self._patch_queues()
        self._patch_tasks()

    def _patch_tasks(self) -> None:
        loop_class = asyncio.BaseEventLoop
        create_task = loop_class.create_task

        def attributed_create_task(loop: Any, coro: Any, *args: Any, **kwargs: Any) -> Any:
            context = kwargs.get("context")
            attribution = attribution_context_value()
            if context is not None and not attribution.is_shared:
                with contextlib.suppress(RuntimeError):  # a context entered elsewhere: leave it
                    context.run(set_attribution, attribution)  # only the harness's variable
            return create_task(loop, coro, *args, **kwargs)

        self._replace(loop_class, "create_task", attributed_create_task)

    def _patch_queues(self) -> None:
        """Queue hand-offs carry the attribution (plain FIFO asyncio.Queue and subclasses that
        keep its order; PriorityQueue and LifoQueue have their own _put/_get and are left).

        Not through a pool: a queue that a task took from and then puts back into holds
        resources, not work (SQLAlchemy's async connection pool is one: every request checks a
        connection out and in). Whoever checked a connection in says nothing about whose work
        the next request does, so a pool's hand-offs carry nothing; the task that tried to take
        counts even when the queue was empty (a pool makes its first connection then)."""
        queue = asyncio.Queue
        put, get, get_nowait = queue._put, queue._get, queue.get_nowait  # type: ignore[attr-defined]

        def _task() -> asyncio.Task[Any] | None:
            try:
                return asyncio.current_task()
            except RuntimeError:  # no running loop in this thread
                return None

        def _put(q: Any, item: Any) -> None:
            state = q.__dict__
            if not state.get("_harness_pool"):
                takers = state.get("_harness_takers")
                task = _task()
                if takers is not None and task is not None and task in takers:
                    state["_harness_pool"] = True
                    state.pop("_harness_handed", None)
                else:
                    handed = state.setdefault("_harness_handed", collections.deque())
                    handed.append(attribution_context_value())
            put(q, item)

        def _get(q: Any) -> Any:
            item = get(q)
            handed = q.__dict__.get("_harness_handed")
            if handed and not q.__dict__.get("_harness_pool"):
                putter = handed.popleft()
                if not putter.is_shared:  # put outside any test (a pool filled at start-up)
                    set_attribution(putter)
            return item

        def _get_nowait(q: Any) -> Any:
            task = _task()
            if task is not None and not q.__dict__.get("_harness_pool"):
                q.__dict__.setdefault("_harness_takers", weakref.WeakSet()).add(task)
            return get_nowait(q)

        self._replace(queue, "_put", _put)
        self._replace(queue, "_get", _get)
        self._replace(queue, "get_nowait", _get_nowait)

    # -- the seal ---------------------------------------------------------------------------
    def _patch_socket(self) -> None:
        getaddrinfo = socket.getaddrinfo
        connect = socket.socket.connect
        connect_ex = socket.socket.connect_ex
        installation = self

        def resolving(host: Any, *args: Any, **kwargs: Any) -> Any:
            results = getaddrinfo(host, *args, **kwargs)
            if isinstance(host, str):
                for *_, address in results:
                    installation._resolved[str(address[0])] = host
            return results

        def guarded(sock: socket.socket, address: Any) -> Any:
            installation._guard(sock, address)
            return connect(sock, address)

        def guarded_ex(sock: socket.socket, address: Any) -> Any:
            installation._guard(sock, address)
            return connect_ex(sock, address)

        self._replace(socket, "getaddrinfo", resolving)
        self._replace(socket.socket, "connect", guarded)
        self._replace(socket.socket, "connect_ex", guarded_ex)

    def _guard(self, sock: socket.socket, address: Any) -> None:
        if is_sending() or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        host, port = str(address[0]), int(address[1])
        name = self._resolved.get(host, host)
        if not self._sealed(name, host, port):
            return
        client = _calling_module()
        where = f"{name}:{port}" + (f" ({host})" if name != host else "")
        if self.settings.mode is Mode.RECORD:
            message = (
                f"a request to {where} went through {client}, which the harness cannot record; "
                "its replay will fail. Call the provider with httpx, requests/urllib3, aiohttp or "
                "urllib, or add the host to passthrough_hosts if it is not a provider."
            )
            self.recorder.fault(FaultKind.UNRECORDED, message)
            return
        message = (
            f"replay is sealed: a connection to {where} through {client} was refused; the "
            "harness replays only what its recording layers see (httpx, requests/urllib3, "
            "aiohttp, urllib). Add the host to passthrough_hosts if it is not a provider."
        )
        self.recorder.fault(FaultKind.SEALED, message)
        raise ConnectionRefusedError(errno.ECONNREFUSED, message)

    def _sealed(self, name: str, host: str, port: int) -> bool:
        hosts = self.settings.hosts
        route, reason = hosts.route(name, port)
        if route is Route.PASSTHROUGH:
            return False
        if reason in ("record_hosts", "a provider the configuration names"):
            return True
        if host_key(host, port) in hosts.providers:
            return True
        return not is_loopback(host) and port in SEALED_PORTS


_HEX_RUN = re.compile(r"[0-9a-f]{8,}(?:-[0-9a-f]{4,}){0,4}")


def derived_id(raw: str, digest: str) -> str:
    """`raw` with each random hex run (a uuid, with its dashes) replaced from `digest`."""
    source = iter(digest * 4)

    def fill(match: re.Match[str]) -> str:
        return "".join(c if c == "-" else next(source) for c in match.group(0))

    return _HEX_RUN.sub(fill, raw)


def _calling_module() -> str:
    """The innermost module that opened the connection, past the socket plumbing."""
    plumbing = ("socket", "ssl", "selectors", "asyncio", "anyio", "harness")
    for frame in reversed(traceback.extract_stack()[:-3]):
        module = _module_of(frame.filename)
        if module and not module.startswith(plumbing):
            return module
    return "an unknown client"


def _module_of(filename: str) -> str:
    for base in sorted(sys.path, key=len, reverse=True):
        if base and filename.startswith(base.rstrip(os.sep) + os.sep):
            relative = filename[len(base.rstrip(os.sep)) + 1 :]
            return relative.removesuffix(".py").replace(os.sep, ".").removesuffix(".__init__")
    return ""


class PostImportFinder(importlib.abc.MetaPathFinder):
    """Runs a patch right after one of the patched modules is first imported."""

    def __init__(self, patches: Mapping[str, Callable[[ModuleType], None]]) -> None:
        self.patches = dict(patches)

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        patch = self.patches.get(name)
        if patch is None:
            return None
        spec = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is not self and find is not None:
                spec = find(name, path, target)
                if spec is not None:
                    break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original_exec = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original_exec(module)
            if self.patches.pop(name, None) is not None:
                patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install(settings: RecordingSettings, secrets: Iterable[str] = ()) -> Installation:
    """Patch the client libraries, threads, the socket seal and uvicorn."""
    return Installation(settings, [s for s in secrets if s]).install()


def install_from_env(env: Mapping[str, str] = os.environ) -> Installation | None:
    """Install with the settings the harness passed; None (nothing patched) when live."""
    settings = RecordingSettings.from_env(env)
    if settings is None or settings.mode is Mode.LIVE:
        return None
    return install(settings, secret_values(env, settings.secret_names))
