"""Tests written the way Llama Stack's own suite writes them, through a real Llama Stack 0.7.3.

The modules in `scenarios/` (named `check_*.py`, so the project's own run never collects them)
run in a pytest session of their own, in the Llama Stack virtualenv (the `python` beside
HARNESS_LLAMA_STACK_BIN's `llama`, with the harness installed there under pytest 8), against
`llama stack run` started by `--stack-command`. The run config (`responses.yaml`) serves the
Responses API with the file_search and MCP tools, the Files API and a faiss vector store, all
in front of the fake provider (OpenAI wire, embeddings included).

The session runs twice: recording with the fake provider up, then replaying with it stopped
and no key. Each test here checks one thing a user relies on in that pair of runs:

- `check_file_search.py`: a file uploaded, ingested into a vector store and searched by the
  file_search tool; the tool's result carries the file's random `file-…` id into the
  provider request;
- `check_mcp.py`: an MCP server the test serves on loopback (FastMCP over SSE, uvicorn in a
  thread); that traffic is the test's own, so it must pass through, never be recorded;
- `check_background_responses.py`: responses the stack runs in worker tasks it started on the
  first such request;
- `check_session_client.py`: a session-scoped `compat_client` fixture built on `openai_client`;
- `check_own_clients.py`: an `openai.OpenAI`, a raw `httpx` and a raw `requests` call the test
  makes itself.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.environment import HARNESS_VARIABLES
from tests.fakes.provider import FakeProvider
from tests.support.processes import free_port
from tests.support.projects import recordings
from tests.support.real_stack import (
    CLOSED,
    SCENARIO_PACKAGES,
    fresh_stores,
    junit_outcomes,
    missing_packages,
    tiktoken_cache,
)

pytestmark = pytest.mark.llama_stack

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("responses.yaml")
SCENARIOS = "tests/llama_stack/scenarios"
KEY = "sk-real-stack-scenario-key-4242"
TEXT_MODEL = "openai/llama3.2:3b"
EMBEDDING_MODEL = "openai/all-minilm:l6-v2"
ISOLATED = (*HARNESS_VARIABLES, "OPENAI_API_KEY", "OPENAI_BASE_URL", "TIKTOKEN_CACHE_DIR")
NEEDED = {"harness": "stack-harness (pip install -e . in that virtualenv)", **SCENARIO_PACKAGES}


@dataclass(frozen=True)
class InnerRun:
    """One run of the scenario session: its outcome per test, its misses, its output."""

    mode: str
    returncode: int
    output: str
    outcomes: dict[str, str]
    missed: frozenset[str]
    seconds: float

    def outcome(self, test: str) -> str:
        return self.outcomes.get(test, "not run")


@dataclass(frozen=True)
class ScenarioRuns:
    record: InnerRun
    replay: InnerRun
    recordings: Path
    provider_calls: int
    verify: subprocess.CompletedProcess[str]

    def filed(self) -> list[dict[str, Any]]:
        """Every recording: where the harness filed which provider request."""
        return [json.loads(path.read_text()) for path in recordings(self.recordings)]

    def both(self, module: str) -> dict[str, tuple[str, str]]:
        """The record and replay outcome of each test of a scenario module."""
        tests = sorted(t for t in self.record.outcomes if t.startswith(f"{module}.py::"))
        assert tests, f"{module} ran no test\n{self.record.output[-4000:]}"
        return {t: (self.record.outcome(t), self.replay.outcome(t)) for t in tests}

    def report(self, module: str) -> str:
        """What went wrong in a module, for an assertion message."""
        missed = sorted(t for t in self.replay.missed if t.startswith(f"{module}.py::"))
        return (
            f"outcomes (record, replay): {json.dumps(self.both(module), indent=1)}\n"
            f"missed in replay: {missed}\n"
            f"--- replay output (tail) ---\n{self.replay.output[-5000:]}"
        )


def _outcomes(junit: Path) -> dict[str, str]:
    """`check_x.py::test_y[...]` -> passed / failed / error / skipped, from a JUnit XML file."""
    return junit_outcomes(
        junit, lambda classname, name: f"{classname.rsplit('.', 1)[-1]}.py::{name}"
    )


def _short(node_id: str) -> str:
    """`tests/…/check_x.py::test_y[…]` -> `check_x.py::test_y[…]` (ids may hold slashes)."""
    path, _, name = node_id.partition("::")
    return f"{Path(path).name}::{name}"


def _run(llama: str, tmp: Path, mode: str, env: dict[str, str], tiktoken: Path) -> InnerRun:
    python = str(Path(llama).with_name("python"))
    out = tmp / mode
    out.mkdir()
    command = f"{shlex.quote(llama)} stack run {{config}} --port {{port}}"
    base = {k: v for k, v in os.environ.items() if k not in ISOLATED}
    stack_env = {
        **base,
        "TIKTOKEN_CACHE_DIR": str(tiktoken),
        "LLAMA_STACK_DISABLE_VERSION_CHECK": "1",
        "LLAMA_STACK_LOG_FORMAT": "json",  # see test_real_llama_stack.py
    }
    # A fresh stack each run, so new file and store ids.
    stores = fresh_stores(tmp, command.replace("{config}", shlex.quote(str(CONFIG))), stack_env)
    started = time.monotonic()
    done = subprocess.run(
        [python, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-o", "python_files=check_*.py"]
        + [SCENARIOS, f"--stack-config=server:{CONFIG}:{free_port()}"]
        + [f"--stack-command={command}", f"--inference-mode={mode}"]
        + [f"--recordings-dir={tmp / 'recordings'}", f"--text-model={TEXT_MODEL}"]
        + [f"--embedding-model={EMBEDDING_MODEL}", "--embedding-dimension=384"]
        + [f"--junitxml={out / 'junit.xml'}", f"--misses-file={out / 'misses.txt'}"],
        cwd=ROOT,
        env={**stack_env, "SQLITE_STORE_DIR": str(stores), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert (out / "junit.xml").is_file(), output[-6000:]
    misses = out / "misses.txt"
    missed = misses.read_text().split() if misses.is_file() else []
    return InnerRun(
        mode=mode,
        returncode=done.returncode,
        output=output,
        outcomes=_outcomes(out / "junit.xml"),
        missed=frozenset(_short(node) for node in missed),
        seconds=round(time.monotonic() - started, 1),
    )


@pytest.fixture(scope="module")
def runs(llama: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScenarioRuns]:
    """Record the scenarios with the fake provider up, then replay them with it stopped."""
    python = str(Path(llama).with_name("python"))
    missing = missing_packages(python, NEEDED)
    assert not missing, f"install into {Path(llama).parent.parent}: {', '.join(missing)}"
    tmp = tmp_path_factory.mktemp("scenarios")
    tiktoken = tiktoken_cache(python, tmp / "tiktoken")
    with FakeProvider() as fake:
        provider = {"OPENAI_BASE_URL": f"{fake.base_url}/v1", "OPENAI_API_KEY": KEY}
        record = _run(llama, tmp, "record", provider, tiktoken)
        provider_calls = len(fake.requests)
    replay = _run(llama, tmp, "replay", {"OPENAI_BASE_URL": CLOSED}, tiktoken)
    verify = subprocess.run(
        [sys.executable, "-m", "harness.cli", "recordings", "verify", "--dir"]
        + [str(tmp / "recordings")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    yield ScenarioRuns(record, replay, tmp / "recordings", provider_calls, verify)


def test_the_plugin_loads_under_pytest_8_beside_llama_stack(runs: ScenarioRuns) -> None:
    header = runs.record.output.split("collected", 1)[0]
    assert "pytest-8." in header, header
    assert "plugins: stack-harness" in header, header
    assert f"server:{CONFIG}" in header and "mode record" in header, header
    assert runs.provider_calls > 0  # the stack really called its provider


def test_the_recordings_verify_and_hold_no_key(runs: ScenarioRuns) -> None:
    files = recordings(runs.recordings)
    assert files
    assert runs.verify.returncode == 0, runs.verify.stdout + runs.verify.stderr
    assert [f for f in files if KEY in f.read_text()] == []


def test_file_search_over_an_uploaded_file_replays_with_the_provider_stopped(
    runs: ScenarioRuns,
) -> None:
    outcomes = runs.both("check_file_search")
    assert set(outcomes.values()) == {("passed", "passed")}, runs.report("check_file_search")
    assert not any(t.startswith("check_file_search.py") for t in runs.replay.missed)


def test_an_mcp_tool_the_test_serves_replays_and_its_traffic_is_never_recorded(
    runs: ScenarioRuns,
) -> None:
    outcomes = runs.both("check_mcp")
    assert set(outcomes.values()) == {("passed", "passed")}, runs.report("check_mcp")
    mcp_wire = [
        (r["request"]["method"], r["request"]["path"])
        for r in runs.filed()
        if r["request"]["path"] in ("/sse", "/messages/")
    ]
    assert mcp_wire == []


def test_background_responses_are_filed_under_the_test_that_queued_them(
    runs: ScenarioRuns,
) -> None:
    outcomes = runs.both("check_background_responses")
    assert set(outcomes.values()) == {("passed", "passed")}, runs.report(
        "check_background_responses"
    )
    filed = {
        r["request"]["body"]["messages"][0]["content"]: r["test_id"]
        for r in runs.filed()
        if r["request"]["path"] == "/v1/chat/completions" and "background" in r["test_id"]
    }
    assert set(filed) == {"Say hello", "Say goodbye"}
    for question, test_id in filed.items():
        assert test_id.endswith(f"-{question}]"), (question, test_id)


def test_a_session_scoped_client_built_on_openai_client_serves_two_tests(
    runs: ScenarioRuns,
) -> None:
    outcomes = runs.both("check_session_client")
    assert len(outcomes) == 2
    assert set(outcomes.values()) == {("passed", "passed")}, runs.report("check_session_client")


def test_provider_calls_of_clients_the_test_builds_are_filed_under_the_test(
    runs: ScenarioRuns,
) -> None:
    outcomes = runs.both("check_own_clients")
    assert set(outcomes.values()) == {("passed", "passed")}, runs.report("check_own_clients")
    said = {"built by the test": "openai_client", "raw httpx": "httpx", "raw requests": "requests"}
    filed = {}
    for record in runs.filed():
        text = json.dumps(record["request"]["body"])
        for words in said:
            if words in text:
                filed[words] = record["test_id"]
    assert set(filed) == set(said)
    for words, test_id in filed.items():
        assert "check_own_clients.py::" in test_id and said[words] in test_id, (words, test_id)


def test_every_scenario_passes_in_record_and_again_in_replay_with_no_miss(
    runs: ScenarioRuns,
) -> None:
    assert runs.record.outcomes, runs.record.output[-6000:]
    different = {
        test: (outcome, runs.replay.outcome(test))
        for test, outcome in runs.record.outcomes.items()
        if outcome != "passed" or runs.replay.outcome(test) != "passed"
    }
    assert different == {}, runs.replay.output[-6000:]
    assert runs.replay.missed == frozenset()
    assert runs.record.returncode == 0 and runs.replay.returncode == 0
    assert " 0 missed" in runs.replay.output and " 0 recorded" in runs.replay.output
