"""Client layer: record the test process's own HTTP with a remote stack, through vcrpy.

For a stack given by URL the harness cannot wrap the provider transport, so it records what
the test itself exchanges with the stack (``/v1/prompts`` included). vcrpy does the catching
(httpx and httpx2, hence the ``openai`` SDK, and clients a test builds itself) through its
public API; everything else is the shared pipeline (``recorder.py``), so these recordings have
the provider layer's layout, format, fingerprints, redaction, id normalisation, stream checks
and event log:

- :meth:`ClientLayer.before_request` (vcrpy's ``before_record_request``): the request as the
  pipeline identifies it, stamped with its fingerprint (before repeats are counted: vcrpy plays
  identical requests in order, as the pipeline counts them); ``None`` for a request the host
  rule passes through, which vcrpy then sends untouched in every mode;
- :func:`fingerprint_matcher`: a plain matcher on that stamp;
- :class:`ClientLayer` as vcrpy's persister: a cassette path is a test module's recordings
  directory; loading reads its recordings, saving records each new interaction through the
  pipeline;
- a replay miss is logged for the test by the pipeline the moment vcrpy finds no recording (the
  one route by which a miss reaches the test's report), and the error that leaves the block is
  the pipeline's :class:`~harness.recording.errors.ReplayMissError`.

Modes map to vcrpy record modes: replay -> "none", record -> "all",
record-if-missing -> "new_episodes", live -> no cassette at all.
"""

from __future__ import annotations

import copy
import http
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import vcr
from vcr.errors import CannotOverwriteExistingCassetteException
from vcr.persisters.filesystem import CassetteNotFoundError
from vcr.request import Request as VcrRequest

from harness.recording.context import Attribution, OccurrenceCounter
from harness.recording.errors import RecordingError, RecordingFault, find_in_chain
from harness.recording.fingerprint import canonical_of_record, fingerprint
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.normalize import framing_for
from harness.recording.recorder import Recorder
from harness.recording.records import RecordedRequest, Recording, Stream
from harness.recording.redaction import SENSITIVE_HEADERS
from harness.recording.store import module_dir
from harness.recording.streams import read_whole

VCR_RECORD_MODES = {
    Mode.REPLAY: "none",
    Mode.RECORD: "all",
    Mode.RECORD_IF_MISSING: "new_episodes",
}
MATCHER_NAME = "harness_fingerprint"
REPLAY_HOST = "http://recorded.invalid"
FINGERPRINT_HEADER = "x-harness-fingerprint"  # on vcrpy's copies only, never sent
RECORDED_HEADER = "x-harness-recorded"  # marks an interaction loaded from a recording


def _body_bytes(request: VcrRequest) -> bytes:
    body = request.body
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    return bytes(request.body_bytes or b"")


def fingerprint_matcher(r1: VcrRequest, r2: VcrRequest) -> None:
    """vcrpy matcher: the same canonical request (repeats are vcrpy's play order)."""
    if r1.headers.get(FINGERPRINT_HEADER) != r2.headers.get(FINGERPRINT_HEADER):
        raise AssertionError("canonical requests differ (method, path, query, body or test id)")


