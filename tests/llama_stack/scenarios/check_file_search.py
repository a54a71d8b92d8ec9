"""Responses API with the file_search tool over a file uploaded through the Files API.

The stack stores the file, splits and embeds it into a vector store (the embeddings come from
the provider), and answers a question by calling the provider twice: once with the tool offered
(the model calls file_search), once with the search results in a tool message. The fake
provider echoes that tool message, so the answer carries the document's text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.llama_stack.scenarios.helpers import how_the_stream_ended, wait_for_file_attachment

DOCUMENT = "The Llama 4 Maverick model has 128 experts in its mixture of experts architecture."
QUESTION = "How many experts does the Llama 4 Maverick model have?"


@pytest.fixture
def vector_store(
    responses_client: Any, embedding_model_id: str, embedding_dimension: int, tmp_path: Path
) -> Any:
    """A vector store holding one uploaded text file."""
    store = responses_client.vector_stores.create(
        name="harness_file_search",
        extra_body={
            "embedding_model": embedding_model_id,
            "embedding_dimension": embedding_dimension,
        },
    )
    path = tmp_path / "llama4_maverick.txt"
    path.write_text(DOCUMENT)
    with path.open("rb") as handle:
        uploaded = responses_client.files.create(file=handle, purpose="assistants")
    responses_client.vector_stores.files.create(vector_store_id=store.id, file_id=uploaded.id)
    wait_for_file_attachment(responses_client, store.id, uploaded.id)
    return store


def test_response_non_streaming_file_search(
    responses_client: Any, text_model_id: str, vector_store: Any
) -> None:
    response = responses_client.responses.create(
        model=text_model_id,
        input=QUESTION,
        tools=[{"type": "file_search", "vector_store_ids": [vector_store.id]}],
        stream=False,
        include=["file_search_call.results"],
    )

    assert len(response.output) > 1
    search = response.output[0]
    assert search.type == "file_search_call"
    assert search.status == "completed"
    assert search.queries == [QUESTION]
    assert search.results
    assert "128 experts" in search.results[0].text
    assert search.results[0].score > 0
    assert "128 experts" in response.output_text


def test_response_streaming_file_search(
    responses_client: Any, text_model_id: str, vector_store: Any
) -> None:
    stream = responses_client.responses.create(
        model=text_model_id,
        input=QUESTION,
        tools=[{"type": "file_search", "vector_store_ids": [vector_store.id]}],
        stream=True,
    )
    events = list(stream)

    types = [event.type for event in events]
    assert "response.file_search_call.completed" in types, types
    assert types[-1] == "response.completed", how_the_stream_ended(events)
    final = events[-1].response
    assert final.output[0].type == "file_search_call"
    assert "128 experts" in final.output_text
