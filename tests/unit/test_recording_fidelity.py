"""Matching that sees through made-up ids, the rule for what is recorded, secrets by value."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from harness.recording.cli import verify_file
from harness.recording.fingerprint import Normalizer
from harness.recording.hosts import THIS_PROCESS, HostPolicy, Route
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.redaction import (
    REDACTED,
    is_secret_name,
    run_config_secret_variables,
    secret_values,
)
from harness.recording.store import RecordingStore
from harness.recording.transport import wrap_async_transport, wrap_transport
from tests.support.recording import in_test
from tests.support.stub_server import StubServer

TEST_ID = "tests/integration/responses/test_file_search.py::test_search"


def search_result(file_id: str, store_id: str) -> dict:
    """A chat request as a stack builds it from a file search: the file's id inside the text."""
    text = f"[1] document_id: {file_id}, score: 0.5087\nattributes: {{'file_id': '{file_id}'}}"
    return {
        "model": "llama3.2:3b",
        "messages": [
            {"role": "user", "content": f"search {store_id}"},
            {"role": "tool", "content": [{"type": "text", "text": text}]},
        ],
    }


def new_ids() -> tuple[str, str]:
    return f"file-{uuid.uuid4().hex}", f"vs_{uuid.uuid4()}"


def exchange(tmp_path: Path, mode: Mode, transport: httpx.BaseTransport, **extra: object) -> list:
    settings = RecordingSettings(mode, tmp_path / "recordings", **extra)  # type: ignore[arg-type]
    file_id, store_id = new_ids()
    with (
        in_test(TEST_ID),
        httpx.Client(
            base_url="http://provider", transport=wrap_transport(transport, settings)
        ) as http,
    ):
        first = http.post("/v1/chat/completions", json=search_result(file_id, store_id))
        again = http.post("/v1/chat/completions", json=search_result(file_id, store_id))
        other = http.post("/v1/chat/completions", json=search_result(new_ids()[0], store_id))
    return [r.json()["choices"][0]["message"]["content"] for r in (first, again, other)]


class Echo(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.read())
        text = body["messages"][-1]["content"][0]["text"]
        choice = {"index": 0, "message": {"role": "assistant", "content": text}}
        return httpx.Response(200, json={"object": "chat.completion", "choices": [choice]})


class Refuse(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError("replay reached the provider")


def test_random_ids_in_a_request_replay_with_new_ids_and_stay_distinct(tmp_path: Path) -> None:
    recorded = exchange(tmp_path, Mode.RECORD, Echo())
    replayed = exchange(tmp_path, Mode.REPLAY, Refuse())  # new ids on every run, no miss

    assert replayed == recorded
    store = RecordingStore(tmp_path / "recordings")
    files = list(store.iter_files())
    # The same id twice is the same request (an occurrence); a second file id is another one.
    assert len(files) == 3
    for path in files:
        assert verify_file(store, path) == []  # fingerprints recompute from the raw text
        record = store.load(path)
        raw = json.dumps(record.request.body)
        assert "file-" in raw and "<id:" not in raw  # the stored request keeps its raw text
        # Numbered by first appearance in the test: the store's id, then the two file ids.
        assert set(record.request.ids.values()) <= {"vs_<id:1>", "file-<id:2>", "file-<id:3>"}


def test_a_project_normaliser_keeps_an_edited_prompt_from_forcing_a_re_record(
    tmp_path: Path,
) -> None:
    rule = (Normalizer.compile("system", r"(?s)^You are .*"),)
    settings = dict(normalizers=rule)

    def ask(mode: Mode, prompt: str, transport: httpx.BaseTransport) -> str:
        body = {"model": "m", "messages": [{"role": "system", "content": prompt}]}
        body["messages"].append({"role": "tool", "content": [{"type": "text", "text": "hi"}]})
        recording = RecordingSettings(mode, tmp_path / "recordings", **settings)  # type: ignore[arg-type]
        with (
            in_test(TEST_ID),
            httpx.Client(
                base_url="http://p", transport=wrap_transport(transport, recording)
            ) as http,
        ):
            return http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"][
                "content"
            ]

    assert ask(Mode.RECORD, "You are helpful.", Echo()) == "hi"
    assert ask(Mode.REPLAY, "You are a very helpful assistant.", Refuse()) == "hi"


def listening_subprocess() -> tuple[subprocess.Popen, int]:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.provider", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = child.stdout.readline() if child.stdout else ""
    return child, int(line.rsplit(":", 1)[1])


def test_the_rule_records_providers_and_passes_the_test_process_own_servers() -> None:
    own = StubServer(lambda request, reply: reply.json(200, {})).start()
    child, other_port = listening_subprocess()
    try:
        policy = HostPolicy(
            record=("*.recorded.example",),
            passthrough=("telemetry.example.com", "127.0.0.1:9"),
            test_processes=THIS_PROCESS,
        )
        assert policy.route("api.openai.com", 443) == (Route.RECORD, "not a loopback host")
        assert policy.route("telemetry.example.com", 443)[0] is Route.PASSTHROUGH
        assert policy.route("x.recorded.example", 80)[0] is Route.RECORD
        assert policy.route("127.0.0.1", 9)[0] is Route.PASSTHROUGH
        # A server this process runs (an MCP server a fixture starts) passes through ...
        assert policy.route("localhost", own.port) == (
            Route.PASSTHROUGH,
            "a server the test process runs",
        )
        # ... unless the configuration names it as a provider; another process's is recorded.
        named = HostPolicy(providers=(f"loopback:{own.port}",), test_processes=THIS_PROCESS)
        assert named.route("127.0.0.1", own.port)[0] is Route.RECORD
        assert policy.route("127.0.0.1", other_port) == (
            Route.RECORD,
            "a loopback server that is not the test's",
        )
        # Without knowing whose processes are the test's, nothing passes by rule 5.
        assert HostPolicy().route("127.0.0.1", own.port)[0] is Route.RECORD
    finally:
        own.stop()
        child.terminate()
        child.wait(timeout=10)


