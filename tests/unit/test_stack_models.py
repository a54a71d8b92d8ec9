"""The models API: startup listing, the superset wire shape, registration rules."""

from __future__ import annotations

import pytest

from tests.fakes.provider import FakeProvider
from tests.support.stack import provider_entry, stack_client

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def fake():
    with FakeProvider(models=["llama3.2:3b", "tiny", "phi:latest"]) as fake:
        yield fake


@pytest.fixture
def client(tmp_path, fake):
    with stack_client(tmp_path, [provider_entry("remote::ollama", fake.base_url)]) as client:
        yield client


def test_startup_lists_provider_models_with_embedding_metadata(client):
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}

    assert set(models) == {
        "ollama/llama3.2:3b",
        "ollama/tiny",
        "ollama/phi:latest",
        "ollama/all-minilm:l6-v2",
    }
    embedding = models["ollama/all-minilm:l6-v2"]
    assert embedding["model_type"] == "embedding"
    assert embedding["metadata"] == {"embedding_dimension": 384, "context_length": 512}
    assert models["ollama/tiny"]["model_type"] == "llm"


def test_model_objects_carry_openai_and_llama_stack_fields(client):
    model = client.get("/v1/models").json()["data"][0]

    assert {"id", "object", "created", "owned_by", "custom_metadata"} <= set(model)
    assert {"identifier", "provider_id", "provider_resource_id", "type", "metadata"} <= set(model)
    assert model["custom_metadata"]["provider_resource_id"] == model["provider_resource_id"]


def test_get_model_by_path_identifier(client):
    model = client.get("/v1/models/ollama/llama3.2:3b").json()

    assert (model["identifier"], model["provider_resource_id"]) == (
        "ollama/llama3.2:3b",
        "llama3.2:3b",
    )
    assert (model["owner"], model["source"]) == (None, "listed_from_provider")


def test_get_unknown_model_is_404(client):
    response = client.get("/v1/models/llama3.2:3b")

    assert response.status_code == 404
    assert response.json()["detail"] == (
        "Model 'llama3.2:3b' not found. Use 'client.models.list()' to list available Models."
    )


def test_register_uses_provider_and_provider_model_id_as_identifier_and_tries_latest(client):
    response = client.post("/v1/models", json={"model_id": "my-alias", "provider_model_id": "phi"})

    assert response.status_code == 200, response.text
    assert response.json()["identifier"] == "ollama/phi"
    assert response.json()["source"] == "via_register_api"
    assert client.get("/v1/models/my-alias").status_code == 404


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"model_id": "not-there"}, "Model not-there is not available from provider ollama"),
        (
            {"model_id": "llama3.2:3b"},
            "Object of type 'model' and identifier 'ollama/llama3.2:3b' already exists. "
            "Unregister it first if you want to replace it.",
        ),
        (
            {"model_id": "tiny", "model_type": "embedding"},
            "Embedding model must have an embedding dimension in its metadata",
        ),
    ],
)
def test_register_errors(client, body, detail):
    response = client.post("/v1/models", json=body)

    assert response.status_code == 400
    assert response.json()["detail"] == f"Invalid value: {detail}"


def test_register_needs_provider_id_when_several_providers(tmp_path, fake):
    providers = [
        provider_entry("remote::ollama", fake.base_url),
        provider_entry("remote::vllm", fake.base_url),
    ]
    with stack_client(tmp_path, providers) as client:
        response = client.post("/v1/models", json={"model_id": "tiny"})

    assert response.status_code == 400
    assert "Please specify a provider_id for model tiny" in response.json()["detail"]


def test_unregister_then_404(client):
    assert client.delete("/v1/models/ollama/tiny").status_code == 204
    assert client.get("/v1/models/ollama/tiny").status_code == 404
    assert client.delete("/v1/models/ollama/tiny").status_code == 404


def test_run_config_models_are_registered(tmp_path, fake):
    models = [
        {
            "model_id": "emb",
            "provider_id": "ollama",
            "provider_model_id": "tiny",
            "model_type": "embedding",
            "metadata": {"embedding_dimension": 8},
        }
    ]
    with stack_client(
        tmp_path, [provider_entry("remote::ollama", fake.base_url)], models=models
    ) as client:
        model = client.get("/v1/models/ollama/tiny").json()

    assert (model["model_type"], model["metadata"]) == ("embedding", {"embedding_dimension": 8})


def test_openai_without_key_lists_nothing_and_asks_for_a_key(tmp_path):
    with FakeProvider(api_key="sk-real") as fake:
        entry = provider_entry("remote::openai", fake.base_url, api_key=None)
        with stack_client(tmp_path, [entry]) as client:
            listed = client.get("/v1/models").json()
            refused = client.post(
                "/v1/chat/completions", json={"model": "openai/llama3.2:3b", "messages": USER}
            )
            allowed = client.post(
                "/v1/chat/completions",
                json={"model": "openai/llama3.2:3b", "messages": USER},
                headers={"X-LlamaStack-Provider-Data": '{"openai_api_key": "sk-real"}'},
            )

    assert listed == {"data": []}
    assert refused.status_code == 400
    assert refused.json()["detail"] == (
        "Invalid value: API key not provided. Please provide a valid API key in the provider "
        'data header, e.g. x-llamastack-provider-data: {"openai_api_key": "<API_KEY>"}.'
    )
    assert allowed.status_code == 200, allowed.text
    assert not [r for r in fake.requests if r["path"] == "/v1/models"]


def test_openai_with_key_lists_models_with_its_embedding_table(tmp_path):
    with FakeProvider(embedding_models={"text-embedding-3-small": 1536}, api_key="sk-k") as fake:
        entry = provider_entry("remote::openai", fake.base_url, api_key="sk-k")
        with stack_client(tmp_path, [entry]) as client:
            model = client.get("/v1/models/openai/text-embedding-3-small").json()

    assert model["model_type"] == "embedding"
    assert model["metadata"] == {"embedding_dimension": 1536, "context_length": 8192}
