"""Client layer: record the test process's own HTTP with a remote stack, through vcrpy.

For a stack given by URL the harness cannot wrap the provider transport, so it records what
the test itself exchanges with the stack (``/v1/prompts`` included). vcrpy does the patching
(httpx and httpx2, hence the ``openai`` SDK too) through its public API; we plug in:

- a persister that stores each interaction as one file in the same layout and format as the
  provider layer (``<dir>/<module>/<fingerprint>.json``), so ``verify``/``prune``/``show`` work
  on both;
- a matcher on the same canonical fingerprint (method, path, query, body; redacted);
- ``before_record_request``/``before_record_response`` hooks for redaction.

Modes map to vcrpy record modes: replay -> "none", record -> "all",
record-if-missing -> "new_episodes", live -> no cassette at all.
"""

from __future__ import annotations

import copy
import http
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import vcr
from vcr.errors import CannotOverwriteExistingCassetteException
from vcr.persisters.filesystem import CassetteNotFoundError
from vcr.request import Request as VcrRequest

from harness.recording import usage
from harness.recording.diagnostics import build_miss
from harness.recording.errors import ReplayMissError
from harness.recording.fingerprint import canonical_request, fingerprint, parse_body, parse_query
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.normalize import EventSplitter, framing_for, normalize_event
from harness.recording.redaction import (
    REQUEST_HEADERS_KEPT,
    RESPONSE_HEADERS_KEPT,
    SENSITIVE_HEADERS,
    Redactor,
)
from harness.recording.store import RecordingStore, module_dir
from harness.recording.streams import response_content, stored_plain_response

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


class _Cassette:
    """Per-test persister + matcher + hooks, bound to one test id and recordings directory."""

    def __init__(self, settings: RecordingSettings, test_id: str, secrets: Iterable[str]) -> None:
        self.settings = settings
        self.test_id = test_id
        self.store = RecordingStore(settings.directory)
        self.redactor = Redactor(secrets)
        self.loaded_paths: list[Path] = []

    # -- canonical form, shared with the transport's definition -------------------------------
    def canonical(self, request: VcrRequest, occurrence: int = 0) -> dict[str, Any]:
        return canonical_request(
            request.method,
            request.path,
            self.redactor.value(parse_query(request.parsed_uri.query)),
            self.redactor.value(parse_body(_body_bytes(request))),
            self.test_id,
            occurrence,
        )

    def matcher(self, r1: VcrRequest, r2: VcrRequest) -> None:
        if self.canonical(r1) != self.canonical(r2):
            raise AssertionError("canonical requests differ (method, path, query or body)")

    # -- redaction hooks -----------------------------------------------------------------------
    def before_record_request(self, request: VcrRequest) -> VcrRequest:
        request = copy.deepcopy(request)
        for name in list(request.headers):
            if name.lower() in SENSITIVE_HEADERS:
                del request.headers[name]
        content = _body_bytes(request)
        if content and self.redactor.secrets:
            request.body = self.redactor.text(content.decode("utf-8", "replace"))
        return request

    def before_record_response(self, response: dict[str, Any]) -> dict[str, Any]:
        response = copy.deepcopy(response)
        response["headers"] = {
            name: values
            for name, values in response.get("headers", {}).items()
            if name.lower() not in SENSITIVE_HEADERS
        }
        body = response.get("body", {}).get("string")
        if isinstance(body, bytes) and self.redactor.secrets:
            response["body"]["string"] = self.redactor.text(body.decode("utf-8", "replace")).encode(
                "utf-8"
            )
        return response

    # -- persister -----------------------------------------------------------------------------
    def load_cassette(self, cassette_path: Any, serializer: Any) -> tuple[list, list]:
        records = []
        for path in self.store.module_files(self.test_id):
            record = self.store.load(path)
            if record["test_id"] == self.test_id:
                records.append((record.get("occurrence", 0), record["fingerprint"], path, record))
        if not records:
            raise CassetteNotFoundError()
        records.sort(key=lambda item: (item[0], item[1]))
        self.loaded_paths = [item[2] for item in records]
        requests = [self._vcr_request(item[3]) for item in records]
        responses = [self._vcr_response(item[3]) for item in records]
        return requests, responses

    def save_cassette(self, cassette_path: Any, cassette_dict: dict, serializer: Any) -> None:
        seen: dict[str, int] = {}
        for request, response in zip(
            cassette_dict["requests"], cassette_dict["responses"], strict=True
        ):
            base = fingerprint(self.canonical(request))
            occurrence = seen.get(base, 0)
            seen[base] = occurrence + 1
            canonical = self.canonical(request, occurrence)
            fp = fingerprint(canonical)
            record: dict[str, Any] = {
                "fingerprint": fp,
                "test_id": self.test_id,
                "request": {
                    "method": canonical["method"],
                    "path": canonical["path"],
                    "query": canonical["query"],
                    "headers": self.redactor.headers(
                        {k: v for k, v in request.headers.items()}, REQUEST_HEADERS_KEPT
                    ),
                    "body": canonical["body"],
                },
                "response": self._stored_response(response, fp),
            }
            if occurrence:
                record["occurrence"] = occurrence
            path, _ = self.store.write(record)
            self._log(usage.RECORDED, self.store.relative(path))

    # -- conversions ---------------------------------------------------------------------------
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
        if framing is not None:
            splitter = EventSplitter(framing)
            events = splitter.feed(body or b"") + splitter.flush()
            chunks = [
                {"at": 0.0, "data": self.redactor.text(normalize_event(e, framing, fp))}
                for e in events
            ]
            return {
                "status": status,
                "headers": headers,
                "stream": {"framing": framing, "chunks": chunks},
            }
        return stored_plain_response(status, headers, body or b"", fp, self.redactor)

    def _vcr_request(self, record: dict[str, Any]) -> VcrRequest:
        request = record["request"]
        query = request.get("query") or {}
        pairs = [
            (k, item) for k, v in query.items() for item in (v if isinstance(v, list) else [v])
        ]
        uri = REPLAY_HOST + request["path"] + (f"?{urlencode(pairs)}" if pairs else "")
        body = request.get("body")
        content = response_content({"body": body} if not isinstance(body, str) else {"text": body})
        return VcrRequest(
            request["method"], uri, content if body is not None else None, request["headers"]
        )

    def _vcr_response(self, record: dict[str, Any]) -> dict[str, Any]:
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

    def log_played(self, cassette: Any) -> None:
        for index, count in cassette.play_counts.items():
            if count and index < len(self.loaded_paths):
                self._log(usage.USED, self.store.relative(self.loaded_paths[index]))

    def _log(self, kind: str, *values: str) -> None:
        if self.settings.usage_log is not None:
            usage.append_usage(self.settings.usage_log, kind, *values)

    def miss_error(self, exc: CannotOverwriteExistingCassetteException) -> ReplayMissError:
        request = self.before_record_request(exc.failed_request)
        base = self.canonical(request)
        fp = fingerprint(base)
        miss = build_miss(self.store, base, fp, self.store.path_for(self.test_id, fp))
        self._log(usage.MISSED, fp, self.test_id)
        return ReplayMissError(miss)


