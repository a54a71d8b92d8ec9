"""The server starts in the background, while pytest collects or its xdist workers boot.

Every test here runs pytest in a subprocess on a real server process: the overlap itself
(a module that, as it is imported, finds the server already answering), a session that
turns out not to need it, an interrupt while the server is still starting, and xdist workers
that learn that the server their controller was starting as they were made did not start
(that they adopt one that did is in test_server_lifecycle's xdist test).
"""

from __future__ import annotations

import shlex
import signal
import sys

import pytest

from harness import server, serverstate
from tests.support.processes import free_port, inner_pytest, started_pid, wait_gone
from tests.support.projects import dedent

# Imported by pytest's collection: waits (up to a limit) for the session's server to answer.
WAIT_FOR_HEALTH = """
import pathlib, time, httpx

def _healthy(port, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return False

COLLECTED_HEALTHY = _healthy(PORT, 30)
pathlib.Path("during-collection").write_text(str(COLLECTED_HEALTHY))
"""


def _waiting_module(port: int, body: str) -> str:
    return WAIT_FOR_HEALTH.replace("PORT", str(port)) + "\n" + dedent(body)


def test_the_server_is_started_while_pytest_collects(project):
    port = free_port()
    project.makepyfile(
        test_overlap=_waiting_module(
            port,
            """
            def test_health(http_client):
                assert http_client.get("/v1/health").json() == {"status": "OK"}
            """,
        )
    )

    result = project.runpytest_subprocess(
        f"--stack-config=server:run.yaml:{port}", "test_overlap.py"
    )

    result.assert_outcomes(passed=1)
    assert (project.path / "during-collection").read_text() == "True"
    output = result.stdout.str()
    assert output.count("started the stack server") == 1
    assert wait_gone(started_pid(output))


def test_a_session_whose_tests_do_not_need_the_stack_stops_the_server_it_began(project):
    port = free_port()
    project.makepyfile(
        test_no_stack=_waiting_module(
            port,
            f"""
            from harness import server

            def test_plain():
                # The server began at session start; once collection showed no test needs
                # it, it was stopped again.
                assert server.probe("127.0.0.1", {port}).state == "free"
            """,
        )
    )

    result = project.runpytest_subprocess(
        f"--stack-config=server:run.yaml:{port}", "test_no_stack.py"
    )

    result.assert_outcomes(passed=1)
    assert (project.path / "during-collection").read_text() == "True"
    assert "started the stack server" not in result.stdout.str()
    assert not serverstate.state_path(serverstate.state_dir(), port).exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_while_the_server_is_still_starting_stops_it(project, tmp_path, signum):
    # A "stack" that never becomes healthy, so the session is interrupted mid-start.
    pid_file = tmp_path / "stack.pid"
    script = f"echo $$ > {shlex.quote(str(pid_file))}; exec sleep 300"
    command = f"sh -c {shlex.quote(script)} sh {{config}} {{port}}"
    project.makepyfile(
        test_slow_collection=dedent(
            f"""
            import pathlib, time

            pid_file = pathlib.Path({str(pid_file)!r})
            while not pid_file.exists() or not pid_file.read_text().strip():
                time.sleep(0.02)
            pathlib.Path("in-collection").write_text("")
            time.sleep(60)

            def test_never_runs(http_client):
                pass
            """
        )
    )
    port = free_port()
    args = [
        "-p",
        "no:randomly",
        f"--stack-config=server:x:{port}",
        f"--stack-command={command}",
        "--inference-mode=live",
        "test_slow_collection.py",
    ]
    with inner_pytest(project.path, *args, marker="in-collection") as inner:
        pid = int(pid_file.read_text())
        inner.process.send_signal(signum)
        inner.process.wait(timeout=20)

    text = inner.text()
    assert wait_gone(pid), text
    assert not serverstate.state_path(serverstate.state_dir(), port).exists(), text
    assert server.probe("127.0.0.1", port).state == "free"
    assert "Exception in thread" not in text, text


def test_xdist_workers_learn_that_the_default_stack_did_not_start(project, tmp_path):
    # The project's default (ini) target: tests that need it fail, the others run, and the
    # workers learn of the failure from the controller that was starting it as they booted.
    command = f"{shlex.quote(sys.executable)} -c 'raise SystemExit(3)' {{config}} {{port}}"
    project.makeini(f"[pytest]\nstack_config = server:x:{free_port()}\nstack_command = {command}\n")
    project.makepyfile(
        test_mixed=dedent(
            """
            def test_needs_it(http_client):
                pass

            def test_needs_it_too(http_client):
                pass

            def test_plain():
                pass
            """
        )
    )

    result = project.runpytest_subprocess("-n", "2", "--inference-mode=live", "test_mixed.py")

    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        ["*stack-harness: the stack did not start: the stack server exited with code 3*"]
    )
