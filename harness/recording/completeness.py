"""Whether a stream reached its end, judged from its own events.

A stream cut short (the provider died, the client went away, pytest was killed) can still end
in a clean end-of-file: a close-delimited body has no length to check. Replaying such a
recording would give every later run a truncated answer, so a stream is recorded, and passes
``harness recordings verify``, only if its events say it finished:

- SSE in the OpenAI shape (``chat.completion.chunk`` / ``text_completion`` events) ends with
  ``data: [DONE]`` or, as Llama Stack sends no ``[DONE]``, with a choice whose
  ``finish_reason`` is set;
- NDJSON in Ollama's shape (objects with a ``done`` field) ends with ``"done": true``;
- a stream of any other shape has no end marker we know of, so a clean end of the HTTP body
  is all there is to go on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from harness.recording.normalize import NDJSON, SSE

OPENAI_CHUNK_OBJECTS = frozenset({"chat.completion.chunk", "text_completion"})


def _sse_payloads(event: str) -> list[str]:
    return [line[5:].strip() for line in event.splitlines() if line.startswith("data:")]


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _finished_choice(value: Any) -> bool:
    choices = value.get("choices") if isinstance(value, dict) else None
    return isinstance(choices, list) and any(
        isinstance(c, dict) and c.get("finish_reason") for c in choices
    )


def cut_reason(framing: str, events: Iterable[str]) -> str | None:
    """Why a stream of these events looks cut short; None when it ended as its shape says."""
    events = list(events)
    if framing == SSE:
        payloads = [p for e in events for p in _sse_payloads(e)]
        if "[DONE]" in payloads:
            return None
        values = [_json(p) for p in payloads]
        openai_shaped = any(
            isinstance(v, dict) and v.get("object") in OPENAI_CHUNK_OBJECTS for v in values
        )
        if not openai_shaped or any(_finished_choice(v) for v in values):
            return None
        return (
            f"an OpenAI-style stream of {len(events)} event(s) with no [DONE] and no finish_reason"
        )
    if framing == NDJSON:
        values = [_json(e) for e in events if e.strip()]
        shaped = [v for v in values if isinstance(v, dict) and "done" in v]
        if not shaped or shaped[-1].get("done") is True:
            return None
        return f'an NDJSON stream of {len(events)} line(s) whose last has no "done": true'
    return None
