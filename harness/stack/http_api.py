"""The small HTTP layer under the stack's routes: body and query validation, JSON results.

The stack uses Starlette directly rather than FastAPI: it needs only routing and pydantic
validation, and importing FastAPI alone cost ~0.4 s of a ~1 s cold start. Validation errors
keep FastAPI's shape (`loc` starting with "body"/"query", pydantic's `msg` and `type`), which
is what Llama Stack clients see.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request], Awaitable[Any]]


class RequestValidationError(Exception):
    """The request's body or query does not match the endpoint's model (HTTP 400)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _errors(exc: ValidationError, prefix: str) -> list[dict[str, Any]]:
    return [{"loc": [prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


# The deepest JSON body (arrays and objects within each other) the stack takes. Far more than
# any OpenAI or Llama Stack body nests (a JSON schema in `tools` or `response_format` stays
# within a few dozen levels), and far less than Python's recursion limit, which the JSON
# decoder, pydantic and every walk over the body share: deeper, they raised RecursionError,
# a 500 after which uvicorn dropped the keep-alive connection.
MAX_JSON_DEPTH = 100


class JSONTooDeepError(ValueError):
    """A JSON document nested deeper than MAX_JSON_DEPTH."""

    def __init__(self) -> None:
        super().__init__(
            f"JSON nested too deeply: more than {MAX_JSON_DEPTH} levels of arrays and objects"
        )


def load_json(raw: bytes | str) -> Any:
    """`json.loads` for anything a client sends: a document nested deeper than MAX_JSON_DEPTH
    is a `JSONTooDeepError` (a ValueError, like malformed JSON), whatever the decoder's own
    limit is on this Python."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise JSONTooDeepError() from None
    if _nested_deeper_than(data, MAX_JSON_DEPTH):
        raise JSONTooDeepError()
    return data


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Without recursion, so it never is the thing that overflows."""
    pending = [(value, 1)] if isinstance(value, dict | list) else []
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        pending.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


async def parse_body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    if not raw.strip():
        raise RequestValidationError(
            [{"loc": ["body"], "msg": "Field required", "type": "missing"}]
        )
    try:
        data = load_json(raw)
    except JSONTooDeepError as exc:
        raise RequestValidationError(
            [{"loc": ["body"], "msg": str(exc), "type": "json_too_deep"}]
        ) from None
    except ValueError as exc:
        position = getattr(exc, "pos", 0)
        raise RequestValidationError(
            [{"loc": ["body", position], "msg": "JSON decode error", "type": "json_invalid"}]
        ) from None
    unstorable = _lone_surrogates(data, ["body"])
    if unstorable:
        raise RequestValidationError(unstorable)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(_errors(exc, "body")) from None


def _lone_surrogates(value: Any, loc: list[Any]) -> list[dict[str, Any]]:
    """Strings JSON allows (an escaped lone surrogate) but no store can keep as text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            msg = "Input should be valid Unicode text; a lone surrogate cannot be stored"
            return [{"loc": loc, "msg": msg, "type": "string_unicode"}]
        return []
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in _lone_surrogates(v, [*loc, k])]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in _lone_surrogates(v, [*loc, i])]
    return []


def parse_query(request: Request, model: type[M]) -> M:
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise RequestValidationError(_errors(exc, "query")) from None


def route(path: str, handler: Handler, methods: list[str]) -> Route:
    """A Route whose handler may return a dict (sent as JSON) or a ready Response."""

    async def endpoint(request: Request) -> Response:
        result = await handler(request)
        return result if isinstance(result, Response) else JSONResponse(result)

    endpoint.__name__ = handler.__name__
    return Route(path, endpoint, methods=methods)
