"""HTTP routes of the Prompts API (Llama Stack's paths, bodies and status codes).

Updates and set-default-version accept POST (what Llama Stack 0.3 serves) and PUT (what its
API declares and newer versions serve).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, StrictInt
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from harness.stack.http_api import parse_body, parse_query, route
from harness.stack.prompts import Prompt, PromptService


class CreatePromptRequest(BaseModel):
    prompt: str
    variables: list[str] | None = None


# A JSON `true` is not version 1: body versions are strict integers.
class UpdatePromptRequest(BaseModel):
    prompt: str
    version: StrictInt
    variables: list[str] | None = None
    set_as_default: bool = True


class SetDefaultVersionRequest(BaseModel):
    version: StrictInt


class GetPromptQuery(BaseModel):
    version: int | None = None


def _service(request: Request) -> PromptService:
    return request.app.state.stack.prompts


def _list(prompts: list[Prompt]) -> dict[str, Any]:
    return {"data": [p.model_dump() for p in prompts]}


async def list_prompts(request: Request) -> dict[str, Any]:
    return _list(await _service(request).list_prompts())


async def create_prompt(request: Request) -> dict[str, Any]:
    body = await parse_body(request, CreatePromptRequest)
    return (await _service(request).create_prompt(body.prompt, body.variables)).model_dump()


async def list_prompt_versions(request: Request) -> dict[str, Any]:
    return _list(await _service(request).list_prompt_versions(request.path_params["prompt_id"]))


async def get_prompt(request: Request) -> dict[str, Any]:
    query = parse_query(request, GetPromptQuery)
    prompt = await _service(request).get_prompt(request.path_params["prompt_id"], query.version)
    return prompt.model_dump()


async def update_prompt(request: Request) -> dict[str, Any]:
    body = await parse_body(request, UpdatePromptRequest)
    prompt = await _service(request).update_prompt(
        request.path_params["prompt_id"],
        body.prompt,
        body.version,
        body.variables,
        body.set_as_default,
    )
    return prompt.model_dump()


async def delete_prompt(request: Request) -> Response:
    await _service(request).delete_prompt(request.path_params["prompt_id"])
    return Response(status_code=204)


async def set_default_version(request: Request) -> dict[str, Any]:
    body = await parse_body(request, SetDefaultVersionRequest)
    prompt = await _service(request).set_default_version(
        request.path_params["prompt_id"], body.version
    )
    return prompt.model_dump()


def build_routes() -> list[Route]:
    return [
        route("/v1/prompts", list_prompts, ["GET"]),
        route("/v1/prompts", create_prompt, ["POST"]),
        route("/v1/prompts/{prompt_id}/versions", list_prompt_versions, ["GET"]),
        route("/v1/prompts/{prompt_id}/set-default-version", set_default_version, ["POST", "PUT"]),
        route("/v1/prompts/{prompt_id}", get_prompt, ["GET"]),
        route("/v1/prompts/{prompt_id}", update_prompt, ["POST", "PUT"]),
        route("/v1/prompts/{prompt_id}", delete_prompt, ["DELETE"]),
    ]
