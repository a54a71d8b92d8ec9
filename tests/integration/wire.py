"""What differs between Llama Stack releases, and OGX, on the wire, in one place.

The suite asserts behaviour every release shares, so it runs unchanged against the reference
stack, Llama Stack 0.3.x and 0.7.x, and OGX 1.5 (Llama Stack renamed). What the releases
disagree on is read here:

- error bodies: ``{"detail": ...}`` up to 0.3, ``{"error": {"message": ...}}`` from 0.4
  (validation errors then arrive as the text of a Python dict), with or without the
  ``Invalid value: `` prefix;
- prompt updates and set-default-version: POST up to 0.3, PUT from 0.4;
- DELETE of a prompt: 204 with no body up to 0.3, 200 with ``null`` from 0.4;
- model fields: Llama Stack's own at the top level up to 0.3, under ``custom_metadata`` in the
  OpenAI-shaped listing from 0.4;
- stored chat completions: written from a queue after the answer, so readable a moment later.

What each flavour documents for the Prompts API, where Llama Stack (and the reference stack,
which reads as Llama Stack) and OGX differ, is :data:`PROMPT_WIRE` (the flavour is what
`GET /v1/version` says: `harness.stack.prompts_location.stack_flavour`):

- an unknown prompt or version, also in a DELETE or set-default-version: 400 from Llama Stack,
  404 from OGX, each with its own text;
- a stale or a zero version: other texts;
- a prompt read back after its create: `is_default` false from Llama Stack, true from OGX
  (both answer the create itself with false);
- an undeclared variable: OGX sends pydantic's error as text in `detail`;
- updates and set-default-version: PUT only, as Llama Stack from 0.4.
"""

from __future__ import annotations

import ast
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx

from harness.stack.prompts_location import stack_flavour

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
    """The pydantic-style error list of a 400, whichever envelope carried it: a dict, the
    text of a Python dict (Llama Stack 0.4+), or the text of a ValidationError (OGX)."""
    body = response.json()
    for holder in (body.get("detail"), (body.get("error") or {}).get("detail")):
        if isinstance(holder, dict) and isinstance(holder.get("errors"), list):
            return holder["errors"]
    detail = body.get("detail")
    if isinstance(detail, str) and _PYDANTIC_TEXT.match(detail):
        return _pydantic_text_errors(detail)
    message = (body.get("error") or {}).get("message", "")
    parsed = ast.literal_eval(message) if message.startswith("{'errors'") else {}
    return list(parsed.get("errors", []))


_PYDANTIC_TEXT = re.compile(r"\d+ validation errors? for \w+\n")


def _pydantic_text_errors(text: str) -> list[dict[str, Any]]:
    """`str(ValidationError)` as the list `.errors()` gives: a line with the location (none for
    a model's own validator), then the message, indented, with `[type=...]` after it."""
    errors: list[dict[str, Any]] = []
    loc: list[str] = []
    for line in text.splitlines()[1:]:
        if line.startswith("    "):  # "For further information visit ..."
            continue
        if line.startswith("  "):
            msg, _, rest = line.strip().partition(" [type=")
            errors.append({"loc": loc, "msg": msg, "type": rest.split(",", 1)[0]})
            loc = []
        elif line.strip():
            loc = line.strip().split(".")
    return errors


def server_version(http_client: httpx.Client) -> tuple[int, int]:
    """The (major, minor) the stack reports at /v1/version."""
    text = http_client.get("/v1/version").json()["version"]
    numbers = [int(re.match(r"\d*", part).group() or 0) for part in text.split(".")[:2]]
    return (numbers + [0, 0])[0], (numbers + [0, 0])[1]


def write_method(http_client: httpx.Client) -> str:
    """How this stack takes a prompt update or a new default version (OGX: PUT, its version
    being 1.x)."""
    return "PUT" if server_version(http_client) >= (0, 4) else "POST"


def update_prompt(http_client: httpx.Client, prompt_id: str, **body: Any) -> httpx.Response:
    return http_client.request(write_method(http_client), f"/v1/prompts/{prompt_id}", json=body)


def set_default_version(http_client: httpx.Client, prompt_id: str, version: int) -> httpx.Response:
    path = f"/v1/prompts/{prompt_id}/set-default-version"
    return http_client.request(write_method(http_client), path, json={"version": version})


@dataclass(frozen=True)
class PromptWire:
    """What one stack flavour answers where the flavours' Prompts APIs differ. The texts are
    format strings of `prompt_id`, `version` and `latest`."""

    not_found: int  # the status of an unknown prompt or version
    unknown_prompt: str
    unknown_version: str
    missing_default_version: str  # set-default-version to a version that does not exist
    stale_version: str  # an update that does not name the latest version
    version_below_one: str
    read_back_is_default: bool  # `is_default` of a prompt read back after its create

    def text(self, name: str, **values: Any) -> str:
        return getattr(self, name).format(**values)


_OGX_UNKNOWN_VERSION = (
    "Prompt version '{version}' not found in prompt '{prompt_id}'. Use "
    "'client.prompts.list_versions(\"{prompt_id}\")' to list available prompt versions."
)
PROMPT_WIRE = {
    "llama-stack": PromptWire(
        not_found=400,
        unknown_prompt="Prompt {prompt_id}:default not found",
        unknown_version="Prompt {prompt_id}:{version} not found",
        missing_default_version="Prompt {prompt_id} version {version} not found",
        stale_version=(
            "'{version}' is not the latest prompt version for prompt_id='{prompt_id}'. "
            "Use the latest version '{latest}' in request."
        ),
        version_below_one="Version must be >= 1",
        read_back_is_default=False,
    ),
    "ogx": PromptWire(
        not_found=404,
        unknown_prompt=(
            "Prompt '{prompt_id}' not found. Use 'client.prompts.list()' to list available Prompts."
        ),
        unknown_version=_OGX_UNKNOWN_VERSION,
        missing_default_version=_OGX_UNKNOWN_VERSION,
        stale_version=(
            "Invalid value for 'version': {version}. Must be the latest prompt version '{latest}'."
        ),
        version_below_one="Invalid value for 'version': {version}. Must be >= 1.",
        read_back_is_default=True,
    ),
}


def prompt_wire(http_client: httpx.Client) -> PromptWire:
    """The Prompts API answers of the flavour of stack that serves `http_client`."""
    return PROMPT_WIRE[stack_flavour(http_client.get("/v1/version").json()["version"])]


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
