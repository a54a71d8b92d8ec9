"""What reusing a running stack adds to a pytest session (goal: under 100 ms).

Starts one stack server (the starter distribution, no provider, stores in a temporary
directory), then measures:

1. `harness.server.acquire` + `release` against it, in this process (the plugin's own cost:
   lock, state file, one health probe);
2. whole pytest sessions in subprocesses: a test that needs nothing, the same test asking for
   `stack_base_url` with `--stack-config=server:starter:<port>` (reuse), and one that also
   makes an `http_client` request. The medians' differences are the added session cost.

Run: python benchmarks/session_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from harness import server

TESTS = textwrap.dedent(
    """
    def test_nothing():
        pass

    def test_base_url(stack_base_url):
        assert stack_base_url

    def test_health(http_client):
        assert http_client.get("/v1/health").status_code == 200
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session_ms(cwd: Path, env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="sessions per variant (median)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_STACK")}
        env.pop("OLLAMA_URL", None)
        env["SQLITE_STORE_DIR"] = str(work / "stores")
        port = free_port()
        (work / "test_bench.py").write_text(TESTS)
        (work / "pytest.ini").write_text("[pytest]\n")
        stack = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "stack", "run", "starter", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while server.probe("127.0.0.1", port).state != "healthy":
                if stack.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the stack server did not start")
                time.sleep(0.05)
            report(work, env, port, args.runs)
        finally:
            server.stop_process_group(stack.pid)
            stack.wait()


def report(work: Path, env: dict[str, str], port: int, runs: int) -> None:
    spec = server.ServerSpec(command=["unused"], port=port, env=env, log_path=work / "unused.log")
    acquire = []
    for _ in range(200):
        started = time.perf_counter()
        server.acquire(spec, work / "state").release()
        acquire.append((time.perf_counter() - started) * 1000)

    config = f"--stack-config=server:starter:{port}"
    variants = {
        "no stack (baseline)": ("test_bench.py::test_nothing",),
        "reuse: stack_base_url": (config, "test_bench.py::test_base_url"),
        "reuse + http_client GET": (config, "test_bench.py::test_health"),
    }
    for arguments in variants.values():  # warm the file system cache and bytecode
        session_ms(work, env, *arguments)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):  # interleaved, so a busy machine slows every variant alike
        for name, arguments in variants.items():
            samples[name].append(session_ms(work, env, *arguments))
    medians = {name: statistics.median(values) for name, values in samples.items()}

    minimums = {name: min(values) for name, values in samples.items()}
    base_median, base_min = medians["no stack (baseline)"], minimums["no stack (baseline)"]
    header = f"{'measurement':<36}{'median ms':>11}{'added':>9}{'min ms':>10}{'added':>9}"
    print(header)
    print("-" * len(header))
    print(f"{'acquire+release (in process, x200)':<36}{statistics.median(acquire):>11.2f}")
    for name in variants:
        median, least = medians[name], minimums[name]
        added_median = "" if name.startswith("no stack") else f"{median - base_median:+.0f}"
        added_min = "" if name.startswith("no stack") else f"{least - base_min:+.0f}"
        print(
            f"{'session: ' + name:<36}{median:>11.0f}{added_median:>9}{least:>10.0f}{added_min:>9}"
        )
    print(f"\n{runs} sessions per variant; goal: reuse adds < 100 ms to a session")


if __name__ == "__main__":
    main()
