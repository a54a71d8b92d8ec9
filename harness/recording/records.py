"""The recording: one interaction as a typed value, with its one JSON form and one validation.

Every layer that records (the provider transport, the other client adapters, vcrpy's client
layer) builds a :class:`Recording`, and every layer that replays reads one; the JSON shape is
written down only here. The file format (pretty, keys sorted)::

    {"fingerprint": str, "test_id": str, "occurrence": int (only when > 0),
     "provenance": {"stack": str, "setup": str} (optional, not part of the fingerprint),
     "request": {"method", "path", "query", "headers", "body",
                 "ids": {raw text: placeholder} (only when ids were normalised)},
     "response": {"status": int, "headers": {str: str}, and exactly one of
                  "body": <JSON value> | "text": str |
                  "stream": {"framing": "sse"|"ndjson", "chunks": [{"at": s, "data": str}]} |
                  "failure": {"kind": <FailureKind>, "message": str}}}

A ``failure`` is a request that never got an answer (connection refused, reset, timed out): it
is replayed by raising the same kind of error, so error-path tests replay too. Its ``status``
is 0.

Validation is strict because recordings are edited by hand and come from pull requests: a
wrong field names the file and the field, instead of surfacing later as a bare 500, a hang or
an empty stream.
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness.recording.errors import RecordingError

# A chunk's time is seconds after the request; a stream that took longer than this was not a
# model answering, and a paced replay must never wait that long.
MAX_CHUNK_SECONDS = 3600.0
MAX_NESTING = 200  # JSON deeper than this is not a provider exchange (and would blow the stack)


class Framing(enum.StrEnum):
    SSE = "sse"
    NDJSON = "ndjson"


class FailureKind(enum.StrEnum):
    """How a request failed before any answer came back."""

    CONNECT = "connect"  # refused, unreachable, no such host
    CONNECT_TIMEOUT = "connect-timeout"
    READ_TIMEOUT = "read-timeout"
    WRITE_TIMEOUT = "write-timeout"
    RESET = "reset"  # the connection broke while reading or writing
    PROTOCOL = "protocol"  # the peer closed or spoke no HTTP


@dataclass(frozen=True)
class Chunk:
    at: float
    data: str


@dataclass(frozen=True)
class JsonBody:
    value: Any


@dataclass(frozen=True)
class TextBody:
    text: str


@dataclass(frozen=True)
class Stream:
    framing: Framing
    chunks: tuple[Chunk, ...]

    def text(self) -> str:
        return "".join(chunk.data for chunk in self.chunks)


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    message: str


Payload = JsonBody | TextBody | Stream | Failure


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, Any]
    headers: dict[str, str]
    body: Any
    ids: dict[str, str] = field(default_factory=dict)  # raw text -> placeholder (fingerprint.py)


@dataclass(frozen=True)
class RecordedResponse:
    status: int
    headers: dict[str, str]
    payload: Payload

    def content(self) -> bytes:
        """The bytes a non-stream response replays as."""
        payload = self.payload
        if isinstance(payload, TextBody):
            return payload.text.encode("utf-8")
        if isinstance(payload, JsonBody):
            return json.dumps(payload.value, ensure_ascii=False, sort_keys=True).encode("utf-8")
        if isinstance(payload, Stream):
            return payload.text().encode("utf-8")
        return b""


@dataclass(frozen=True)
class Recording:
    fingerprint: str
    test_id: str
    request: RecordedRequest
    response: RecordedResponse
    occurrence: int = 0
    provenance: MappingProxyType[str, str] = field(
        default_factory=lambda: MappingProxyType({}), compare=False
    )

    # -- JSON ---------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        request: dict[str, Any] = {
            "method": self.request.method,
            "path": self.request.path,
            "query": self.request.query,
            "headers": self.request.headers,
            "body": self.request.body,
        }
        if self.request.ids:
            request["ids"] = self.request.ids
        data: dict[str, Any] = {
            "fingerprint": self.fingerprint,
            "test_id": self.test_id,
            "request": request,
            "response": _response_json(self.response),
        }
        if self.occurrence:
            data["occurrence"] = self.occurrence
        if self.provenance:
            data["provenance"] = dict(self.provenance)
        return data

    def dumps(self) -> str:
        """The exact text of a recording file."""
        return dumps(self.to_json())

    @classmethod
    def from_json(cls, data: Any, path: Path | str) -> Recording:
        """A recording from its parsed JSON; RecordingError names the file and the field."""
        return _Reader(str(path)).recording(data)

    @classmethod
    def loads(cls, text: str, path: Path | str) -> Recording:
        return cls.from_json(parse_json(text, path), path)


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def parse_json(text: str, path: Path | str) -> Any:
    """Strict JSON: no NaN or Infinity, no nesting deeper than MAX_NESTING."""

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        value = json.loads(text, parse_constant=constant)
    except RecursionError:
        value, depth = None, _max_depth_of_text(text)
    except ValueError as exc:
        raise RecordingError(
            f"{path}: malformed recording: expected JSON ({exc}). {_FIX}"
        ) from None
    else:
        depth = _max_depth(value)
    if depth > MAX_NESTING:
        raise RecordingError(
            f"{path}: malformed recording: JSON nested {depth} levels deep "
            f"(at most {MAX_NESTING}). {_FIX}"
        )
    return value


_FIX = "Re-record it (LLAMA_STACK_TEST_INFERENCE_MODE=record) or delete the file."
_STRING = re.compile(r'"(?:\\.|[^"\\])*"')


def _max_depth(value: Any) -> int:
    """How deep a parsed JSON value's arrays and objects nest (iteratively, stopping early)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            items: Any = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_NESTING:
            return deepest
        stack.extend((child, depth + 1) for child in items if isinstance(child, dict | list))
    return deepest


