"""The clients that are not httpx, recorded and replayed inside a process the bootstrap patched.

A real program (a child Python process with the harness bootstrap on its path, as a stack started
with --stack-command has) calls the fake provider through requests, urllib.request and aiohttp,
and calls a closed port; then the same program replays with the provider stopped and must see
the same answers and the same failure. A connection the recording layers do not see (plain
http.client) is refused in replay, and named as not recorded in record mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import bootstrap
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.usage import create_log, read_usage
from tests.fakes.provider import FakeProvider
from tests.support.processes import free_port

KEY = "sk-client-adapters-key-0123456789"

PROGRAM = (
    textwrap.dedent(
        """
    import asyncio, json, sys, urllib.error, urllib.request
    import aiohttp, requests

    base, closed = sys.argv[1], sys.argv[2]
    chat = {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "hi there"}]}
    auth = {"Authorization": "Bearer %s"}
    out = {}

    r = requests.post(base + "/v1/chat/completions", json=chat, headers=auth, timeout=10)
    out["requests"] = [r.status_code, r.json()["choices"][0]["message"]["content"], r.json()["id"]]
    with requests.post(
        base + "/v1/chat/completions", json={**chat, "stream": True}, headers=auth, stream=True
    ) as streamed:
        out["requests-stream"] = [line for line in streamed.iter_lines() if line][-1].decode()

    body = json.dumps({"model": "all-minilm:l6-v2", "input": "urllib"}).encode()
    request = urllib.request.Request(
        base + "/v1/embeddings", data=body, headers={"Content-Type": "application/json", **auth}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        out["urllib"] = [answer.status, json.loads(answer.read())["data"][0]["embedding"][:3]]
    try:
        urllib.request.urlopen(
            urllib.request.Request(base + "/v1/nothing-here", headers=auth), timeout=10
        )
    except urllib.error.HTTPError as error:
        out["urllib-404"] = [error.code, json.loads(error.read())["error"]["code"]]

    async def with_aiohttp():
        async with aiohttp.ClientSession(headers=auth) as session:
            async with session.post(base + "/v1/chat/completions", json=chat) as answer:
                plain = [answer.status, (await answer.json())["choices"][0]["message"]["content"]]
            async with session.get(base + "/v1/models") as answer:
                listed = [m["id"] for m in (await answer.json())["data"]]
        return plain, listed

    out["aiohttp"], out["aiohttp-models"] = asyncio.run(with_aiohttp())

    try:
        requests.get(closed + "/v1/refused", timeout=5)
    except requests.ConnectionError as error:
        out["refused"] = type(error).__name__
    print(json.dumps(out))
    """
    )
    % KEY
)

RAW = textwrap.dedent(
    """
    import http.client, sys
    host, port = sys.argv[1].rsplit("//", 1)[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", "/v1/models")
        print(connection.getresponse().status)
    except OSError as error:
        print("refused:", error)
    """
)


def run(program: str, settings: RecordingSettings, tmp_path: Path, *args: str) -> str:
    (tmp_path / "state").mkdir(exist_ok=True)
    directory = bootstrap.prepare(tmp_path / "state")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_", "LLAMA_STACK"))}
    env = bootstrap.environment(directory, tmp_path / "report", {**env, **settings.to_env()})
    done = subprocess.run(
        [sys.executable, "-c", program, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def settings(tmp_path: Path):
    def make(mode: Mode, **hosts: object) -> RecordingSettings:
        from harness.recording.hosts import HostPolicy

        log = tmp_path / "usage.jsonl"
        if not log.exists():
            create_log(log)
        return RecordingSettings(
            mode=mode,
            directory=tmp_path / "recordings",
            usage_log=log,
            hosts=HostPolicy(**hosts),  # type: ignore[arg-type]
        )

    return make


def test_requests_urllib_and_aiohttp_record_then_replay_with_the_provider_stopped(
    tmp_path: Path, settings
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with FakeProvider(api_key=KEY) as fake:
        recorded = json.loads(run(PROGRAM, settings(Mode.RECORD), tmp_path, fake.base_url, closed))
        calls = len(fake.requests)
        base = fake.base_url
    replayed = json.loads(run(PROGRAM, settings(Mode.REPLAY), tmp_path, base, closed))

    assert calls == 6  # every call reached the provider while recording
    assert replayed == recorded
    assert recorded["requests"][:2] == [200, "You said: hi there"]
    assert recorded["requests"][2].startswith("rec-")  # the caller saw what was stored
    assert recorded["requests-stream"] == "data: [DONE]"
    assert recorded["urllib-404"] == [404, "not_found"]
    assert recorded["aiohttp"] == [200, "You said: hi there"]
    assert recorded["refused"] == "ConnectionError"  # recorded as that failure, replayed as it
    files = list((tmp_path / "recordings").rglob("*.json"))
    assert any('"failure"' in p.read_text() for p in files)
    assert all(KEY not in p.read_text() for p in files)
    summary = read_usage(tmp_path / "usage.jsonl")
    relative = {p.relative_to(tmp_path / "recordings").as_posix() for p in files}
    assert summary.misses == [] and summary.used == relative


def test_a_connection_past_the_recording_layers_is_refused_in_replay_and_named_in_record(
    tmp_path: Path, settings
) -> None:
    with FakeProvider() as fake:
        provider = fake.base_url.split("//")[1].replace("127.0.0.1", "loopback")
        recorded = run(RAW, settings(Mode.RECORD, providers=(provider,)), tmp_path, fake.base_url)
        replayed = run(RAW, settings(Mode.REPLAY, providers=(provider,)), tmp_path, fake.base_url)
        requests_seen = len(fake.requests)

    assert recorded.strip() == "200"  # record mode lets it through...
    assert replayed.startswith("refused: ") and "replay is sealed" in replayed
    assert requests_seen == 1  # ...and replay never reached the provider
    kinds = [fault.kind for fault in read_usage(tmp_path / "usage.jsonl").faults]
    assert kinds == ["unrecorded", "sealed"]
    messages = [fault.message for fault in read_usage(tmp_path / "usage.jsonl").faults]
    assert "through http.client" in messages[0] and "through http.client" in messages[1]


ECHO = textwrap.dedent(
    """
    import os, sys
    import requests

    base = sys.argv[1]
    message = "my credential is " + os.environ["PROVIDER_CREDENTIAL"]
    chat = {"model": "llama3.2:3b", "messages": [{"role": "user", "content": message}]}
    query = {"api_key": os.environ["OPENAI_KEY"], "tag": os.environ["HANDED_VALUE"]}
    answer = requests.post(base + "/v1/chat/completions", params=query, json=chat, timeout=10)
    print(answer.json()["choices"][0]["message"]["content"])
    """
)


def test_secrets_by_value_never_reach_disk_in_the_body_the_query_or_the_echoed_answer(
    tmp_path: Path, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {
        "PROVIDER_CREDENTIAL": "cred-0123456789-secret",  # secret by the name's word part
        "OPENAI_KEY": "sk-query-0123456789abcdef",
        "HANDED_VALUE": "handed-to-the-stack-value",  # secret because the harness handed it
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    from dataclasses import replace

    recording = replace(settings(Mode.RECORD), secret_names=("HANDED_VALUE",))
    with FakeProvider() as fake:
        echoed = run(ECHO, recording, tmp_path, fake.base_url)
        sent = fake.requests[-1]

    # The provider really got them (body and query) and echoed one back; the caller gets the
    # answer as it is stored.
    assert values["PROVIDER_CREDENTIAL"] in json.dumps(sent["body"])
    assert values["OPENAI_KEY"] in sent["path"]
    assert echoed.strip() == "You said: my credential is <redacted>"
    (path,) = (tmp_path / "recordings").rglob("*.json")
    text = path.read_text()
    for value in values.values():
        assert value not in text
    assert text.count("<redacted>") >= 3
