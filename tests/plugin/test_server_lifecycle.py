"""The server a session starts, reuses or shares: ports, crashes, interrupts and xdist."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from harness import processes, server, serverstate
from harness.processes import descendants
from tests.support.processes import free_port, inner_pytest, interrupt, started_pid, wait_gone
from tests.support.projects import dedent, recordings

ROOT = Path(__file__).resolve().parents[2]

SLOW_TEST = """
import pathlib, time

def test_waits_for_the_signal(http_client):
    assert http_client.get("/v1/health").json() == {"status": "OK"}
    pathlib.Path("in-test").write_text("")
    time.sleep(60)
"""

HEALTH_TEST = """
def test_health(http_client):
    assert http_client.get("/v1/health").json() == {"status": "OK"}
"""


def test_a_stack_started_by_hand_is_used_only_by_a_live_session(project, run_stack_server):
    port = free_port()
    stack = run_stack_server(
        project.path / "run.yaml", port, {"LLAMA_STACK_TEST_INFERENCE_MODE": "live"}
    )

    replay = project.runpytest_subprocess(f"--stack-config=server:run.yaml:{port}")

    assert replay.ret != pytest.ExitCode.OK
    replay.assert_outcomes()
    output = replay.stdout.str() + replay.stderr.str()
    assert f"port {port} already serves a healthy stack (pid {stack.pid}" in output
    assert f"Stop it (kill {stack.pid})" in output
    assert "--inference-mode=live" in output

    live = project.runpytest_subprocess(
        f"--stack-config=server:run.yaml:{port}", "--inference-mode=live"
    )

    live.assert_outcomes(passed=3)
    live.stdout.fnmatch_lines([f"*using the stack already running on port {port} as it is*"])
    assert "started the stack server" not in live.stdout.str()
    live.stdout.fnmatch_lines([f"*left the stack on port {port} running (it was started outside*"])
    assert stack.poll() is None
    assert server.probe("127.0.0.1", port).state == "healthy"


def test_port_taken_by_another_service_fails_the_session_naming_port_and_answer(
    project, stub_server
):
    nginx = stub_server(
        lambda request, reply: reply.send(
            404, b"<html>welcome to nginx</html>", {"Server": "nginx"}
        )
    )
    port = nginx.port
    result = project.runpytest_subprocess(f"--stack-config=server:run.yaml:{port}")

    assert result.ret != pytest.ExitCode.OK
    output = result.stdout.str() + result.stderr.str()
    assert f"port {port} is taken by something that is not a healthy stack" in output
    assert "HTTP 404" in output and "nginx" in output
    result.assert_outcomes()  # no test ran


def test_server_crashing_at_start_reports_exit_code_and_log_tail(project, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("SQLITE_STORE_DIR", str(blocker / "stores"))  # sqlite cannot open it

    result = project.runpytest_subprocess(f"--stack-config=server:run.yaml:{free_port()}")

    assert result.ret != pytest.ExitCode.OK
    output = result.stdout.str() + result.stderr.str()
    assert re.search(r"the stack server exited with code [1-9]", output), output
    assert "last 40 lines of" in output
    assert "stack-server-" in output
    result.assert_outcomes()


def test_a_stack_whose_python_lacks_a_module_is_named_by_it_in_each_tests_error(project):
    # The foreign-stack fake run by a Python that sees no site-packages (-S): its first import
    # of a third-party module (httpx) fails, as a stack's does in a virtualenv that lacks one.
    foreign = ROOT / "tests" / "fakes" / "foreign_stack.py"
    command = f"{sys.executable} -I -S {foreign} {{config}} --port {{port}}"
    project.makeini(f"[pytest]\nstack_config = server:x:{free_port()}\nstack_command = {command}\n")
    project.makepyfile(test_h="def test_h(http_client):\n    pass\n")

    result = project.runpytest_subprocess("--inference-mode=live", "test_h.py")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*stack-harness: the stack did not start: the stack server exited with code 1 before "
            "it was healthy: ModuleNotFoundError: No module named 'httpx'",
        ]
    )
    output = result.stdout.str()
    assert "last 40 lines of" in output and "Traceback (most recent call last):" in output


def test_failing_session_stops_the_server_it_started(project):
    project.makepyfile(test_fails="def test_fails(http_client):\n    assert False\n")

    result = project.runpytest_subprocess(
        f"--stack-config=server:run.yaml:{free_port()}", "test_fails.py"
    )

    result.assert_outcomes(failed=1)
    pid = started_pid(result.stdout.str())
    assert wait_gone(pid)
    # The summary says what became of the server, rather than repeating how it started.
    assert result.stdout.str().count(f"started the stack server (pid {pid})") == 1
    result.stdout.fnmatch_lines([f"stack-harness: stopped the stack server (pid {pid}) on port*"])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_session_leaves_no_server_behind(project, signum):
    project.makepyfile(test_slow=SLOW_TEST)
    port = free_port()
    args = ["-p", "no:randomly", "test_slow.py", f"--stack-config=server:run.yaml:{port}"]
    with inner_pytest(project.path, *args) as inner:
        pid = inner.server_pid
        interrupt(inner.process, signum)

    text = inner.text()
    assert wait_gone(pid), text
    assert server.probe("127.0.0.1", port).state == "free"
    assert "KeyboardInterrupt" in text or "Interrupted" in text


def test_xdist_workers_share_one_server_and_both_record(project):
    project.makepyfile(
        test_many="\n".join(
            dedent(
                f"""
                def test_chat_{i}(openai_client, text_model_id):
                    reply = openai_client.chat.completions.create(
                        model=text_model_id, messages=[{{"role": "user", "content": "q{i}"}}]
                    )
                    assert reply.choices[0].message.content == "You said: q{i}"
                """
            )
            for i in range(6)
        )
    )

    result = project.runpytest_subprocess(
        "-n",
        "2",
        "-v",
        "test_many.py",
        f"--stack-config=server:run.yaml:{free_port()}",
        "--inference-mode=record",
    )

    result.assert_outcomes(passed=6)
    output = result.stdout.str()
    assert output.count("started the stack server") == 1  # announced once
    # The workers were made while it started, and adopted it from their controller's file.
    assert output.index("created: 2/2 workers") < output.index("started the stack server")
    assert "stack-harness: stopped the stack server (pid" in output  # and what became of it
    workers = {
        test: worker
        for worker, test in re.findall(
            r"\[(gw\d)\] \[[ \d%]+\] PASSED test_many.py::(\w+)\[", output
        )
    }
    assert set(workers.values()) == {"gw0", "gw1"}, output
    recorded_tests = {
        json.loads(path.read_text())["test_id"].split("::")[1].split("[")[0]
        for path in recordings(project.path / "recordings" / "test_many")
    }
    assert recorded_tests == set(workers)
    assert wait_gone(started_pid(output))


def test_two_sessions_on_one_port_share_the_server_until_the_last_ends(project):
    project.makepyfile(test_slow=SLOW_TEST)
    port = free_port()
    config = f"--stack-config=server:run.yaml:{port}"
    with inner_pytest(project.path, "test_slow.py", config) as first:
        pid = first.server_pid
        project.makepyfile(test_health=HEALTH_TEST)
        second = project.runpytest_subprocess(config, "test_health.py")

        second.assert_outcomes(passed=1)
        second.stdout.fnmatch_lines(
            [
                f"*sharing the stack server (pid {pid}) on port {port}*",
                f"stack-harness: left the stack server (pid {pid}) on port {port} running "
                "for 1 other test session(s) holding it*",
            ]
        )
        assert processes.alive(pid)  # the first session still holds it
    assert wait_gone(pid)


def test_server_gets_env_options_and_the_setup_defaults(project, monkeypatch, tmp_path):
    monkeypatch.delenv("OLLAMA_URL")
    monkeypatch.delenv("SQLITE_STORE_DIR")
    stores = tmp_path / "from-env-option"
    project.makepyfile(test_health=HEALTH_TEST)
    port = free_port()

    result = project.runpytest_subprocess(
        f"--stack-config=server:run.yaml:{port}",
        f"--env=SQLITE_STORE_DIR={stores}",
        "test_health.py",
    )

    result.assert_outcomes(passed=1)
    assert (stores / "kvstore.db").exists()
    log = serverstate.log_path_for(port).read_text()
    assert "url: http://localhost:11434" in log  # the ollama setup's default OLLAMA_URL


DIES_MID_RUN = """
import pathlib, time