def _max_depth_of_text(text: str) -> int:
    """The nesting of a text too deep for the parser (strings skipped), without parsing it."""
    depth = deepest = 0
    for char in _STRING.sub("", text):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _response_json(response: RecordedResponse) -> dict[str, Any]:
    data: dict[str, Any] = {"status": response.status, "headers": response.headers}
    payload = response.payload
    if isinstance(payload, JsonBody):
        data["body"] = payload.value
    elif isinstance(payload, TextBody):
        data["text"] = payload.text
    elif isinstance(payload, Stream):
        data["stream"] = {
            "framing": str(payload.framing),
            "chunks": [{"at": c.at, "data": c.data} for c in payload.chunks],
        }
    else:
        data["failure"] = {"kind": str(payload.kind), "message": payload.message}
    return data


_PAYLOAD_KEYS = ("body", "text", "stream", "failure")
_SSE_LINE = re.compile(r"^(?:data|event|id|retry)(?::|$)|^:|^$")


class _Reader:
    """Reads one recording's JSON, failing with the file and the dotted field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, what: str) -> RecordingError:
        return RecordingError(f"{self.source}: malformed recording: expected {what}. {_FIX}")

    def mapping(self, value: Any, name: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f'"{name}" to be an object')
        return value

    def string(self, value: Any, name: str) -> str:
        if not isinstance(value, str):
            raise self.fail(f'"{name}" to be a string')
        return value

    def strings(self, value: Any, name: str) -> dict[str, str]:
        value = self.mapping(value, name)
        for key, item in value.items():
            if not isinstance(item, str):
                raise self.fail(f'"{name}.{key}" to be a string')
        return value

    def integer(self, value: Any, name: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(f'"{name}" to be an integer')
        return value

    def recording(self, data: Any) -> Recording:
        if not isinstance(data, dict):
            raise self.fail("a JSON object at the top level")
        fingerprint = self.string(data.get("fingerprint"), "fingerprint")
        test_id = self.string(data.get("test_id"), "test_id")
        occurrence = self.integer(data.get("occurrence", 0), "occurrence")
        if occurrence < 0:
            raise self.fail('"occurrence" to be 0 or more')
        provenance = self.strings(data.get("provenance", {}), "provenance")
        return Recording(
            fingerprint=fingerprint,
            test_id=test_id,
            request=self.request(data.get("request")),
            response=self.response(data.get("response")),
            occurrence=occurrence,
            provenance=MappingProxyType(dict(provenance)),
        )

    def request(self, value: Any) -> RecordedRequest:
        request = self.mapping(value, "request")
        method, path = request.get("method"), request.get("path")
        if not isinstance(method, str) or not isinstance(path, str):
            raise self.fail('"request.method" and "request.path" to be strings')
        return RecordedRequest(
            method=method,
            path=path,
            query=self.mapping(request.get("query", {}), "request.query"),
            headers=self.strings(request.get("headers", {}), "request.headers"),
            body=request.get("body"),
            ids=self.strings(request.get("ids", {}), "request.ids"),
        )

    def response(self, value: Any) -> RecordedResponse:
        response = self.mapping(value, "response")
        kinds = [key for key in _PAYLOAD_KEYS if key in response]
        if len(kinds) != 1:
            raise self.fail(
                'exactly one of "response.body", "response.text", "response.stream", '
                '"response.failure"'
            )
        status = self.integer(response.get("status"), "response.status")
        if kinds[0] == "failure":
            if status != 0:
                raise self.fail('"response.status" to be 0 for a failure')
        elif not 100 <= status <= 599:
            raise self.fail(f'"response.status" to be an HTTP status (100-599), not {status}')
        headers = self.strings(response.get("headers", {}), "response.headers")
        return RecordedResponse(status, headers, self.payload(kinds[0], response[kinds[0]]))

    def payload(self, kind: str, value: Any) -> Payload:
        if kind == "body":
            return JsonBody(value)
        if kind == "text":
            return TextBody(self.string(value, "response.text"))
        if kind == "failure":
            failure = self.mapping(value, "response.failure")
            try:
                failure_kind = FailureKind(failure.get("kind"))
            except ValueError:
                valid = ", ".join(k.value for k in FailureKind)
                raise self.fail(f'"response.failure.kind" to be one of: {valid}') from None
            return Failure(failure_kind, self.string(failure.get("message"), "response.failure"))
        return self.stream(value)

    def stream(self, value: Any) -> Stream:
        stream = self.mapping(value, "response.stream")
        try:
            framing = Framing(stream.get("framing"))
        except ValueError:
            raise self.fail('"response.stream.framing" to be "sse" or "ndjson"') from None
        chunks = stream.get("chunks")
        if not isinstance(chunks, list) or not all(
            isinstance(c, dict)
            and isinstance(c.get("data"), str)
            and isinstance(c.get("at"), int | float)
            and not isinstance(c.get("at"), bool)
            for c in chunks
        ):
            raise self.fail(
                '"response.stream.chunks" to be a list of {"at": number, "data": string}'
            )
        if not chunks:
            raise self.fail('"response.stream.chunks" to hold at least one chunk')
        for index, chunk in enumerate(chunks):
            at = float(chunk["at"])
            if not math.isfinite(at) or not 0 <= at <= MAX_CHUNK_SECONDS:
                raise self.fail(
                    f'"response.stream.chunks[{index}].at" to be seconds from 0 to '
                    f"{MAX_CHUNK_SECONDS:g}, not {chunk['at']!r}"
                )
            problem = _chunk_problem(framing, chunk["data"])
            if problem:
                raise self.fail(f'"response.stream.chunks[{index}].data" to be {problem}')
        return Stream(framing, tuple(Chunk(float(c["at"]), c["data"]) for c in chunks))


def _chunk_problem(framing: Framing, data: str) -> str | None:
    """What a stored event should have been, if it is not a well-formed event of its framing."""
    if not data:
        return "a non-empty event"
    one_data_line = data.startswith("data:") and data.count("\n") == 2 and data.endswith("\n\n")
    if framing is Framing.SSE and one_data_line:
        return None  # as nearly every event is: no need to look closer
    if framing is Framing.NDJSON:
        if not data.strip():
            return None  # a blank keep-alive line
        try:
            json.loads(data)
        except ValueError:
            return "one JSON document per line"
        return None
    lines = re.split(r"\r\n|\r|\n", data)
    if not all(_SSE_LINE.match(line) for line in lines):
        return 'an SSE event ("data: ..." lines ending with a blank line)'
    return None