def find_vcr_miss(exc: BaseException) -> CannotOverwriteExistingCassetteException | None:
    """The vcrpy miss behind an exception (SDKs wrap transport errors in their own types)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, CannotOverwriteExistingCassetteException):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def client_cassette(
    settings: RecordingSettings, test_id: str, *, secrets: Iterable[str] = ()
) -> Iterator[Any]:
    """Record/replay the HTTP this process makes (httpx, httpx2/openai) for one test.

    Yields the vcrpy cassette (None in live mode). A replay miss surfaces as a
    :class:`ReplayMissError` with the same diagnostic as the provider layer, even when an SDK
    wrapped vcrpy's exception in its own (e.g. ``openai.APIConnectionError``).
    """
    if settings.mode is Mode.LIVE:
        yield None
        return
    binding = _Cassette(settings, test_id, secrets)
    recorder = vcr.VCR(decode_compressed_response=True)
    recorder.register_persister(binding)
    recorder.register_matcher(MATCHER_NAME, binding.matcher)
    cassette_path = str(settings.directory / module_dir(test_id))
    try:
        with recorder.use_cassette(
            cassette_path,
            record_mode=VCR_RECORD_MODES[settings.mode],
            match_on=[MATCHER_NAME],
            before_record_request=binding.before_record_request,
            before_record_response=binding.before_record_response,
            allow_playback_repeats=False,
        ) as cassette:
            try:
                yield cassette
            finally:
                binding.log_played(cassette)
    except Exception as exc:
        miss = find_vcr_miss(exc)
        if miss is None or miss.failed_request is None:
            raise
        raise binding.miss_error(miss) from exc
