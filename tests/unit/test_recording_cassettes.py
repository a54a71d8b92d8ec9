"""Client layer: vcrpy cassettes in our layout, for httpx and the openai SDK (httpx2)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from harness.recording.cassettes import client_cassette
from harness.recording.cli import verify_file
from harness.recording.errors import FieldDiff, ReplayMissError
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.records import Stream
from harness.recording.store import RecordingStore
from harness.recording.usage import create_log, read_usage
from tests.fakes.provider import FakeProvider

TEST_ID = "tests/integration/prompts/test_remote.py::test_chat"
MODEL = "llama3.2:3b"
KEY = "sk-remote-test-key-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "hi remote"}]


def settings(tmp_path: Path, mode: Mode, **kwargs: object) -> RecordingSettings:
    return RecordingSettings(mode=mode, directory=tmp_path / "recordings", **kwargs)


def files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "recordings").rglob("*.json"))


def openai_exchange(base_url: str) -> tuple:
    sdk = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0)
    plain = sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
    stream = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    deltas = [chunk.choices[0].delta.content for chunk in stream]
    return plain.choices[0].message.content, deltas


def httpx_exchange(base_url: str) -> tuple:
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        models = http.get("/v1/models").json()
        embeddings = http.post("/v1/embeddings", json={"model": "all-minilm:l6-v2", "input": "a"})
        with http.stream("POST", "/api/chat", json={"model": MODEL, "messages": MESSAGES}) as r:
            lines = [line for line in r.iter_lines() if line]
    return [m["id"] for m in models["data"]], embeddings.json()["data"][0]["embedding"], lines


def test_openai_sdk_records_then_replays_with_server_stopped(tmp_path: Path) -> None:
    with FakeProvider(api_key=KEY) as fake:
        with client_cassette(settings(tmp_path, Mode.RECORD), TEST_ID, secrets=[KEY]):
            recorded = openai_exchange(fake.base_url)
        base_url = fake.base_url
    assert len(files(tmp_path)) == 2
    with client_cassette(settings(tmp_path, Mode.REPLAY), TEST_ID, secrets=[KEY]):
        replayed = openai_exchange(base_url)
    assert replayed == recorded
    assert recorded[0] == "You said: hi remote"
    assert recorded[1][-2] == " remote"


def test_httpx_records_then_replays_streams_with_server_stopped(tmp_path: Path) -> None:
    with FakeProvider(api_key=KEY) as fake:
        with client_cassette(settings(tmp_path, Mode.RECORD), TEST_ID, secrets=[KEY]):
            recorded = httpx_exchange(fake.base_url)
        base_url = fake.base_url
    with client_cassette(settings(tmp_path, Mode.REPLAY), TEST_ID, secrets=[KEY]):
        replayed = httpx_exchange(base_url)
    assert replayed[0] == recorded[0] == [MODEL, "all-minilm:l6-v2"]
    assert replayed[1] == recorded[1]
    assert [json.loads(line)["message"] for line in replayed[2]] == [
        json.loads(line)["message"] for line in recorded[2]
    ]


def test_cassette_files_use_the_transport_layout_format_and_pass_verify(tmp_path: Path) -> None:
    with (
        FakeProvider(api_key=KEY) as fake,
        client_cassette(settings(tmp_path, Mode.RECORD), TEST_ID, secrets=[KEY]),
    ):
        openai_exchange(fake.base_url)
        httpx_exchange(fake.base_url)
    store = RecordingStore(tmp_path / "recordings")
    paths = files(tmp_path)
    assert {p.parent for p in paths} == {
        tmp_path / "recordings/tests/integration/prompts/test_remote"
    }
    for path in paths:
        assert verify_file(store, path) == []
        text = path.read_text()
        assert KEY not in text
        assert "authorization" not in text.lower()
    payloads = [store.load(p).response.payload for p in paths]
    assert sorted(s.framing for s in payloads if isinstance(s, Stream)) == ["ndjson", "sse"]


def test_cassette_replay_miss_raises_replay_miss_error_through_the_sdk(tmp_path: Path) -> None:
    with FakeProvider(api_key=KEY) as fake:
        with client_cassette(settings(tmp_path, Mode.RECORD), TEST_ID, secrets=[KEY]):
            openai_exchange(fake.base_url)
        base_url = fake.base_url
    sdk = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0)
    with (
        pytest.raises(ReplayMissError) as caught,
        client_cassette(settings(tmp_path, Mode.REPLAY), TEST_ID, secrets=[KEY]),
    ):
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "other"}])
    miss = caught.value.miss
    assert miss.endpoint == "POST /v1/chat/completions"
    assert miss.nearest is not None
    assert FieldDiff("body.messages[0].content", "hi remote", "other") in miss.diff


def test_cassette_record_if_missing_keeps_old_and_adds_new(tmp_path: Path) -> None:
    with FakeProvider(api_key=KEY) as fake:
        with client_cassette(settings(tmp_path, Mode.RECORD), TEST_ID, secrets=[KEY]):
            httpx.post(
                f"{fake.base_url}/v1/embeddings",
                json={"model": "all-minilm:l6-v2", "input": "a"},
                headers={"Authorization": f"Bearer {KEY}"},
            )
        first = {p: p.read_bytes() for p in files(tmp_path)}
        calls = len(fake.requests)
        with client_cassette(settings(tmp_path, Mode.RECORD_IF_MISSING), TEST_ID, secrets=[KEY]):
            for text in ("a", "b"):
                httpx.post(
                    f"{fake.base_url}/v1/embeddings",
                    json={"model": "all-minilm:l6-v2", "input": text},
                    headers={"Authorization": f"Bearer {KEY}"},
                )
        assert len(fake.requests) == calls + 1  # only "b" reached the server
    after = {p: p.read_bytes() for p in files(tmp_path)}
    assert len(after) == 2
    assert all(after[p] == content for p, content in first.items())


def test_cassette_same_request_twice_replays_in_order(tmp_path: Path, stub_server) -> None:
    answers = iter(["first", "second"])
    server = stub_server(lambda request, reply: reply.json(200, {"answer": next(answers)}))
    url = f"{server.url}/v1/thing"
    with client_cassette(settings(tmp_path, Mode.RECORD), TEST_ID):
        recorded = [httpx.get(url).json()["answer"] for _ in range(2)]
    server.stop()
    with client_cassette(settings(tmp_path, Mode.REPLAY), TEST_ID):
        replayed = [httpx.get(url).json()["answer"] for _ in range(2)]
    assert recorded == replayed == ["first", "second"]


def test_cassette_usage_log_and_live_mode(tmp_path: Path) -> None:
    log = create_log(tmp_path / "usage.log")
    with FakeProvider() as fake:
        with client_cassette(settings(tmp_path, Mode.RECORD, usage_log=log), TEST_ID):
            httpx.get(f"{fake.base_url}/v1/models")
        with client_cassette(settings(tmp_path, Mode.REPLAY, usage_log=log), TEST_ID):
            httpx.get(f"{fake.base_url}/v1/models")
        with client_cassette(settings(tmp_path / "live", Mode.LIVE), TEST_ID) as cassette:
            assert cassette is None
            assert httpx.get(f"{fake.base_url}/v1/models").status_code == 200
    summary = read_usage(log)
    assert summary.counts["recorded"] == 1 and summary.counts["used"] == 1
    assert summary.used == summary.recorded
    assert not (tmp_path / "live").exists()
