"""Clients a test builds itself, not the harness's fixtures, as some of Llama Stack's tests do
(`OpenAI(base_url=...)` for other users, raw `httpx` and `requests` calls)."""

from __future__ import annotations

import httpx
import openai
import requests


def test_an_openai_client_the_test_builds(stack_base_url: str, text_model_id: str) -> None:
    client = openai.OpenAI(base_url=f"{stack_base_url}/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(
        model=text_model_id, messages=[{"role": "user", "content": "built by the test"}]
    )
    assert reply.choices[0].message.content == "You said: built by the test"


def test_a_raw_httpx_request(stack_base_url: str, text_model_id: str) -> None:
    answer = httpx.post(
        f"{stack_base_url}/v1/chat/completions",
        json={"model": text_model_id, "messages": [{"role": "user", "content": "raw httpx"}]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "You said: raw httpx"


def test_a_raw_requests_request(
    stack_base_url: str, embedding_model_id: str, embedding_dimension: int
) -> None:
    answer = requests.post(
        f"{stack_base_url}/v1/embeddings",
        json={"model": embedding_model_id, "input": ["raw requests"]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["data"][0]["embedding"]) == embedding_dimension
