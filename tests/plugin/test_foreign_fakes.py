"""The foreign-stack fakes in tests/fakes answer as their docstrings say.

Each fake is a stack the harness did not write, for one way real stacks call their providers
(off the event loop, from detached tasks, through clients other than httpx, beside a server the
test serves, with ids they make up, through a failing transport). Here each runs as a process
started by `--stack-command` in live mode (no recording, no bootstrap) against the fake
provider, so a test that records or replays through it starts from a stack known to work.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from tests.fakes.provider import RESET_MODEL, STALL_MODEL
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "fakes"


def run_live(project: pytest.Pytester, fake: str, module: str) -> pytest.RunResult:
    command = (
        f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKES / fake))} {{config}} --port {{port}}"
    )
    return project.runpytest_subprocess(
        f"--stack-config=server:{fake}:{free_port()}",
        f"--stack-command={command}",
        "--inference-mode=live",
        f"{module}.py",
    )


CHAT_EMBED_COMPLETE = """
def test_chat(http_client):
    body = {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "off the loop"}]}
    answer = http_client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "You said: off the loop"


def test_embeddings(http_client):
    for _ in range(2):  # a worker serves more than one request
        answer = http_client.post(
            "/v1/embeddings", json={"model": "all-minilm:l6-v2", "input": ["a", "b"]}
        )
        assert answer.status_code == 200, answer.text
        assert [len(d["embedding"]) for d in answer.json()["data"]] == [384, 384]


def test_completions(http_client):
    answer = http_client.post("/v1/completions", json={"model": "llama3.2:3b", "prompt": "once"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["text"].endswith("after: once")


def test_an_unknown_model_is_the_providers_404(http_client):
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}
    answer = http_client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 404, answer.text
"""


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


def test_the_detached_tasks_stack_calls_from_a_fresh_context_and_a_start_up_worker(
    project, fake_provider, monkeypatch
):
    monkeypatch.setenv("DETACHED_PROVIDER_URL", fake_provider.base_url)
    tests = CHAT_EMBED_COMPLETE.split("def test_completions")[0]
    tests += CHAT_EMBED_COMPLETE[CHAT_EMBED_COMPLETE.index("def test_an_unknown") :]
    project.makepyfile(test_detached=tests)

    run_live(project, "stack_detached_tasks.py", "test_detached").assert_outcomes(passed=3)

    assert provider_paths(fake_provider).count("/v1/embeddings") == 2


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
    project.makepyfile(
        test_tool="""
import re

import pytest

from tests.fakes.loopback_tool import LoopbackTool


@pytest.fixture
def tool():
    with LoopbackTool() as tool:
        yield tool


def ask(http_client, path, tool, question):
    body = {"model": "llama3.2:3b", "question": question, "tool_url": tool.url}
    answer = http_client.post(path, json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_plain_tool(http_client, tool):
    answer = ask(http_client, "/v1/tool-chat", tool, "plain")
    assert answer == {
        "tool_answer": "The tool knows: plain",
        "reply": "You said: Tool answer: The tool knows: plain",
    }
    assert tool.requests == [("POST", "/answer")]


def test_tool_over_a_long_lived_event_stream(http_client, tool):
    answer = ask(http_client, "/v1/stream-tool-chat", tool, "streamed")
    assert answer["tool_answer"] == "The tool knows: streamed"
    assert answer["reply"] == "You said: Tool answer: The tool knows: streamed"
    (get, post) = tool.requests
    assert get == ("GET", "/sse")
    assert post[0] == "POST" and re.fullmatch(r"/messages\\?session_id=[0-9a-f]{32}", post[1])


def test_a_tool_that_is_gone_is_a_bare_500(http_client, tool):
    tool.stop()
    body = {"model": "llama3.2:3b", "question": "q", "tool_url": tool.url}
    assert http_client.post("/v1/tool-chat", json=body).status_code == 500
"""
    )

    run_live(project, "stack_test_server.py", "test_tool").assert_outcomes(passed=3)

    asked = [m["content"] for r in fake_provider.requests for m in r["body"]["messages"][-1:]]
    assert asked == ["Tool answer: The tool knows: plain", "Tool answer: The tool knows: streamed"]


def test_the_random_ids_stack_sends_ids_it_made_up_to_the_provider(
    project, fake_provider, monkeypatch
):
    monkeypatch.setenv("RANDOM_IDS_PROVIDER_URL", fake_provider.base_url)
    project.makepyfile(
        test_random_ids="""
import re


def test_an_uploaded_file_is_searched_by_its_random_id(http_client):
    first = http_client.post("/v1/files", json={"content": "Maverick has 128 experts."}).json()
    second = http_client.post("/v1/files", json={"content": "Maverick has 128 experts."}).json()
    assert re.fullmatch(r"file-[0-9a-f]{32}", first["id"]) and first["id"] != second["id"]
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", first["chunk_id"])

    body = {"model": "llama3.2:3b", "file_id": first["id"], "question": "How many experts?"}
    found = http_client.post("/v1/file-search", json=body)

    assert found.status_code == 200, found.text
    assert found.json() == {"file_id": first["id"], "answer": "You said: How many experts?"}


def test_an_unknown_file_is_a_404(http_client):
    body = {"model": "llama3.2:3b", "file_id": "file-nope", "question": "q"}
    assert http_client.post("/v1/file-search", json=body).status_code == 404
"""
    )

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
    project.makepyfile(
        test_faults=f"""
import pytest

QUESTION = [{{"role": "user", "content": "q"}}]
CHAT = "/v1/chat/completions"


@pytest.mark.parametrize(
    "path, model, status, error",
    [
        (CHAT, "llama3.2:3b", 200, None),
        ("/v1/refused", "llama3.2:3b", 502, {{"kind": "refused", "type": "ConnectError"}}),
        (CHAT, "{RESET_MODEL}", 502, {{"kind": "reset", "type": "ReadError"}}),
        (CHAT, "{STALL_MODEL}", 504, {{"kind": "timeout", "type": "ReadTimeout"}}),
    ],
)
def test_fault(http_client, path, model, status, error):
    answer = http_client.post(path, json={{"model": model, "messages": QUESTION}})
    assert answer.status_code == status, answer.text
    assert answer.json().get("error") == error
"""
    )

    run_live(project, "stack_transport_faults.py", "test_faults").assert_outcomes(passed=4)

    models = sorted(r["body"]["model"] for r in fake_provider.requests)
    assert models == sorted(["llama3.2:3b", RESET_MODEL, STALL_MODEL])  # refused never got there
