"""Chat completions through the stack: routing, the OpenAI wire shape, streaming, storage."""

from __future__ import annotations

import openai
import pytest

from tests.integration.wire import error_message, stored_completion

QUESTION = [{"role": "user", "content": "Name one primary colour."}]


def test_chat_completion_returns_an_assistant_message(openai_client, text_model_id):
    response = openai_client.chat.completions.create(model=text_model_id, messages=QUESTION)

    assert response.object == "chat.completion"
    assert response.model == text_model_id
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason == "stop"


def test_chat_completion_is_stored_with_its_input_messages(
    openai_client, http_client, text_model_id
):
    response = openai_client.chat.completions.create(model=text_model_id, messages=QUESTION)

    body = stored_completion(http_client, response.id)

    assert body["id"] == response.id
    assert body["input_messages"][0]["content"] == QUESTION[0]["content"]
    assert body["choices"][0]["message"]["content"] == response.choices[0].message.content


def test_streaming_chat_completion_arrives_in_chunks_and_is_stored(
    openai_client, http_client, text_model_id
):
    stream = openai_client.chat.completions.create(
        model=text_model_id, messages=QUESTION, stream=True
    )
    chunks = list(stream)

    assert len(chunks) > 1
    assert {chunk.id for chunk in chunks} == {chunks[0].id}
    assert all(chunk.model == text_model_id for chunk in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].choices[0].finish_reason == "stop"

    stored = stored_completion(http_client, chunks[0].id)
    assert stored["choices"][0]["message"]["content"] == text


def test_unknown_model_is_404_naming_the_model(openai_client):
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.chat.completions.create(model="nosuchprovider/nosuchmodel", messages=QUESTION)

    assert "Model 'nosuchprovider/nosuchmodel' not found" in error_message(caught.value.response)
