"""The provider-layer RecordingTransport against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from harness.recording.diagnostics import record_command
from harness.recording.errors import (
    FAULT_HEADER,
    Fault,
    FaultKind,
    FieldDiff,
    render_fault,
    render_miss,
)
from harness.recording.fingerprint import fingerprint_of_record
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.records import Recording
from harness.recording.store import RecordingStore
from harness.recording.transport import (
    AsyncRecordingTransport,
    RecordingTransport,
    wrap_async_transport,
    wrap_transport,
)
from harness.recording.usage import create_log, read_usage
from tests.fakes.provider import FakeProvider
from tests.support.recording import in_test


def fault_answered(response: httpx.Response, kind: FaultKind = FaultKind.MISS) -> Fault:
    """The fault a replaying transport answered with: a 500 no SDK retries, naming it."""
    assert response.status_code == 500, response.text
    assert response.headers[FAULT_HEADER] == kind
    assert response.headers["x-should-retry"] == "false"
    return Fault.from_json(response.json()["recording_fault"])


TEST_ID = "tests/integration/inference/test_chat.py::test_hello[llama]"
MODEL = "llama3.2:3b"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello there"}]}


class _StreamCut(Exception):
    """Ends a stub's stream without its final chunk."""


class ExplodingTransport(httpx.BaseTransport):
    """An inner transport that fails the test if replay ever reaches it."""

    def __init__(self) -> None:
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        raise AssertionError(f"replay contacted the provider: {request.method} {request.url}")


