"""Client layer: record the test process's own HTTP with a remote stack, through vcrpy.

For a stack given by URL the harness cannot wrap the provider transport, so it records what
the test itself exchanges with the stack (``/v1/prompts`` included). vcrpy does the patching
(httpx and httpx2, hence the ``openai`` SDK too) through its public API; we plug in vcrpy's own
small parts:

- :class:`RecordingPersister`: a cassette path is a test module's recordings directory, holding
  one file per interaction in the same layout and format as the provider layer, so
  ``verify``/``prune``/``show`` work on both;
- :func:`fingerprint_matcher`: a plain matcher on the canonical request (method, path, query,
  body and the test id);
- :func:`request_filter` / :func:`response_filter`: the ``before_record_*`` hooks, which redact
  and stamp each request with the test it belongs to.

Modes map to vcrpy record modes: replay -> "none", record -> "all",
record-if-missing -> "new_episodes", live -> no cassette at all.
"""

from __future__ import annotations

import copy
import http
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import vcr
from vcr.errors import CannotOverwriteExistingCassetteException
from vcr.persisters.filesystem import CassetteNotFoundError
from vcr.request import Request as VcrRequest

from harness.recording import usage
from harness.recording.completeness import cut_reason
from harness.recording.context import TEST_ID_HEADER, OccurrenceCounter
from harness.recording.diagnostics import build_miss
from harness.recording.errors import RecordingError, ReplayMissError, find_in_chain
from harness.recording.fingerprint import canonical_request, fingerprint, parse_body, parse_query
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.normalize import EventSplitter, framing_for, normalize_event
from harness.recording.redaction import (
    REQUEST_HEADERS_KEPT,
    RESPONSE_HEADERS_KEPT,
    SENSITIVE_HEADERS,
    Redactor,
)
from harness.recording.store import RecordingStore, module_dir, new_record
from harness.recording.streams import response_content, stored_plain_response

logger = logging.getLogger(__name__)

VCR_RECORD_MODES = {
    Mode.REPLAY: "none",
    Mode.RECORD: "all",
    Mode.RECORD_IF_MISSING: "new_episodes",
}
MATCHER_NAME = "harness_fingerprint"
REPLAY_HOST = "http://recorded.invalid"


def _body_bytes(request: VcrRequest) -> bytes:
    body = request.body
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    return bytes(request.body_bytes or b"")


def canonical(request: VcrRequest, occurrence: int = 0) -> dict[str, Any]:
    """The canonical request of a filtered vcrpy request (the test id travels in a header)."""
    return canonical_request(
        request.method,
        request.path,
        parse_query(request.parsed_uri.query),
        parse_body(_body_bytes(request)),
        request.headers.get(TEST_ID_HEADER, ""),
        occurrence,
    )


def fingerprint_matcher(r1: VcrRequest, r2: VcrRequest) -> None:
    """vcrpy matcher: the same canonical request (occurrences are vcrpy's play order)."""
    if canonical(r1) != canonical(r2):
        raise AssertionError("canonical requests differ (method, path, query, body or test id)")


def request_filter(test_id: str, redactor: Redactor) -> Callable[[VcrRequest], VcrRequest]:
    """``before_record_request``: no credential headers, secrets redacted, the test id set."""

    def hook(request: VcrRequest) -> VcrRequest:
        request = copy.deepcopy(request)
        for name in list(request.headers):
            if name.lower() in SENSITIVE_HEADERS:
                del request.headers[name]
        request.headers[TEST_ID_HEADER] = test_id
        content = _body_bytes(request)
        if content and redactor.secrets:
            request.body = redactor.text(content.decode("utf-8", "replace"))
        return request

    return hook


