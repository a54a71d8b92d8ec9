"""Fixtures of the plugin's end-to-end tests: a fake provider, a stack project, a server.

Each test builds a small project in pytester's directory (a run.yaml for the fake Ollama-wire
provider with its sqlite stores in tmp_path, and a test module using the plugin's fixtures)
and runs pytest on it: in a subprocess wherever a process boundary matters, in this process
(`runpytest_inprocess`) where it does not, such as library mode.

An in-process run gets pytester's snapshot of `sys.modules`: what the inner session imports
is dropped again when it ends. A package this process has imported in part (starlette, say,
for the fake provider) would then be half old, half new in the next inner session, and its
routes would stop matching; httpx, which imports httpcore only on its first request and keeps
the map of httpcore's errors it made then, would let a later session's connection errors
through unmapped. So the modules an inner library-mode session imports are
imported here, once, before any snapshot is taken; what the harness itself keeps per session
is its own business, and `test_inprocess_sessions` checks that none of it outlives one.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpcore  # noqa: F401 - see the module docstring: imported before any snapshot
import openai  # noqa: F401
import pytest
import vcr  # noqa: F401

import harness.client_patch  # noqa: F401
import harness.inprocess  # noqa: F401
import harness.kinds_server  # noqa: F401
import harness.recording.cassettes  # noqa: F401
import harness.stack.app  # noqa: F401
from harness import server
from harness.processes import stop_process_group
from tests.fakes.provider import FakeProvider
from tests.support.projects import CHAT_TESTS, HARNESS_ENV, RUN_YAML

# The test extra's clients, where installed: httpx imports httpcore lazily and keeps its errors
# once mapped, and httpx2 does the same with httpcore2. A virtualenv without them (the openai 2
# run) runs the tests that need none of them.
for _optional in ("httpcore2", "httpx2", "requests"):
    with contextlib.suppress(ImportError):
        importlib.import_module(_optional)


def pytest_configure(config: pytest.Config) -> None:
    # pytester is not loaded by default; a non-root conftest may not set `pytest_plugins`.
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")


@pytest.fixture(autouse=True)
def _clean_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every inner session runs without the harness variables of the calling shell (whatever
    they hold), as a new shell would; a test sets the ones it is about."""
    for name in HARNESS_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def project(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path_factory, fake_provider
):
    """A project with run.yaml and a chat test module; the environment points at the fake."""
    monkeypatch.setenv("OLLAMA_URL", fake_provider.base_url)
    monkeypatch.setenv("SQLITE_STORE_DIR", str(tmp_path_factory.mktemp("stores")))
    pytester.makefile(".yaml", run=RUN_YAML)
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_chat=CHAT_TESTS)
    return pytester


@pytest.fixture
def run_stack_server(fake_provider):
    """Start `harness stack run` ourselves (as a user would by hand); stopped at teardown."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(config: Path, port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "stack", "run", str(config), "--port", str(port)],
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        processes.append(process)
        deadline = time.monotonic() + 30
        while server.probe("127.0.0.1", port).state != "healthy":
            assert process.poll() is None, "the stack server exited"
            assert time.monotonic() < deadline, "the stack server never got healthy"
            time.sleep(0.05)
        return process

    yield start
    for process in processes:
        stop_process_group(process.pid)
        process.wait(timeout=10)
