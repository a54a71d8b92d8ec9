"""A tool-call round trip: the model asks for a tool, the test answers, the model replies."""

from __future__ import annotations

import json

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_tool_call_round_trip(openai_client, text_model_id):
    messages = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]

    first = openai_client.chat.completions.create(
        model=text_model_id, messages=messages, tools=[WEATHER_TOOL]
    )

    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)

    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"})
    second = openai_client.chat.completions.create(
        model=text_model_id, messages=messages, tools=[WEATHER_TOOL]
    )

    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content.strip()
    assert not second.choices[0].message.tool_calls
