"""The suite's inference and prompts tests through a real, unmodified Llama Stack server.

`--stack-command` starts `llama stack run` with the harness bootstrap on its path: the stack's
own provider client (the openai SDK) records its traffic with the fake provider, then the same
tests replay with the provider stopped and no API key. `.ci/run` installs Llama Stack 0.7.3 in
its own Python 3.12 virtualenv and names its `llama` in HARNESS_LLAMA_STACK_BIN.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from harness.environment import HARNESS_VARIABLES
from tests.fakes.provider import FakeProvider
from tests.support.processes import free_port

pytestmark = pytest.mark.llama_stack

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("config.yaml")
SUITE = ["tests/integration/inference", "tests/integration/prompts"]
KEY = "sk-real-stack-recording-key-42"
ISOLATED = (*HARNESS_VARIABLES, "OPENAI_API_KEY", "OPENAI_BASE_URL")


def run_suite(
    llama: str, tmp: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess:
    stores = tmp / f"stores-{len(list(tmp.glob('stores-*')))}"  # a fresh store per server
    command = f"{shlex.quote(llama)} stack run {{config}} --port {{port}}"
    base = {k: v for k, v in os.environ.items() if k not in ISOLATED}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *SUITE]
        + [f"--stack-config=server:{CONFIG}:{free_port()}", f"--stack-command={command}"]
        + [f"--recordings-dir={tmp / 'recordings'}", "--text-model=openai/llama3.2:3b"]
        + ["--embedding-model=openai/all-minilm:l6-v2", *args],
        cwd=ROOT,
        env={
            **base,
            "SQLITE_STORE_DIR": str(stores),
            "LLAMA_STACK_DISABLE_VERSION_CHECK": "1",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_suite_records_through_llama_stack_then_replays_with_no_provider_and_no_key(
    llama, tmp_path
):
    with FakeProvider() as fake:
        recorded = run_suite(
            llama,
            tmp_path,
            {"OPENAI_BASE_URL": f"{fake.base_url}/v1", "OPENAI_API_KEY": KEY},
            "--inference-mode=record",
        )
        assert recorded.returncode == 0, recorded.stdout[-6000:] + recorded.stderr[-3000:]
        provider_calls = len(fake.requests)
    files = sorted((tmp_path / "recordings").rglob("*.json"))
    assert {p.parent.name for p in files} >= {
        "_shared",
        "test_chat_completions",
        "test_prompt_to_chat",
    }
    assert all(KEY not in p.read_text() for p in files)
    assert provider_calls > len(files) // 2  # the stack really called its provider

    replayed = run_suite(llama, tmp_path, {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})

    assert replayed.returncode == 0, replayed.stdout[-6000:] + replayed.stderr[-3000:]
    assert " 0 missed" in replayed.stdout and " 0 recorded" in replayed.stdout
    verified = subprocess.run(
        [sys.executable, "-m", "harness.cli", "recordings", "verify", "--dir"]
        + [str(tmp_path / "recordings")],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout


PROVIDERS_TESTS = [
    "tests/integration/inference/test_chat_completions.py",
    "tests/integration/prompts/test_prompt_to_chat.py",
]


def run_providers(
    llama: str, tmp: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess:
    """The api=provider form through `llama stack run --providers`. Llama Stack writes the run
    config it builds from the list (provider config, key included) under ~/.llama, so HOME is
    the test's."""
    command = f"{shlex.quote(llama)} stack run --providers {{providers}} --port {{port}}"
    base = {k: v for k, v in os.environ.items() if k not in ISOLATED}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *PROVIDERS_TESTS]
        + ["--stack-config=inference=remote::openai", f"--stack-command={command}"]
        + [f"--recordings-dir={tmp / 'recordings'}", "--text-model=openai/llama3.2:3b", *args],
        cwd=ROOT,
        env={
            **base,
            "HOME": str(tmp / "home"),
            "SQLITE_STORE_DIR": str(tmp / f"stores-{len(list(tmp.glob('stores-*')))}"),
            "LLAMA_STACK_PORT": str(free_port()),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_api_provider_form_runs_llama_stack_run_providers_and_replays_with_no_provider(
    llama, tmp_path
):
    with FakeProvider() as fake:
        recorded = run_providers(
            llama,
            tmp_path,
            {"OPENAI_BASE_URL": f"{fake.base_url}/v1", "OPENAI_API_KEY": KEY},
            "--inference-mode=record",
        )
        assert recorded.returncode == 0, recorded.stdout[-6000:] + recorded.stderr[-3000:]
        assert fake.requests  # the stack Llama Stack built from the list called the provider
    assert "stack-harness: server for inference=remote::openai on port" in recorded.stdout
    files = sorted((tmp_path / "recordings").rglob("*.json"))
    assert {p.parent.name for p in files} >= {"test_chat_completions", "test_prompt_to_chat"}
    assert all(KEY not in p.read_text() for p in files)

    replayed = run_providers(llama, tmp_path, {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})

    assert replayed.returncode == 0, replayed.stdout[-6000:] + replayed.stderr[-3000:]
    assert " 0 missed" in replayed.stdout and " 0 recorded" in replayed.stdout
