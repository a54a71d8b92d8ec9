"""What the bootstrap costs a stack the harness did not write: per request, and at start-up.

1. Per provider request, in replay mode, in one process: a client built per request the way
   Llama Stack builds them, (a) with the reference stack's explicitly wrapped transport and
   (b) with the bootstrap's patched client constructor doing the wrapping. The difference is
   what the bootstrap adds per request (goal: at most 1 ms).
2. Start-up of a stack command to its first healthy /v1/health, with and without the
   bootstrap on its PYTHONPATH, median of N runs (goal: at most 100 ms more). The command is
   the real `llama stack run` when HARNESS_LLAMA_STACK_BIN names one, else the foreign test
   stack (tests/fakes/foreign_stack.py), a uvicorn app of the same shape.

    python benchmarks/bootstrap_overhead.py [--requests 2000] [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cold_start import seconds_to_healthy  # noqa: E402  (benchmarks/ is on the path)

from harness import bootstrap  # noqa: E402
from harness.recording import patch  # noqa: E402
from harness.recording.context import Attribution, attributed  # noqa: E402
from harness.recording.fingerprint import canonical_request, fingerprint  # noqa: E402
from harness.recording.modes import Mode, RecordingSettings  # noqa: E402
from harness.recording.records import (  # noqa: E402
    JsonBody,
    RecordedRequest,
    RecordedResponse,
    Recording,
)
from harness.recording.store import RecordingStore  # noqa: E402
from harness.recording.transport import wrap_async_transport  # noqa: E402
from tests.fakes.provider import FakeProvider  # noqa: E402

TEST_ID = "tests/bench.py::test_bench"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _recording(directory: Path) -> None:
    canonical = canonical_request("POST", "/v1/chat/completions", {}, BODY, TEST_ID)
    request = RecordedRequest("POST", "/v1/chat/completions", {}, {}, BODY)
    response = RecordedResponse(200, {"content-type": "application/json"}, JsonBody({"ok": 1}))
    RecordingStore(directory).write(Recording(fingerprint(canonical), TEST_ID, request, response))


async def _per_request(settings: RecordingSettings, n: int, *, patched: bool) -> float:
    """Mean ms per request, a new AsyncClient per request (as Llama Stack builds them)."""

    tls = ssl.create_default_context()  # made once: building one per client costs ~15 ms

    def client() -> httpx.AsyncClient:
        if patched:  # the bootstrap wraps the default transport in the patched constructor
            return httpx.AsyncClient(base_url="http://provider.invalid", verify=tls)
        transport = wrap_async_transport(httpx.AsyncHTTPTransport(verify=tls), settings)
        return httpx.AsyncClient(base_url="http://provider.invalid", transport=transport)

    async def one() -> None:
        with attributed(Attribution(TEST_ID, "bench")):  # one test run: occurrence 0 each time
            async with client() as http:
                (await http.post("/v1/chat/completions", json=BODY)).raise_for_status()

    for _ in range(50):  # warm-up
        await one()
    started = time.perf_counter()
    for _ in range(n):
        await one()
    return (time.perf_counter() - started) / n * 1000


def per_request(n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = RecordingSettings(mode=Mode.REPLAY, directory=Path(tmp))
        _recording(Path(tmp))
        reference = asyncio.run(_per_request(settings, n, patched=False))
        installation = patch.install(settings)
        try:
            bootstrapped = asyncio.run(_per_request(settings, n, patched=True))
        finally:
            installation.uninstall()
    return reference, bootstrapped


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_up(runs: int) -> tuple[str, float, float]:
    llama = os.environ.get("HARNESS_LLAMA_STACK_BIN", "").strip()
    with FakeProvider() as fake, tempfile.TemporaryDirectory() as tmp:
        base = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_STACK_TEST_")}
        base.update(
            OPENAI_BASE_URL=f"{fake.base_url}/v1",
            OPENAI_API_KEY="sk-bench-0123456789",
            FOREIGN_PROVIDER_URL=fake.base_url,
            FOREIGN_API_KEY="sk-bench-0123456789",
            LLAMA_STACK_DISABLE_VERSION_CHECK="1",
        )
        recordings = Path(tmp) / "recordings"
        settings = RecordingSettings(mode=Mode.RECORD, directory=recordings)
        directory = bootstrap.prepare(Path(tmp))
        timings: dict[bool, list[float]] = {False: [], True: []}
        for run in range(runs):
            for with_bootstrap in (False, True):
                port = _free_port()
                if llama:
                    config = ROOT / "tests" / "llama_stack" / "config.yaml"
                    command = [llama, "stack", "run", str(config), "--port", str(port)]
                else:
                    script = ROOT / "tests" / "fakes" / "foreign_stack.py"
                    command = [sys.executable, str(script), "x", "--port", str(port)]
                env = {**base, "SQLITE_STORE_DIR": str(Path(tmp) / f"s{run}{with_bootstrap}")}
                if with_bootstrap:
                    report = Path(tmp) / "report"
                    env = bootstrap.environment(directory, report, {**env, **settings.to_env()})
                timings[with_bootstrap].append(seconds_to_healthy(command, env, port))
        label = "llama stack run (real)" if llama else "tests/fakes/foreign_stack.py"
        return label, statistics.median(timings[False]), statistics.median(timings[True])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    reference, bootstrapped = per_request(args.requests)
    label, bare, booted = start_up(args.runs)
    rows = [
        ("per provider request, replay (ms)", reference, bootstrapped, bootstrapped - reference),
        (f"start-up to healthy, {label} (s)", bare, booted, booted - bare),
    ]
    print("| measure | without bootstrap | with bootstrap | added |")
    print("|---|---:|---:|---:|")
    for name, without, with_, added in rows:
        print(f"| {name} | {without:.3f} | {with_:.3f} | {added:+.3f} |")
    print(json.dumps({"requests": args.requests, "runs": args.runs}))


if __name__ == "__main__":
    main()
