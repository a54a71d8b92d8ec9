"""The clients: session-scoped like Llama Stack's fixtures, each request still carrying the
current test's id; clients a test builds itself too; and nothing of a session outlives it."""

from __future__ import annotations

import json
import signal
import sys
import threading

import httpx
import pytest
import requests

from tests.support.processes import free_port
from tests.support.projects import recordings

SESSION_FIXTURE = """
import pytest


@pytest.fixture(scope="session")
def listed(openai_client, http_client):
    # Built on the harness's clients, as Llama Stack's session fixtures are.
    http_client.get("/v1/models")
    return openai_client


def test_first(listed, llama_stack_client):
    listed.models.list()
    llama_stack_client.models.list()


def test_second(listed, http_client):
    listed.models.list()
    http_client.get("/v1/models")
"""


def test_session_fixtures_build_on_the_clients_and_each_request_has_its_tests_id(
    pytester, stub_server
):
    server = stub_server(lambda request, reply: reply.json(200, {"object": "list", "data": []}))
    pytester.makepyfile(test_session=SESSION_FIXTURE)

    result = pytester.runpytest_inprocess(
        f"--stack-config={server.url}", "--inference-mode=live", "-p", "no:cacheprovider"
    )

    result.assert_outcomes(passed=2)
    seen = [
        (r.headers["x-harness-test-id"].split("::")[1], r.headers["x-harness-test-invocation"])
        for r in server.requests
    ]
    # The session fixture was set up during the first test: its request belongs to it.
    assert [test for test, _ in seen] == ["test_first"] * 3 + ["test_second"] * 2
    assert len({invocation for _, invocation in seen}) == 2


SELF_BUILT = """
import asyncio
import json

import httpx
import httpx2
import openai
import requests

QUESTION = [{"role": "user", "content": "Name one primary colour."}]
ANSWER = "You said: Name one primary colour."


def test_an_sdk_client_built_by_the_test(stack_base_url, text_model_id):
    client = openai.OpenAI(base_url=f"{stack_base_url}/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(model=text_model_id, messages=QUESTION)
    assert reply.choices[0].message.content == ANSWER


def test_raw_httpx_and_httpx2_clients(stack_base_url, text_model_id):
    body = {"model": text_model_id, "messages": QUESTION, "temperature": 0.5}
    for lib in (httpx, httpx2):
        with lib.Client(base_url=stack_base_url) as client:
            reply = client.post("/v1/chat/completions", json=body)
            assert reply.status_code == 200, reply.text


def test_an_async_client(stack_base_url, text_model_id):
    async def ask():
        async with httpx.AsyncClient(base_url=stack_base_url) as client:
            body = {"model": text_model_id, "messages": QUESTION, "stream": True}
            async with client.stream("POST", "/v1/chat/completions", json=body) as reply:
                return reply.status_code, [line async for line in reply.aiter_lines() if line]

    status, lines = asyncio.run(ask())
    chunks = [json.loads(line[len("data: "):]) for line in lines if line != "data: [DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert (status, text) == (200, ANSWER)


def test_requests(stack_base_url, text_model_id):
    body = {"model": text_model_id, "messages": QUESTION, "temperature": 0.2}
    reply = requests.post(f"{stack_base_url}/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
"""


def _filed_under(directory) -> dict[str, int]:
    filed: dict[str, int] = {}
    for path in recordings(directory):
        test = json.loads(path.read_text())["test_id"].split("::")[-1].split("[")[0] or "_shared"
        filed[test] = filed.get(test, 0) + 1
    return filed


def _process_state() -> tuple[object, ...]:
    """What an in-process session could leave behind: patched clients, an import hook, a
    SIGTERM handler, a stack thread. (The calling session may hold its own.)"""
    return (
        httpx.Client.send,
        httpx.AsyncClient.__init__,
        requests.Session.send,
        requests.Session.__init__,
        list(sys.meta_path),
        signal.getsignal(signal.SIGTERM),
        [t.name for t in threading.enumerate() if t.name == "harness-inprocess-stack"],
    )