class AsyncExplodingTransport(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        raise AssertionError(f"replay contacted the provider: {request.method} {request.url}")


def settings(tmp_path: Path, mode: Mode, **kwargs: object) -> RecordingSettings:
    return RecordingSettings(mode=mode, directory=tmp_path / "recordings", **kwargs)


def client(base_url: str, transport: httpx.BaseTransport) -> httpx.Client:
    return httpx.Client(base_url=base_url, transport=transport)


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


def exchange(http: httpx.Client) -> dict[str, object]:
    """A plain JSON request, an SSE stream (chunk by chunk), an NDJSON stream and a listing."""
    plain = http.post("/v1/chat/completions", json=CHAT)
    with http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as sse:
        sse_chunks = list(sse.iter_raw())
        sse_type = sse.headers["content-type"]
    with http.stream("POST", "/api/chat", json={**CHAT, "stream": True}) as nd:
        nd_chunks = list(nd.iter_raw())
    models = http.get("/v1/models")
    return {
        "plain": (plain.status_code, plain.headers["content-type"], plain.content),
        "sse": (sse_type, sse_chunks),
        "ndjson": nd_chunks,
        "models": models.json(),
    }


def test_record_then_replay_with_provider_stopped_gives_identical_responses(
    tmp_path: Path,
) -> None:
    with FakeProvider() as fake, in_test(TEST_ID):
        recorded = exchange(
            client(
                fake.base_url,
                wrap_transport(httpx.HTTPTransport(), settings(tmp_path, Mode.RECORD)),
            )
        )
        upstream_calls = len(fake.requests)
    inner = ExplodingTransport()
    with in_test(TEST_ID):
        replayed = exchange(
            client("http://127.0.0.1:9", wrap_transport(inner, settings(tmp_path, Mode.REPLAY)))
        )
    assert upstream_calls == 4
    assert inner.calls == 0
    assert replayed == recorded
    sse_type, sse_chunks = replayed["sse"]
    assert sse_type == "text/event-stream"
    assert sse_chunks[-1] == b"data: [DONE]\n\n"
    assert all(chunk.endswith(b"\n\n") for chunk in sse_chunks)
    assert len(sse_chunks) > 3
    assert all(chunk.endswith(b"\n") for chunk in replayed["ndjson"])


def test_recording_file_has_the_documented_shape(tmp_path: Path, fake: FakeProvider) -> None:
    with in_test(TEST_ID):
        http = client(
            fake.base_url, wrap_transport(httpx.HTTPTransport(), settings(tmp_path, Mode.RECORD))
        )
        with http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
            r.read()
    (path,) = (tmp_path / "recordings").rglob("*.json")
    assert path.parent == tmp_path / "recordings/tests/integration/inference/test_chat"
    text = path.read_text()
    record = json.loads(text)
    assert text == json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert path.stem == record["fingerprint"] == fingerprint_of_record(Recording.loads(text, path))
    assert record["test_id"] == TEST_ID
    assert "occurrence" not in record
    assert record["request"]["path"] == "/v1/chat/completions"
    assert record["request"]["body"] == {**CHAT, "stream": True}
    assert record["request"]["headers"] == {"accept": "*/*", "content-type": "application/json"}
    stream = record["response"]["stream"]
    assert stream["framing"] == "sse"
    assert [c["at"] for c in stream["chunks"]] == sorted(c["at"] for c in stream["chunks"])
    first = json.loads(stream["chunks"][0]["data"].removeprefix("data: "))
    assert first["id"] == "rec-" + record["fingerprint"][:16]
    assert first["created"] == 0


def test_replay_miss_names_nearest_recording_and_never_calls_provider(
    tmp_path: Path, fake: FakeProvider
) -> None:
    with in_test(TEST_ID):
        client(
            fake.base_url, wrap_transport(httpx.HTTPTransport(), settings(tmp_path, Mode.RECORD))
        ).post("/v1/chat/completions", json=CHAT)
    inner = ExplodingTransport()
    changed = {**CHAT, "messages": [{"role": "user", "content": "hello again"}]}
    with in_test(TEST_ID):
        answer = client(fake.base_url, wrap_transport(inner, settings(tmp_path, Mode.REPLAY))).post(
            "/v1/chat/completions", json=changed
        )
    assert inner.calls == 0
    fault = fault_answered(answer)
    miss = fault.miss
    assert miss is not None
    assert miss.test_id == TEST_ID
    assert miss.endpoint == "POST /v1/chat/completions"
    assert miss.nearest is not None
    assert miss.nearest.path.startswith("tests/integration/inference/test_chat/")
    assert miss.diff == (FieldDiff("body.messages[0].content", "hello there", "hello again"),)
    # The miss carries data only; the command that records it is rendered from its test id.
    command = record_command(miss.test_id)
    assert command == (
        "LLAMA_STACK_TEST_INFERENCE_MODE=record-if-missing pytest "
        "'tests/integration/inference/test_chat.py::test_hello[llama]'"
    )
    text = render_miss(miss, command)
    assert miss.fingerprint in text and miss.fingerprint in render_fault(fault)
    assert "body.messages[0].content" in text
    assert command in text


def test_an_sdk_with_retries_asks_once_for_a_missing_recording(tmp_path: Path) -> None:
    """A stack's openai client keeps its default retries: a miss must cost one request, no
    backoff, and one fault for its test."""
    log = create_log(tmp_path / "usage.jsonl")
    transport = wrap_transport(ExplodingTransport(), settings(tmp_path, Mode.REPLAY, usage_log=log))
    sdk = openai.OpenAI(
        base_url="http://provider.invalid/v1",
        api_key="sk-x",
        http_client=httpx.Client(transport=transport),
    )
    assert sdk.max_retries == 2
    with in_test(TEST_ID), pytest.raises(openai.InternalServerError) as caught:
        sdk.models.list()
    assert "no recording for GET /v1/models" in str(caught.value)
    assert len(read_usage(log).misses) == 1


def test_replay_miss_without_any_recording_says_so(tmp_path: Path) -> None:
    with in_test(TEST_ID):
        answer = client(
            "http://127.0.0.1:9",
            wrap_transport(ExplodingTransport(), settings(tmp_path, Mode.REPLAY)),
        ).get("/v1/models")
    fault = fault_answered(answer)
    assert fault.miss is not None and fault.miss.nearest is None
    assert "none for this endpoint" in render_fault(fault)


def test_record_if_missing_replays_existing_and_records_new(
    tmp_path: Path, fake: FakeProvider
) -> None:
    record_if_missing = settings(tmp_path, Mode.RECORD_IF_MISSING)
    with in_test(TEST_ID):
        first = client(fake.base_url, wrap_transport(httpx.HTTPTransport(), record_if_missing))
        first.post("/v1/chat/completions", json=CHAT)
    assert len(fake.requests) == 1
    other = {**CHAT, "messages": [{"role": "user", "content": "something new"}]}
    with in_test(TEST_ID):
        again = client(fake.base_url, wrap_transport(httpx.HTTPTransport(), record_if_missing))
        replayed = again.post("/v1/chat/completions", json=CHAT)
        new = again.post("/v1/chat/completions", json=other)
    assert [r["body"]["messages"][0]["content"] for r in fake.requests] == [
        "hello there",
        "something new",
    ]
    assert replayed.json()["choices"][0]["message"]["content"] == "You said: hello there"
    assert new.json()["choices"][0]["message"]["content"] == "You said: something new"
    assert len(list((tmp_path / "recordings").rglob("*.json"))) == 2


def test_record_mode_always_calls_provider(tmp_path: Path, fake: FakeProvider) -> None:
    record = settings(tmp_path, Mode.RECORD)
    for _ in range(2):
        with in_test(TEST_ID):
            client(fake.base_url, wrap_transport(httpx.HTTPTransport(), record)).post(
                "/v1/chat/completions", json=CHAT
            )
    assert len(fake.requests) == 2
    assert len(list((tmp_path / "recordings").rglob("*.json"))) == 1


def test_same_request_twice_replays_answers_in_recorded_order(tmp_path: Path) -> None:
    answers = iter(["first answer", "second answer"])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"answer": next(answers)})

    with in_test(TEST_ID):
        http = client(
            "http://provider",
            wrap_transport(httpx.MockTransport(handler), settings(tmp_path, Mode.RECORD)),
        )
        recorded = [http.get("/v1/thing").json()["answer"] for _ in range(2)]
    with in_test(TEST_ID):
        http = client(
            "http://provider", wrap_transport(ExplodingTransport(), settings(tmp_path, Mode.REPLAY))
        )
        replayed = [http.get("/v1/thing").json()["answer"] for _ in range(2)]
    assert recorded == replayed == ["first answer", "second answer"]
    occurrences = sorted(
        json.loads(p.read_text()).get("occurrence", 0)
        for p in (tmp_path / "recordings").rglob("*.json")
    )
    assert occurrences == [0, 1]