class ClientLayer:
    """One test's cassette: vcrpy's request hook and persister, on the shared pipeline."""

    def __init__(self, recorder: Recorder, attribution: Attribution) -> None:
        self.recorder = recorder
        self.attribution = attribution
        self.identified: dict[str, tuple[RecordedRequest, dict[str, Any]]] = {}
        self.loaded_paths: list[Path] = []
        self.failure: RecordingFault | None = None

    # -- vcrpy's before_record_request ------------------------------------------------------
    def before_request(self, request: VcrRequest) -> VcrRequest | None:
        if request.headers.get(FINGERPRINT_HEADER):
            return request  # already ours: a loaded interaction, or a filtered copy
        from harness.recording.hosts import Route

        if self.recorder.route(request.uri, self.attribution) is Route.PASSTHROUGH:
            return None
        headers = dict(request.headers.items())
        identified, base = self.recorder.identify(
            request.method, request.uri, headers, _body_bytes(request), self.attribution
        )
        base_fp = fingerprint(base)
        self.identified[base_fp] = (identified, base)
        filtered = copy.deepcopy(request)
        for name in list(filtered.headers):
            if name.lower() in SENSITIVE_HEADERS:
                del filtered.headers[name]
        filtered.headers[FINGERPRINT_HEADER] = base_fp
        return filtered

    # -- misses, as vcrpy finds them --------------------------------------------------------
    def watch(self, cassette: Any) -> None:
        """Log a replay miss for the test the moment vcrpy finds none (on our cassette only)."""
        can_play = cassette.can_play_response_for

        def can_play_or_miss(request: VcrRequest) -> bool:
            found = can_play(request)
            if not found and cassette.write_protected:
                filtered = cassette.filter_request(request)
                if filtered is not None:
                    self._missed(filtered, cassette)
            return bool(found)

        cassette.can_play_response_for = can_play_or_miss

    def _missed(self, filtered: VcrRequest, cassette: Any) -> None:
        base_fp = filtered.headers[FINGERPRINT_HEADER]
        request, base = self.identified[base_fp]
        played = sum(
            count
            for index, count in cassette.play_counts.items()
            if cassette.data[index][0].headers.get(FINGERPRINT_HEADER) == base_fp
        )
        pending = self.recorder.pending(request, base, played, self.attribution)
        try:
            self.recorder.replayable(pending)
        except RecordingFault as exc:
            self.failure = exc

    # -- vcrpy's persister ------------------------------------------------------------------
    def load_cassette(self, cassette_path: Any, serializer: Any) -> tuple[list, list]:
        store = self.recorder.store
        folder = Path(cassette_path)
        files = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
        try:
            records = [(store.load(path), path) for path in files]
        except RecordingError as exc:
            from harness.recording.errors import FaultKind

            raise self.recorder.fault(FaultKind.UNREADABLE, str(exc), self.attribution) from None
        if not records:
            raise CassetteNotFoundError()
        records.sort(key=lambda item: (item[0].test_id, item[0].occurrence, item[1]))
        self.loaded_paths = [path for _, path in records]
        return [_vcr_request(r) for r, _ in records], [_vcr_response(r) for r, _ in records]

    def save_cassette(self, cassette_path: Any, cassette_dict: dict, serializer: Any) -> None:
        counter = OccurrenceCounter()
        pairs = zip(cassette_dict["requests"], cassette_dict["responses"], strict=True)
        for request, response in pairs:
            base_fp = request.headers.get(FINGERPRINT_HEADER, "")
            occurrence = counter.next(base_fp)
            if request.headers.get(RECORDED_HEADER) or base_fp not in self.identified:
                continue
            identified, base = self.identified[base_fp]
            pending = self.recorder.pending(identified, base, occurrence, self.attribution)
            self._record(pending, response)

    def _record(self, pending: Any, response: dict[str, Any]) -> None:
        recorder = self.recorder
        headers = recorder.response_headers(
            {name: values[0] for name, values in response["headers"].items() if values}
        )
        body = response["body"]["string"]
        body = body.encode("utf-8") if isinstance(body, str) else body or b""
        status = response["status"]["code"]
        framing = framing_for(headers.get("content-type"))
        if framing is None:
            recorder.record(pending, recorder.plain_response(pending, status, headers, body))
        else:
            read_whole(recorder.capture(pending, status, headers, framing), body)

    def log_played(self, play_counts: dict[int, int]) -> None:
        from harness.recording.usage import UsageKind

        for index, count in play_counts.items():
            if count and index < len(self.loaded_paths):
                path = self.recorder.store.relative(self.loaded_paths[index])
                self.recorder.event(UsageKind.USED, self.attribution, path=path)


def _vcr_request(record: Recording) -> VcrRequest:
    request = record.request
    pairs = [
        (k, item) for k, v in request.query.items() for item in (v if isinstance(v, list) else [v])
    ]
    uri = REPLAY_HOST + request.path + (f"?{urlencode(pairs)}" if pairs else "")
    canonical = canonical_of_record(record)
    canonical.pop("occurrence", None)
    headers = {
        **request.headers,
        FINGERPRINT_HEADER: fingerprint(canonical),
        RECORDED_HEADER: "1",
    }
    return VcrRequest(request.method, uri, None, headers)


def _vcr_response(record: Recording) -> dict[str, Any]:
    response = record.response
    content = response.content()
    try:
        message = http.HTTPStatus(response.status).phrase
    except ValueError:
        message = ""
    headers = dict(response.headers)
    if not isinstance(response.payload, Stream):
        headers["content-length"] = str(len(content))
    return {
        "status": {"code": response.status, "message": message},
        "headers": {name: [value] for name, value in headers.items()},
        "body": {"string": content},
    }


@contextmanager
def client_cassette(
    settings: RecordingSettings,
    test_id: str,
    *,
    secrets: Iterable[str] = (),
    attribution: Attribution | None = None,
    recorder: Recorder | None = None,
) -> Iterator[Any]:
    """Record/replay the HTTP this process makes (httpx, httpx2/openai) for one test.

    Yields the vcrpy cassette (None in live mode). A replay miss that leaves the block surfaces
    as the pipeline's :class:`~harness.recording.errors.ReplayMissError`.
    """
    if settings.mode is Mode.LIVE:
        yield None
        return
    attribution = attribution or Attribution(test_id, uuid.uuid4().hex)
    layer = ClientLayer(recorder or Recorder(settings, secrets=secrets), attribution)
    recorder_vcr = vcr.VCR(decode_compressed_response=True)
    recorder_vcr.register_persister(layer)
    recorder_vcr.register_matcher(MATCHER_NAME, fingerprint_matcher)
    try:
        with recorder_vcr.use_cassette(
            str(settings.directory / module_dir(attribution.test_id)),
            record_mode=VCR_RECORD_MODES[settings.mode],
            match_on=[MATCHER_NAME],
            before_record_request=layer.before_request,
            allow_playback_repeats=False,
        ) as cassette:
            layer.watch(cassette)
            try:
                yield cassette
            finally:
                layer.log_played(cassette.play_counts)
    except RecordingError:
        raise
    except Exception as exc:
        if (
            layer.failure is None
            or find_in_chain(exc, CannotOverwriteExistingCassetteException) is None
        ):
            raise
        raise layer.failure from exc
