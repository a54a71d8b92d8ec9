"""Inspection endpoints (health, version, providers, routes) and the replay-miss response."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from harness.recording.errors import FAULT_HEADER
from harness.recording.modes import DIR_ENV, MODE_ENV, Mode, RecordingSettings
from harness.stack.app import create_app
from harness.stack.run_config import StackConfigError, load_run_config
from tests.fakes.provider import FakeProvider
from tests.support.stack import provider_entry, stack_client, write_run_config

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def client(tmp_path):
    providers = [
        provider_entry("remote::ollama", "http://127.0.0.1:9"),
        provider_entry("remote::openai", "http://127.0.0.1:9", api_key="sk-secret-value"),
        {"provider_id": None, "provider_type": "remote::vllm", "config": {}},
    ]
    with stack_client(tmp_path, providers) as client:
        yield client


def test_health_and_version(client):
    assert client.get("/v1/health").json() == {"status": "OK"}
    assert client.get("/v1/version").json()["version"]


def test_providers_redact_secrets_and_omit_disabled_ones(client):
    data = client.get("/v1/providers").json()["data"]

    assert [p["provider_id"] for p in data] == ["ollama", "openai"]
    openai = data[1]
    assert openai["config"] == {"api_key": "********", "base_url": "http://127.0.0.1:9/v1"}
    assert openai["health"]["status"] == "Not Implemented"
    assert "sk-secret-value" not in client.get("/v1/providers/openai").text


def test_unknown_provider_is_400(client):
    response = client.get("/v1/providers/nope")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid value: Provider nope not found",
        "error": {"message": "Invalid value: Provider nope not found"},
    }


def test_inspect_routes_lists_inference_with_every_configured_provider_type(client):
    routes = client.get("/v1/inspect/routes").json()["data"]

    by_route = {(r["method"], r["route"]): r["provider_types"] for r in routes}
    assert by_route[("POST", "/v1/chat/completions")] == [
        "remote::ollama",
        "remote::openai",
        "remote::vllm",
    ]
    assert by_route[("GET", "/v1/health")] == []
    assert not [r for r in routes if "/prompts" in r["route"] or "/models" in r["route"]]


def test_vllm_without_url_is_a_config_error_at_app_creation(tmp_path):
    path = write_run_config(
        tmp_path, [{"provider_id": "vllm", "provider_type": "remote::vllm", "config": {}}]
    )

    with pytest.raises(StackConfigError, match="You must provide a URL"):
        create_app(load_run_config(path, env={}))


def test_replay_miss_is_a_500_carrying_the_diagnostic(tmp_path):
    settings = RecordingSettings(mode=Mode.REPLAY, directory=tmp_path / "recordings")
    with FakeProvider() as fake:
        path = write_run_config(tmp_path, [provider_entry("remote::ollama", fake.base_url)])
        app = create_app(load_run_config(path, env={}), recording=settings)
        with TestClient(app) as client:
            plain = client.post(
                "/v1/chat/completions", json={"model": "ollama/llama3.2:3b", "messages": USER}
            )
            streamed = client.post(
                "/v1/chat/completions",
                json={"model": "ollama/llama3.2:3b", "messages": USER, "stream": True},
            )
            models = client.get("/v1/models").json()

    assert fake.requests == []
    assert models == {"data": []}
    for response in (plain, streamed):
        assert response.status_code == 500
        body = response.json()
        fault = body["recording_fault"]
        assert fault["miss"]["endpoint"] == "POST /v1/chat/completions"
        assert response.headers[FAULT_HEADER] == fault["kind"] == "miss"
        assert "no recording" in body["detail"]
        assert body["error"]["message"] == body["detail"]


def test_app_without_recording_settings_is_live_whatever_the_environment_says(
    tmp_path, monkeypatch
):
    monkeypatch.setenv(MODE_ENV, "replay")
    monkeypatch.setenv(DIR_ENV, str(tmp_path / "recordings"))
    with (
        FakeProvider() as fake,
        stack_client(tmp_path, [provider_entry("remote::ollama", fake.base_url)]) as client,
    ):
        response = client.post(
            "/v1/chat/completions", json={"model": "ollama/llama3.2:3b", "messages": USER}
        )

    assert response.status_code == 200, response.text
    assert [r["path"] for r in fake.requests if r["method"] == "POST"] == ["/v1/chat/completions"]
