"""Inference through the stack against a fake provider: routing, wire shapes, errors, storage."""

from __future__ import annotations

import json
import socket

import pytest

from tests.fakes.provider import FakeProvider
from tests.support.stack import provider_entry, stack_client

USER = [{"role": "user", "content": "Name one primary colour."}]
TEXT = "ollama/llama3.2:3b"
EMBED = "ollama/all-minilm:l6-v2"


@pytest.fixture
def fake():
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def client(tmp_path, fake):
    with stack_client(tmp_path, [provider_entry("remote::ollama", fake.base_url)]) as client:
        yield client


def upstream_bodies(fake, path):
    return [r["body"] for r in fake.requests if r["path"] == path]


def sse_events(text):
    assert text.endswith("\n\n")
    events = text.strip("\n").split("\n\n")
    assert all(e.startswith("data: ") for e in events)
    return [json.loads(e[len("data: ") :]) for e in events]


def test_routing_sends_the_bare_model_id_and_echoes_the_requested_one(client, fake):
    response = client.post("/v1/chat/completions", json={"model": TEXT, "messages": USER})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == TEXT
    assert body["choices"][0]["message"]["content"] == "You said: Name one primary colour."
    assert upstream_bodies(fake, "/v1/chat/completions")[0]["model"] == "llama3.2:3b"


def test_unknown_request_fields_are_forwarded(client, fake):
    client.post(
        "/v1/chat/completions",
        json={"model": TEXT, "messages": USER, "extra_thing": 1, "temperature": 0.1},
    )

    upstream = upstream_bodies(fake, "/v1/chat/completions")[0]
    assert (upstream["extra_thing"], upstream["temperature"]) == (1, 0.1)


@pytest.mark.parametrize("model", ["llama3.2:3b", "nosuchprov/x", "nope"])
def test_unroutable_model_is_404_with_llama_stacks_message(client, model):
    response = client.post("/v1/chat/completions", json={"model": model, "messages": USER})

    assert response.status_code == 404
    assert response.json()["detail"] == (
        f"Model '{model}' not found. Use 'client.models.list()' to list available Models."
    )


def test_unlisted_model_of_a_known_provider_passes_through_and_keeps_upstream_status(client, fake):
    response = client.post("/v1/chat/completions", json={"model": "ollama/ghost", "messages": USER})

    assert response.status_code == 404
    assert response.json()["detail"] == 'model "ghost" not found, try pulling it first'
    assert upstream_bodies(fake, "/v1/chat/completions")[0]["model"] == "ghost"


def test_embedding_model_used_for_chat_is_a_500(client):
    response = client.post("/v1/chat/completions", json={"model": EMBED, "messages": USER})

    assert response.status_code == 500
    assert response.json()["detail"] == "Internal server error: An unexpected error occurred."


def test_empty_messages_is_a_validation_error(client):
    response = client.post("/v1/chat/completions", json={"model": TEXT, "messages": []})

    assert response.status_code == 400
    assert response.json()["error"]["detail"]["errors"][0]["type"] == "too_short"


def test_tool_choice_needs_tools(client):
    response = client.post(
        "/v1/chat/completions", json={"model": TEXT, "messages": USER, "tool_choice": "auto"}
    )

    assert response.status_code == 400
    assert response.json()["detail"] == (
        "Invalid value: 'tool_choice' is only allowed when 'tools' is also provided"
    )


def test_tool_choice_none_clears_tools(client, fake):
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}

    response = client.post(
        "/v1/chat/completions",
        json={"model": TEXT, "messages": USER, "tools": [tool], "tool_choice": "none"},
    )

    assert response.json()["choices"][0]["finish_reason"] == "stop"
    assert "tools" not in upstream_bodies(fake, "/v1/chat/completions")[0]


