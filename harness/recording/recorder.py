"""The recording pipeline: every step that every recording layer shares, written once.

Each layer that sees a request on its way to a provider — the httpx transport (the reference
stack's providers, and every httpx client of a stack we did not write), the adapters for
urllib3/requests, aiohttp and urllib, and vcrpy's client layer in the test process — turns it
into library-neutral values and calls the same :class:`Recorder`:

1. :meth:`Recorder.route`: record it, or pass it through (``hosts.py``);
2. :meth:`Recorder.prepare`: learn its credentials, redact, normalise ids, count repeats and
   fingerprint it under the current test's attribution (``fingerprint.py``, ``context.py``);
3. :meth:`Recorder.replayable`: the recording to replay, or None when the provider must be
   called; in replay mode a missing recording is a fault (:meth:`Recorder.fault`);
4. :meth:`Recorder.plain_response` / :meth:`Recorder.capture` / :meth:`Recorder.failure`: the
   provider's answer (or its failure to answer) made deterministic, redacted and recorded.

Faults go one way: into the session's event log (from which the plugin fails the test that
made the request, with the diagnostic) and to the middleware (which answers the request with
the fault), then raised to the caller. Only the library-specific parts — building a response
object, raising the library's own exception — stay in the layers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from harness.recording.context import (
    SHARED,
    Attribution,
    current_attribution,
    note_fault,
    resolve_attribution,
)
from harness.recording.diagnostics import build_miss
from harness.recording.errors import (
    Fault,
    FaultKind,
    Miss,
    RecordingError,
    RecordingFault,
    ReplayMissError,
)
from harness.recording.fingerprint import (
    BUILTIN_NORMALIZERS,
    canonical_request,
    find_ids,
    fingerprint,
    normalized_request,
    parse_body,
    parse_query,
)
from harness.recording.hosts import Route
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.normalize import normalize_json
from harness.recording.records import (
    Failure,
    FailureKind,
    Framing,
    JsonBody,
    RecordedRequest,
    RecordedResponse,
    Recording,
    TextBody,
)
from harness.recording.redaction import REQUEST_HEADERS_KEPT, RESPONSE_HEADERS_KEPT, Redactor
from harness.recording.store import RecordingStore
from harness.recording.usage import UsageKind, UsageLog

logger = logging.getLogger(__name__)

# True while a recording layer itself sends a request (to record it, or passing it through):
# the connections made then are the harness's own, which the replay seal lets by (patch.py).
_sending: ContextVar[bool] = ContextVar("harness_recorder_sending", default=False)


@contextmanager
def sending() -> Iterator[None]:
    token = _sending.set(True)
    try:
        yield
    finally:
        _sending.reset(token)


def is_sending() -> bool:
    return _sending.get()


@dataclass(frozen=True)
class Pending:
    """A request, redacted, normalised and fingerprinted, on its way to replay or record."""

    request: RecordedRequest
    canonical: dict[str, Any]
    fingerprint: str
    path: Path
    started: float
    attribution: Attribution
    base_fingerprint: str
    inferred: bool = False  # the attribution was inferred (context.resolve_attribution)

    @property
    def endpoint(self) -> str:
        return f"{self.request.method} {self.request.path}"

    @property
    def occurrence(self) -> int:
        return int(self.canonical.get("occurrence", 0))


class Recorder:
    """Record/replay decisions and bookkeeping for one recording layer; no I/O on the wire."""

    def __init__(
        self,
        settings: RecordingSettings,
        *,
        secrets: Iterable[str | None] = (),
        provenance: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = RecordingStore(settings.directory)
        self.redactor = Redactor(secrets)
        self.log = UsageLog(settings.usage_log, settings.sessions_dir)
        self.normalizers = (*BUILTIN_NORMALIZERS, *settings.normalizers)
        self._provenance = provenance

    @property
    def mode(self) -> Mode:
        return self.settings.mode

    @cached_property
    def provenance(self) -> MappingProxyType[str, str]:
        found = dict(self._provenance() if self._provenance is not None else {})
        if self.settings.setup:
            found.setdefault("setup", self.settings.setup)
        return MappingProxyType({k: v for k, v in found.items() if v})

    # -- 1. route ---------------------------------------------------------------------------
    def route(self, url: str, attribution: Attribution | None = None) -> Route:
        """Whether a request to `url` is recorded; a passed-through one is counted."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            port = 0
        decision, _reason = self.settings.hosts.route(host, port)
        if decision is Route.PASSTHROUGH:
            self.event(UsageKind.PASSTHROUGH, attribution, host=f"{host}:{port}")
        return decision

    # -- 2. prepare -------------------------------------------------------------------------
    def prepare(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes,
        attribution: Attribution | None = None,
    ) -> Pending:
        inferred = False
        if attribution is None:
            attribution, inferred = resolve_attribution()
        request, base = self.identify(method, url, headers, content, attribution)
        base_fp = fingerprint(base)
        occurrence = attribution.occurrence(base_fp)
        pending = self.pending(request, base, occurrence, attribution, base_fp)
        return replace(pending, inferred=inferred) if inferred else pending

    def identify(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes,
        attribution: Attribution,
    ) -> tuple[RecordedRequest, dict[str, Any]]:
        """The request as stored, and its canonical form before repeats are counted."""
        parts = urlsplit(url)
        query_raw = parse_query(parts.query)
        self.redactor.learn_from(headers, query_raw)
        redact = self.redactor
        path = redact.text(parts.path or "/")
        query = redact.value(query_raw)
        body = redact.value(parse_body(content))
        ids = find_ids([path, query, body], attribution.id_numbers(), self.normalizers)
        request = RecordedRequest(
            method=method.upper(),
            path=path,
            query=query,
            headers=redact.headers(headers, REQUEST_HEADERS_KEPT),
            body=body,
            ids=ids,
        )
        return request, normalized_request(method, path, query, body, attribution.test_id, ids)

    def pending(
        self,
        request: RecordedRequest,
        base: dict[str, Any],
        occurrence: int,
        attribution: Attribution,
        base_fingerprint: str | None = None,
    ) -> Pending:
        """A request identified earlier, as the given repeat of itself."""
        base_fp = base_fingerprint or fingerprint(base)
        if occurrence:
            canonical = canonical_request(
                base["method"], base["path"], base["query"], base["body"], base["test_id"],
                occurrence,
            )  # fmt: skip
            fp = fingerprint(canonical)
        else:
            canonical, fp = base, base_fp
        return Pending(
            request=request,
            canonical=canonical,
            fingerprint=fp,
            path=self.store.path_for(attribution.test_id, fp),
            started=time.monotonic(),
            attribution=attribution,
            base_fingerprint=base_fp,
        )

    # -- 3. replay --------------------------------------------------------------------------
    def replayable(self, pending: Pending) -> Recording | None:
        """The stored recording to replay, or None when the provider must be called."""
        if self.mode is Mode.RECORD:
            return None
        try:
            recording = self.store.load_if_exists(pending.path)
        except RecordingFault:
            raise
        except RecordingError as exc:
            raise self.fault(FaultKind.UNREADABLE, str(exc), pending.attribution) from None
        if recording is None and pending.inferred:
            recording = self._shared_recording(pending)
        if recording is not None:
            self.event(UsageKind.USED, pending.attribution, path=self.store.relative(pending.path))
            return recording
        if self.mode is Mode.REPLAY:
            pending.attribution.missed(pending.base_fingerprint, pending.occurrence)
            miss = build_miss(self.store, pending.canonical, pending.fingerprint, pending.path)
            raise self.fault(FaultKind.MISS, miss.summary(), pending.attribution, miss)
        return None

    def _shared_recording(self, pending: Pending) -> Recording | None:
        """An inferred request's recording made outside any test (see context.py)."""
        request = pending.request
        base = normalized_request(
            request.method, request.path, request.query, request.body, SHARED.test_id,
            request.ids,
        )  # fmt: skip
        try:
            return self.store.load_if_exists(self.store.path_for(SHARED.test_id, fingerprint(base)))
        except RecordingError:
            return None

    # -- 4. record --------------------------------------------------------------------------
    def response_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return self.redactor.headers(headers, RESPONSE_HEADERS_KEPT)

    def plain_response(
        self, pending: Pending, status: int, headers: dict[str, str], content: bytes
    ) -> RecordedResponse:
        """A non-stream answer as stored: normalised JSON body, else text; redacted."""
        text = self.redactor.text(content.decode("utf-8", "replace"))
        parsed = parse_body(text.encode("utf-8")) if text else None
        if parsed is not None and not isinstance(parsed, str) and _is_json(headers):
            return RecordedResponse(
                status, headers, JsonBody(normalize_json(parsed, pending.fingerprint))
            )
        return RecordedResponse(status, headers, TextBody(text))

    def capture(
        self, pending: Pending, status: int, headers: dict[str, str], framing: Framing
    ) -> Any:
        """A stream capture that records this request's answer when the stream ends whole."""
        from harness.recording.streams import StreamCapture

        stream_id = pending.fingerprint[:16]
        self.event(
            UsageKind.STREAM_OPENED,
            pending.attribution,
            stream=stream_id,
            endpoint=pending.endpoint,
        )

        def ended(response: RecordedResponse | None, reason: str) -> None:
            if response is not None:
                self.record(pending, response)
            else:
                logger.warning("not recording %s: %s", pending.path, reason)
            self.event(
                UsageKind.STREAM_CLOSED,
                pending.attribution,
                stream=stream_id,
                endpoint=pending.endpoint,
                recorded=response is not None,
                reason=reason,
            )

        return StreamCapture(
            fingerprint=pending.fingerprint,
            started=pending.started,
            status=status,
            headers=headers,
            framing=framing,
            redactor=self.redactor,
            on_end=ended,
        )

    def failure(self, pending: Pending, kind: FailureKind, message: str) -> None:
        """Record that the request got no answer at all (refused, reset, timed out)."""
        failure = Failure(kind, self.redactor.text(message))
        self.record(pending, RecordedResponse(0, {}, failure))

    def failed(
        self,
        pending: Pending,
        exc: BaseException,
        kind_of: Callable[[BaseException], FailureKind | None] | None = None,
    ) -> None:
        """Record a send that raised, if the error says the request got no answer."""
        kind = (kind_of or failure_kind)(exc)
        if kind is not None:
            self.failure(pending, kind, str(exc) or type(exc).__name__)

    def record(self, pending: Pending, response: RecordedResponse) -> None:
        recording = Recording(
            fingerprint=pending.fingerprint,
            test_id=pending.attribution.test_id,
            request=pending.request,
            response=response,
            occurrence=pending.occurrence,
            provenance=self.provenance,
        )
        try:
            path, changed = self.store.write(recording)
        except RecordingError as exc:
            raise self.fault(FaultKind.UNWRITABLE, str(exc), pending.attribution) from None
        logger.debug("recorded %s (%s)", path, "written" if changed else "unchanged")
        self.event(UsageKind.RECORDED, pending.attribution, path=self.store.relative(path))

    # -- faults and events ------------------------------------------------------------------
    def fault(
        self,
        kind: FaultKind,
        message: str,
        attribution: Attribution | None = None,
        miss: Miss | None = None,
    ) -> RecordingFault:
        """Log a fault for its test, note it for the middleware, and return it to raise."""
        attribution = attribution or current_attribution()
        fault = Fault(kind, message, attribution.test_id, attribution.invocation, miss)
        self.log.append(UsageKind.FAULT, attribution.session, fault=fault.to_json())
        note_fault(fault)
        return (ReplayMissError if kind is FaultKind.MISS else RecordingFault)(fault)

    def event(self, kind: UsageKind, attribution: Attribution | None, **values: Any) -> None:
        attribution = attribution or current_attribution()
        self.log.append(
            kind,
            attribution.session,
            test_id=attribution.test_id,
            invocation=attribution.invocation,
            **values,
        )


