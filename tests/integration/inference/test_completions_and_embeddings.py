"""Text completions and embeddings through the stack."""

from __future__ import annotations

from tests.integration.wire import model_field


def test_completion_returns_text(openai_client, text_model_id):
    response = openai_client.completions.create(
        model=text_model_id, prompt="The capital of France is", max_tokens=16
    )

    assert response.object == "text_completion"
    assert response.model == text_model_id
    assert response.choices[0].text.strip()


def test_embeddings_have_the_models_dimension(openai_client, embedding_model_id):
    models = {m.id: m for m in openai_client.models.list()}
    dimension = model_field(models[embedding_model_id].model_extra, "embedding_dimension")

    response = openai_client.embeddings.create(
        model=embedding_model_id, input=["a red apple", "a green pear"]
    )

    assert response.model == embedding_model_id
    assert [item.index for item in response.data] == [0, 1]
    assert all(len(item.embedding) == dimension for item in response.data)
    assert response.data[0].embedding != response.data[1].embedding


def test_embedding_the_same_text_twice_gives_the_same_vector(openai_client, embedding_model_id):
    first = openai_client.embeddings.create(model=embedding_model_id, input="stable input")
    second = openai_client.embeddings.create(model=embedding_model_id, input="stable input")

    assert first.data[0].embedding == second.data[0].embedding
