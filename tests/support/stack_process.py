"""`harness stack run` as a real process on loopback, for the tests that need the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
CLEARED = ("OLLAMA_URL", "VLLM_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "LLAMA_STACK_PORT")


def stack_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.pop("LLAMA_STACK_TEST_INFERENCE_MODE", None)
    env.update(SQLITE_STORE_DIR=str(tmp_path / "store"), PYTHONPATH=str(ROOT), **extra)
    return env


class StackProcess:
    """`harness stack run` on a free port passed as --port, or on `port` if the config sets it."""

    def __init__(
        self, tmp_path: Path, config: str, env: dict[str, str], *args: str, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "stack.log"
        command = [sys.executable, "-m", "harness.cli", "stack", "run", config, *args]
        if port is None:
            command += ["--port", str(self.port)]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=log, cwd=ROOT)

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"stack not healthy in {timeout}s:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> float:
        """Send `sig`; return how long the process took to exit."""
        started = time.monotonic()
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        return time.monotonic() - started
