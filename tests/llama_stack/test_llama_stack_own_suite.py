"""Llama Stack 0.7.3's own integration suite, recorded and replayed through the harness.

The suite comes out of Llama Stack's source distribution (HARNESS_LLAMA_STACK_SUITE names the
`llama_stack-0.7.3.tar.gz` that `pip download --no-binary :all:` fetches; .ci/run does). Its
`tests/` are copied as they are, but for the one swap its users make: `own_suite/conftest.py`
in the place of its conftest, which starts its own server and runs its own recorder, and
`own_suite/fixtures` in the place of the fixtures its sub-directories import. It runs in the
Llama Stack virtualenv (pytest 8, Llama Stack's client, openai 2), against `llama stack run`
with `own_suite/config.yaml` in front of the fake provider, the directories the harness's
first users run: inference, responses, agents, safety, tool_runtime, vector_io, files,
conversations, batches, inspect and providers.

Against a fake provider many of its tests fail (canned answers, no safety model): what counts
is that replay, with the provider gone, changes no test's outcome and misses nothing. Six
tests are left out (RACES), each racing the stack's background worker: three cancel a
background response at once, and three leave a batch running while the test deletes its input
file (or cancels it) on the way out. So whether the stack calls its provider at all, or the
work can still be cancelled, differs from run to run, in record as in replay. When the record
never made that call and the replay does, the harness reports the miss under the test it
belongs to, and fails the test when the miss comes while it runs, as it does for every miss
(Llama Stack's recorder raises inside the worker, which the test does not see). Serial:
several of its fixtures delete every file and vector store on the server, so the suite is not
made to share one server between xdist workers (run live with `-n 2`, outcomes change too).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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

HERE = Path(__file__).resolve().parent
GLUE = HERE / "own_suite"
CONFIG = GLUE / "config.yaml"
KEY = "sk-llama-stack-own-suite-4242"
DIRECTORIES = (
    "inference",
    "responses",
    "agents",
    "safety",
    "tool_runtime",
    "vector_io",
    "files",
    "conversations",
    "batches",
    "inspect",
    "providers",
)
RACES = tuple(
    f"tests/integration/responses/test_openai_responses.py::TestOpenAIResponses::{name}"
    for name in (
        "test_cancel_prevents_completion",
        "test_cancel_queued_or_in_progress_response",
        "test_cancel_already_cancelled_is_idempotent",
    )
) + tuple(
    # A batch whose one request the worker may run before or after its input file is gone: a
    # CI replay made the call ("Hello") that its record had not.
    f"tests/integration/batches/test_batches.py::TestBatchesIntegration::{name}"
    for name in (
        "test_batch_creation_and_retrieval",
        "test_batch_listing",
        "test_batch_immediate_cancellation",
    )
)
ISOLATED = (*HARNESS_VARIABLES, "OPENAI_API_KEY", "OPENAI_BASE_URL", "TIKTOKEN_CACHE_DIR")
NEEDED = {
    "harness": "stack-harness (pip install -e . in that virtualenv)",
    "llama_stack_client": "'llama-stack[client]==0.7.3'",
    **SCENARIO_PACKAGES,
}


@dataclass(frozen=True)
class SuiteRun:
    returncode: int
    output: str
    outcomes: dict[str, str]
    missed: list[str]

    def count(self) -> Counter[str]:
        return Counter(self.outcomes.values())


def _suite_source() -> Path:
    named = os.environ.get("HARNESS_LLAMA_STACK_SUITE", "").strip()
    if not named:
        pytest.skip(
            "no Llama Stack source: set HARNESS_LLAMA_STACK_SUITE to llama_stack-0.7.3.tar.gz "
            "(pip download 'llama-stack==0.7.3' --no-binary :all: --no-deps; .ci/run does)"
        )
    path = Path(named)
    assert path.is_file(), f"HARNESS_LLAMA_STACK_SUITE={named} does not exist"
    return path


def _unpack_suite(sdist: Path, root: Path) -> None:
    """`tests/` of the source distribution under `root`, with the glue swapped in."""
    with tarfile.open(sdist) as archive:
        members = [
            m for m in archive.getmembers() if m.name.split("/")[1:2] == ["tests"] and m.isreg()
        ]
        assert members, f"{sdist} holds no tests/"
        for member in members:
            member.name = member.name.split("/", 1)[1]  # drop the llama_stack-0.7.3/ prefix
        archive.extractall(root, members=members, filter="data")
    integration = root / "tests" / "integration"
    for recorded in list(integration.rglob("recordings")):  # Llama Stack's recorder's files
        shutil.rmtree(recorded, ignore_errors=True)
    shutil.rmtree(integration / "fixtures")
    shutil.copytree(GLUE / "fixtures", integration / "fixtures")
    shutil.copy(GLUE / "conftest.py", integration / "conftest.py")


def _run(llama: str, root: Path, mode: str, env: dict[str, str], tiktoken: Path) -> SuiteRun:
    python = str(Path(llama).with_name("python"))
    out = root.parent / mode
    out.mkdir()
    command = f"{shlex.quote(llama)} stack run {{config}} --port {{port}}"
    stack_env = {
        **{k: v for k, v in os.environ.items() if k not in ISOLATED},
        "TIKTOKEN_CACHE_DIR": str(tiktoken),
        "LLAMA_STACK_DISABLE_VERSION_CHECK": "1",
        "LLAMA_STACK_LOG_FORMAT": "json",  # see test_real_llama_stack.py
    }
    stores = fresh_stores(
        root.parent, command.replace("{config}", shlex.quote(str(CONFIG))), stack_env
    )
    done = subprocess.run(
        [python, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
        + [f"tests/integration/{name}" for name in DIRECTORIES]
        + [f"--deselect={race}" for race in RACES]
        + [f"--stack-config=server:{CONFIG}:{free_port()}", f"--stack-command={command}"]
        + [f"--inference-mode={mode}", f"--recordings-dir={root.parent / 'recordings'}"]
        + ["--text-model=openai/llama3.2:3b", "--embedding-model=openai/all-minilm:l6-v2"]
        + ["--embedding-dimension=384", f"--junitxml={out / 'junit.xml'}"]
        + [f"--misses-file={out / 'misses.txt'}"],
        cwd=root,
        env={**stack_env, "SQLITE_STORE_DIR": str(stores), **env},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = done.stdout + done.stderr
    (out / "output.txt").write_text(output)  # the whole of it, for a failure's post-mortem
    assert (out / "junit.xml").is_file(), output[-6000:]
    misses = out / "misses.txt"
    return SuiteRun(
        returncode=done.returncode,
        output=output,
        outcomes=junit_outcomes(out / "junit.xml"),
        missed=misses.read_text().split() if misses.is_file() else [],
    )


@dataclass(frozen=True)
class Runs:
    record: SuiteRun
    replay: SuiteRun
    provider_calls: int
    recordings: Path
    verify: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def runs(llama: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """Record the suite with the fake provider up, then replay it with the provider gone."""
    sdist = _suite_source()
    python = str(Path(llama).with_name("python"))
    missing = missing_packages(python, NEEDED)
    assert not missing, f"install into {Path(llama).parent.parent}: {', '.join(missing)}"
    tmp = tmp_path_factory.mktemp("own-suite")
    root = tmp / "suite"
    _unpack_suite(sdist, root)
    tiktoken = tiktoken_cache(python, tmp / "tiktoken")
    with FakeProvider() as fake:
        provider = {"OPENAI_BASE_URL": f"{fake.base_url}/v1", "OPENAI_API_KEY": KEY}
        record = _run(llama, root, "record", provider, tiktoken)
        provider_calls = len(fake.requests)
    replay = _run(llama, root, "replay", {"OPENAI_BASE_URL": CLOSED}, tiktoken)
    verify = subprocess.run(
        [sys.executable, "-m", "harness.cli", "recordings", "verify", "--dir"]
        + [str(tmp / "recordings")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    yield Runs(record, replay, provider_calls, tmp / "recordings", verify)


def test_replay_with_the_provider_gone_changes_no_outcome_and_misses_nothing(runs: Runs) -> None:
    # One test, not three on one module fixture: xdist could give them to two workers, and
    # each would record and replay the whole suite.
    counts = runs.record.count()
    assert counts["passed"] >= 200, (counts, runs.record.output[-6000:])
    assert runs.provider_calls > 0
    # The tests that carry random ids into provider requests, and those on a vector store.
    for module in ("responses.test_file_search", "vector_io.test_openai_vector_stores"):
        passed = [t for t, o in runs.record.outcomes.items() if module in t and o == "passed"]
        assert passed, f"no test of {module} passed while recording"

    changed = {
        test: (outcome, runs.replay.outcomes.get(test, "not run"))
        for test, outcome in runs.record.outcomes.items()
        if runs.replay.outcomes.get(test) != outcome
    }
    assert changed == {}, json.dumps(changed, indent=1) + runs.replay.output[-6000:]
    assert set(runs.replay.outcomes) == set(runs.record.outcomes)
    assert runs.replay.missed == [], runs.replay.missed
    assert " 0 recorded, 0 missed" in runs.replay.output, runs.replay.output[-3000:]

    files = recordings(runs.recordings)
    assert len(files) > 100
    assert runs.verify.returncode == 0, runs.verify.stdout + runs.verify.stderr
    assert [f for f in files if KEY in f.read_text()] == []