def test_first(http_client):
    pathlib.Path("in-test").write_text("")
    while not pathlib.Path("go").exists():
        time.sleep(0.02)
    assert http_client.get("/v1/health").status_code == 200

def test_second(http_client):
    assert http_client.get("/v1/health").status_code == 200

def test_third(http_client):
    assert http_client.get("/v1/health").status_code == 200
"""


def test_a_stack_that_dies_mid_run_is_named_once_and_the_session_stops(project):
    project.makepyfile(test_dies=DIES_MID_RUN)
    port = free_port()
    with inner_pytest(
        project.path, "test_dies.py", f"--stack-config=server:run.yaml:{port}"
    ) as inner:
        pid = inner.server_pid
        os.kill(pid, signal.SIGKILL)
        assert wait_gone(pid)
        (project.path / "go").write_text("")
        inner.process.wait(timeout=60)

    text = inner.text()
    assert inner.process.returncode != 0
    assert f"the stack server (pid {pid}) on port {port} was killed by signal SIGKILL" in text
    assert "stack-harness: the stack is gone" in text and "last 40 lines of" in text
    assert "1 failed" in text and "test_third" not in text.split("short test summary")[-1]
    assert text.count("ConnectError") < 10
    summary = text.split("short test summary")[0].splitlines()[-3:]
    assert any("was killed by signal SIGKILL during the run" in line for line in summary), text


def test_a_server_outlives_a_killed_pytest_by_a_few_seconds_only(project):
    project.makepyfile(test_slow=SLOW_TEST)
    config = f"--stack-config=server:run.yaml:{free_port()}"
    with inner_pytest(project.path, "test_slow.py", config) as inner:
        pid = inner.server_pid
        inner.process.kill()  # SIGKILL: pytest cannot stop its server
        inner.process.wait(timeout=10)

    assert wait_gone(pid, timeout=10)


def _stack_process(supervisor: int) -> int:
    """The stack command the supervisor runs (its child), as the OOM killer would pick it."""
    deadline = time.monotonic() + 10
    while not (children := descendants(supervisor)):
        assert time.monotonic() < deadline, "the supervisor has no child"
        time.sleep(0.02)
    return children[0]


def test_a_stack_killed_by_sigkill_is_named_with_its_signal(project):
    project.makepyfile(test_dies=DIES_MID_RUN)
    port = free_port()
    with inner_pytest(
        project.path, "test_dies.py", f"--stack-config=server:run.yaml:{port}"
    ) as inner:
        pid = inner.server_pid
        os.kill(_stack_process(pid), signal.SIGKILL)  # the stack, not its supervisor
        assert wait_gone(pid)
        (project.path / "go").write_text("")
        inner.process.wait(timeout=60)

    text = inner.text()
    assert f"the stack server (pid {pid}) on port {port} was killed by signal SIGKILL" in text
    assert "exited with code 1" not in text and "Traceback" not in text.split("last 40")[-1]


STOPPED_MID_RUN = """
import pathlib, time

