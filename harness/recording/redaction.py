"""Keep secrets off disk.

Applied to every request and response *before* it is fingerprinted or written:
- credential headers (Authorization, api-key, x-api-key, cookies, ...) are never stored;
- only a small allow-list of headers is stored at all (they are not part of the fingerprint,
  and most headers are noise or per-request ids);
- any header, query or body string containing a known secret has it replaced by ``<redacted>``.

The secrets are known by value, wherever they reappear (a key echoed in a provider's error, a
key sent in the query string or the body), from three places (:func:`secret_values`):
- the environment: every variable the harness hands the stack (``--env``, a setup's env), and
  every variable whose name has KEY, TOKEN, SECRET, PASSWORD, CREDENTIAL or AUTH as a word part
  (``OPENAI_API_KEY``, ``PROVIDER_CREDENTIAL``, ``MY_AUTH``, not ``MONKEY``);
- the run config: variables it uses in a secret-looking field (``api_key: ${env.FOO}``);
- each request: the values of its credential headers and of key-like query parameters
  (``?key=...``), learnt as the request passes (:meth:`Redactor.learn_from`).

Secrets shorter than ``MIN_SECRET_LENGTH`` are ignored: placeholders such as "none" or "fake"
would otherwise be scrubbed out of ordinary text and change fingerprints.
"""

from __future__ import annotations

import re
import threading
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
    """Scrubs headers and values; shared by every request a recording layer handles.

    It starts with the configured secrets and learns more from the requests themselves.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._lock = threading.Lock()
        self.secrets: tuple[str, ...] = ()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str | None]) -> None:
        new = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH and s != REDACTED}
        with self._lock:
            if new <= set(self.secrets):
                return
            # Longest first, so a secret that contains another is replaced whole.
            self.secrets = tuple(sorted(new | set(self.secrets), key=len, reverse=True))
            self._pattern = re.compile("|".join(re.escape(s) for s in self.secrets))

    def learn_from(self, headers: Mapping[str, str], query: Mapping[str, Any]) -> None:
        """Take the credentials a request carries as secrets (they may reappear anywhere)."""
        found: list[str] = []
        for name, value in headers.items():
            if name.lower() in SENSITIVE_HEADERS and isinstance(value, str):
                found.append(value)
                scheme, _, credential = value.partition(" ")
                if credential and scheme.lower() in ("bearer", "basic", "token"):
                    found.append(credential.strip())
        for name, value in query.items():
            if is_secret_name(name):
                found.extend(v for v in (value if isinstance(value, list) else [value]) if v)
        if found:
            self.add(str(v) for v in found)

    def text(self, value: str) -> str:
        pattern = self._pattern
        return value if pattern is None else pattern.sub(REDACTED, value)

    def value(self, value: Any) -> Any:
        """Recursively redact every string in a JSON value (keys included)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(k): self.value(v) for k, v in value.items()}
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


# A variable or field whose name has one of these as a word part holds a secret.
SECRET_WORDS = frozenset(
    {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS", "AUTH"}
)
_WORD = re.compile(r"[A-Z0-9]+(?![a-z])|[A-Z]?[a-z0-9]+")
_ENV_REFERENCE = re.compile(r"\$\{env\.([A-Z0-9_]+)")


def is_secret_name(name: str) -> bool:
    """True when a name has a secret word as a word part: OPENAI_API_KEY, apiKey, auth_token."""
    parts = re.split(r"[^A-Za-z0-9]+", name)
    words = [w.upper() for part in parts for w in _WORD.findall(part)]
    return any(w in SECRET_WORDS for w in words) or "".join(words[-2:]) == "APIKEY"


def run_config_secret_variables(raw: Any) -> set[str]:
    """The variables a raw (unsubstituted) run config uses in a secret-looking field."""
    names: set[str] = set()
    stack: list[Any] = [raw]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, str) and is_secret_name(str(key)):
                    names.update(_ENV_REFERENCE.findall(value))
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return names


def secret_values(env: Mapping[str, str], handed: Iterable[str] = ()) -> list[str]:
    """The values in `env` that are secrets: those of `handed` names, and secret-named ones."""
    names = set(handed)
    return [
        value
        for name, value in env.items()
        if (name in names or is_secret_name(name)) and len(value) >= MIN_SECRET_LENGTH
    ]


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