def test_a_third_identical_request_is_a_miss_pointing_at_the_occurrence(tmp_path: Path) -> None:
    with in_test(TEST_ID):
        client(
            "http://provider",
            wrap_transport(
                httpx.MockTransport(lambda r: httpx.Response(200, json={})),
                settings(tmp_path, Mode.RECORD),
            ),
        ).get("/v1/thing")
    with in_test(TEST_ID):
        http = client(
            "http://provider", wrap_transport(ExplodingTransport(), settings(tmp_path, Mode.REPLAY))
        )
        assert http.get("/v1/thing").status_code == 200
        miss = fault_answered(http.get("/v1/thing")).miss
    assert miss is not None and miss.diff == (FieldDiff("occurrence", "<absent>", 1),)


def test_shared_scope_goes_to_shared_directory_and_repeats_freely(
    tmp_path: Path, fake: FakeProvider
) -> None:
    client(
        fake.base_url, wrap_transport(httpx.HTTPTransport(), settings(tmp_path, Mode.RECORD))
    ).get("/v1/models")
    (path,) = (tmp_path / "recordings").rglob("*.json")
    assert path.parent.name == "_shared"
    http = client(
        fake.base_url, wrap_transport(ExplodingTransport(), settings(tmp_path, Mode.REPLAY))
    )
    assert http.get("/v1/models").json() == http.get("/v1/models").json()


