"""Background responses: the stack queues the work and answers at once; worker tasks it starts
on the first such request call the provider later, while the test polls for the result."""

from __future__ import annotations

import time
from typing import Any

import pytest


def wait_for_completion(client: Any, response_id: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        retrieved = client.responses.retrieve(response_id=response_id)
        if retrieved.status == "completed":
            return retrieved
        if retrieved.status == "failed":
            pytest.fail(f"Background response failed: {retrieved.error}")
        assert retrieved.status in ("queued", "in_progress")
        time.sleep(0.1)
    pytest.fail(f"Background response did not complete within {timeout} seconds")


@pytest.mark.parametrize("question", ["Say hello", "Say goodbye"])
def test_background_response_completes(
    responses_client: Any, text_model_id: str, question: str
) -> None:
    response = responses_client.responses.create(
        model=text_model_id, input=question, background=True
    )
    assert response.status == "queued"
    assert response.background is True
    assert response.id.startswith("resp_")

    retrieved = wait_for_completion(responses_client, response.id)

    # Not `retrieved.background`: 0.7.3 stores the completed response (background=False) before
    # its worker marks it background=True, so a poll in between reads False.
    assert retrieved.output_text == f"You said: {question}"
