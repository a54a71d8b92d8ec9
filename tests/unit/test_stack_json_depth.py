"""JSON nested deeper than the stack takes: a 400 that names the limit, on every JSON input,
and the keep-alive connection stays usable (a RecursionError used to make it a 500 after
which uvicorn reset the connection)."""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.routing import Route

from harness.stack.http_api import MAX_JSON_DEPTH
from tests.fakes.provider import FakeProvider
from tests.support.stack import provider_entry, stack_client
from tests.support.stack_process import StackProcess, stack_env

JSON = {"content-type": "application/json"}
HI = "hi"


def nested_variables(depth: int) -> str:
    """A create-prompt body whose `variables` nest `depth` arrays (the body is one more)."""
    return '{"prompt": "x", "variables": ' + "[" * depth + "]" * depth + "}"


def nested_object(depth: int) -> str:
    """A JSON object nested `depth` levels deep."""
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("stack")
    process = StackProcess(tmp_path, "starter", stack_env(tmp_path))
    process.wait_healthy()
    yield process
    process.stop()


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 600, 3000, 100_000])
def test_a_too_deep_body_is_a_400_and_the_same_connection_serves_the_next_request(stack, depth):
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        deep = client.post("/v1/prompts", content=nested_variables(depth), headers=JSON)
        deep_from = local_address(deep)
        after = client.post("/v1/prompts", json={"prompt": "Hi {{n}}", "variables": ["n"]})
        after_from = local_address(after)

    assert deep.status_code == 400, deep.text
    assert deep.json()["error"]["detail"]["errors"] == [
        {
            "loc": ["body"],
            "msg": f"JSON nested too deeply: more than {MAX_JSON_DEPTH} levels of arrays "
            "and objects",
            "type": "json_too_deep",
        }
    ]
    assert after.status_code == 200, after.text
    assert after_from == deep_from  # one TCP connection for both
    assert "Traceback" not in stack.log.read_text()


def local_address(response: httpx.Response) -> tuple[str, int]:
    return response.extensions["network_stream"].get_extra_info("client_addr")


def test_a_body_at_the_depth_limit_is_taken(tmp_path):
    body = '{"prompt": "x", "metadata": ' + nested_object(MAX_JSON_DEPTH - 1) + "}"

    with stack_client(tmp_path, []) as client:
        response = client.post("/v1/prompts", content=body, headers=JSON)

    assert response.status_code == 200, response.text


def test_every_route_that_reads_a_json_body_refuses_one_too_deep(tmp_path):
    with stack_client(tmp_path, []) as client:
        routes = [
            r for r in client.app.routes if isinstance(r, Route) and "POST" in (r.methods or ())
        ]
        answers = {
            route.path: client.post(
                re.sub(r"{[^}]+}", "x", route.path),
                content=nested_object(MAX_JSON_DEPTH + 1),
                headers=JSON,
            )
            for route in routes
        }

    assert {"/v1/prompts", "/v1/chat/completions", "/v1/embeddings", "/v1/models"} <= set(answers)
    for path, answer in answers.items():
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error"]["detail"]["errors"][0]["type"] == "json_too_deep", path


def test_a_too_deep_provider_data_header_is_ignored_like_one_that_is_not_json(tmp_path):
    with FakeProvider() as fake:
        entry = provider_entry("remote::ollama", fake.base_url)
        with stack_client(tmp_path, [entry]) as client:
            response = client.post(
                "/v1/chat/completions",
                json={
                    "model": "ollama/llama3.2:3b",
                    "messages": [{"role": "user", "content": "hi"}],
                },
                headers={"X-LlamaStack-Provider-Data": nested_object(5000)},
            )

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == f"You said: {HI}"
