"""The one factory for every provider HTTP client the stack makes.

Every upstream call goes through a client built here, so the recording layer has exactly one
seam to plug into (`wrap_async_transport`): in replay mode nothing below reaches the network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

import httpx

from harness.recording.hosts import host_key, url_host
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.recorder import Recorder
from harness.recording.transport import reference_provenance, wrap_async_transport

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
    recorder = None
    if recording is not None and recording.mode is not Mode.LIVE:
        # The provider is a provider wherever it runs: its traffic is recorded (hosts.py).
        named = url_host(base_url)
        if named is not None:
            hosts = recording.hosts
            providers = (*hosts.providers, host_key(*named))
            recording = replace(recording, hosts=replace(hosts, providers=providers))
        recorder = Recorder(recording, secrets=list(secrets), provenance=reference_provenance)
    transport = wrap_async_transport(
        httpx.AsyncHTTPTransport(verify=verify), recording, recorder=recorder
    )
    return httpx.AsyncClient(
        base_url=base_url, headers=dict(headers or {}), transport=transport, timeout=TIMEOUT
    )
