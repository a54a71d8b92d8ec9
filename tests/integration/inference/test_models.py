"""The model registry as clients see it: OpenAI fields and Llama Stack fields."""

from __future__ import annotations

from tests.integration.wire import error_message, model_field


def test_models_list_has_the_text_and_embedding_models(
    openai_client, text_model_id, embedding_model_id
):
    models = {m.id: m for m in openai_client.models.list()}

    assert text_model_id in models
    assert embedding_model_id in models
    assert model_field(models[text_model_id].model_extra, "model_type") == "llm"
    assert model_field(models[embedding_model_id].model_extra, "model_type") == "embedding"


def test_model_carries_its_provider_and_provider_model_id(http_client, text_model_id):
    provider_id, provider_model_id = text_model_id.split("/", 1)

    response = http_client.get(f"/v1/models/{text_model_id}")

    assert response.status_code == 200, response.text
    model = response.json()
    assert model["identifier"] == text_model_id
    assert model["provider_id"] == provider_id
    assert model["provider_resource_id"] == provider_model_id


def test_unknown_model_lookup_is_404(http_client):
    response = http_client.get("/v1/models/nosuchprovider/nosuchmodel")

    assert response.status_code == 404
    assert "not found" in error_message(response)
