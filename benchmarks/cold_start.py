"""Cold start of `harness stack run`: process start to the first healthy GET /v1/health.

Runs the starter distribution N times per scenario (fresh sqlite directory each time) and
prints min / median / max. Goal: median under 1 s. Run from the repository root:

    python benchmarks/cold_start.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.provider import FakeProvider  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cold_start(extra_env: dict[str, str]) -> float:
    """Seconds from spawning the process to the first 200 from /v1/health."""
    port = free_port()
    with tempfile.TemporaryDirectory() as store:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA", "VLLM", "OPENAI"))
        }
        env.pop("LLAMA_STACK_TEST_INFERENCE_MODE", None)
        env.update(SQLITE_STORE_DIR=store, PYTHONPATH=str(ROOT), **extra_env)
        command = [sys.executable, "-m", "harness.cli", "stack", "run", "starter"]
        return seconds_to_healthy([*command, "--port", str(port)], env, port)


def seconds_to_healthy(command: list[str], env: dict[str, str], port: int) -> float:
    """Spawn `command` and time it to its first 200 from /v1/health; then stop it."""
    started = time.perf_counter()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    process = subprocess.Popen(command, env=env, **quiet)
    try:
        with httpx.Client(timeout=1) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{command[0]} exited with {process.returncode}")
                try:
                    if client.get(f"http://127.0.0.1:{port}/v1/health").status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    time.sleep(0.005)
    finally:
        process.terminate()
        process.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    rows = []
    with FakeProvider() as fake:
        scenarios = {
            "starter, no provider env": {},
            "starter, OLLAMA_URL -> fake": {"OLLAMA_URL": fake.base_url},
        }
        for name, extra in scenarios.items():
            times = [cold_start(extra) for _ in range(args.runs)]
            rows.append((name, min(times), statistics.median(times), max(times)))
    print(f"cold start to first healthy /v1/health ({args.runs} runs each)")
    print(f"{'scenario':<30} {'min s':>7} {'median s':>9} {'max s':>7}")
    for name, low, median, high in rows:
        print(f"{name:<30} {low:>7.3f} {median:>9.3f} {high:>7.3f}")


if __name__ == "__main__":
    main()
