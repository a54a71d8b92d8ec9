"""What reusing a running stack adds to a pytest session (goal: under 100 ms).

Starts one stack server (the starter distribution, no provider, stores in a temporary
directory), then measures:

1. `harness.server.acquire` + `release` against it, in this process (the plugin's own cost:
   lock, state file, one health probe);
2. whole pytest sessions in subprocesses: a test that needs nothing, the same test asking for
   `stack_base_url` with `--stack-config=server:starter:<port>` (reuse, in live mode: a stack
   started by hand is reused as is only then), and one that also
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

from harness import processes, server

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
            processes.stop_process_group(stack.pid)
            stack.wait()


# What a reuse session imports beyond what every session imports (pytest, the plugin).
IMPORTS_PROBE = """
import time
import pytest, harness.plugin
started = time.perf_counter()
import harness.server
print((time.perf_counter() - started) * 1000)
"""


def inprocess_session_ms(work: Path, *args: str) -> float:
    """One pytest session in this (warm) process: the plugin's per-session work, no imports."""
    import contextlib
    import io

    import pytest

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", str(work), *args])
    if code != 0:
        raise SystemExit(f"pytest {' '.join(args)} exited with {code}")
    return (time.perf_counter() - started) * 1000


def report(work: Path, env: dict[str, str], port: int, runs: int) -> None:
    # A stack started by hand is reused as it is only by a live session (its recording
    # settings are unknown); sharing one another session started costs the same lock, state
    # file and health probe.
    spec = server.ServerSpec(
        command=["unused"], port=port, env=env, log_path=work / "unused.log", reuse_unknown=True
    )
    acquire = []
    for _ in range(200):
        started = time.perf_counter()
        server.acquire(spec, work / "state").release()
        acquire.append((time.perf_counter() - started) * 1000)

    config = (f"--stack-config=server:starter:{port}", "--inference-mode=live")
    test_file = str(work / "test_bench.py")
    baseline_args = (f"{test_file}::test_nothing",)
    reuse_args = (*config, f"{test_file}::test_base_url")
    old_cwd = os.getcwd()
    os.chdir(work)
    os.environ["SQLITE_STORE_DIR"] = env["SQLITE_STORE_DIR"]
    try:
        inprocess_session_ms(work, *baseline_args)  # warm
        inprocess_session_ms(work, *reuse_args)
        warm = {"baseline": [], "reuse": []}
        for _ in range(runs * 3):  # interleaved, so a busy machine slows both alike
            warm["baseline"].append(inprocess_session_ms(work, *baseline_args))
            warm["reuse"].append(inprocess_session_ms(work, *reuse_args))
    finally:
        os.chdir(old_cwd)
    imports = [
        float(
            subprocess.run(
                [sys.executable, "-c", IMPORTS_PROBE],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        for _ in range(runs)
    ]

    variants = {
        "no stack (baseline)": ("test_bench.py::test_nothing",),
        "reuse: stack_base_url": (*config, "test_bench.py::test_base_url"),
        "reuse + http_client GET": (*config, "test_bench.py::test_health"),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, arguments in variants.items():
            samples[name].append(session_ms(work, env, *arguments))

    median = statistics.median
    session_work = median(warm["reuse"]) - median(warm["baseline"])
    import_cost = median(imports)
    rows = [
        ("acquire + release of a running stack", median(acquire)),
        ("session work, warm in-process (reuse - baseline)", session_work),
        ("imports only reuse needs (fresh interpreter)", import_cost),
        ("= added session cost of reuse", session_work + import_cost),
    ]
    print(f"{'reuse of a running stack':<52}{'median ms':>11}")
    print("-" * 63)
    for name, value in rows:
        print(f"{name:<52}{value:>11.1f}")
    print()
    base = median(samples["no stack (baseline)"])
    print(f"{'whole sessions in subprocesses (noisy)':<52}{'median ms':>11}{'added':>9}")
    print("-" * 72)
    for name, values in samples.items():
        added = "" if name.startswith("no stack") else f"{median(values) - base:+.0f}"
        print(f"{'session: ' + name:<52}{median(values):>11.0f}{added:>9}")
    print(f"\n{runs} subprocess sessions per variant, {runs * 3} warm in-process sessions; ")
    print("goal: reuse adds < 100 ms to a session (the http_client row also imports httpx)")


if __name__ == "__main__":
    main()
