"""Images in chat: passed inline as a data URL and by URL, to the setup's vision model."""

from __future__ import annotations

# An 8x8 red PNG, small enough to keep inline and in the recordings.
RED_SQUARE = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEUlEQVR4nGO4IyeHF"
    "TEMLQkAid1GAXiz9RcAAAAASUVORK5CYII="
)
# A stable public image: the provider fetches it (replay never does).
IMAGE_URL = (
    "https://upload.wikimedia.org/wikipedia/commons/4/47/PNG_transparency_demonstration_1.png"
)


def ask_about(image_url: str) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image? Answer in one sentence."},
                {"type": "image_url", "image_url": {"url": image_url}},
            ],
        }
    ]


def test_image_as_a_data_url(openai_client, vision_model_id):
    response = openai_client.chat.completions.create(
        model=vision_model_id, messages=ask_about(RED_SQUARE)
    )

    assert response.model == vision_model_id
    assert response.choices[0].finish_reason == "stop"
    assert response.choices[0].message.content.strip()


def test_image_by_url_streamed(openai_client, vision_model_id):
    stream = openai_client.chat.completions.create(
        model=vision_model_id, messages=ask_about(IMAGE_URL), stream=True
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].choices[0].finish_reason == "stop"
