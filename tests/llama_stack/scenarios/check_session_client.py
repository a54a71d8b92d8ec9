"""A session-scoped client fixture built on the harness's `openai_client`, used by two tests.

Llama Stack's suite builds its clients once per session (`compat_client` over `openai_client`
and `llama_stack_client`); a project moving onto the harness keeps that shape.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def compat_client(openai_client: Any) -> Any:
    return openai_client


def test_chat_through_a_session_client(compat_client: Any, text_model_id: str) -> None:
    reply = compat_client.chat.completions.create(
        model=text_model_id, messages=[{"role": "user", "content": "session scoped"}]
    )
    assert reply.choices[0].message.content == "You said: session scoped"


def test_embeddings_through_a_session_client(
    compat_client: Any, embedding_model_id: str, embedding_dimension: int
) -> None:
    answer = compat_client.embeddings.create(model=embedding_model_id, input=["session scoped"])
    assert len(answer.data[0].embedding) == embedding_dimension