EXPECTED = {
    "_shared": 1,  # the stack's start-up model listing
    "test_an_sdk_client_built_by_the_test": 1,
    "test_raw_httpx_and_httpx2_clients": 2,
    "test_an_async_client": 1,
    "test_requests": 1,
}


def test_clients_a_test_builds_reach_the_in_process_stack_and_are_filed_under_it(project):
    project.makepyfile(test_self_built=SELF_BUILT)
    before = _process_state()

    recorded = project.runpytest_inprocess(
        "--stack-config=run.yaml", "--inference-mode=record", "test_self_built.py"
    )

    recorded.assert_outcomes(passed=4)
    assert _filed_under(project.path / "recordings") == EXPECTED
    assert _process_state() == before
    replayed = project.runpytest_inprocess("--stack-config=run.yaml", "test_self_built.py")
    replayed.assert_outcomes(passed=4)
    replayed.stdout.fnmatch_lines(["*recordings 6 used, 0 recorded, 0 missed*"])
    assert _process_state() == before


def test_clients_a_test_builds_are_filed_under_it_through_a_server(project):
    project.makepyfile(test_self_built=SELF_BUILT)

    result = project.runpytest_subprocess(
        f"--stack-config=server:run.yaml:{free_port()}",
        "--inference-mode=record",
        "test_self_built.py",
    )

    result.assert_outcomes(passed=4)
    assert _filed_under(project.path / "recordings") == EXPECTED


@pytest.mark.parametrize("library", ["httpx", "httpx2"])
def test_a_dropped_stream_closed_while_the_shared_pool_is_busy_does_not_hang(
    fake_provider, library
):
    from harness.kinds import reentrant_pool

    lib = pytest.importorskip(library)
    # The session's one transport, as every client of a session shares it.
    transport = reentrant_pool(lib.HTTPTransport())
    client = lib.Client(transport=transport, base_url=fake_provider.base_url)
    body = {"model": "llama3.2:3b", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    dropped = client.send(
        client.build_request("POST", "/v1/chat/completions", json=body), stream=True
    )
    chunks = dropped.iter_raw()
    next(chunks)  # read in part, then left: a test that stopped early
    closed = threading.Event()

    def collected_mid_request() -> None:
        # Where the garbage collector may finalize it: on a thread that holds the pool's lock,
        # inside another request (Llama Stack's suite hung there, encode/httpcore#990).
        with transport._pool._optional_thread_lock:
            chunks.close()  # as finalizing the dropped generator does
        closed.set()

    threading.Thread(target=collected_mid_request, daemon=True).start()
    # On failure the client is left open: closing it would wait on the lock for good.
    assert closed.wait(10), "closing the dropped stream deadlocked on the pool's lock"
    assert client.post("/v1/chat/completions", json={**body, "stream": False}).status_code == 200
    client.close()


@pytest.mark.parametrize("library", ["httpx", "httpx2"])
def test_a_dropped_stream_finalized_in_the_middle_of_the_next_requests_pass_over_the_pool(
    fake_provider, library
):
    from harness.kinds import reentrant_pool

    lib = pytest.importorskip(library)
    transport = reentrant_pool(lib.HTTPTransport())
    client = lib.Client(transport=transport, base_url=fake_provider.base_url)
    body = {"model": "llama3.2:3b", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    dropped = client.send(
        client.build_request("POST", "/v1/chat/completions", json=body), stream=True
    )
    chunks = dropped.iter_raw()
    next(chunks)  # read in part, then left
    (connection,) = transport._pool._connections
    checked = connection.is_closed

    def collected_here() -> bool:
        # The collector finalizing the dropped stream at an allocation inside the next
        # request's pass over the pool's connections (the pass holds the pool's lock).
        connection.is_closed = checked
        chunks.close()
        return checked()

    connection.is_closed = collected_here
    answers: list[int] = []
    asked = threading.Thread(
        target=lambda: answers.append(client.get("/v1/models").status_code), daemon=True
    )
    asked.start()
    asked.join(10)
    assert not asked.is_alive(), "the request deadlocked on the pool's lock"
    assert answers == [200]  # not a ValueError from two passes removing one connection
    client.close()
