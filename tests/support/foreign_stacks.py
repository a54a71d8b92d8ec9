"""The foreign-stack fakes of tests/fakes and the inner test modules that drive them.

Each fake is a stack the harness did not write, for one way real stacks call their providers.
The plugin tests start one with `--stack-command` (`command`) and run one of these modules
against it: live, to check the fake itself (tests/plugin/test_foreign_fakes.py), or recorded
and then replayed with the provider stopped (tests/plugin/test_foreign_fidelity.py).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from tests.fakes.provider import RESET_MODEL, STALL_MODEL

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "fakes"

# fake -> the variable that names its provider's root
PROVIDER_VARIABLES = {
    "stack_threads.py": "THREADS_PROVIDER_URL",
    "stack_detached_tasks.py": "DETACHED_PROVIDER_URL",
    "stack_other_clients.py": "OTHER_CLIENTS_PROVIDER_URL",
    "stack_test_server.py": "TESTSERVER_PROVIDER_URL",
    "stack_random_ids.py": "RANDOM_IDS_PROVIDER_URL",
    "stack_transport_faults.py": "FAULTS_PROVIDER_URL",
}


def command(fake: str) -> str:
    """The --stack-command that serves `fake` (tests/fakes/<fake>)."""
    return (
        f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKES / fake))} {{config}} --port {{port}}"
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

TOOL_TESTS = """
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

RANDOM_ID_TESTS = """
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

FAULT_TESTS = f"""
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
