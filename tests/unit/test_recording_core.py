"""Modes, fingerprint, test scope, redaction, normalisation and the store's file rules."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.recording import context
from harness.recording.context import (
    INVOCATION_HEADER,
    SESSION_HEADER,
    SHARED,
    TEST_ID_HEADER,
    Attribution,
    AttributionMiddleware,
    attributed,
    attribution_headers,
    current_attribution,
)
from harness.recording.errors import RecordingError
from harness.recording.fingerprint import (
    canonical_json,
    canonical_request,
    fingerprint,
    parse_body,
    parse_query,
)
from harness.recording.modes import Mode, RecordingSettings, parse_mode
from harness.recording.normalize import EventSplitter, normalize_event, normalize_json
from harness.recording.records import Recording
from harness.recording.redaction import Redactor, find_secret_patterns
from harness.recording.store import RecordingStore, module_dir


def test_parse_mode_accepts_the_four_modes() -> None:
    assert [parse_mode(v) for v in ("replay", "record", "live", "Record-If-Missing")] == [
        Mode.REPLAY,
        Mode.RECORD,
        Mode.LIVE,
        Mode.RECORD_IF_MISSING,
    ]


def test_unknown_mode_error_names_source_value_and_valid_modes() -> None:
    with pytest.raises(RecordingError) as caught:
        parse_mode("replya", source="--inference-mode")
    message = str(caught.value)
    assert "--inference-mode='replya'" in message
    for valid in ("replay", "record", "live", "record-if-missing"):
        assert valid in message


def test_settings_from_env_none_without_mode_and_round_trip(tmp_path: Path) -> None:
    assert RecordingSettings.from_env({}) is None
    assert RecordingSettings.from_env({"LLAMA_STACK_TEST_INFERENCE_MODE": " "}) is None
    env = {
        "LLAMA_STACK_TEST_INFERENCE_MODE": "record",
        "LLAMA_STACK_TEST_RECORDING_DIR": str(tmp_path / "recs"),
        "LLAMA_STACK_TEST_REPLAY_PACE": "1.5",
        "HARNESS_RECORDING_USAGE_LOG": str(tmp_path / "usage.log"),
    }
    settings = RecordingSettings.from_env(env)
    assert settings == RecordingSettings(
        Mode.RECORD, tmp_path / "recs", 1.5, tmp_path / "usage.log"
    )
    assert RecordingSettings.from_env(settings.to_env()) == settings


def test_settings_default_directory_is_absolute_recordings() -> None:
    settings = RecordingSettings.from_env({"LLAMA_STACK_TEST_INFERENCE_MODE": "replay"})
    assert settings.directory == Path.cwd() / "recordings"
    assert settings.pace == 0.0 and settings.usage_log is None


def test_bad_pace_is_a_recording_error() -> None:
    with pytest.raises(RecordingError, match="LLAMA_STACK_TEST_REPLAY_PACE"):
        RecordingSettings.from_env(
            {"LLAMA_STACK_TEST_INFERENCE_MODE": "replay", "LLAMA_STACK_TEST_REPLAY_PACE": "fast"}
        )


def test_fingerprint_is_canonical_and_ignores_key_order() -> None:
    a = canonical_request("post", "/v1/x", {"b": "2", "a": "1"}, {"z": 1, "a": [1, 2]}, "t::x")
    b = canonical_request("POST", "/v1/x", {"a": "1", "b": "2"}, {"a": [1, 2], "z": 1}, "t::x")
    assert fingerprint(a) == fingerprint(b)
    assert canonical_json(a) == (
        '{"body":{"a":[1,2],"z":1},"method":"POST","path":"/v1/x",'
        '"query":{"a":"1","b":"2"},"test_id":"t::x"}'
    )


def test_fingerprint_changes_with_each_field_and_occurrence() -> None:
    base = canonical_request("POST", "/v1/x", {}, {"a": 1}, "t::x")
    variants = [
        canonical_request("GET", "/v1/x", {}, {"a": 1}, "t::x"),
        canonical_request("POST", "/v1/y", {}, {"a": 1}, "t::x"),
        canonical_request("POST", "/v1/x", {"q": "1"}, {"a": 1}, "t::x"),
        canonical_request("POST", "/v1/x", {}, {"a": 2}, "t::x"),
        canonical_request("POST", "/v1/x", {}, {"a": 1}, "t::y"),
        canonical_request("POST", "/v1/x", {}, {"a": 1}, "t::x", occurrence=1),
    ]
    assert "occurrence" not in canonical_request("POST", "/v1/x", {}, None, "t", occurrence=0)
    prints = {fingerprint(v) for v in variants} | {fingerprint(base)}
    assert len(prints) == len(variants) + 1


def test_fingerprint_is_stable_across_processes() -> None:
    value = canonical_request("POST", "/v1/é", {"k": ["1", "2"]}, {"msg": "héllo ☃"}, "t.py::x")
    code = (
        "import json,sys; from harness.recording.fingerprint import fingerprint;"
        "print(fingerprint(json.loads(sys.stdin.read())))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123", "PYTHONPATH": str(Path.cwd())}
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(value),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert out.stdout.strip() == fingerprint(value)
    # Pinned: a change to the definition must be deliberate (it invalidates every recording).
    assert fingerprint(canonical_request("GET", "/v1/models", {}, None, "")) == (
        "cd23ddcc0f83f99c50c238944ad29907122e3c48ee247294344e6abff5dd7471"
    )


def test_query_and_body_parsing() -> None:
    assert parse_query("b=2&a=1&a=3&c=") == {"a": ["1", "3"], "b": "2", "c": ""}
    assert parse_body(b"") is None
    assert parse_body(b'{"a": 1}') == {"a": 1}
    assert parse_body(b"plain text") == "plain text"


def _request(test_id: bytes, invocation: bytes) -> dict:
    headers = [(b"x-harness-test-id", test_id), (b"x-harness-test-invocation", invocation)]
    return {"type": "http", "headers": headers}


def test_occurrence_counter_counts_per_invocation() -> None:
    counts: list[int] = []

    async def app(scope: dict, receive: object, send: object) -> None:
        counts.append(current_attribution().occurrence("fp"))

    middleware = AttributionMiddleware(app)
    limited = AttributionMiddleware(app, max_invocations=2)

    async def run() -> None:
        for invocation in (b"a", b"a", b"b"):
            await middleware(_request(b"t.py::x", invocation), None, None)
        await limited(_request(b"t.py::x", b"a"), None, None)
        await limited(_request(b"t.py::x", b"b"), None, None)
        await limited(_request(b"t.py::x", b"c"), None, None)  # forgets "a", the oldest
        await limited(_request(b"t.py::x", b"a"), None, None)

    asyncio.run(run())
    assert counts[:3] == [0, 1, 0]
    assert counts[-1] == 0


def test_scope_sets_and_restores_the_current_test() -> None:
    assert current_attribution() == SHARED
    with attributed(Attribution("t.py::a", "inv")) as active:
        assert current_attribution() == active == Attribution("t.py::a", "inv")
        with attributed(Attribution("t.py::b", "inv-2")) as inner:
            assert current_attribution().test_id == "t.py::b" and inner.invocation
        assert current_attribution() == active
    assert current_attribution() == SHARED
    assert attribution_headers("0" * 32, "t.py::a", "inv") == {
        SESSION_HEADER: "0" * 32,
        TEST_ID_HEADER: "t.py::a",
        INVOCATION_HEADER: "inv",
    }


def test_middleware_sets_scope_from_headers_per_request() -> None:
    seen: list[Attribution] = []

    async def app(scope_: dict, receive: object, send: object) -> None:
        seen.append(context.current_attribution())

    middleware = AttributionMiddleware(app)

    async def run() -> None:
        await middleware(_request(b"t.py::a", b"inv-1"), None, None)
        await middleware({"type": "http", "headers": []}, None, None)
        await middleware({"type": "lifespan"}, None, None)

    asyncio.run(run())
    assert seen == [Attribution("t.py::a", "inv-1"), SHARED, SHARED]
    assert current_attribution() == SHARED


def test_redactor_drops_credential_headers_and_replaces_secrets() -> None:
    redactor = Redactor(["sk-secret-value-123", "", None, "short"])
    headers = redactor.headers(
        {
            "Authorization": "Bearer sk-secret-value-123",
            "X-Api-Key": "k",
            "Cookie": "c",
            "Content-Type": "application/json; key=sk-secret-value-123",
            "X-Request-Id": "abc",
        },
        ("content-type", "authorization"),
    )
    assert headers == {"content-type": "application/json; key=<redacted>"}
    body = {"a": ["my sk-secret-value-123 key", {"b": "sk-secret-value-123"}], "n": 1}
    assert redactor.value(body) == {"a": ["my <redacted> key", {"b": "<redacted>"}], "n": 1}
    assert redactor.text("short stays") == "short stays"


def test_secret_patterns_are_detected() -> None:
    assert find_secret_patterns('"Bearer abcdefghijkl12345"') == ["bearer token"]
    assert find_secret_patterns("sk-proj-ABCDEFGHIJKLMNOPQRST") == ["sk- API key"]
    assert find_secret_patterns("Bearer <redacted> and sk-short") == []


def test_normalize_json_fixes_random_fields_but_keeps_model_ids() -> None:
    fp = "f" * 64
    chat = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 9,
        "system_fingerprint": "x",
    }
    assert normalize_json(chat, fp) == {
        "id": "rec-ffffffffffffffff",
        "object": "chat.completion",
        "created": 0,
        "system_fingerprint": None,
    }
    model = {"id": "llama3.2:3b", "object": "model", "created": 5}
    assert normalize_json(model, fp) == {"id": "llama3.2:3b", "object": "model", "created": 0}
    listing = {"object": "list", "data": [model]}
    assert normalize_json(listing, fp)["data"][0]["id"] == "llama3.2:3b"


def test_sse_splitter_keeps_framing_across_arbitrary_byte_boundaries() -> None:
    stream = 'data: {"a":1}\r\n\r\nevent: x\ndata: y\ndata: z\n\ndata: é\n\ndata: [DONE]\n\n'
    raw = stream.encode()
    for size in (1, 2, 3, 7, len(raw)):
        splitter = EventSplitter("sse")
        events: list[str] = []
        for i in range(0, len(raw), size):
            events += splitter.feed(raw[i : i + size])
        events += splitter.flush()
        assert "".join(events) == stream
        assert events == [
            'data: {"a":1}\r\n\r\n',
            "event: x\ndata: y\ndata: z\n\n",
            "data: é\n\n",
            "data: [DONE]\n\n",
        ]


def test_ndjson_splitter_and_event_normalisation() -> None:
    splitter = EventSplitter("ndjson")
    events = (
        splitter.feed(b'{"created_at": "2025-01-01T00:00:00Z"}\n{"done"')
        + splitter.feed(b": true}")
        + splitter.flush()
    )
    assert events == ['{"created_at": "2025-01-01T00:00:00Z"}\n', '{"done": true}']
    assert normalize_event(events[0], "ndjson", "0" * 64) == (
        '{"created_at":"1970-01-01T00:00:00Z"}\n'
    )
    sse = 'data: {"id":"x","object":"chat.completion.chunk"}\r\n\r\n'
    assert normalize_event(sse, "sse", "a" * 64) == (
        'data: {"id":"rec-aaaaaaaaaaaaaaaa","object":"chat.completion.chunk"}\r\n\r\n'
    )
    assert normalize_event("data: [DONE]\n\n", "sse", "a" * 64) == "data: [DONE]\n\n"


def test_module_dir_from_node_id() -> None:
    assert module_dir("tests/integration/inference/test_chat.py::test_a[x]") == (
        "tests/integration/inference/test_chat"
    )
    assert module_dir("") == "_shared"
    assert module_dir("../../etc/test_x.py::t") == "etc/test_x"


def _record(fp: str = "a" * 64) -> dict:
    return {
        "fingerprint": fp,
        "test_id": "tests/test_m.py::t",
        "request": {
            "method": "GET",
            "path": "/v1/models",
            "query": {},
            "headers": {},
            "body": None,
        },
        "response": {
            "status": 200,
            "headers": {},
            "stream": {"framing": "sse", "chunks": [{"at": 0.1, "data": "data: 1\n\n"}]},
        },
    }


def test_store_write_is_atomic_and_skips_timing_only_changes(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path)

    def typed(record: dict) -> Recording:
        return Recording.from_json(record, "in-memory")

    path, changed = store.write(typed(_record()))
    assert changed and path == tmp_path / "tests/test_m" / f"{'a' * 64}.json"
    before = path.read_bytes()
    retimed = _record()
    retimed["response"]["stream"]["chunks"][0]["at"] = 0.9
    assert store.write(typed(retimed)) == (path, False)
    assert path.read_bytes() == before
    changed_data = _record()
    changed_data["response"]["stream"]["chunks"][0]["data"] = "data: 2\n\n"
    assert store.write(typed(changed_data)) == (path, True)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r.pop("request"), '"request" to be an object'),
        (lambda r: r["response"].update(status="200"), '"response.status" to be an integer'),
        (lambda r: r["response"].update(body={}), 'exactly one of "response.body"'),
        (lambda r: r["response"]["stream"].update(framing="ws"), '"sse" or "ndjson"'),
        (lambda r: r["response"]["stream"]["chunks"].append({"data": 1}), "chunks"),
    ],
)
def test_malformed_file_error_names_file_and_expectation(
    tmp_path: Path, mutate: object, expected: str
) -> None:
    record = _record()
    mutate(record)  # type: ignore[operator]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(record))
    with pytest.raises(RecordingError) as caught:
        RecordingStore(tmp_path).load(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)


def test_non_json_file_is_a_recording_error(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{truncated")
    with pytest.raises(RecordingError, match="expected JSON"):
        RecordingStore(tmp_path).load(path)


def test_replay_miss_error_survives_pickling_with_its_miss() -> None:
    import pickle

    from harness.recording.errors import Fault, FaultKind, Miss, ReplayMissError

    miss = Miss(
        fingerprint="f" * 64,
        test_id="t.py::a",
        endpoint="GET /v1/models",
        recording_path="t/" + "f" * 64 + ".json",
    )
    fault = Fault(FaultKind.MISS, miss.summary(), "t.py::a", "inv", miss)
    error = pickle.loads(pickle.dumps(ReplayMissError(fault)))
    assert error.fault == fault and Fault.from_json(fault.to_json()) == fault
    assert "GET /v1/models" in str(error) and "t.py::a" in error.summary()


def test_settings_reach_a_stack_under_the_harness_names_only(tmp_path: Path) -> None:
    settings = RecordingSettings(Mode.REPLAY, tmp_path / "recs", 1.0, tmp_path / "usage.log")
    env = settings.to_env()
    # Llama Stack turns on its own recorder when it sees its variables.
    assert not any(name.startswith("LLAMA_STACK_TEST_") for name in env)
    assert RecordingSettings.from_env(env) == settings
