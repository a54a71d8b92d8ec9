"""Helpers the scenario modules share (Llama Stack's responses tests keep theirs in helpers.py)."""

from __future__ import annotations

import time
from typing import Any


def wait_for_file_attachment(client: Any, vector_store_id: str, file_id: str) -> Any:
    """Poll until the stack has ingested a file into a vector store (it does so in the
    background), and fail with the stack's own error otherwise."""
    attached = client.vector_stores.files.retrieve(vector_store_id=vector_store_id, file_id=file_id)
    deadline = time.monotonic() + 30
    while attached.status == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.1)
        attached = client.vector_stores.files.retrieve(
            vector_store_id=vector_store_id, file_id=file_id
        )
    assert attached.status == "completed", f"Expected file to be attached, got {attached}"
    assert not attached.last_error
    return attached


def how_the_stream_ended(events: list[Any]) -> str:
    """The last event of a streamed response and, for a failure, the error it carries."""
    if not events:
        return "no event at all"
    last = events[-1]
    response = getattr(last, "response", None)
    error = getattr(response, "error", None) or getattr(last, "message", None)
    return f"{last.type}: {error}" if error else last.type
