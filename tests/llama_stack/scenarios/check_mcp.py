"""Responses API with an MCP tool, served by this test process on loopback.

The stack is the MCP client: it lists the server's tools, offers them to the provider, runs the
call the model makes (the fake provider calls the first tool offered, each required argument
set to the user's message) and sends the result back to the provider, whose echo is the answer.
"""

from __future__ import annotations

import json
from typing import Any

from tests.llama_stack.scenarios.helpers import how_the_stream_ended


def mcp_tools(mcp_server_info: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"type": "mcp", "server_label": "localmcp", "server_url": mcp_server_info["server_url"]}
    ]


def test_response_non_streaming_mcp_tool(
    responses_client: Any, text_model_id: str, mcp_server_info: dict[str, str]
) -> None:
    response = responses_client.responses.create(
        model=text_model_id,
        input="myawesomeliquid",
        tools=mcp_tools(mcp_server_info),
        stream=False,
    )

    assert len(response.output) >= 3
    list_tools = response.output[0]
    assert list_tools.type == "mcp_list_tools"
    assert list_tools.server_label == "localmcp"
    assert {t.name for t in list_tools.tools} == {"get_boiling_point", "greet_everyone"}
    call = response.output[1]
    assert call.type == "mcp_call"
    assert call.name == "get_boiling_point"
    assert json.loads(call.arguments) == {"liquid_name": "myawesomeliquid"}
    assert call.error is None
    assert "-100" in call.output
    assert "-100" in response.output[-1].content[0].text


def test_response_streaming_mcp_tool(
    responses_client: Any, text_model_id: str, mcp_server_info: dict[str, str]
) -> None:
    stream = responses_client.responses.create(
        model=text_model_id,
        input="water",
        tools=mcp_tools(mcp_server_info),
        stream=True,
    )
    events = list(stream)

    types = [event.type for event in events]
    assert "response.mcp_call.completed" in types, types
    assert types[-1] == "response.completed", how_the_stream_ended(events)
    final = events[-1].response
    assert [item.type for item in final.output][:2] == ["mcp_list_tools", "mcp_call"]
    assert "100" in final.output[1].output
    assert "100" in final.output_text
