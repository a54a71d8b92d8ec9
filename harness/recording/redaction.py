"""Keep secrets off disk.

Applied to every request and response *before* it is fingerprinted or written:
- credential headers (Authorization, api-key, x-api-key, cookies, ...) are never stored;
- only a small allow-list of headers is stored at all (they are not part of the fingerprint,
  and most headers are noise or per-request ids);
- any header or body string containing a configured secret has it replaced by ``<redacted>``.

Secrets shorter than ``MIN_SECRET_LENGTH`` are ignored: placeholders such as "none" or "fake"
would otherwise be scrubbed out of ordinary text and change fingerprints.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "<redacted>"
MIN_SECRET_LENGTH = 8

SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "cookie",
        "set-cookie",
        "x-goog-api-key",
    }
)
REQUEST_HEADERS_KEPT = ("content-type", "accept")
RESPONSE_HEADERS_KEPT = ("content-type", "retry-after", "www-authenticate", "location")

# Patterns `harness recordings verify` treats as a leaked credential. The harness's own stand-ins
# are no credential: REDACTED, and the key replay gives a provider client (`replay-needs-no-key`,
# harness/setups.py).
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "bearer token",
        re.compile(r"Bearer\s+(?!<redacted>|replay-needs-no-key\b)[A-Za-z0-9._~+/=-]{8,}"),
    ),
    ("sk- API key", re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")),
    # Exactly 39 characters: a longer run is base64 (an image) that happens to hold "AIza".
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])")),
    ("AWS access key", re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
    ("GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}")),
    ("GitHub fine-grained token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}")),
    ("Slack token", re.compile(r"\bxox[a-z]-[A-Za-z0-9-]{10,}")),
    # A header and a claims object, both JSON objects, so both start with base64url '{"'.
    ("JSON web token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")),
)


class Redactor:
    """Scrubs headers and values; built once per transport from the configured secrets."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        unique = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = tuple(sorted(unique, key=len, reverse=True))

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def value(self, value: Any) -> Any:
        """Recursively redact every string in a JSON value."""
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value

    def headers(self, headers: Mapping[str, str], kept: Iterable[str]) -> dict[str, str]:
        """The allow-listed, non-credential headers, lower-cased, with secrets redacted."""
        allowed = set(kept) - SENSITIVE_HEADERS
        result: dict[str, str] = {}
        for name, value in headers.items():
            lowered = name.lower()
            if lowered in allowed:
                result[lowered] = self.text(value)
        return dict(sorted(result.items()))


def find_secret_patterns(text: str) -> list[str]:
    """Names of the secret-looking patterns found in ``text`` (empty when clean).

    ``text`` is searched as it is and with its JSON character escapes decoded, so a credential
    written with escapes (``sk\\u002d...`` for ``sk-...``) is found too. An escape after any
    number of backslashes counts, and decoding repeats a few times, so a string escaped twice (a
    stream chunk's JSON inside the recording's JSON) is decoded as well.
    """
    escape = re.compile(r"\\+(?:u([0-9a-fA-F]{4})|/)")
    candidates = [text]
    for _ in range(4):
        decoded = escape.sub(lambda m: chr(int(m[1], 16)) if m[1] else "/", candidates[-1])
        if decoded == candidates[-1]:
            break
        candidates.append(decoded)
    return [
        name
        for name, pattern in SECRET_PATTERNS
        if any(pattern.search(candidate) for candidate in candidates)
    ]
