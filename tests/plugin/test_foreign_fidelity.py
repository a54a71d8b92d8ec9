"""Stacks we did not write replay exactly as they recorded, however they call their providers.

Each test starts one of the foreign-stack fakes (tests/fakes) with --stack-command, records a
test module against the fake provider, stops the provider, and replays: the outcomes must be
the same, with no miss, and every provider request must be filed under the test that caused
it — from a plain thread, an executor, a fresh-context task, a worker started at start-up,
through requests, urllib and aiohttp, beside a server the test itself runs (never recorded),
with ids the stack makes up, and when the provider cannot be reached at all.
"""

from __future__ import annotations

import json

import pytest

from tests.fakes.provider import FakeProvider
from tests.support.foreign_stacks import (
    CHAT_EMBED_COMPLETE,
    FAULT_TESTS,
    PROVIDER_VARIABLES,
    RANDOM_ID_TESTS,
    ROOT,
    TOOL_TESTS,
    command,
)
from tests.support.processes import free_port
from tests.support.projects import recordings


def record_then_replay(
    project: pytest.Pytester,
    provider: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
    fake: str,
    module: str,
    source: str,
    *args: str,
) -> tuple[pytest.RunResult, pytest.RunResult]:
    monkeypatch.setenv(PROVIDER_VARIABLES[fake], provider.base_url)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # inner tests may import tests.fakes
    project.makepyfile(**{module: source})
    config = [f"--stack-config=server:{fake}:{free_port()}", f"--stack-command={command(fake)}"]
    recorded = project.runpytest_subprocess(
        *config, "--inference-mode=record", f"{module}.py", *args
    )
    provider.stop()
    replayed = project.runpytest_subprocess(*config, f"{module}.py", *args)
    return recorded, replayed


def filed(project: pytest.Pytester) -> dict[str, list[str]]:
    """Provider path -> the test ids its recordings are filed under."""
    found: dict[str, list[str]] = {}
    for path in recordings(project.path / "recordings"):
        record = json.loads(path.read_text())
        found.setdefault(record["request"]["path"], []).append(record["test_id"])
    return found


def same_outcomes(recorded: pytest.RunResult, replayed: pytest.RunResult, passed: int) -> None:
    recorded.assert_outcomes(passed=passed)
    replayed.assert_outcomes(passed=passed)
    replayed.stdout.fnmatch_lines(["*recordings * used, 0 recorded, 0 missed*"])


@pytest.mark.parametrize(
    ("stack", "module"),
    [("stack_threads.py", "test_threads"), ("stack_detached_tasks.py", "test_detached")],
    ids=["threads and executors", "fresh-context tasks, a start-up worker and a pool"],
)
def test_calls_off_the_request_path_are_filed_under_their_test(
    project, fake_provider, monkeypatch, stack, module
):
    recorded, replayed = record_then_replay(
        project, fake_provider, monkeypatch, stack, module, CHAT_EMBED_COMPLETE
    )

    same_outcomes(recorded, replayed, passed=4)
    tests = filed(project)
    assert sorted(tests["/v1/chat/completions"]) == [
        f"{module}.py::test_an_unknown_model_is_the_providers_404",
        f"{module}.py::test_chat",
    ]
    assert tests["/v1/embeddings"] == [f"{module}.py::test_embeddings"] * 2
    # The detached stack's pooled connection was checked in by another test's request.
    assert tests["/v1/completions"] == [f"{module}.py::test_completions"]


def many(source: str, copies: int, word: str) -> str:
    """`copies` renamed copies of a test module's tests, each asking something of its own."""
    return "\n".join(
        source.replace("def test_", f"def test_{n}_").replace(word, f"{word} {n}")
        for n in range(copies)
    )


def test_threads_keep_their_tests_apart_with_two_xdist_workers(project, fake_provider, monkeypatch):
    tests = many(CHAT_EMBED_COMPLETE, 4, "off the loop")
    recorded, replayed = record_then_replay(
        project, fake_provider, monkeypatch, "stack_threads.py", "test_threads", tests, "-n", "2"
    )

    same_outcomes(recorded, replayed, passed=16)
    for path, tests in filed(project).items():
        for test_id in tests:
            assert test_id.startswith("test_threads.py::"), (path, test_id)