def test_first(http_client):
    pathlib.Path("in-test").write_text("")
    while not pathlib.Path("go").exists():
        time.sleep(0.02)
    http_client.get("/v1/health", timeout=2)

def test_second(http_client):
    http_client.get("/v1/health")
"""


def test_a_stopped_stack_is_named_in_the_first_test_it_breaks_within_seconds(project):
    project.makepyfile(test_stopped=STOPPED_MID_RUN)
    port = free_port()
    started = time.monotonic()
    with inner_pytest(
        project.path, "test_stopped.py", f"--stack-config=server:run.yaml:{port}"
    ) as inner:
        pid = inner.server_pid
        stack = _stack_process(pid)
        os.kill(stack, signal.SIGSTOP)  # as Ctrl-Z or `kill -STOP` would
        (project.path / "go").write_text("")
        inner.process.wait(timeout=60)

    text = inner.text()
    assert time.monotonic() - started < 40, text
    assert f"the stack server (pid {pid}) on port {port} is stopped: process(es) {stack}" in text
    assert f"kill -CONT -{pid}" in text
    assert "stack-harness: the stack is gone" in text
    assert "1 failed" in text and "test_second" not in text.split("short test summary")[-1]
    assert wait_gone(pid)  # stopped at the end all the same (continued after its SIGTERM)


STOPPED_BETWEEN_TESTS = """
import pathlib, time

def test_first(http_client):
    assert http_client.get("/v1/health").status_code == 200
    pathlib.Path("in-test").write_text("")
    while not pathlib.Path("go").exists():
        time.sleep(0.02)

def test_second(http_client):
    http_client.get("/v1/health")
"""


def test_a_stack_found_stopped_before_a_test_fails_that_test_at_setup_only(project):
    project.makepyfile(test_between=STOPPED_BETWEEN_TESTS)
    port = free_port()
    with inner_pytest(
        project.path, "test_between.py", f"--stack-config=server:run.yaml:{port}"
    ) as inner:
        pid = inner.server_pid
        stack = _stack_process(pid)
        os.kill(stack, signal.SIGSTOP)  # between the tests: the next one's setup finds it
        (project.path / "go").write_text("")
        inner.process.wait(timeout=60)

    text = inner.text()
    assert f"the stack server (pid {pid}) on port {port} is stopped" in text
    assert "1 passed, 1 error" in text, text
    # The setup's failure is the test's one report: the other plugins' teardowns still run.
    assert "ERROR at teardown" not in text and "KeyError" not in text, text
    assert wait_gone(pid)
