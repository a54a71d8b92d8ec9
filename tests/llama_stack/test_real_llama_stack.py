"""The suite's inference and prompts tests through a real, unmodified stack server, of each
flavour: Llama Stack 0.7.3 (`llama stack run`) and OGX 1.5.0 (`ogx run`), Llama Stack renamed.

`--stack-command` starts the stack with the harness bootstrap on its path: the stack's own
provider client (the openai SDK) records its traffic with the fake provider, then the same
tests replay with the provider stopped and no API key. Each flavour has its own run config
(config.yaml, ogx.yaml) and is driven as its users drive it: the Llama Stack run with the
harness's flags, as before; the OGX run with only OGX's own names in its shell
(OGX_TEST_INFERENCE_MODE, OGX_TEST_RECORDING_DIR, OGX_CONFIG, OGX_PORT,
OGX_DISABLE_VERSION_CHECK), none of Llama Stack's. OGX turns its own recorder on when it sees
the name OGX_TEST_INFERENCE_MODE, and then dies for want of aiohttp, which `pip install ogx`
does not bring: the run passing shows that the name never reached it.

`.ci/run` installs each in its own Python 3.12 virtualenv and names its executable in
HARNESS_LLAMA_STACK_BIN / HARNESS_OGX_BIN. The api=provider form is run through
`llama stack run --providers` at the end.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.environment import HARNESS_VARIABLES
from tests.fakes.provider import FakeProvider
from tests.llama_stack.conftest import stack_binary
from tests.support.processes import free_port
from tests.support.real_stack import CLOSED, fresh_stores

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("config.yaml")
SUITE = ["tests/integration/inference", "tests/integration/prompts"]
KEY = "sk-real-stack-recording-key-42"
ISOLATED = (*HARNESS_VARIABLES, "OPENAI_API_KEY", "OPENAI_BASE_URL")


@dataclass(frozen=True)
class Flavour:
    """A stack flavour: its executable's variable, its run command and config, and how a user
    of it names the harness's settings in the shell."""

    name: str
    run: str  # what follows the executable in --stack-command
    config: Path

    def command(self) -> str:
        return f"{shlex.quote(stack_binary(self.name))} {self.run}"

    def settings(self, tmp: Path, mode: str) -> tuple[dict[str, str], list[str]]:
        """The shell variables and flags of one run in `mode`."""
        port, recordings = free_port(), tmp / "recordings"
        if self.name == "ogx":
            return {
                "OGX_CONFIG": f"server:{self.config}",
                "OGX_PORT": str(port),
                "OGX_TEST_INFERENCE_MODE": mode,
                "OGX_TEST_RECORDING_DIR": str(recordings),
                "OGX_DISABLE_VERSION_CHECK": "1",
            }, []
        flags = [f"--stack-config=server:{self.config}:{port}", f"--recordings-dir={recordings}"]
        if mode != "replay":
            flags.append(f"--inference-mode={mode}")
        # JSON logs: with its rich console, Llama Stack spends seconds rendering the traceback
        # of every error it answers, and the suite's error tests would starve the store writes.
        return {"LLAMA_STACK_DISABLE_VERSION_CHECK": "1", "LLAMA_STACK_LOG_FORMAT": "json"}, flags


LLAMA_STACK = Flavour("llama-stack", "stack run {config} --port {port}", CONFIG)
OGX = Flavour("ogx", "run {config} --port {port}", Path(__file__).with_name("ogx.yaml"))
FLAVOURS = [
    pytest.param(LLAMA_STACK, marks=pytest.mark.llama_stack, id="llama-stack"),
    pytest.param(OGX, marks=pytest.mark.ogx, id="ogx"),
]


def run_suite(
    flavour: Flavour, tmp: Path, mode: str, env: dict[str, str]
) -> subprocess.CompletedProcess:
    command = flavour.command().replace("{config}", shlex.quote(str(flavour.config)))
    base = {k: v for k, v in os.environ.items() if k not in ISOLATED}
    stores = fresh_stores(tmp, command, base)
    shell, flags = flavour.settings(tmp, mode)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *SUITE]
        + [f"--stack-command={flavour.command()}", *flags, "--text-model=openai/llama3.2:3b"]
        + ["--embedding-model=openai/all-minilm:l6-v2"],
        cwd=ROOT,
        env={**base, "SQLITE_STORE_DIR": str(stores), **shell, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_suite_records_through_a_real_stack_then_replays_with_no_provider_and_no_key(
    flavour, tmp_path
):
    with FakeProvider() as fake:
        recorded = run_suite(
            flavour,
            tmp_path,
            "record",
            {"OPENAI_BASE_URL": f"{fake.base_url}/v1", "OPENAI_API_KEY": KEY},
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
    log = Path(re.search(r"log: (\S+)", recorded.stdout).group(1)).read_text()
    assert "API recording enabled" not in log  # OGX's own recorder never ran

    replayed = run_suite(flavour, tmp_path, "replay", {"OPENAI_BASE_URL": CLOSED})

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
    home = str(tmp / "home")
    base = {k: v for k, v in os.environ.items() if k not in ISOLATED}
    providers = command.replace("{providers}", "inference=remote::openai")
    stores = fresh_stores(tmp, providers, {**base, "HOME": home})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *PROVIDERS_TESTS]
        + ["--stack-config=inference=remote::openai", f"--stack-command={command}"]
        + [f"--recordings-dir={tmp / 'recordings'}", "--text-model=openai/llama3.2:3b", *args],
        cwd=ROOT,
        env={
            **base,
            "HOME": home,
            "SQLITE_STORE_DIR": str(stores),
            "LLAMA_STACK_PORT": str(free_port()),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.llama_stack
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

    replayed = run_providers(llama, tmp_path, {"OPENAI_BASE_URL": CLOSED})

    assert replayed.returncode == 0, replayed.stdout[-6000:] + replayed.stderr[-3000:]
    assert " 0 missed" in replayed.stdout and " 0 recorded" in replayed.stdout
