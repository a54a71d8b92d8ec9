"""HTTP routes of the Prompts API (Llama Stack's paths, bodies and status codes).

Updates and set-default-version accept POST (what Llama Stack 0.3 serves) and PUT (what its
API declares and newer versions serve).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from harness.stack.prompts import Prompt, PromptService


class CreatePromptRequest(BaseModel):
    prompt: str
    variables: list[str] | None = None


class UpdatePromptRequest(BaseModel):
    prompt: str
    version: int
    variables: list[str] | None = None
    set_as_default: bool = True


class SetDefaultVersionRequest(BaseModel):
    version: int


def _service(request: Request) -> PromptService:
    return request.app.state.stack.prompts


def _list(prompts: list[Prompt]) -> dict[str, Any]:
    return {"data": [p.model_dump() for p in prompts]}


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1/prompts", tags=["prompts"])

    @router.get("")
    async def list_prompts(request: Request) -> dict[str, Any]:
        return _list(await _service(request).list_prompts())

    @router.post("")
    async def create_prompt(request: Request, body: CreatePromptRequest) -> dict[str, Any]:
        prompt = await _service(request).create_prompt(body.prompt, body.variables)
        return prompt.model_dump()

    @router.get("/{prompt_id}/versions")
    async def list_prompt_versions(request: Request, prompt_id: str) -> dict[str, Any]:
        return _list(await _service(request).list_prompt_versions(prompt_id))

    @router.get("/{prompt_id}")
    async def get_prompt(
        request: Request, prompt_id: str, version: int | None = None
    ) -> dict[str, Any]:
        return (await _service(request).get_prompt(prompt_id, version)).model_dump()

    @router.api_route("/{prompt_id}", methods=["POST", "PUT"])
    async def update_prompt(
        request: Request, prompt_id: str, body: UpdatePromptRequest
    ) -> dict[str, Any]:
        prompt = await _service(request).update_prompt(
            prompt_id, body.prompt, body.version, body.variables, body.set_as_default
        )
        return prompt.model_dump()

    @router.delete("/{prompt_id}", status_code=204)
    async def delete_prompt(request: Request, prompt_id: str) -> Response:
        await _service(request).delete_prompt(prompt_id)
        return Response(status_code=204)

    @router.api_route("/{prompt_id}/set-default-version", methods=["POST", "PUT"])
    async def set_default_version(
        request: Request, prompt_id: str, body: SetDefaultVersionRequest
    ) -> dict[str, Any]:
        return (await _service(request).set_default_version(prompt_id, body.version)).model_dump()

    return router
