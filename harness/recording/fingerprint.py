"""The request fingerprint: the one definition of "the same request".

    fingerprint = sha256(canonical_json(canonical_request)).hexdigest()

    canonical_request = {
        "method":   upper-case HTTP method,
        "path":     URL path only (no scheme, host or port: a recording made against one host
                    replays against another),
        "query":    {name: value} with keys sorted; a repeated name maps to the list of its
                    values in order,
        "body":     the parsed JSON body if it is JSON, else its text, else null when empty,
        "test_id":  the pytest node id ("" for the shared scope),
        "occurrence": n  -- only when n > 0: the n-th identical request within one test run,
    }
    canonical_json = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

The path, query and body are fingerprinted *after* redaction (so a recording made with one API
key replays with another) and after **id normalisation**: a stack puts ids it makes up into
the requests it sends its provider (an uploaded file's ``file-<32 hex>`` in a search result,
a vector store's ``vs_<uuid>``), and they differ on every run. Each id is replaced by a
placeholder numbered by its first appearance within the test invocation, keeping its prefix
(``file-<id:1>``), so the same id used twice stays the same placeholder and two different ids
stay different. What counts as an id (:data:`BUILTIN_NORMALIZERS`):

- a uuid (8-4-4-4-12 hex digits);
- a word prefix ending in ``-`` or ``_`` followed by a uuid or 16 or more lower-case hex digits:
  ``file-``, ``vs_``, ``resp_``, ``msg_``, ``call_``, ``mcp_list_``, ...

Projects add their own normalisers (ini ``normalize_request``, or the
``pytest_harness_request_normalizers`` hook): a name and a regular expression whose matches
become ``<name:N>`` (a group named ``keep`` is kept, as the prefix is above). A generated id
of their own, or a system prompt they edit, then no longer forces a re-record.

The stored request keeps its raw text and lists what it replaced (``request.ids``: raw text ->
placeholder), so ``harness recordings verify`` recomputes every fingerprint from the file alone
(:func:`canonical_of_record`). Nothing here depends on the process, the platform or the Python
version.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from harness.recording.records import Recording

JsonValue = Any

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


@dataclass(frozen=True)
class Normalizer:
    """Matches of `pattern` in request strings become ``<name:N>`` (group ``keep`` is kept)."""

    name: str
    pattern: re.Pattern[str]

    @classmethod
    def compile(cls, name: str, pattern: str) -> Normalizer:
        return cls(name, re.compile(pattern))

    def to_json(self) -> list[str]:
        return [self.name, self.pattern.pattern]


BUILTIN_NORMALIZERS: tuple[Normalizer, ...] = (
    Normalizer.compile(
        "id",
        rf"(?<![0-9A-Za-z_-])(?P<keep>[a-z][a-z0-9]*(?:_[a-z][a-z0-9]*)*[-_])"
        rf"(?:{_UUID}|[0-9a-f]{{16,}})(?![0-9A-Za-z])",
    ),
    Normalizer.compile("id", rf"(?<![0-9A-Za-z_-])(?:{_UUID})(?![0-9A-Za-z])"),
)


class IdNumbers:
    """Numbers normalised ids by first appearance, within one test invocation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._numbers: dict[tuple[str, str], int] = {}
        self._next: dict[str, int] = {}

    def number(self, name: str, raw: str) -> int:
        with self._lock:
            key = (name, raw)
            if key not in self._numbers:
                self._numbers[key] = self._next[name] = self._next.get(name, 0) + 1
            return self._numbers[key]


def find_ids(
    values: Sequence[JsonValue],
    numbers: IdNumbers,
    normalizers: Iterable[Normalizer] = BUILTIN_NORMALIZERS,
) -> dict[str, str]:
    """Raw text -> placeholder for every id in `values` (walked in document order)."""
    found: dict[str, str] = {}
    rules = tuple(normalizers)
    for text in _strings(values):
        for rule in rules:
            for match in rule.pattern.finditer(text):
                raw = match.group(0)
                if raw in found or not raw:
                    continue
                keep = (match.groupdict().get("keep") or "") if rule.pattern.groupindex else ""
                number = numbers.number(rule.name, raw[len(keep) :])
                found[raw] = f"{keep}<{rule.name}:{number}>"
    return found


def apply_ids(value: JsonValue, ids: Mapping[str, str]) -> JsonValue:
    """`value` with every raw text of `ids` replaced by its placeholder (keys included)."""
    if not ids:
        return value
    pattern = re.compile("|".join(re.escape(raw) for raw in sorted(ids, key=len, reverse=True)))

    def walk(item: JsonValue) -> JsonValue:
        if isinstance(item, str):
            return pattern.sub(lambda m: ids[m.group(0)], item)
        if isinstance(item, list):
            return [walk(v) for v in item]
        if isinstance(item, dict):
            return {walk(k): walk(v) for k, v in item.items()}
        return item

    return walk(value)


def _strings(value: JsonValue) -> Iterable[str]:
    stack: list[Any] = [value]
    while stack:  # iterative and in document order, so deep bodies cannot exhaust the stack
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            pairs = [part for key_value in item.items() for part in key_value]
            stack.extend(reversed(pairs))
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))


def canonical_json(value: JsonValue) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def parse_query(raw_query: str | bytes) -> dict[str, str | list[str]]:
    """Query string -> {name: value | [values]} (order of repeated values kept)."""
    if isinstance(raw_query, bytes):
        raw_query = raw_query.decode("utf-8", "replace")
    result: dict[str, str | list[str]] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        existing = result.get(name)
        if existing is None:
            result[name] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            result[name] = [existing, value]
    return dict(sorted(result.items()))


def parse_body(content: bytes) -> JsonValue:
    """Request/response body -> parsed JSON, else text, else None when empty."""
    if not content:
        return None
    text = content.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def canonical_request(
    method: str,
    path: str,
    query: dict[str, Any],
    body: JsonValue,
    test_id: str,
    occurrence: int = 0,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "method": method.upper(),
        "path": path,
        "query": query,
        "body": body,
        "test_id": test_id,
    }
    if occurrence > 0:
        value["occurrence"] = occurrence
    return value


def normalized_request(
    method: str,
    path: str,
    query: dict[str, Any],
    body: JsonValue,
    test_id: str,
    ids: Mapping[str, str],
    occurrence: int = 0,
) -> dict[str, Any]:
    """The canonical request of a raw one, its ids replaced as `ids` says."""
    return canonical_request(
        method,
        apply_ids(path, ids),
        apply_ids(query, ids),
        apply_ids(body, ids),
        test_id,
        occurrence,
    )


def fingerprint(canonical: dict[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of a canonical request."""
    return hashlib.sha256(canonical_json(canonical).encode("ascii")).hexdigest()


def canonical_of_record(record: Recording) -> dict[str, Any]:
    """The canonical request a stored recording was made for, rebuilt from its own content."""
    request = record.request
    return normalized_request(
        request.method,
        request.path,
        request.query or {},
        request.body,
        record.test_id,
        request.ids,
        record.occurrence,
    )


def fingerprint_of_record(record: Recording) -> str:
    """Recompute a stored recording's fingerprint from its own content (for verify)."""
    return fingerprint(canonical_of_record(record))
