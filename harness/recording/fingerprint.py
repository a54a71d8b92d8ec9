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

The body is fingerprinted *after* redaction, so the stored request reproduces its own
fingerprint (``harness recordings verify``) and a recording made with one API key replays
with another. Nothing here depends on the process, the platform or the Python version.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import parse_qsl

JsonValue = Any


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
    except ValueError:
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


def fingerprint(canonical: dict[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of a canonical request."""
    return hashlib.sha256(canonical_json(canonical).encode("ascii")).hexdigest()


def canonical_of_record(record: dict[str, Any]) -> dict[str, Any]:
    """The canonical request a stored recording was made for, rebuilt from its own content."""
    request = record["request"]
    return canonical_request(
        request["method"],
        request["path"],
        request.get("query") or {},
        request.get("body"),
        record.get("test_id", ""),
        int(record.get("occurrence", 0) or 0),
    )


def fingerprint_of_record(record: dict[str, Any]) -> str:
    """Recompute a stored recording's fingerprint from its own content (for verify)."""
    return fingerprint(canonical_of_record(record))