def test_tool_call_comes_back_from_the_provider(client):
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {}}, "required": ["city"]},
        },
    }

    response = client.post(
        "/v1/chat/completions", json={"model": TEXT, "messages": USER, "tools": [tool]}
    )

    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_streaming_is_sse_without_done_and_echoes_the_requested_model(client):
    response = client.post(
        "/v1/chat/completions", json={"model": TEXT, "messages": USER, "stream": True}
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in response.text
    chunks = sse_events(response.text)
    assert len(chunks) > 2
    assert {c["model"] for c in chunks} == {TEXT}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "You said: Name one primary colour."


def test_chat_completions_are_stored_plain_and_streamed(client):
    plain = client.post("/v1/chat/completions", json={"model": TEXT, "messages": USER}).json()
    streamed = sse_events(
        client.post(
            "/v1/chat/completions", json={"model": TEXT, "messages": USER, "stream": True}
        ).text
    )

    stored_plain = client.get(f"/v1/chat/completions/{plain['id']}").json()
    stored_stream = client.get(f"/v1/chat/completions/{streamed[0]['id']}").json()
    listed = client.get("/v1/chat/completions", params={"limit": 1, "model": TEXT}).json()
    rest = client.get("/v1/chat/completions", params={"after": listed["last_id"]}).json()

    assert stored_plain["input_messages"] == USER
    assert stored_plain["choices"] == plain["choices"]
    assert stored_stream["choices"][0]["message"]["content"] == "You said: Name one primary colour."
    assert stored_stream["choices"][0]["finish_reason"] == "stop"
    assert stored_stream["model"] == TEXT
    assert listed["has_more"] is True and rest["has_more"] is False
    assert {listed["first_id"], rest["first_id"]} == {plain["id"], streamed[0]["id"]}


def test_unknown_stored_completion_is_404(client):
    assert client.get("/v1/chat/completions/chatcmpl-nope").status_code == 404


def test_upstream_error_on_a_stream_is_an_ordinary_error_response(client):
    response = client.post(
        "/v1/chat/completions", json={"model": "ollama/ghost", "messages": USER, "stream": True}
    )

    assert response.status_code == 404
    assert response.json()["detail"] == 'model "ghost" not found, try pulling it first'


def test_error_mid_stream_becomes_an_error_event(tmp_path):
    with (
        FakeProvider(fail_stream_after=2) as fake,
        stack_client(tmp_path, [provider_entry("remote::ollama", fake.base_url)]) as client,
    ):
        response = client.post(
            "/v1/chat/completions", json={"model": TEXT, "messages": USER, "stream": True}
        )

    events = sse_events(response.text)
    assert response.status_code == 200
    assert len(events) == 3
    assert events[-1] == {"error": {"message": "500: the fake provider failed mid-stream"}}


def test_connection_failure_is_502_naming_provider_and_url(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with stack_client(tmp_path, [provider_entry("remote::ollama", dead)]) as client:
        response = client.post("/v1/chat/completions", json={"model": TEXT, "messages": USER})
        models = client.get("/v1/models").json()

    assert response.status_code == 502
    assert response.json()["detail"].startswith(
        f"Could not connect to provider 'ollama' at {dead}/v1"
    )
    assert models == {"data": []}


def test_completions_and_embeddings_echo_the_requested_model(client, fake):
    completion = client.post("/v1/completions", json={"model": TEXT, "prompt": "Once"}).json()
    embeddings = client.post("/v1/embeddings", json={"model": EMBED, "input": ["a", "b"]}).json()

    assert completion["model"] == TEXT and completion["object"] == "text_completion"
    assert embeddings["model"] == EMBED
    assert [len(d["embedding"]) for d in embeddings["data"]] == [384, 384]
    assert upstream_bodies(fake, "/v1/embeddings")[0]["model"] == "all-minilm:l6-v2"


def test_streamed_completion_passes_chunks_through(client):
    response = client.post(
        "/v1/completions", json={"model": TEXT, "prompt": "Once", "stream": True}
    )

    chunks = sse_events(response.text)
    assert {c["model"] for c in chunks} == {TEXT}
    assert "".join(c["choices"][0]["text"] for c in chunks).strip()


def test_vllm_sends_its_token_and_default_max_tokens(tmp_path):
    with FakeProvider(api_key="vllm-token") as fake:
        entry = provider_entry("remote::vllm", fake.base_url, api_token="vllm-token", max_tokens=77)
        with stack_client(tmp_path, [entry]) as client:
            models = [m["id"] for m in client.get("/v1/models").json()["data"]]
            client.post(
                "/v1/chat/completions", json={"model": "vllm/llama3.2:3b", "messages": USER}
            )

    assert "vllm/llama3.2:3b" in models
    (chat,) = [r for r in fake.requests if r["path"] == "/v1/chat/completions"]
    assert chat["headers"]["Authorization"] == "Bearer vllm-token"
    assert chat["body"]["max_tokens"] == 77
