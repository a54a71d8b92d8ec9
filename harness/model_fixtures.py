"""The model fixtures: `text_model_id`, `vision_model_id`, `embedding_model_id` and
`embedding_dimension`, each a session-scoped parameter over the models given for its kind.

Registered by the plugin (`harness.plugin`) beside itself, so a test runs once per model of
a `--text-model=a,b` list and is skipped, saying which option it lacks, when none is known.
"""

from __future__ import annotations

import pytest

from harness.plugin import SESSION, options_of

# The model fixtures run a test once per model given for their kind (pytest_generate_tests);
# these bodies run only when no model of the kind is known.
MODEL_FIXTURES = {
    "text_model_id": ("text", "txt"),
    "vision_model_id": ("vision", "vis"),
    "embedding_model_id": ("embedding", "emb"),
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session = metafunc.config.stash.get(SESSION, None)
    if session is None:
        return
    for fixture, (kind, prefix) in MODEL_FIXTURES.items():
        models = session.options.models[kind]
        if fixture in metafunc.fixturenames and models:
            ids = [f"{prefix}={model}" for model in models]
            metafunc.parametrize(fixture, models, ids=ids, scope="session")


@pytest.fixture(scope="session")
def text_model_id() -> str:
    pytest.skip("no text model for this setup: pass --text-model")


@pytest.fixture(scope="session")
def vision_model_id() -> str:
    pytest.skip("no vision model for this setup: pass --vision-model")


@pytest.fixture(scope="session")
def embedding_model_id() -> str:
    pytest.skip("no embedding model for this setup: pass --embedding-model")


@pytest.fixture(scope="session")
def embedding_dimension(pytestconfig: pytest.Config) -> int:
    dimension = options_of(pytestconfig).embedding_dimension
    if dimension is None:
        pytest.skip("no embedding dimension for this setup: pass --embedding-dimension")
    return dimension