def test_fresh_context_tasks_and_a_queue_worker_keep_their_tests_apart_with_two_workers(
    project, fake_provider, monkeypatch
):
    tests = many(CHAT_EMBED_COMPLETE, 4, "off the loop").replace(
        '"input": ["a", "b"]', '"input": [__name__ + "a", "b"]'
    )
    recorded, replayed = record_then_replay(
        project, fake_provider, monkeypatch, "stack_detached_tasks.py", "test_detached", tests,
        "-n", "2",
    )  # fmt: skip

    same_outcomes(recorded, replayed, passed=16)
    tests = filed(project)
    for path, test_ids in tests.items():
        for test_id in test_ids:
            assert test_id.startswith("test_detached.py::"), (path, test_id)
    # A connection from the pool, checked in by whichever request had it, carries no test.
    assert sorted(tests["/v1/completions"]) == [
        f"test_detached.py::test_{n}_completions" for n in range(4)
    ]


BATCH_BESIDE_A_HELD_REQUEST = """
import pathlib, time

STARTED = pathlib.Path(__file__).with_name("batch-started")


def test_a_batch_outlives_its_request(http_client):
    body = {"model": "all-minilm:l6-v2", "input": ["a batch of one"], "delay": 0.5}
    batch = http_client.post("/v1/batches", json=body).json()
    STARTED.write_text("")
    time.sleep(1.0)  # no request of this test is in flight when the batch calls the provider
    for _ in range(200):
        batch = http_client.get(f"/v1/batches/{batch['id']}").json()
        if batch["status"] == "completed":
            break
        time.sleep(0.05)
    STARTED.unlink()
    assert [len(d["embedding"]) for d in batch["result"]["data"]] == [384]


def test_the_other_worker_has_a_request_in_flight_meanwhile(http_client):
    deadline = time.monotonic() + 30
    while not STARTED.exists():
        assert time.monotonic() < deadline, "the batch test never started"
        time.sleep(0.01)
    assert http_client.post("/v1/hold", json={"seconds": 1.0}).status_code == 200
"""


def test_work_a_test_left_running_stays_its_own_while_another_worker_asks(
    project, fake_provider, monkeypatch
):
    recorded, replayed = record_then_replay(
        project, fake_provider, monkeypatch, "stack_detached_tasks.py", "test_batch",
        BATCH_BESIDE_A_HELD_REQUEST, "-n", "2",
    )  # fmt: skip

    same_outcomes(recorded, replayed, passed=2)
    # Not the test whose request was the one in flight when the batch called out.
    assert filed(project)["/v1/embeddings"] == ["test_batch.py::test_a_batch_outlives_its_request"]


BATCH_OUTLIVING_ITS_TEST = """
def test_a_batch_left_running(http_client):
    body = {"model": "all-minilm:l6-v2", "input": ["a batch left behind"], "delay": 0.3}
    assert http_client.post("/v1/batches", json=body).json()["status"] == "in_progress"


def test_the_next_test_asks_while_it_runs(http_client):
    assert http_client.post("/v1/hold", json={"seconds": 1.0}).status_code == 200
"""


def test_work_that_outlives_its_test_stays_that_tests(project, fake_provider, monkeypatch):
    recorded, replayed = record_then_replay(
        project, fake_provider, monkeypatch, "stack_detached_tasks.py", "test_left",
        BATCH_OUTLIVING_ITS_TEST,
    )  # fmt: skip

    same_outcomes(recorded, replayed, passed=2)
    # Not the test in flight when the batch called out: that would depend on timing.
    assert filed(project)["/v1/embeddings"] == ["test_left.py::test_a_batch_left_running"]


WORKER_TOOL_TESTS = """
import pytest

from tests.fakes.loopback_tool import LoopbackTool


@pytest.fixture
def tool():
    with LoopbackTool() as tool:
        yield tool


@pytest.mark.parametrize("n", range(6))
def test_streamed_tool(http_client, tool, n):
    body = {"model": "llama3.2:3b", "question": f"q{n}", "tool_url": tool.url}
    answer = http_client.post("/v1/stream-tool-chat", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["tool_answer"] == f"The tool knows: q{n}"
"""


