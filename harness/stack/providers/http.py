"""The one factory for every provider HTTP client the stack makes.

Every upstream call goes through a client built here, so the recording layer has exactly one
seam to plug into (`wrap_async_transport`): in replay mode nothing below reaches the network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import httpx

from harness.recording.modes import RecordingSettings
from harness.recording.transport import wrap_async_transport

# Generous read timeout: local models can take a while to produce the first token.
TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=60.0)


def provider_http_client(
    base_url: str,
    *,
    headers: Mapping[str, str] | None = None,
    recording: RecordingSettings | None = None,
    secrets: Iterable[str] = (),
    verify: bool | str = True,
) -> httpx.AsyncClient:
    """An AsyncClient for one provider, its transport wrapped for record/replay."""
    transport = wrap_async_transport(
        httpx.AsyncHTTPTransport(verify=verify), recording, secrets=list(secrets)
    )
    return httpx.AsyncClient(
        base_url=base_url, headers=dict(headers or {}), transport=transport, timeout=TIMEOUT
    )
