"""Fixtures of the real Llama Stack scenarios, in the shape Llama Stack's own suite uses.

These modules (``check_*.py``) are not part of the project's own test run: the outer test in
``tests/llama_stack/test_llama_stack_scenarios.py`` runs them in a pytest session of their own,
in the virtualenv where Llama Stack 0.7.3 and the harness are installed together, against a
stack started with ``--stack-command`` (``tests/llama_stack/conftest.py`` keeps the project's own
collection out of this directory).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def responses_client(openai_client: Any) -> Any:
    """The client the Responses API tests use (Llama Stack's suite names it so)."""
    return openai_client


@pytest.fixture(scope="module")
def mcp_server_info() -> Iterator[dict[str, str]]:
    """An MCP server served by this test process on loopback, for the module's tests."""
    from tests.llama_stack.scenarios.mcp_server import mcp_server

    with mcp_server() as url:
        yield {"server_url": url}