def response_filter(redactor: Redactor) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``before_record_response``: no credential headers, secrets redacted from the body."""

    def hook(response: dict[str, Any]) -> dict[str, Any]:
        response = copy.deepcopy(response)
        response["headers"] = {
            name: values
            for name, values in response.get("headers", {}).items()
            if name.lower() not in SENSITIVE_HEADERS
        }
        body = response.get("body", {}).get("string")
        if isinstance(body, bytes) and redactor.secrets:
            text = redactor.text(body.decode("utf-8", "replace"))
            response["body"]["string"] = text.encode("utf-8")
        return response

    return hook


class RecordingPersister:
    """vcrpy persister: the cassette at a path is the recordings in that module directory."""

    def __init__(self, store: RecordingStore, redactor: Redactor, log: usage.UsageLog) -> None:
        self.store = store
        self.redactor = redactor
        self.log = log
        self.loaded_paths: list[Path] = []

    def load_cassette(self, cassette_path: Any, serializer: Any) -> tuple[list, list]:
        folder = Path(cassette_path)
        files = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
        records = [(self.store.load(path), path) for path in files]
        if not records:
            raise CassetteNotFoundError()
        records.sort(key=lambda item: (item[0]["test_id"], item[0].get("occurrence", 0), item[1]))
        self.loaded_paths = [path for _, path in records]
        return [_vcr_request(r) for r, _ in records], [_vcr_response(r) for r, _ in records]

    def save_cassette(self, cassette_path: Any, cassette_dict: dict, serializer: Any) -> None:
        counter = OccurrenceCounter()
        pairs = zip(cassette_dict["requests"], cassette_dict["responses"], strict=True)
        for request, response in pairs:
            occurrence = counter.next(fingerprint(canonical(request)))
            value = canonical(request, occurrence)
            fp = fingerprint(value)
            headers = self.redactor.headers(dict(request.headers.items()), REQUEST_HEADERS_KEPT)
            stored = self._stored_response(response, fp)
            stream = stored.get("stream")
            reason = stream and cut_reason(stream["framing"], (c["data"] for c in stream["chunks"]))
            if reason:
                logger.warning(
                    "not recording %s %s: cut short (%s)", value["method"], value["path"], reason
                )
                continue
            record = new_record(value, fp, headers, stored)
            path, _ = self.store.write(record, Path(cassette_path) / f"{fp}.json")
            self.log.append(usage.RECORDED, self.store.relative(path))

    def log_played(self, play_counts: dict[int, int]) -> None:
        for index, count in play_counts.items():
            if count and index < len(self.loaded_paths):
                self.log.append(usage.USED, self.store.relative(self.loaded_paths[index]))

    def _stored_response(self, response: dict[str, Any], fp: str) -> dict[str, Any]:
        headers = self.redactor.headers(
            {name: values[0] for name, values in response["headers"].items() if values},
            RESPONSE_HEADERS_KEPT,
        )
        body = response["body"]["string"]
        if isinstance(body, str):
            body = body.encode("utf-8")
        status = response["status"]["code"]
        framing = framing_for(headers.get("content-type"))
        if framing is None:
            return stored_plain_response(status, headers, body or b"", fp, self.redactor)
        splitter = EventSplitter(framing)
        events = splitter.feed(body or b"") + splitter.flush()
        chunks = [
            {"at": 0.0, "data": self.redactor.text(normalize_event(e, framing, fp))} for e in events
        ]
        return {
            "status": status,
            "headers": headers,
            "stream": {"framing": framing, "chunks": chunks},
        }


def _vcr_request(record: dict[str, Any]) -> VcrRequest:
    request = record["request"]
    query = request.get("query") or {}
    pairs = [(k, item) for k, v in query.items() for item in (v if isinstance(v, list) else [v])]
    uri = REPLAY_HOST + request["path"] + (f"?{urlencode(pairs)}" if pairs else "")
    body = request.get("body")
    content = response_content({"body": body} if not isinstance(body, str) else {"text": body})
    headers = {**request.get("headers", {}), TEST_ID_HEADER: record["test_id"]}
    return VcrRequest(request["method"], uri, content if body is not None else None, headers)


def _vcr_response(record: dict[str, Any]) -> dict[str, Any]:
    response = record["response"]
    if "stream" in response:
        content = "".join(c["data"] for c in response["stream"]["chunks"]).encode("utf-8")
    else:
        content = response_content(response)
    try:
        message = http.HTTPStatus(response["status"]).phrase
    except ValueError:
        message = ""
    return {
        "status": {"code": response["status"], "message": message},
        "headers": {name: [value] for name, value in response.get("headers", {}).items()},
        "body": {"string": content},
    }


def miss_from(exc: BaseException | None, settings: RecordingSettings) -> ReplayMissError | None:
    """The replay miss behind a failure, as the harness's diagnostic; None if there is none.

    Finds vcrpy's "cannot overwrite" error also when an SDK wrapped it in its own exception
    (e.g. ``openai.APIConnectionError``), and logs the miss in the usage log.
    """
    if isinstance(exc, ReplayMissError):
        return exc
    vcr_miss = find_in_chain(exc, CannotOverwriteExistingCassetteException)
    if vcr_miss is None or vcr_miss.failed_request is None:
        return None
    request = vcr_miss.cassette.filter_request(vcr_miss.failed_request)
    value = canonical(request)
    fp = fingerprint(value)
    store = RecordingStore(settings.directory)
    miss = build_miss(store, value, fp, store.path_for(value["test_id"], fp))
    usage.UsageLog(settings.usage_log).append(usage.MISSED, fp, value["test_id"])
    return ReplayMissError(miss)


@contextmanager
def client_cassette(
    settings: RecordingSettings, test_id: str, *, secrets: Iterable[str] = ()
) -> Iterator[Any]:
    """Record/replay the HTTP this process makes (httpx, httpx2/openai) for one test.

    Yields the vcrpy cassette (None in live mode). A replay miss that leaves the block surfaces
    as a :class:`ReplayMissError` with the same diagnostic as the provider layer.
    """
    if settings.mode is Mode.LIVE:
        yield None
        return
    redactor = Redactor(secrets)
    store = RecordingStore(settings.directory)
    persister = RecordingPersister(store, redactor, usage.UsageLog(settings.usage_log))
    recorder = vcr.VCR(decode_compressed_response=True)
    recorder.register_persister(persister)
    recorder.register_matcher(MATCHER_NAME, fingerprint_matcher)
    try:
        with recorder.use_cassette(
            str(settings.directory / module_dir(test_id)),
            record_mode=VCR_RECORD_MODES[settings.mode],
            match_on=[MATCHER_NAME],
            before_record_request=request_filter(test_id, redactor),
            before_record_response=response_filter(redactor),
            allow_playback_repeats=False,
        ) as cassette:
            try:
                yield cassette
            finally:
                persister.log_played(cassette.play_counts)
    except RecordingError:
        raise
    except Exception as exc:
        miss = miss_from(exc, settings)
        if miss is None:
            raise
        raise miss from exc
