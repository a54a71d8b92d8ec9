"""Fixtures every test directory may use."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.stub_server import Answer, StubServer


@pytest.fixture
def stub_server() -> Iterator[Callable[[Answer], StubServer]]:
    """Start a scripted HTTP server on loopback (see tests/support/stub_server.py)."""
    started: list[StubServer] = []

    def start(answer: Answer) -> StubServer:
        server = StubServer(answer).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
