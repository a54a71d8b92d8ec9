"""Make recorded responses deterministic, and split streams into their events.

Providers put a random ``id``, the current ``created`` time and a ``system_fingerprint`` into
every answer. Normalising them when a response is recorded means an unchanged re-record
produces a byte-identical file (clean diffs, no churn in git), and the caller sees the same
values in record and in replay. The normalised id derives from the request fingerprint, so it
is stable and still unique per interaction.

Streams are split at their framing boundaries — SSE events end at a blank line, NDJSON records
at a newline — keeping each event's exact text, so the concatenation of the stored chunks is
the stream the caller received.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

from harness.recording.records import Framing

# Only these objects carry a per-response random id; a model's id is its name and is kept.
RANDOM_ID_OBJECTS = frozenset(
    {"chat.completion", "chat.completion.chunk", "text_completion", "response"}
)
ZEROED_NUMBERS = (
    "created",
    "total_duration",
    "load_duration",
    "prompt_eval_duration",
    "eval_duration",
)
EPOCH = "1970-01-01T00:00:00Z"

SSE = Framing.SSE
NDJSON = Framing.NDJSON


def framing_for(content_type: str | None) -> Framing | None:
    """The stream framing of a response content type, or None for a plain response."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "text/event-stream":
        return SSE
    if media in ("application/x-ndjson", "application/jsonl", "application/ndjson"):
        return NDJSON
    return None


def recorded_id(fingerprint: str) -> str:
    return f"rec-{fingerprint[:16]}"


def recorded_call_id(fingerprint: str, index: int) -> str:
    """A tool call's id: the provider's is random and flows into the follow-up request."""
    return f"call_rec{fingerprint[:12]}{index}"


def _normalize_tool_calls(choices: Any, fingerprint: str) -> Any:
    if not isinstance(choices, list):
        return choices
    result = []
    for choice in choices:
        if not isinstance(choice, dict):
            result.append(choice)
            continue
        choice = dict(choice)
        for part in ("message", "delta"):
            holder = choice.get(part)
            calls = holder.get("tool_calls") if isinstance(holder, dict) else None
            if not isinstance(calls, list):
                continue
            fixed = []
            for position, call in enumerate(calls):
                if isinstance(call, dict) and isinstance(call.get("id"), str) and call["id"]:
                    index = call.get("index", position)
                    call = {**call, "id": recorded_call_id(fingerprint, int(index or 0))}
                fixed.append(call)
            choice[part] = {**holder, "tool_calls": fixed}
        result.append(choice)
    return result


def normalize_json(value: Any, fingerprint: str) -> Any:
    """A copy of a response JSON value with its non-deterministic fields fixed."""
    if not isinstance(value, dict):
        return value
    result = dict(value)
    if result.get("object") in RANDOM_ID_OBJECTS and isinstance(result.get("id"), str):
        result["id"] = recorded_id(fingerprint)
    if "choices" in result:
        result["choices"] = _normalize_tool_calls(result["choices"], fingerprint)
    for name in ZEROED_NUMBERS:
        if isinstance(result.get(name), int | float) and not isinstance(result[name], bool):
            result[name] = 0
    if isinstance(result.get("created_at"), str):
        result["created_at"] = EPOCH
    elif isinstance(result.get("created_at"), int | float):
        result["created_at"] = 0
    if result.get("system_fingerprint") is not None:
        result["system_fingerprint"] = None
    data = result.get("data")
    if isinstance(data, list):
        result["data"] = [
            {**item, "created": 0}
            if isinstance(item, dict) and isinstance(item.get("created"), int)
            else item
            for item in data
        ]
    return result


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _normalize_json_text(text: str, fingerprint: str) -> str:
    """Normalise a JSON document kept as text; unchanged text when nothing changes."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    normalized = normalize_json(parsed, fingerprint)
    return text if normalized == parsed else _dump(normalized)


_EOL = r"(?:\r\n|\r(?!\n)|\n)"
_LINE_END = re.compile(_EOL)


_LINE_WITH_END = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)?")


def normalize_event(event: str, framing: str, fingerprint: str) -> str:
    """Normalise one stream event, keeping its framing (prefixes, line endings) intact."""
    if framing == NDJSON:
        body = event.rstrip("\r\n")
        return _normalize_json_text(body, fingerprint) + event[len(body) :]
    lines = [m.group(0) for m in _LINE_WITH_END.finditer(event) if m.group(0)]
    data_lines = [i for i, line in enumerate(lines) if line.startswith("data:")]
    if len(data_lines) != 1:
        return event
    index = data_lines[0]
    line = lines[index]
    content = line.rstrip("\r\n")
    prefix = "data: " if content.startswith("data: ") else "data:"
    payload = content[len(prefix) :]
    new_payload = _normalize_json_text(payload, fingerprint)
    if new_payload == payload:
        return event
    lines[index] = prefix + new_payload + line[len(content) :]
    return "".join(lines)


_SSE_BOUNDARY = re.compile(_EOL + _EOL)


class EventSplitter:
    """Incrementally split a byte stream into complete events of the given framing."""

    def __init__(self, framing: str) -> None:
        self.framing = framing
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._buffer = ""

    def feed(self, data: bytes) -> list[str]:
        self._buffer += self._decoder.decode(data)
        events: list[str] = []
        pattern = _SSE_BOUNDARY if self.framing == SSE else _LINE_END
        while True:
            match = pattern.search(self._buffer)
            # A trailing "\r" may be the first half of "\r\n": wait for more data.
            if match is None or (match.end() == len(self._buffer) and self._buffer[-1] == "\r"):
                break
            events.append(self._buffer[: match.end()])
            self._buffer = self._buffer[match.end() :]
        return events

    def flush(self) -> list[str]:
        self._buffer += self._decoder.decode(b"", final=True)
        rest, self._buffer = self._buffer, ""
        if not rest:
            return []
        # Whatever is left (an event without its final delimiter, or a lone "\r" ending).
        return self.feed_final(rest)

    def feed_final(self, rest: str) -> list[str]:
        events: list[str] = []
        pattern = _SSE_BOUNDARY if self.framing == SSE else _LINE_END
        while rest:
            match = pattern.search(rest)
            if match is None:
                events.append(rest)
                break
            events.append(rest[: match.end()])
            rest = rest[match.end() :]
        return events
