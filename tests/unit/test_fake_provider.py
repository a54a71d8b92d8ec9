"""The fake provider speaks the OpenAI and Ollama wire formats over real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.fakes.provider import FakeProvider

USER = [{"role": "user", "content": "hello fake"}]


@pytest.fixture
def fake():
    with FakeProvider() as fake:
        yield fake


def test_lists_default_models_openai_and_ollama_style(fake):
    openai_ids = [m["id"] for m in httpx.get(f"{fake.base_url}/v1/models").json()["data"]]
    ollama_names = [m["name"] for m in httpx.get(f"{fake.base_url}/api/tags").json()["models"]]

    assert openai_ids == ollama_names == ["llama3.2:3b", "all-minilm:l6-v2"]


def test_chat_echoes_the_last_user_message_with_fresh_ids(fake):
    body = {"model": "llama3.2:3b", "messages": USER}

    first = httpx.post(f"{fake.base_url}/v1/chat/completions", json=body).json()
    second = httpx.post(f"{fake.base_url}/v1/chat/completions", json=body).json()

    assert first["choices"][0]["message"]["content"] == "You said: hello fake"
    assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]
    assert first["id"] != second["id"]
    assert fake.requests[0]["body"] == body
    assert fake.requests[0]["path"] == "/v1/chat/completions"


def test_chat_stream_is_sse_chunks_ending_with_done(fake):
    body = {"model": "llama3.2:3b", "messages": USER, "stream": True}
    with httpx.stream("POST", f"{fake.base_url}/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"] == "text/event-stream"
        lines = [line for line in response.iter_lines() if line]

    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "You said: hello fake"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert len({c["id"] for c in chunks}) == 1


def test_tools_give_a_deterministic_tool_call_then_an_answer(fake):
    tool = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"required": ["query"]}},
    }
    body = {"model": "llama3.2:3b", "messages": USER, "tools": [tool]}

    call = httpx.post(f"{fake.base_url}/v1/chat/completions", json=body).json()["choices"][0]
    follow_up = {**body, "messages": [*USER, {"role": "tool", "content": "42"}]}
    answer = httpx.post(f"{fake.base_url}/v1/chat/completions", json=follow_up).json()

    assert call["finish_reason"] == "tool_calls"
    function = call["message"]["tool_calls"][0]["function"]
    assert (function["name"], json.loads(function["arguments"])) == (
        "lookup",
        {"query": "hello fake"},
    )
    assert answer["choices"][0]["message"]["content"] == "The tool said: 42"


def test_embeddings_are_deterministic_unit_vectors_of_the_models_dimension(fake):
    body = {"model": "all-minilm:l6-v2", "input": ["a", "b"]}

    first = httpx.post(f"{fake.base_url}/v1/embeddings", json=body).json()["data"]
    again = httpx.post(f"{fake.base_url}/v1/embeddings", json=body).json()["data"]

    assert [len(d["embedding"]) for d in first] == [384, 384]
    assert first == again
    assert first[0]["embedding"] != first[1]["embedding"]
    assert abs(sum(v * v for v in first[0]["embedding"]) - 1) < 1e-3


def test_completions(fake):
    body = {"model": "llama3.2:3b", "prompt": "Once upon"}

    response = httpx.post(f"{fake.base_url}/v1/completions", json=body).json()

    assert response["object"] == "text_completion"
    assert "Once upon" in response["choices"][0]["text"]


def test_unknown_model_is_a_404_in_openai_error_shape(fake):
    response = httpx.post(
        f"{fake.base_url}/v1/chat/completions", json={"model": "ghost", "messages": USER}
    )

    assert response.status_code == 404
    assert "ghost" in response.json()["error"]["message"]


def test_ollama_native_chat_streams_ndjson(fake):
    body = {"model": "llama3.2:3b", "messages": USER}
    with httpx.stream("POST", f"{fake.base_url}/api/chat", json=body) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]

    assert "".join(line["message"]["content"] for line in lines) == "You said: hello fake"
    assert [line["done"] for line in lines][-2:] == [False, True]


def test_api_key_is_required_when_set():
    with FakeProvider(api_key="sk-1") as fake:
        refused = httpx.get(f"{fake.base_url}/v1/models")
        allowed = httpx.get(f"{fake.base_url}/v1/models", headers={"Authorization": "Bearer sk-1"})

    assert refused.status_code == 401
    assert allowed.status_code == 200


def test_custom_models_and_fail_stream_after():
    with FakeProvider(models=["m1"], embedding_models={}, fail_stream_after=1) as fake:
        ids = [m["id"] for m in httpx.get(f"{fake.base_url}/v1/models").json()["data"]]
        body = {"model": "m1", "messages": USER, "stream": True}
        with httpx.stream("POST", f"{fake.base_url}/v1/chat/completions", json=body) as response:
            lines = [line for line in response.iter_lines() if line]

    assert ids == ["m1"]
    assert json.loads(lines[1][6:])["error"]["message"] == "the fake provider failed mid-stream"


def test_the_reset_model_resets_the_connection_before_any_response(fake):
    with pytest.raises(httpx.ReadError):
        httpx.post(
            f"{fake.base_url}/v1/chat/completions", json={"model": "fault:reset", "messages": USER}
        )
    assert fake.requests[-1]["body"]["model"] == "fault:reset"


def test_the_stall_model_answers_only_after_stall_seconds():
    body = {"model": "fault:stall", "messages": USER}
    with FakeProvider(stall_seconds=1.0) as fake:
        url = f"{fake.base_url}/v1/chat/completions"
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url, json=body, timeout=0.2)
        answer = httpx.post(url, json=body, timeout=5).json()

    assert answer["choices"][0]["message"]["content"] == "You said: hello fake"