def test_a_server_an_xdist_worker_runs_passes_through(project, fake_provider, monkeypatch):
    recorded, replayed = record_then_replay(
        project, fake_provider, monkeypatch, "stack_test_server.py", "test_tool",
        WORKER_TOOL_TESTS, "-n", "2",
    )  # fmt: skip

    same_outcomes(recorded, replayed, passed=6)
    assert set(filed(project)) == {"/v1/chat/completions"}  # the workers' servers: never


def test_requests_urllib_and_aiohttp_inside_the_stack_record_and_replay(
    project, fake_provider, monkeypatch
):
    recorded, replayed = record_then_replay(
        project, fake_provider, monkeypatch, "stack_other_clients.py", "test_other_clients",
        CHAT_EMBED_COMPLETE,
    )  # fmt: skip

    same_outcomes(recorded, replayed, passed=4)
    tests = filed(project)
    assert tests["/v1/completions"] == ["test_other_clients.py::test_completions"]
    assert tests["/v1/embeddings"] == ["test_other_clients.py::test_embeddings"] * 2


def test_a_server_the_test_runs_passes_through_and_its_endless_stream_is_never_recorded(
    project, fake_provider, monkeypatch
):
    recorded, replayed = record_then_replay(
        project, fake_provider, monkeypatch, "stack_test_server.py", "test_tool", TOOL_TESTS,
        "-k", "not gone",
    )  # fmt: skip

    same_outcomes(recorded, replayed, passed=2)
    assert set(filed(project)) == {"/v1/chat/completions"}  # /answer, /sse, /messages: never
    for result in (recorded, replayed):
        result.stdout.fnmatch_lines(["*3 passed through (127.0.0.1:*)*"])


def test_ids_the_stack_makes_up_replay_with_new_ids(project, fake_provider, monkeypatch):
    recorded, replayed = record_then_replay(
        project, fake_provider, monkeypatch, "stack_random_ids.py", "test_random_ids",
        RANDOM_ID_TESTS,
    )  # fmt: skip

    same_outcomes(recorded, replayed, passed=2)
    (record,) = [
        json.loads(p.read_text())
        for p in recordings(project.path / "recordings")
        if "file-search" in p.read_text() or "document_id" in p.read_text()
    ]
    assert set(record["request"]["ids"].values()) >= {"file-<id:1>", "<id:2>"}


def test_a_provider_that_cannot_be_reached_replays_as_it_failed(
    project, fake_provider, monkeypatch
):
    monkeypatch.setenv("FAULTS_READ_TIMEOUT", "0.5")
    recorded, replayed = record_then_replay(
        project, fake_provider, monkeypatch, "stack_transport_faults.py", "test_faults",
        FAULT_TESTS,
    )  # fmt: skip

    same_outcomes(recorded, replayed, passed=4)
    failures = [
        json.loads(p.read_text())["response"]["failure"]["kind"]
        for p in recordings(project.path / "recordings")
        if '"failure"' in p.read_text()
    ]
    assert sorted(failures) == ["connect", "read-timeout", "reset"]


def test_recordings_say_which_stack_and_setup_made_them(project, fake_provider, monkeypatch):
    record_then_replay(
        project, fake_provider, monkeypatch, "stack_threads.py", "test_threads",
        CHAT_EMBED_COMPLETE, "-k", "test_chat",
    )  # fmt: skip

    provenance = {
        json.dumps(json.loads(p.read_text()).get("provenance"), sort_keys=True)
        for p in recordings(project.path / "recordings")
    }
    assert provenance == {'{"setup": "ollama"}'}  # a stack of no known distribution


def test_a_stream_still_open_when_its_test_is_done_is_named_in_the_summary(
    project, fake_provider, monkeypatch
):
    # Told to record the test's own server, the harness records its endless event stream:
    # when the stack lets go of it, it is given a few seconds to end, then named, not kept.
    recorded, _ = record_then_replay(
        project, fake_provider, monkeypatch, "stack_test_server.py", "test_tool", TOOL_TESTS,
        "-k", "long_lived", "--record-hosts=127.0.0.1",
    )  # fmt: skip

    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines(
        [
            "*stack-harness: not recorded: GET /sse in test_tool.py::test_tool_over_a_long_lived"
            "_event_stream: the stream was still open * after it was closed*"
        ]
    )
