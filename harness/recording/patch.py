"""Recording inside a stack we did not write: every patch the harness makes, and only here.

A real Llama Stack (or any server started with ``--stack-command``) builds its provider
clients itself, so the harness cannot hand them a recording transport. The bootstrap
(``harness/bootstrap/sitecustomize.py``, put on the child's ``PYTHONPATH``) calls
:func:`install_from_env`, which patches, as each module is first imported:

- ``httpx.Client`` / ``httpx.AsyncClient`` and the same classes of ``httpx2`` (the openai SDK
  3.x client): after a client is built, its transport and mounted transports are wrapped in
  the same recording transports the reference stack uses, so every client the process makes,
  at start-up or per request, records and replays like the reference stack's providers;
- ``uvicorn.Config.load``: the served ASGI app is wrapped in :class:`AttributionMiddleware`,
  so each provider request is filed under the test whose request caused it.

Nothing else is touched, nothing here is used outside the bootstrap, and :func:`uninstall`
restores every original. Transports that already record (the reference stack wraps its own)
are left as they are. What attached is appended to the report file the harness named
(``HARNESS_BOOTSTRAP_REPORT``): one ``loaded`` line per Python process, one ``app`` line per
served app, so the harness can tell a stack it could not attach to.
"""

from __future__ import annotations

import importlib.abc
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

from harness.recording.context import AttributionMiddleware
from harness.recording.modes import RecordingSettings
from harness.recording.redaction import MIN_SECRET_LENGTH
from harness.recording.transport import (
    AsyncRecordingTransport,
    RecordingTransport,
    wrap_async_transport,
    wrap_transport,
)

REPORT_ENV = "HARNESS_BOOTSTRAP_REPORT"
# Environment variables whose values are credentials: kept off disk by the redactor.
SECRET_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)

_undo: list[tuple[object, str, Any]] = []
_finder: _PostImportFinder | None = None


def _report(line: str) -> None:
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{line} pid={os.getpid()}\n")
    except OSError:
        pass  # the session that asked is gone; nothing to tell


def _replace(owner: object, name: str, value: Any) -> None:
    _undo.append((owner, name, getattr(owner, name)))
    setattr(owner, name, value)


def _patch_clients(lib: ModuleType, settings: RecordingSettings, secrets: list[str]) -> None:
    """Wrap the transports of every Client and AsyncClient `lib` builds from now on."""
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
                return _wrap(transport, settings, secrets=secrets)

            self._transport = recorded(self._transport)
            self._mounts = {pattern: recorded(t) for pattern, t in self._mounts.items()}

        __init__.__wrapped__ = original  # type: ignore[attr-defined]
        _replace(cls, "__init__", __init__)


def _patch_uvicorn(config_module: ModuleType) -> None:
    """Wrap the app uvicorn serves in the attribution middleware."""
    original = config_module.Config.load

    def load(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.loaded_app = AttributionMiddleware(self.loaded_app)
        _report("app")

    _replace(config_module.Config, "load", load)


class _PostImportFinder(importlib.abc.MetaPathFinder):
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


def install(settings: RecordingSettings, secrets: Iterable[str] = ()) -> None:
    """Patch the client libraries and uvicorn, now if imported, else when they are imported."""
    global _finder
    if _finder is not None:
        return
    secret_list = [s for s in secrets if s]
    patches: dict[str, Callable[[ModuleType], None]] = {
        "httpx": lambda module: _patch_clients(module, settings, secret_list),
        "httpx2": lambda module: _patch_clients(module, settings, secret_list),
        "uvicorn.config": _patch_uvicorn,
    }
    for name in list(patches):
        module = sys.modules.get(name)
        if module is not None:
            patches.pop(name)(module)
    _finder = _PostImportFinder(patches)
    sys.meta_path.insert(0, _finder)
    _report("loaded")


def uninstall() -> None:
    """Restore every patched attribute and stop watching imports."""
    global _finder
    if _finder is not None and _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    _finder = None
    while _undo:
        owner, name, original = _undo.pop()
        setattr(owner, name, original)


def secrets_from(env: Mapping[str, str]) -> list[str]:
    """The credential values in an environment, by the names of their variables."""
    return [
        value
        for name, value in env.items()
        if SECRET_NAME.search(name) and len(value) >= MIN_SECRET_LENGTH
    ]


def install_from_env(env: Mapping[str, str] = os.environ) -> bool:
    """Install with the settings the harness passed; False (nothing patched) when live."""
    settings = RecordingSettings.from_env(env)
    if settings is None:
        return False
    install(settings, secrets_from(env))
    return True