def test_unchanged_re_record_leaves_file_byte_identical(tmp_path: Path, fake: FakeProvider) -> None:
    def record() -> dict[Path, bytes]:
        with in_test(TEST_ID):
            http = client(
                fake.base_url,
                wrap_transport(httpx.HTTPTransport(), settings(tmp_path, Mode.RECORD)),
            )
            http.post("/v1/chat/completions", json=CHAT)
            with http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
                r.read()
            with http.stream("POST", "/api/chat", json={**CHAT, "stream": True}) as r:
                r.read()
            http.get("/v1/models")
        return {p: p.read_bytes() for p in (tmp_path / "recordings").rglob("*.json")}

    first = record()
    mtimes = {p: p.stat().st_mtime_ns for p in first}
    second = record()
    assert len(first) == 4
    assert second == first
    assert {p: p.stat().st_mtime_ns for p in second} == mtimes


def test_recorded_ids_and_timestamps_are_normalised(tmp_path: Path, fake: FakeProvider) -> None:
    with in_test(TEST_ID):
        http = client(
            fake.base_url, wrap_transport(httpx.HTTPTransport(), settings(tmp_path, Mode.RECORD))
        )
        body = http.post("/v1/chat/completions", json=CHAT).json()
        with http.stream("POST", "/api/chat", json={**CHAT, "stream": True}) as r:
            lines = [json.loads(line) for line in r.iter_lines() if line]
    assert body["id"].startswith("rec-")
    assert body["created"] == 0
    assert {line["created_at"] for line in lines} == {"1970-01-01T00:00:00Z"}


def test_secrets_never_reach_disk(tmp_path: Path) -> None:
    key = "sk-test-0123456789abcdefghijklmnop"
    with FakeProvider(api_key=key) as fake, in_test(TEST_ID):
        http = httpx.Client(
            base_url=fake.base_url,
            headers={"Authorization": f"Bearer {key}", "x-api-key": key, "Cookie": "s=1"},
            transport=wrap_transport(
                httpx.HTTPTransport(), settings(tmp_path, Mode.RECORD), secrets=[key]
            ),
        )
        echo = {**CHAT, "messages": [{"role": "user", "content": f"my key is {key}"}]}
        ok = http.post("/v1/chat/completions", json=echo)
        denied = http.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "x"})
    assert ok.status_code == 200
    assert denied.status_code == 401
    files = list((tmp_path / "recordings").rglob("*.json"))
    assert len(files) == 2
    for path in files:
        text = path.read_text()
        assert key not in text
        assert "authorization" not in text.lower()
        assert "cookie" not in text.lower()
    assert any("<redacted>" in p.read_text() for p in files)
    # The redacted request still replays: the fingerprint is computed after redaction.
    with in_test(TEST_ID):
        replay = client(
            "http://127.0.0.1:9",
            wrap_transport(ExplodingTransport(), settings(tmp_path, Mode.REPLAY), secrets=[key]),
        )
        assert replay.post("/v1/chat/completions", json=echo).status_code == 200


