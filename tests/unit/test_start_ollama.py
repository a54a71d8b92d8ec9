"""scripts/github/start-ollama.sh run for real against a fake `curl` and `docker`.

The fakes log their arguments; `curl` answers /api/tags only after a given number of calls,
so the waiting loop is exercised, and fails the pull of a chosen model.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.setups import SETUPS

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "github" / "start-ollama.sh"
RECORD_WORKFLOW = REPO_ROOT / ".github" / "workflows" / "record-integration-tests.yml"

FAKE_CURL = """\
import json, os, sys

args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["curl", *args]) + "\\n")
url = next(a for a in args if a.startswith("http"))
if url.endswith("/api/tags"):
    counter = os.environ["FAKE_TAGS_COUNTER"]
    calls = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
    open(counter, "w").write(str(calls))
    sys.exit(0 if calls >= int(os.environ.get("FAKE_UP_AFTER", "1")) else 7)
if url.endswith("/api/pull"):
    model = json.loads(args[args.index("-d") + 1])["model"]
    if model == os.environ.get("FAKE_FAIL_PULL"):
        print("curl: (22) The requested URL returned error: 500", file=sys.stderr)
        sys.exit(22)
    print('{"status":"success"}', end="")
    sys.exit(0)
sys.exit(64)
"""

FAKE_DOCKER = """\
import json, os, sys

with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["docker", *sys.argv[1:]]) + "\\n")
sys.exit(int(os.environ.get("FAKE_DOCKER_EXIT", "0")))
"""


class Tools:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "calls.log"
        self.github_env = root / "github_env"
        for name, source in (("curl", FAKE_CURL), ("docker", FAKE_DOCKER)):
            path = self.bin / name
            path.write_text(f"#!{sys.executable} -IS\n{source}")
            path.chmod(0o755)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args],
            env={
                **os.environ,
                "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
                "FAKE_LOG": str(self.log),
                "FAKE_TAGS_COUNTER": str(self.root / "tags-calls"),
                "GITHUB_ENV": str(self.github_env),
                "OLLAMA_WAIT_INTERVAL": "0",
                **env,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def pulled(self) -> list[str]:
        return [
            json.loads(call[call.index("-d") + 1])["model"]
            for call in self.calls()
            if call[0] == "curl" and any(a.endswith("/api/pull") for a in call)
        ]


@pytest.fixture
def tools(tmp_path: Path) -> Tools:
    return Tools(tmp_path)


def setup_models() -> list[str]:
    ollama = SETUPS["ollama"]
    assert ollama.text_model and ollama.embedding_model
    return [m.removeprefix("ollama/") for m in (ollama.text_model, ollama.embedding_model)]


def test_pulls_the_setup_models_once_ollama_answers(tools: Tools) -> None:
    done = tools.run(FAKE_UP_AFTER="3")

    assert done.returncode == 0, done.stdout + done.stderr
    assert tools.pulled() == setup_models()
    tags = [c for c in tools.calls() if c[0] == "curl" and c[-1].endswith("/api/tags")]
    assert len(tags) == 3
    assert not any(call[0] == "docker" for call in tools.calls())
    assert tools.github_env.read_text() == "OLLAMA_URL=http://localhost:11434\n"


def test_vision_adds_the_vision_model(tools: Tools) -> None:
    done = tools.run("--vision")

    assert done.returncode == 0, done.stdout + done.stderr
    assert tools.pulled() == [*setup_models(), "qwen2.5vl:3b"]


def test_image_starts_the_container_first(tools: Tools) -> None:
    done = tools.run("--image", "ollama/ollama:0.13.5")

    assert done.returncode == 0, done.stdout + done.stderr
    first = tools.calls()[0]
    assert first[:2] == ["docker", "run"]
    assert first[-1] == "ollama/ollama:0.13.5"
    assert "127.0.0.1:11434:11434" in first


def test_ollama_url_is_honoured(tools: Tools) -> None:
    done = tools.run(OLLAMA_URL="http://127.0.0.1:9999/")

    assert done.returncode == 0, done.stdout + done.stderr
    urls = {call[-1] if "-d" not in call else call[2] for call in tools.calls()}
    assert urls == {"http://127.0.0.1:9999/api/tags", "http://127.0.0.1:9999/api/pull"}
    assert tools.github_env.read_text() == "OLLAMA_URL=http://127.0.0.1:9999\n"


def test_ollama_that_never_answers_fails_naming_the_url(tools: Tools) -> None:
    done = tools.run(FAKE_UP_AFTER="100", OLLAMA_WAIT_ATTEMPTS="4")

    assert done.returncode == 1
    assert "::error::" in done.stdout
    assert "did not answer at http://localhost:11434/api/tags after 4 attempts" in done.stdout
    assert tools.pulled() == []
    assert not tools.github_env.exists()


def test_failed_pull_fails_naming_the_model(tools: Tools) -> None:
    done = tools.run(FAKE_FAIL_PULL="all-minilm:l6-v2")

    assert done.returncode == 1
    assert "pulling all-minilm:l6-v2 from http://localhost:11434 failed" in done.stdout


def test_container_that_cannot_start_fails(tools: Tools) -> None:
    done = tools.run("--image", "ollama/ollama:0.13.5", FAKE_DOCKER_EXIT="125")

    assert done.returncode == 1
    assert "could not start the Ollama container from ollama/ollama:0.13.5" in done.stdout


@pytest.mark.parametrize("args", [["--frobnicate"], ["--image"], ["--image", ""]])
def test_bad_arguments_fail_before_anything_runs(tools: Tools, args: list[str]) -> None:
    done = tools.run(*args)

    assert done.returncode == 1
    assert tools.calls() == []


def matched(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not found"
    return found.group(1)


def test_models_match_the_setup_and_the_record_workflow() -> None:
    """The record workflow pulls inline (its checkout may predate this script): same models."""
    text = SCRIPT.read_text()
    text_model, embedding_model, vision_model = (
        matched(rf'readonly {name}="([^"]+)"', text)
        for name in ("TEXT_MODEL", "EMBEDDING_MODEL", "VISION_MODEL")
    )
    job = yaml.safe_load(RECORD_WORKFLOW.read_text())["jobs"]["record"]
    pull = next(
        s for s in job["steps"] if s.get("name") == "Start Ollama and pull the setup's models"
    )

    assert [text_model, embedding_model] == setup_models()
    assert matched(r"models=\(([^)]*)\)", pull["run"]).split() == [text_model, embedding_model]
    assert f"models+=({vision_model})" in pull["run"]


def test_script_is_executable_and_strict() -> None:
    assert os.access(SCRIPT, os.X_OK)
    assert "set -euo pipefail" in SCRIPT.read_text()
