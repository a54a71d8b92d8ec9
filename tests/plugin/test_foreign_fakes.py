"""The foreign-stack fakes in tests/fakes answer as their docstrings say.

Each fake is a stack the harness did not write, for one way real stacks call their providers
(off the event loop, from detached tasks, through clients other than httpx, beside a server the
test serves, with ids they make up, through a failing transport). Here each runs as a process
started by `--stack-command` in live mode (no recording, no bootstrap) against the fake
provider, so a test that records or replays through it starts from a stack known to work.
"""

from __future__ import annotations

import re

import pytest

from tests.fakes.provider import RESET_MODEL, STALL_MODEL
from tests.support.foreign_stacks import (
    CHAT_EMBED_COMPLETE,
    FAULT_TESTS,
    RANDOM_ID_TESTS,
    ROOT,
    TOOL_TESTS,
    command,
)
from tests.support.processes import free_port


def run_live(project: pytest.Pytester, fake: str, module: str) -> pytest.RunResult:
    return project.runpytest_subprocess(
        f"--stack-config=server:{fake}:{free_port()}",
        f"--stack-command={command(fake)}",
        "--inference-mode=live",
        f"{module}.py",
    )


def provider_paths(fake_provider) -> list[str]:
    return [r["path"] for r in fake_provider.requests]


def test_the_threads_stack_calls_from_a_plain_thread_an_executor_and_to_thread(
    project, fake_provider, monkeypatch
):
    monkeypatch.setenv("THREADS_PROVIDER_URL", fake_provider.base_url)
    project.makepyfile(test_threads=CHAT_EMBED_COMPLETE)

    run_live(project, "stack_threads.py", "test_threads").assert_outcomes(passed=4)

    assert sorted(set(provider_paths(fake_provider))) == [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
    ]
    assert not (project.path / "recordings").exists()


def test_the_detached_tasks_stack_calls_from_a_fresh_context_a_start_up_worker_and_a_pool(
    project, fake_provider, monkeypatch
):
    monkeypatch.setenv("DETACHED_PROVIDER_URL", fake_provider.base_url)
    project.makepyfile(test_detached=CHAT_EMBED_COMPLETE)

    run_live(project, "stack_detached_tasks.py", "test_detached").assert_outcomes(passed=4)

    assert provider_paths(fake_provider).count("/v1/embeddings") == 2
    assert provider_paths(fake_provider).count("/v1/completions") == 1  # through the pool


def test_the_other_clients_stack_calls_with_requests_urllib_and_aiohttp(
    project, fake_provider, monkeypatch
):
    monkeypatch.setenv("OTHER_CLIENTS_PROVIDER_URL", fake_provider.base_url)
    project.makepyfile(test_other_clients=CHAT_EMBED_COMPLETE)

    run_live(project, "stack_other_clients.py", "test_other_clients").assert_outcomes(passed=4)

    client = {r["path"]: r["headers"].get("User-Agent", "") for r in fake_provider.requests}
    assert client["/v1/chat/completions"].startswith("python-requests/")
    assert client["/v1/completions"].startswith("Python-urllib/")
    assert client["/v1/embeddings"].startswith("Python/") and "aiohttp" in client["/v1/embeddings"]


def test_the_test_server_stack_calls_the_tests_own_server_and_the_provider(
    project, fake_provider, monkeypatch
):
    monkeypatch.setenv("TESTSERVER_PROVIDER_URL", fake_provider.base_url)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the inner test imports the tool server
    project.makepyfile(test_tool=TOOL_TESTS)

    run_live(project, "stack_test_server.py", "test_tool").assert_outcomes(passed=3)

    asked = [m["content"] for r in fake_provider.requests for m in r["body"]["messages"][-1:]]
    assert asked == ["Tool answer: The tool knows: plain", "Tool answer: The tool knows: streamed"]


def test_the_random_ids_stack_sends_ids_it_made_up_to_the_provider(
    project, fake_provider, monkeypatch
):
    monkeypatch.setenv("RANDOM_IDS_PROVIDER_URL", fake_provider.base_url)
    project.makepyfile(test_random_ids=RANDOM_ID_TESTS)

    run_live(project, "stack_random_ids.py", "test_random_ids").assert_outcomes(passed=2)

    (chat,) = fake_provider.requests
    system = chat["body"]["messages"][0]["content"]
    assert re.match(r"\[1\] document_id: file-[0-9a-f]{32}, chunk_id: [0-9a-f-]{36}, ", system)
    assert system.endswith("\nMaverick has 128 experts.")
    assert re.fullmatch(r"[0-9a-f-]{36}", chat["body"]["metadata"]["request_id"])


def test_the_transport_faults_stack_tells_refused_reset_and_timeout_apart(
    project, fake_provider, monkeypatch
):
    monkeypatch.setenv("FAULTS_PROVIDER_URL", fake_provider.base_url)
    project.makepyfile(test_faults=FAULT_TESTS)

    run_live(project, "stack_transport_faults.py", "test_faults").assert_outcomes(passed=4)

    models = sorted(r["body"]["model"] for r in fake_provider.requests)
    assert models == sorted(["llama3.2:3b", RESET_MODEL, STALL_MODEL])  # refused never got there
