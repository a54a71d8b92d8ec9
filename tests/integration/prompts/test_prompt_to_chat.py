"""A stored prompt rendered with variables and sent through chat completion.

Prompt store and inference in one recorded test: the prompt traffic runs live against the
stack, the provider answer comes from the recording.
"""

from __future__ import annotations

import re

from tests.integration.wire import stored_completion

TEMPLATE = "You are a {{ tone }} assistant for {{company}}. Answer in one short sentence."


def render(template: str, values: dict[str, str]) -> str:
    return re.sub(r"{{\s*(\w+)\s*}}", lambda m: values[m.group(1)], template)


def test_stored_prompt_renders_into_a_chat_completion(openai_client, http_client, text_model_id):
    created = http_client.post(
        "/v1/prompts", json={"prompt": TEMPLATE, "variables": ["tone", "company"]}
    ).json()
    stored = http_client.get(f"/v1/prompts/{created['prompt_id']}").json()
    system = render(stored["prompt"], {"tone": "cheerful", "company": "Acme"})

    response = openai_client.chat.completions.create(
        model=text_model_id,
        messages=[
            {"role": "system", "content": system},
            {"role": "user", "content": "What do you do?"},
        ],
    )

    assert system == "You are a cheerful assistant for Acme. Answer in one short sentence."
    assert response.choices[0].message.content.strip()
    completion = stored_completion(http_client, response.id)
    assert completion["input_messages"][0]["content"] == system