def test_record_passes_each_stream_chunk_through_as_it_arrives(tmp_path: Path, stub_server) -> None:
    release = threading.Event()

    def gated_events():
        yield b'data: {"n": 1}\n\n'
        release.wait(timeout=30)  # the second event waits for the test
        yield b'data: {"n": 2}\n\ndata: [DONE]\n\n'

    gated = stub_server(lambda request, reply: reply.stream(gated_events(), chunked=False))
    try:
        with in_test(TEST_ID):
            http = client(
                gated.url,
                wrap_transport(httpx.HTTPTransport(), settings(tmp_path, Mode.RECORD)),
            )
            with http.stream("POST", "/v1/chat/completions", json=CHAT) as response:
                chunks = response.iter_raw()
                first = next(chunks)
                # The provider has not sent the rest yet: it waits for this event.
                assert not release.is_set()
                assert list((tmp_path / "recordings").rglob("*.json")) == []
                release.set()
                rest = list(chunks)
    finally:
        release.set()
    assert first == b'data: {"n": 1}\n\n'
    assert rest == [b'data: {"n": 2}\n\n', b"data: [DONE]\n\n"]
    (path,) = (tmp_path / "recordings").rglob("*.json")
    stored = json.loads(path.read_text())["response"]["stream"]["chunks"]
    assert [c["data"] for c in stored] == [c.decode() for c in [first, *rest]]


def test_stream_closed_early_is_still_recorded_complete(tmp_path: Path, fake: FakeProvider) -> None:
    with in_test(TEST_ID):
        http = client(
            fake.base_url, wrap_transport(httpx.HTTPTransport(), settings(tmp_path, Mode.RECORD))
        )
        with http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
            next(r.iter_raw())
    (path,) = (tmp_path / "recordings").rglob("*.json")
    chunks = json.loads(path.read_text())["response"]["stream"]["chunks"]
    assert chunks[-1]["data"] == "data: [DONE]\n\n"


def test_replay_at_recorded_pace_keeps_chunk_order_and_spacing(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "recordings")
    with in_test(TEST_ID):
        http = client(
            "http://p",
            wrap_transport(
                httpx.MockTransport(
                    lambda r: httpx.Response(
                        200,
                        headers={"content-type": "text/event-stream"},
                        content=b"data: 1\n\ndata: 2\n\n",
                    )
                ),
                settings(tmp_path, Mode.RECORD),
            ),
        )
        http.post("/v1/x", json={}).read()
    (path,) = store.directory.rglob("*.json")
    record = json.loads(path.read_text())
    record["response"]["stream"]["chunks"][1]["at"] = 0.2
    path.write_text(json.dumps(record))
    paced = settings(tmp_path, Mode.REPLAY, pace=1.0)
    with in_test(TEST_ID):
        http = client("http://p", wrap_transport(ExplodingTransport(), paced))
        with http.stream("POST", "/v1/x", json={}) as response:
            chunks = response.iter_raw()
            first = next(chunks)
            before = time.monotonic()
            second = next(chunks)
            waited = time.monotonic() - before
    assert (first, second) == (b"data: 1\n\n", b"data: 2\n\n")
    assert waited > 0.1


def test_usage_log_lists_used_recorded_and_missed(tmp_path: Path, fake: FakeProvider) -> None:
    log = create_log(tmp_path / "usage.log")
    with in_test(TEST_ID):
        client(
            fake.base_url,
            wrap_transport(httpx.HTTPTransport(), settings(tmp_path, Mode.RECORD, usage_log=log)),
        ).post("/v1/chat/completions", json=CHAT)
    with in_test(TEST_ID):
        http = client(
            fake.base_url,
            wrap_transport(ExplodingTransport(), settings(tmp_path, Mode.REPLAY, usage_log=log)),
        )
        http.post("/v1/chat/completions", json=CHAT)
        fault_answered(http.get("/v1/models"))
    summary = read_usage(log)
    (path,) = (tmp_path / "recordings").rglob("*.json")
    relative = path.relative_to(tmp_path / "recordings").as_posix()
    assert (summary.counts["used"], summary.counts["recorded"], len(summary.misses)) == (1, 1, 1)
    assert summary.used == summary.recorded == {relative}
    assert summary.misses[0].test_id == TEST_ID


