"""The one file swapped into Llama Stack 0.7.3's own integration suite: its fixture names, served
by stack-harness's fixtures.

`tests/llama_stack/test_llama_stack_own_suite.py` copies the suite out of Llama Stack's source
distribution and puts this file in the place of its `tests/integration/conftest.py`, and
`fixtures/` in the place of its `tests/integration/fixtures` (its sub-directories' conftests
import their clients from there). Everything Llama Stack's conftest did besides naming
fixtures, the harness does: starting the server, recording, filing requests under tests.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import pytest

# Models the harness has no option for: each fixture skips its tests unless the option is given.
EXTRA_MODELS = {
    "shield_id": "--safety-shield",
    "judge_model_id": "--judge-model",
    "rerank_model_id": "--rerank-model",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    for option in EXTRA_MODELS.values():
        parser.addoption(option, default=None, help="comma-separated (Llama Stack's suite)")
    parser.addoption("--report", default=None, help="accepted and ignored (Llama Stack's suite)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, option in EXTRA_MODELS.items():
        value = metafunc.config.getoption(option)
        if fixture in metafunc.fixturenames and value:
            metafunc.parametrize(fixture, value.split(","), scope="session")


def _no_model(option: str) -> Any:
    @pytest.fixture(scope="session")
    def fixture() -> None:
        pytest.skip(f"not given: {option}")

    return fixture


shield_id = _no_model("--safety-shield")
judge_model_id = _no_model("--judge-model")
rerank_model_id = _no_model("--rerank-model")


@pytest.fixture(scope="session")
def client_with_models(llama_stack_client: Any) -> Any:
    return llama_stack_client


@pytest.fixture(scope="session")
def require_server() -> None:
    """The harness always runs a server here."""


@pytest.fixture(params=["openai_client", "client_with_models"])
def compat_client(request: pytest.FixtureRequest, client_with_models: Any) -> Any:
    return request.getfixturevalue(request.param)


def _providers(client: Any, api: str) -> list[Any]:
    return [p for p in client.providers.list() if p.api == api]


@pytest.fixture(scope="session")
def inference_provider_type(llama_stack_client: Any) -> str:
    return _providers(llama_stack_client, "inference")[0].provider_type


@pytest.fixture(scope="session")
def available_shields(llama_stack_client: Any) -> list[str]:
    return [shield.identifier for shield in llama_stack_client.shields.list()]


@pytest.fixture(scope="session")
def model_providers(llama_stack_client: Any) -> set[str]:
    return {p.provider_id for p in _providers(llama_stack_client, "inference")}


def get_vector_io_provider_ids(client: Any) -> list[str]:
    return [p.provider_id for p in _providers(client, "vector_io")]


def vector_provider_wrapper(func: Any) -> Any:
    """What the vector_io tests import from here: skip a test that got no provider."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = inspect.signature(func).bind(*args, **kwargs)
        if not bound.arguments.get("vector_io_provider_id"):
            pytest.skip("no vector_io provider")
        return func(*args, **kwargs)

    return wrapper


@pytest.fixture
def vector_io_provider_id(client_with_models: Any) -> str:
    ids = get_vector_io_provider_ids(client_with_models)
    if not ids:
        pytest.skip("the stack has no vector_io provider")
    return ids[0]
