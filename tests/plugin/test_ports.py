"""Which port a server session uses: port 0, a default port another session holds with other
settings, a second session finding the first's free-port server, two copies of a project at
once, and a project whose default target cannot start."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from harness.processes import alive
from tests.support.processes import free_port, inner_pytest, wait_gone
from tests.support.projects import dedent

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


def _started(output: str) -> tuple[int, int]:
    found = re.search(r"started the stack server \(pid (\d+)\) on port (\d+)", output)
    assert found, output
    return int(found.group(1)), int(found.group(2))


def test_port_zero_takes_a_free_port_and_says_which(project):
    project.makepyfile(test_health=HEALTH_TEST)

    result = project.runpytest_subprocess("--stack-config=server:run.yaml:0", "test_health.py")

    result.assert_outcomes(passed=1)
    pid, port = _started(result.stdout.str())
    assert port != 0
    result.stdout.fnmatch_lines([f"*port {port} is a free port (port 0 asked for one)*"])
    assert wait_gone(pid)


def test_a_default_port_held_with_other_settings_moves_to_a_free_port(project, monkeypatch):
    project.makepyfile(test_slow=SLOW_TEST, test_health=HEALTH_TEST)
    default = free_port()
    monkeypatch.setenv("LLAMA_STACK_PORT", str(default))
    config = "--stack-config=server:run.yaml"
    with inner_pytest(project.path, config, "--inference-mode=record", "test_slow.py") as first:
        held = first.server_pid
        second = project.runpytest_subprocess(config, "test_health.py")

        second.assert_outcomes(passed=1)
        output = second.stdout.str()
        pid, port = _started(output)
        assert port != default and pid != held
        assert f"not on port {default}: the stack on port {default} was started by another" in (
            output
        )
        assert "mode: 'record' there, 'replay' here" in output
        assert f"using free port {port} instead" in output
        assert f"stack-harness: server:run.yaml on port {port}, mode replay;" in output
        assert alive(held)  # the other session's server is left alone
    assert wait_gone(held) and wait_gone(pid)


def test_a_second_session_with_the_same_settings_shares_the_first_ones_free_port(project):
    project.makepyfile(test_slow=SLOW_TEST, test_health=HEALTH_TEST)
    config = "--stack-config=server:run.yaml:0"
    with inner_pytest(project.path, config, "test_slow.py") as first:
        pid, port = _started(first.text())
        second = project.runpytest_subprocess(config, "test_health.py")

        second.assert_outcomes(passed=1)
        second.stdout.fnmatch_lines([f"*sharing the stack server (pid {pid}) on port {port}*"])
        assert "started the stack server" not in second.stdout.str()
    assert wait_gone(pid)


def test_two_copies_of_a_project_run_at_once_and_both_pass(project, monkeypatch, tmp_path):
    """Two clones, one machine, `pytest` in both at the same time: the project's default
    target (`server:<config>` in its ini) on one default port, different recordings."""
    project.makeini("[pytest]\nstack_config = server:run.yaml\n")
    project.makepyfile(
        test_two=dedent(
            """
            def test_chat(openai_client, text_model_id):
                reply = openai_client.chat.completions.create(
                    model=text_model_id, messages=[{"role": "user", "content": "hi"}]
                )
                assert reply.choices[0].message.content == "You said: hi"
            """
        )
    )
    monkeypatch.setenv("LLAMA_STACK_PORT", str(free_port()))
    copies = []
    for name in ("clone-a", "clone-b"):
        copy = tmp_path / name
        shutil.copytree(project.path, copy)
        copies.append(copy)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--inference-mode=record"],
            cwd=copy,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for copy in copies
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]

    assert [run.returncode for run in runs] == [0, 0], "\n\n".join(outputs)
    ports = {_started(output)[1] for output in outputs}
    assert len(ports) == 2, outputs  # one server each: their recordings differ
    assert sum("using free port" in output for output in outputs) == 1, outputs
    for copy in copies:
        assert list((copy / "recordings" / "test_two").glob("*.json"))


def test_a_projects_default_target_that_cannot_start_fails_only_the_tests_that_need_it(
    project, stub_server
):
    taken = stub_server(lambda request, reply: reply.send(404, b"not a stack"))
    project.makeini(f"[pytest]\nstack_config = server:run.yaml:{taken.port}\n")
    project.makepyfile(test_unit="def test_needs_no_stack():\n    assert 1 + 1 == 2\n")

    result = project.runpytest_inprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1, errors=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            f"*port {taken.port} is taken by something that is not a healthy stack*",
            "*the tests that need the stack fail; others run*",
        ]
    )
    assert result.stdout.str().count("the stack did not start: port") >= 3