def test_malformed_recording_is_an_error_naming_the_file(tmp_path: Path) -> None:
    with in_test(TEST_ID):
        client(
            "http://p",
            wrap_transport(
                httpx.MockTransport(lambda r: httpx.Response(200, json={"a": 1})),
                settings(tmp_path, Mode.RECORD),
            ),
        ).get("/v1/x")
    (path,) = (tmp_path / "recordings").rglob("*.json")
    path.write_text('{"fingerprint": 1}')
    with in_test(TEST_ID):
        answer = client(
            "http://p", wrap_transport(ExplodingTransport(), settings(tmp_path, Mode.REPLAY))
        ).get("/v1/x")
    message = render_fault(fault_answered(answer, FaultKind.UNREADABLE))
    assert str(path) in message
    assert '"fingerprint" to be a string' in message


def test_live_mode_and_no_settings_return_the_inner_transport(tmp_path: Path) -> None:
    inner = httpx.HTTPTransport()
    assert wrap_transport(inner, None) is inner
    assert wrap_transport(inner, settings(tmp_path, Mode.LIVE)) is inner
    assert isinstance(wrap_transport(inner, settings(tmp_path, Mode.REPLAY)), RecordingTransport)
    ainner = httpx.AsyncHTTPTransport()
    assert wrap_async_transport(ainner, None) is ainner
    assert wrap_async_transport(ainner, settings(tmp_path, Mode.LIVE)) is ainner
    assert isinstance(
        wrap_async_transport(ainner, settings(tmp_path, Mode.RECORD)), AsyncRecordingTransport
    )


def test_async_transport_records_and_replays_streams(tmp_path: Path) -> None:
    async def run(base_url: str, transport: httpx.AsyncBaseTransport) -> tuple:
        async with httpx.AsyncClient(base_url=base_url, transport=transport) as http:
            plain = (await http.post("/v1/chat/completions", json=CHAT)).json()
            async with http.stream(
                "POST", "/v1/chat/completions", json={**CHAT, "stream": True}
            ) as response:
                chunks = [chunk async for chunk in response.aiter_raw()]
        return plain, chunks

    with FakeProvider() as fake, in_test(TEST_ID):
        recorded = asyncio.run(
            run(
                fake.base_url,
                wrap_async_transport(httpx.AsyncHTTPTransport(), settings(tmp_path, Mode.RECORD)),
            )
        )
    inner = AsyncExplodingTransport()
    with in_test(TEST_ID):
        replayed = asyncio.run(
            run("http://127.0.0.1:9", wrap_async_transport(inner, settings(tmp_path, Mode.REPLAY)))
        )
    assert inner.calls == 0
    assert replayed == recorded
    assert recorded[1][-1] == b"data: [DONE]\n\n"


def test_async_replay_miss_is_answered_by_the_transport(tmp_path: Path) -> None:
    async def run() -> httpx.Response:
        transport = wrap_async_transport(AsyncExplodingTransport(), settings(tmp_path, Mode.REPLAY))
        async with httpx.AsyncClient(base_url="http://p", transport=transport) as http:
            return await http.get("/v1/models")

    with in_test(TEST_ID):
        fault = fault_answered(asyncio.run(run()))
    assert fault.test_id == TEST_ID and fault.miss is not None


def test_stream_cut_by_provider_while_draining_records_nothing(tmp_path: Path, stub_server) -> None:
    def cut_stream(request, reply):
        def events():
            yield b'data: {"n": 1}\n\n'
            reply.raw(b"ff\r\npartial")  # then the connection drops mid-chunk
            reply.cut()
            raise _StreamCut

        with contextlib.suppress(_StreamCut):
            reply.stream(events())

    server = stub_server(cut_stream)
    with in_test(TEST_ID):
        http = client(
            server.url, wrap_transport(httpx.HTTPTransport(), settings(tmp_path, Mode.RECORD))
        )
        with http.stream("POST", "/v1/chat/completions", json=CHAT) as response:
            first = next(response.iter_raw())
    assert first == b'data: {"n": 1}\n\n'
    assert list((tmp_path / "recordings").rglob("*.json")) == []
