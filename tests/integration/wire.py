"""What differs between Llama Stack releases on the wire, in one place.

The suite asserts behaviour every release shares, so it runs unchanged against the reference
stack, Llama Stack 0.3.x and Llama Stack 0.7.x. What the releases disagree on is read here:

- error bodies: ``{"detail": ...}`` up to 0.3, ``{"error": {"message": ...}}`` from 0.4
  (validation errors then arrive as the text of a Python dict), with or without the
  ``Invalid value: `` prefix;
- prompt updates and set-default-version: POST up to 0.3, PUT from 0.4;
- DELETE of a prompt: 204 with no body up to 0.3, 200 with ``null`` from 0.4;
- model fields: Llama Stack's own at the top level up to 0.3, under ``custom_metadata`` in the
  OpenAI-shaped listing from 0.4;
- stored chat completions: written from a queue after the answer, so readable a moment later.
"""

from __future__ import annotations

import ast
import re
import time
from typing import Any

import httpx

INVALID_VALUE = "Invalid value: "


def error_message(response: httpx.Response) -> str:
    """The human-readable error of a 4xx/5xx answer, without the 'Invalid value: ' prefix."""
    body = response.json()
    detail = body.get("detail")
    error = body.get("error")
    if isinstance(detail, str):
        message = detail
    elif isinstance(error, dict) and isinstance(error.get("message"), str):
        message = error["message"]
    else:
        message = str(detail if detail is not None else error)
    return message.removeprefix(INVALID_VALUE)


def validation_errors(response: httpx.Response) -> list[dict[str, Any]]:
    """The pydantic-style error list of a 400, whichever envelope carried it."""
    body = response.json()
    for holder in (body.get("detail"), (body.get("error") or {}).get("detail")):
        if isinstance(holder, dict) and isinstance(holder.get("errors"), list):
            return holder["errors"]
    message = (body.get("error") or {}).get("message", "")
    parsed = ast.literal_eval(message) if message.startswith("{'errors'") else {}
    return list(parsed.get("errors", []))


def server_version(http_client: httpx.Client) -> tuple[int, int]:
    """The (major, minor) the stack reports at /v1/version."""
    text = http_client.get("/v1/version").json()["version"]
    numbers = [int(re.match(r"\d*", part).group() or 0) for part in text.split(".")[:2]]
    return (numbers + [0, 0])[0], (numbers + [0, 0])[1]


def write_method(http_client: httpx.Client) -> str:
    """How this stack takes a prompt update or a new default version."""
    return "PUT" if server_version(http_client) >= (0, 4) else "POST"


def update_prompt(http_client: httpx.Client, prompt_id: str, **body: Any) -> httpx.Response:
    return http_client.request(write_method(http_client), f"/v1/prompts/{prompt_id}", json=body)


def set_default_version(http_client: httpx.Client, prompt_id: str, version: int) -> httpx.Response:
    path = f"/v1/prompts/{prompt_id}/set-default-version"
    return http_client.request(write_method(http_client), path, json={"version": version})


def deleted(response: httpx.Response) -> bool:
    """A prompt DELETE that succeeded, as any release answers it."""
    return (response.status_code, response.content) in ((204, b""), (200, b"null"))


def model_field(model: dict[str, Any], name: str) -> Any:
    """A Llama Stack model field, at the top level or under custom_metadata."""
    if name in model:
        return model[name]
    custom = model.get("custom_metadata") or {}
    if name in custom:
        return custom[name]
    return (model.get("metadata") or {}).get(name)


def stored_completion(http_client: httpx.Client, completion_id: str, wait: float = 10.0) -> Any:
    """A chat completion from the inference store. Llama Stack writes it after answering, from a
    queue, so it may take a moment to appear; the reference stack has it at once."""
    deadline = time.monotonic() + wait
    while True:
        response = http_client.get(f"/v1/chat/completions/{completion_id}")
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            return response.json()
        time.sleep(0.1)