def _is_json(headers: Mapping[str, str]) -> bool:
    return "json" in headers.get("content-type", "json")


# Transport errors of httpx/httpx2 (and urllib3's, by name) -> how a recording says it failed.
FAILURE_KINDS: Mapping[str, FailureKind] = MappingProxyType(
    {
        "ConnectError": FailureKind.CONNECT,
        "NewConnectionError": FailureKind.CONNECT,
        "ConnectTimeout": FailureKind.CONNECT_TIMEOUT,
        "ConnectTimeoutError": FailureKind.CONNECT_TIMEOUT,
        "ReadTimeout": FailureKind.READ_TIMEOUT,
        "ReadTimeoutError": FailureKind.READ_TIMEOUT,
        "WriteTimeout": FailureKind.WRITE_TIMEOUT,
        "ReadError": FailureKind.RESET,
        "WriteError": FailureKind.RESET,
        "NetworkError": FailureKind.RESET,
        "RemoteProtocolError": FailureKind.PROTOCOL,
        "ProtocolError": FailureKind.PROTOCOL,
    }
)


def failure_kind(exc: BaseException) -> FailureKind | None:
    """The failure an exception stands for, by its class (most specific first); None if none."""
    for cls in type(exc).__mro__:
        kind = FAILURE_KINDS.get(cls.__name__)
        if kind is not None:
            return kind
    return None
