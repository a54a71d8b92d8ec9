"""Starting, sharing and stopping a stack server process, with small real servers on loopback."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from harness import processes, server, serverstate
from harness.server import ServerSpec, StackServerError
from harness.targets import PortRule
from tests.support.processes import free_port, wait_gone

ROOT = Path(__file__).resolve().parents[2]

# A stand-in stack: answers GET /v1/health like the real one, after an optional delay.
FAKE_STACK = textwrap.dedent(
    """
    import signal, sys, time
    sys.path.insert(0, sys.argv[3])
    from tests.support.stub_server import StubServer

    port, behaviour = int(sys.argv[1]), sys.argv[2]
    for i in range(50):
        print(f"log line {i}", flush=True)
    if behaviour == "crash":
        sys.exit(3)
    if behaviour == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    status = {"healthy": 200, "stubborn": 200, "unhealthy": 503}[behaviour]

    def health(request, reply):
        reply.json(status, {"status": "OK" if status == 200 else "starting"})

    time.sleep(0.2)
    StubServer(health, port=port).serve_forever()
    """
)


@pytest.fixture
def state(tmp_path) -> Path:
    directory = tmp_path / "state"
    directory.mkdir()
    return directory


@pytest.fixture
def make_spec(tmp_path):
    script = tmp_path / "fake_stack.py"
    script.write_text(FAKE_STACK)

    def make(port: int, behaviour: str = "healthy", timeout: float = 10.0, **signature):
        return ServerSpec(
            command=[sys.executable, str(script), str(port), behaviour, str(ROOT)],
            port=port,
            env=dict(os.environ),
            log_path=tmp_path / f"server-{port}.log",
            startup_timeout=timeout,
            signature=signature,
        )

    return make


@pytest.fixture
def http_server(stub_server):
    """A server in this process answering GET with a chosen status and body."""

    def start(status: int, body: bytes) -> int:
        return stub_server(lambda request, reply: reply.send(status, body)).port

    return start


def test_starts_a_server_and_stops_its_process_on_release(make_spec, state):
    lease = server.acquire(make_spec(free_port()), state)

    assert lease.origin == server.Origin.STARTED
    assert server.probe("127.0.0.1", lease.port).state == "healthy"
    lease.release()
    assert wait_gone(lease.pid)
    assert server.probe("127.0.0.1", lease.port).state == "free"


def test_second_holder_shares_the_server_and_the_last_release_stops_it(make_spec, state):
    spec = make_spec(free_port())
    first = server.acquire(spec, state)
    second = server.acquire(spec, state)

    assert second.origin == server.Origin.SHARED
    assert second.pid == first.pid
    first.release()
    assert server.probe("127.0.0.1", spec.port).state == "healthy"
    second.release()
    assert wait_gone(first.pid)


def test_a_server_already_running_is_reused_and_left_running(http_server, make_spec, state):
    port = http_server(200, b'{"status": "OK"}')

    lease = server.acquire(dataclasses.replace(make_spec(port), reuse_unknown=True), state)
    lease.release()

    assert lease.origin == server.Origin.EXTERNAL
    assert server.probe("127.0.0.1", port).state == "healthy"


def test_a_healthy_stack_the_harness_did_not_start_is_refused_naming_its_pid(
    http_server, make_spec, state
):
    port = http_server(200, b'{"status": "OK"}')

    with pytest.raises(StackServerError) as caught:
        server.acquire(make_spec(port), state)

    message = str(caught.value)
    assert f"port {port} already serves a healthy stack (pid {os.getpid()}" in message
    assert f"kill {os.getpid()}" in message and "--inference-mode=live" in message
    assert server.probe("127.0.0.1", port).state == "healthy"


def test_port_taken_by_something_else_names_the_port_and_the_answer(http_server, make_spec, state):
    port = http_server(404, b"no such page")

    with pytest.raises(StackServerError) as caught:
        server.acquire(make_spec(port), state)

    message = str(caught.value)
    assert f"port {port} is taken by something that is not a healthy stack" in message
    assert "HTTP 404" in message
    assert "no such page" in message


def test_port_taken_by_a_non_http_service_says_so(make_spec, state):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def close_connections():
            conn, _ = listener.accept()
            conn.sendall(b"SSH-2.0-not-http\r\n")
            conn.close()

        threading.Thread(target=close_connections, daemon=True).start()
        with pytest.raises(StackServerError, match=f"port {port} is taken.*does not speak HTTP"):
            server.acquire(make_spec(port), state)


def test_crash_at_start_reports_exit_code_and_last_40_log_lines(make_spec, state):
    spec = make_spec(free_port(), behaviour="crash")

    with pytest.raises(StackServerError) as caught:
        server.acquire(spec, state)

    message = str(caught.value)
    assert "exited with code 3" in message
    assert "log line 49" in message and "log line 10" in message
    assert "log line 9\n" not in message
    assert not (state / f"port-{spec.port}.json").exists()


def test_never_healthy_server_is_stopped_and_reported(make_spec, state):
    spec = make_spec(free_port(), behaviour="unhealthy", timeout=1.0)

    with pytest.raises(StackServerError) as caught:
        server.acquire(spec, state)

    message = str(caught.value)
    assert "not healthy after 1 s" in message
    assert "HTTP 503" in message
    assert server.probe("127.0.0.1", spec.port).state == "free"


def test_server_ignoring_sigterm_is_killed_after_the_grace_period(make_spec, state):
    lease = server.acquire(make_spec(free_port(), behaviour="stubborn"), state)

    processes.stop_process_group(lease.pid, grace=0.5)

    assert wait_gone(lease.pid, timeout=2)
    lease.released = True


def test_sharing_a_server_with_other_recording_settings_is_refused(make_spec, state):
    port = free_port()
    lease = server.acquire(make_spec(port, mode="record"), state)
    try:
        with pytest.raises(StackServerError, match="started by another test session"):
            server.acquire(make_spec(port, mode="replay"), state)
    finally:
        lease.release()


def test_server_whose_holders_died_is_adopted(make_spec, state):
    spec = make_spec(free_port())
    lease = server.acquire(spec, state)
    state_file = state / f"port-{spec.port}.json"
    dead_pid = 2**22 + 1  # above the default pid_max: never a live process
    state_file.write_text(state_file.read_text().replace(str(os.getpid()), str(dead_pid)))

    adopted = server.acquire(spec, state)
    lease.released = True  # the first holder "died"; only the adopter holds it now

    assert adopted.origin == server.Origin.SHARED and adopted.pid == lease.pid
    adopted.release()
    assert wait_gone(lease.pid)


def test_alive_is_false_for_an_exited_process():
    import subprocess

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert not processes.alive(process.pid)
    assert processes.alive(os.getpid())


def test_an_unhealthy_server_another_session_holds_is_reported_not_killed(make_spec, state):
    spec = make_spec(free_port())
    lease = server.acquire(spec, state)
    os.killpg(lease.pid, signal.SIGSTOP)  # alive but not answering (the whole group)
    try:
        with pytest.raises(StackServerError, match="started by another test session that still"):
            server.acquire(spec, state)
        assert processes.alive(lease.pid)
    finally:
        os.killpg(lease.pid, signal.SIGCONT)
        lease.release()
    assert wait_gone(lease.pid)


def test_port_zero_takes_a_free_port_and_the_same_settings_share_it(make_spec, state):
    spec = dataclasses.replace(
        make_spec(0, mode="replay"),
        port_rule=PortRule.ANY,
        command=lambda port: make_spec(port).argv(port),
        log_path=None,
    )
    first = server.acquire(spec, state)
    second = server.acquire(spec, state)
    try:
        assert first.origin is server.Origin.STARTED and first.port != 0
        assert "free port" in first.note
        assert server.probe("127.0.0.1", first.port).state is server.ProbeState.HEALTHY
        assert (second.origin, second.port, second.pid) == (
            server.Origin.SHARED,
            first.port,
            first.pid,
        )
    finally:
        second.release()
        first.release()
    assert wait_gone(first.pid)


def test_the_default_port_held_with_other_settings_moves_to_a_free_port(make_spec, state):
    port = free_port()
    held = server.acquire(make_spec(port, mode="record"), state)
    spec = dataclasses.replace(
        make_spec(port, mode="replay"),
        port_rule=PortRule.PREFERRED,
        command=lambda p: make_spec(p).argv(p),
        log_path=None,
    )
    try:
        moved = server.acquire(spec, state)
        try:
            assert moved.origin is server.Origin.STARTED and moved.port != port
            assert f"not on port {port}: the stack on port {port} was started by another" in (
                moved.note
            )
            assert "mode: 'record' there, 'replay' here" in moved.note
            assert f"using free port {moved.port} instead" in moved.note
        finally:
            moved.release()
        assert processes.alive(held.pid)  # the other session's server is left alone
    finally:
        held.release()


def test_an_explicit_port_held_with_other_settings_still_fails(make_spec, state):
    port = free_port()
    held = server.acquire(make_spec(port, mode="record"), state)
    try:
        with pytest.raises(StackServerError, match="other settings.*:0 for a free one"):
            server.acquire(make_spec(port, mode="replay"), state)
    finally:
        held.release()


def test_a_holder_whose_pid_was_reused_holds_nothing(make_spec, state):
    spec = make_spec(free_port(), mode="record")
    lease = server.acquire(spec, state)
    me = processes.ProcessId.current()
    record = serverstate.read_state(state, spec.port)
    # Our pid, another start time: a session that died and whose pid the kernel reused.
    serverstate.set_holders(record, [processes.ProcessId(me.pid, me.start - 1)])
    serverstate.write_state(state, spec.port, record)

    replaced = server.acquire(make_spec(spec.port, mode="replay"), state)
    lease.released = True

    assert replaced.origin is server.Origin.STARTED and replaced.pid != lease.pid
    assert wait_gone(lease.pid)
    replaced.release()


def _acquire_in_a_thread(
    spec: ServerSpec, state: Path
) -> tuple[threading.Thread, threading.Event, list[BaseException]]:
    """`acquire(spec)` started in a thread, as a background start runs it: the thread, the
    event that cancels it, and what it raised (once it has ended)."""
    cancel = threading.Event()
    spec = dataclasses.replace(spec, cancelled=cancel.is_set)
    ended: list[BaseException] = []

    def start() -> None:
        try:
            server.acquire(spec, state)
        except BaseException as exc:
            ended.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    return thread, cancel, ended


def test_a_start_waiting_for_another_sessions_lock_ends_once_cancelled(make_spec, state):
    port = free_port()

    with serverstate.port_lock(state, port, timeout=5):  # another session is deciding
        waiting, cancel, ended = _acquire_in_a_thread(make_spec(port), state)
        waiting.join(0.5)
        assert waiting.is_alive()  # it waits for the lock...
        cancel.set()
        waiting.join(5)
        assert not waiting.is_alive()  # ...until cancelled, without waiting out its timeout
    assert len(ended) == 1 and isinstance(ended[0], server.StartCancelled)
    assert serverstate.read_state(state, port) is None  # nothing was started


def test_a_start_cancelled_while_the_server_comes_up_stops_it(make_spec, state):
    port = free_port()

    starting, cancel, ended = _acquire_in_a_thread(make_spec(port, "unhealthy", timeout=30), state)
    while (found := serverstate.read_state(state, port)) is None:
        assert starting.is_alive()
        time.sleep(0.02)
    pid = serverstate.server_of(found).pid
    cancel.set()
    starting.join(10)
    assert not starting.is_alive()
    assert isinstance(ended[0], server.StartCancelled)
    assert wait_gone(pid)
    assert serverstate.read_state(state, port) is None