def test_passed_through_requests_reach_the_server_in_replay_and_are_counted(
    tmp_path: Path,
) -> None:
    from harness.recording.usage import create_log, read_usage

    log = create_log(tmp_path / "usage.jsonl")
    with StubServer(lambda request, reply: reply.json(200, {"live": True})) as own:
        settings = RecordingSettings(
            Mode.REPLAY,
            tmp_path / "recordings",
            usage_log=log,
            hosts=HostPolicy(test_processes=THIS_PROCESS),
        )
        with (
            in_test(TEST_ID),
            httpx.Client(transport=wrap_transport(httpx.HTTPTransport(), settings)) as http,
        ):
            answer = http.get(f"{own.url}/sse").json()
    assert answer == {"live": True}
    assert not (tmp_path / "recordings").exists()
    assert read_usage(log).passthrough == {f"127.0.0.1:{own.port}": 1}


def test_secret_names_and_run_config_fields() -> None:
    for name in ("OPENAI_KEY", "PROVIDER_CREDENTIAL", "MY_AUTH", "GH_TOKEN", "apiKey", "api_key"):
        assert is_secret_name(name), name
    for name in ("MONKEY", "KEYBOARD_LAYOUT", "AUTHOR", "max_tokens", "OLLAMA_URL"):
        assert not is_secret_name(name), name
    raw = {"providers": {"inference": [{"config": {"api_key": "${env.SECRET_ONE:=}",
                                                   "url": "${env.NOT_SECRET}"}}]}}  # fmt: skip
    assert run_config_secret_variables(raw) == {"SECRET_ONE"}
    env = {"OPENAI_KEY": "k" * 20, "HANDED": "handed-value-1", "PLAIN": "plain-value-1"}
    assert sorted(secret_values(env, ["HANDED"])) == ["handed-value-1", "k" * 20]


def test_a_key_in_the_query_body_and_an_echoed_error_never_reaches_disk(tmp_path: Path) -> None:
    key = "AIzaSyQueryKey0123456789abcdefghij"
    header_key = "sk-header-key-0123456789abcdef"

    def echo_error(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401,
            json={"error": {"message": f"bad key {key} and {header_key}", "url": str(request.url)}},
        )

    settings = RecordingSettings(Mode.RECORD, tmp_path / "recordings")
    with (
        in_test(TEST_ID),
        httpx.Client(
            transport=wrap_transport(httpx.MockTransport(echo_error), settings),
            headers={"Authorization": f"Bearer {header_key}"},
        ) as http,
    ):
        http.post(f"http://provider/v1/models?key={key}", json={"echo": header_key})
    (path,) = (tmp_path / "recordings").rglob("*.json")
    text = path.read_text()
    assert key not in text and header_key not in text
    assert text.count(REDACTED) >= 4


@pytest.mark.parametrize("is_async", [False, True])
def test_a_provider_that_refuses_or_stalls_is_recorded_so_and_replayed_as_the_same_error(
    tmp_path: Path, is_async: bool
) -> None:
    import asyncio
    import time

    from tests.support.processes import free_port

    closed = f"http://127.0.0.1:{free_port()}/v1/models"

    def stall(request, reply) -> None:
        time.sleep(1.0)
        reply.json(200, {})

    def attempt(mode: Mode, urls: list[str]) -> list[str]:
        settings = RecordingSettings(mode, tmp_path / "recordings")
        caught = []
        if is_async:

            async def run() -> None:
                transport = wrap_async_transport(httpx.AsyncHTTPTransport(), settings)
                async with httpx.AsyncClient(transport=transport, timeout=0.3) as http:
                    for url in urls:
                        try:
                            await http.get(url)
                        except httpx.TransportError as exc:
                            caught.append(type(exc).__name__)

            with in_test(TEST_ID):
                asyncio.run(run())
        else:
            transport = wrap_transport(httpx.HTTPTransport(), settings)
            with in_test(TEST_ID), httpx.Client(transport=transport, timeout=0.3) as http:
                for url in urls:
                    try:
                        http.get(url)
                    except httpx.TransportError as exc:
                        caught.append(type(exc).__name__)
        return caught

    with StubServer(stall) as slow:
        urls = [closed, f"{slow.url}/v1/slow"]
        recorded = attempt(Mode.RECORD, urls)
    replayed = attempt(Mode.REPLAY, urls)

    assert recorded == replayed == ["ConnectError", "ReadTimeout"]
    kinds = sorted(
        json.loads(p.read_text())["response"]["failure"]["kind"]
        for p in (tmp_path / "recordings").rglob("*.json")
    )
    assert kinds == ["connect", "read-timeout"]
