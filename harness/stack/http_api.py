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


async def parse_body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    if not raw.strip():
        raise RequestValidationError(
            [{"loc": ["body"], "msg": "Field required", "type": "missing"}]
        )
    try:
        data = json.loads(raw)
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
