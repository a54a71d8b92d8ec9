"""Clients a test builds itself: the one patch the pytest process makes, while a stack is open.

The client fixtures carry the current test's headers, but a test may build its own client
(``openai.OpenAI(base_url=f"{stack_base_url}/v1")``, a raw ``httpx.Client``, ``requests``).
Its provider requests must be filed under the test too, not under ``_shared``, and in library
mode it must reach the in-process stack at all (its host, ``stack.inprocess``, resolves to
nothing). So, for the session, :class:`ClientPatch` patches exactly:

- ``Client.send`` and ``AsyncClient.send`` of ``httpx`` and ``httpx2`` (the openai SDK 3.x
  client), and ``requests.Session.send``: a request to the stack's URL (same scheme, host
  and port; loopback names are one host) that does not carry ``X-Harness-Test-Id`` gets the
  current test's attribution headers;
- in library mode only, ``Client.__init__`` / ``AsyncClient.__init__`` of both libraries and
  ``requests.Session.__init__``: each new client gets the in-process transport mounted for
  the stack's URL (httpx's public ``mounts``, requests' ``Session.mount``), so it reaches the
  app through the same transport as the fixtures.

Libraries not imported yet are patched when they are imported. :meth:`ClientPatch.uninstall`
restores every original, at the end of the session; nothing else in the harness patches the
pytest process (vcrpy, for a remote stack, patches through its own public API).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from harness.recording.context import TEST_ID_HEADER

_ABSENT = object()
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
HTTPX_LIBRARIES = ("httpx", "httpx2")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, "loopback" if host in LOOPBACK else host, port


class ClientPatch:
    """Stamps (and in library mode routes) requests for one stack URL; see the module doc."""

    def __init__(
        self,
        base_url: str,
        headers: Callable[[], dict[str, str]],
        transport: Callable[[Any], Any] | None = None,
        async_transport: Callable[[Any], Any] | None = None,
    ) -> None:
        self.base_url = base_url
        self.origin = _origin(base_url)
        self._headers = headers
        self._transport = transport  # library mode: lib -> sync transport into the app
        self._async_transport = async_transport
        self._undo: list[tuple[object, str, Any]] = []
        self._finder: Any = None  # harness.recording.patch.PostImportFinder

    # -- install / uninstall ----------------------------------------------------------------

    def install(self) -> ClientPatch:
        patches = {name: self._patch_httpx for name in HTTPX_LIBRARIES}
        patches["requests"] = self._patch_requests
        waiting = {}
        for name, patch in patches.items():
            module = sys.modules.get(name)
            if module is not None:
                patch(module)
            else:
                waiting[name] = patch
        from harness.recording.patch import PostImportFinder

        self._finder = PostImportFinder(waiting)
        sys.meta_path.insert(0, self._finder)
        return self

    def uninstall(self) -> None:
        if self._finder is not None and self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        self._finder = None
        while self._undo:
            owner, name, original = self._undo.pop()
            if original is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, original)

    def _replace(self, owner: type, name: str, value: Any) -> None:
        self._undo.append((owner, name, owner.__dict__.get(name, _ABSENT)))
        setattr(owner, name, value)

    # -- what is patched --------------------------------------------------------------------

    def is_stack(self, url: str) -> bool:
        return _origin(url) == self.origin

    def stamp(self, headers: Any, url: str) -> None:
        """Add the current test's headers to a request for the stack that has none."""
        if self.is_stack(url) and TEST_ID_HEADER not in headers:
            for name, value in self._headers().items():
                headers[name] = value

    def _patch_httpx(self, lib: ModuleType) -> None:
        patch = self
        sync_send, async_send = lib.Client.send, lib.AsyncClient.send

        def send(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            patch.stamp(request.headers, str(request.url))
            return sync_send(client, request, *args, **kwargs)

        async def asend(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            patch.stamp(request.headers, str(request.url))
            return await async_send(client, request, *args, **kwargs)

        self._replace(lib.Client, "send", send)
        self._replace(lib.AsyncClient, "send", asend)
        if self._transport is not None:
            mount = f"{self.origin[0]}://{urlsplit(self.base_url).netloc}"
            self._mount_on_init(lib.Client, mount, lambda: self._transport(lib))
            if self._async_transport is not None:
                self._mount_on_init(lib.AsyncClient, mount, lambda: self._async_transport(lib))

    def _mount_on_init(self, cls: type, pattern: str, transport: Callable[[], Any]) -> None:
        original = cls.__init__

        def __init__(client: Any, *args: Any, **kwargs: Any) -> None:
            mounts = dict(kwargs.get("mounts") or {})
            mounts.setdefault(pattern, transport())
            kwargs["mounts"] = mounts
            original(client, *args, **kwargs)

        self._replace(cls, "__init__", __init__)

    def _patch_requests(self, requests: ModuleType) -> None:
        patch = self
        session_cls = requests.Session
        original_send = session_cls.send

        def send(session: Any, request: Any, **kwargs: Any) -> Any:
            patch.stamp(request.headers, request.url)
            return original_send(session, request, **kwargs)

        self._replace(session_cls, "send", send)
        if self._transport is not None:
            import httpx

            from harness.requests_adapter import TransportAdapter

            original_init = session_cls.__init__
            adapter = TransportAdapter(httpx, self._transport(httpx))
            prefix = self.base_url.rstrip("/") + "/"

            def __init__(session: Any, *args: Any, **kwargs: Any) -> None:
                original_init(session, *args, **kwargs)
                session.mount(prefix, adapter)

            self._replace(session_cls, "__init__", __init__)
